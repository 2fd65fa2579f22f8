"""Every out-of-band fragment the server pushes to a conversation page, in one place.

The page template defines the markup; each function here only picks the partial (wrappers included),
so a reload and a live stream render the same HTML. The one exception is the streaming delta: it goes
out many times a second per reply, so it is formatted directly, with the same element id helper as the
`message` partial uses (tests hold the two together).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from html import escape
from html.parser import HTMLParser

from django.template.loader import render_to_string
from django.utils.html import format_html

from .models import Message, message_dom_id

PAGE = "conversations/conversation.html"


def _partial(name: str, **context) -> str:
    return render_to_string(f"{PAGE}#{name}", context)


def delta(message_id: int, text: str, completed: str, open_end: str) -> str:
    """One frame of a streaming reply: `text` appended (escaped) to its source, the blocks it completed
    (rendered once, `MarkdownStream.feed`) appended to the rendered blocks, and the open end replaced.
    Formatted here rather than from the template: it goes out many times a second per reply."""
    dom_id = message_dom_id(message_id)
    blocks = f'<div id="{dom_id}-blocks" hx-swap-oob="beforeend">{completed}</div>' if completed else ""
    return (
        f'<div id="{dom_id}-body" hx-swap-oob="beforeend">{escape(text, quote=False)}</div>{blocks}'
        f'<div id="{dom_id}-tail" hx-swap-oob="innerHTML">{open_end}</div>'
    )


def body_text(message_id: int, text: str, completed: str, open_end: str) -> str:
    """A streaming reply's source and rendering replaced: the catch-up for a socket that (re)joins."""
    dom_id = message_dom_id(message_id)
    return (
        f'<div id="{dom_id}-body" data-catch-up hx-swap-oob="innerHTML">{escape(text, quote=False)}</div>'
        f'<div id="{dom_id}-blocks" hx-swap-oob="innerHTML">{completed}</div>'
        f'<div id="{dom_id}-tail" hx-swap-oob="innerHTML">{open_end}</div>'
    )


# Thinking: the collapsible section above a reply (template conversations/_thinking.html).
THINKING = "conversations/_thinking.html"


def thinking_delta(message_id: int, text: str) -> str:
    """Append summarized thinking (escaped) to a streaming reply's thinking section."""
    return f'<div id="{message_dom_id(message_id, "thinking-body")}" hx-swap-oob="beforeend">{escape(text, quote=False)}</div>'


def thinking_text(message_id: int, text: str) -> str:
    """Replace a streaming reply's thinking with `text` (escaped): the catch-up for a socket that (re)joins."""
    return f'<div id="{message_dom_id(message_id, "thinking-body")}" hx-swap-oob="innerHTML">{escape(text, quote=False)}</div>'


def thinking_done(message_id: int, ms: int) -> str:
    """The thinking section's heading once the answer starts: "Thought for N s"."""
    # The thinking is over (the answer is streaming): the summary as a finished reply shows it.
    message = Message(pk=message_id, status=Message.Status.COMPLETE, thinking_ms=max(ms, 1))
    return render_to_string(f"{THINKING}#thinking_summary", {"message": message, "oob": True})


# The web: a reply's steps above the answer and its sources under it (template conversations/_web.html).
WEB = "conversations/_web.html"


def web_step(message_id: int, number: int, step: dict, *, new: bool) -> str:
    """A streaming reply's step `number` ("Searching: …"): appended to its steps when `new`, else in
    place of the one shown (its result came)."""
    message = Message(pk=message_id, status=Message.Status.STREAMING)
    html = render_to_string(
        f"{WEB}#web_step",
        {"message": message, "number": number, "step": step, "oob": "" if new else "outerHTML"},
    )
    if new:
        return f'<div hx-swap-oob="beforeend:#{message_dom_id(message_id, "web")}">{html}</div>'
    return html


def web_steps(message_id: int, steps: list[dict]) -> str:
    """A streaming reply's steps so far, in place of those shown: the catch-up for a socket that (re)joins."""
    message = Message(pk=message_id, status=Message.Status.STREAMING, web_steps=steps)
    return render_to_string(f"{WEB}#web_steps", {"message": message, "steps_oob": True})


def attachment_chip(attachment) -> str:
    """A pending attachment's chip in the composer (returned by the upload view)."""
    return render_to_string("conversations/_attachments.html#chip", {"attachment": attachment})


def message(message: Message) -> str:
    """The whole message in place of the one on the page."""
    return _partial("message", message=message, oob="outerHTML")


#: How a reply ended, said while its end waits to be saved (see `reply_saving`).
_ENDED = {
    "complete": "Claude finished this reply",
    "cut_off": "This reply reached its length limit",
    "stopped": "Stopped",
    "refused": "Claude declined to answer this",
    "interrupted": "This reply was interrupted",
    "error": "This reply failed",
}


def reply_saving(message_id: int, status: str) -> str:
    """The status line of a reply that has ended while its end cannot be saved yet (the database is
    unreachable or locked): how it ended, and that it is kept and will be saved."""
    ended = _ENDED.get(status, "This reply has ended")
    return format_html(
        '<div class="status" id="{}" hx-swap-oob="outerHTML"><span class="working saving" role="status">{}. '
        "Saving it: the database is not answering yet. Nothing is lost; it is kept on the server and "
        "saved as soon as the database answers.</span></div>",
        message_dom_id(message_id, "status"),
        ended,
    )


#: Most bytes of HTML one websocket frame carries where the markup allows (the issue's bound is 64 KB).
FRAME_BYTES = 60_000
# Elements without an end tag: they never open a level.
_VOID = {"area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _TopLevel(HTMLParser):
    """Offsets in an HTML string where a top-level element starts (where it can be cut)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=False)
        self.line_starts = [0]
        for index, char in enumerate(html):
            if char == "\n":
                self.line_starts.append(index + 1)
        self.depth = 0
        self.cuts: list[int] = []
        self.feed(html)
        self.close()

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def handle_starttag(self, tag, attrs):
        if self.depth == 0:
            self.cuts.append(self._offset())
        if tag not in _VOID:
            self.depth += 1

    def handle_endtag(self, tag):
        if tag not in _VOID:
            self.depth = max(0, self.depth - 1)


def _pieces(html: str, limit: int) -> list[str]:
    """`html` cut between top-level elements into pieces of at most `limit` bytes (an element that is
    larger on its own stays whole)."""
    cuts = [cut for cut in _TopLevel(html).cuts if cut > 0] + [len(html)]
    pieces, start, size, last = [], 0, 0, 0
    for cut in cuts:
        block = len(html[last:cut].encode())
        if size and size + block > limit:
            pieces.append(html[start:last])
            start, size = last, 0
        size += block
        last = cut
    pieces.append(html[start:])
    return pieces


def message_frames(reply: Message, after: str = "") -> list[str]:
    """The finished `reply` in place of the one on the page (`after` joins the first frame), as frames
    of at most FRAME_BYTES where its body allows: a long reply's rendered body goes out in pieces cut
    between top-level blocks, the first with the message itself, the others appended to its body."""
    whole = message(reply) + after
    if len(whole.encode()) <= FRAME_BYTES:
        return [whole]
    shell = len(whole.encode()) - len(reply.html.encode())
    pieces = _pieces(reply.html, max(FRAME_BYTES - shell, FRAME_BYTES // 4))
    first = copy.copy(reply)
    first.html = pieces[0]
    body = message_dom_id(reply.pk, "body")
    return [message(first) + after] + [
        f'<div id="{body}" hx-swap-oob="beforeend">{piece}</div>' for piece in pieces[1:]
    ]


def new_turns(messages: Iterable[Message]) -> str:
    """Messages appended to the list, and the send button disabled while their reply is written."""
    return _partial("messages_append", chat_messages=list(messages)) + send_button(busy=True)


def message_list(
    messages: list[Message],
    *,
    conversation=None,
    context_from: int = 0,
    earlier_before: int | None = None,
    budget_exhausted: bool = False,
) -> str:
    """The whole list in place of the page's (a socket that (re)connects), with the send button's state
    and any error left by an earlier socket (e.g. "reconnecting") cleared."""
    busy = any(m.is_streaming for m in messages)
    return (
        _partial(
            "messages_replace",
            chat_messages=messages,
            conversation=conversation,
            context_from=context_from,
            earlier_before=earlier_before,
            latest_id=messages[-1].pk if messages else None,
        )
        + send_button(busy=busy, budget_exhausted=budget_exhausted)
        + _partial("chat_error", oob=True)
    )


def context_marker(message_id: int) -> str:
    """The "no longer sent to Claude" marker moved to just before message `message_id`."""
    return _partial("context_marker_move", context_from=message_id)


def compaction_marker(message_id: int, summary: str) -> str:
    """The marker under the last message a compaction summarised (with the summary, folded)."""
    return _partial("compaction_marker_add", message_id=message_id, summary=summary)


def retrying(message_id: int, notice: str) -> str:
    """A streaming reply's status line saying that it waits to retry, and why (Stop stays)."""
    return _partial(
        "status_retrying", message=Message(pk=message_id, status=Message.Status.STREAMING), notice=notice
    )


def meter(meter) -> str:
    """The header's context meter and cost so far, brought up to date after a reply."""
    return _partial("meter", meter=meter, oob=True)


def send_button(*, busy: bool, budget_exhausted: bool = False) -> str:
    """The send button, disabled (with the reason) while a reply is written or the budget is used up."""
    return _partial("send_button", busy=busy, budget_exhausted=budget_exhausted, oob=True)


def budget(user, status=None) -> str:
    """The budget banner brought up to date (after each reply: spend changes only then); `status` is the
    user's budget_status if the caller computed it already."""
    return _partial("budget", user=user, budget_status=status, oob=True)


def composer_cleared() -> str:
    """The sender's composer emptied and an earlier error cleared, once their message is stored."""
    return (
        _partial("composer_input", oob=True)
        + _partial("chat_error", oob=True)
        + render_to_string("conversations/_attachments.html#composer_chips", {"oob": True})
    )


def error(text: str) -> str:
    """An error above the composer, for the one socket whose request failed."""
    return _partial("chat_error", error=text)


def notice(text: str) -> str:
    """A passing notice above the composer, for one socket (cleared with the composer or by an error)."""
    return _partial("chat_error", notice=text)


def title(conversation) -> str:
    """The conversation's new title in the page's header and in its sidebar entry."""
    return _partial("heading", conversation=conversation, oob=True) + _partial(
        "sidebar_title", conversation=conversation
    )

"""Every out-of-band fragment the server pushes to a conversation page, in one place.

The page template defines the markup; each function here only picks the partial (wrappers included),
so a reload and a live stream render the same HTML. The one exception is the streaming delta: it goes
out many times a second per reply, so it is formatted directly, with the same element id helper as the
`message` partial uses (tests hold the two together).
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from django.template.loader import render_to_string

from .models import Message, message_dom_id

PAGE = "conversations/conversation.html"


def _partial(name: str, **context) -> str:
    return render_to_string(f"{PAGE}#{name}", context)


def delta(message_id: int, text: str) -> str:
    """Append `text` (escaped) to a streaming message's body."""
    return f'<div id="{message_dom_id(message_id, "body")}" hx-swap-oob="beforeend">{escape(text, quote=False)}</div>'


def body_text(message_id: int, text: str) -> str:
    """Replace a streaming message's body with `text` (escaped): the catch-up for a socket that (re)joins."""
    return f'<div id="{message_dom_id(message_id, "body")}" hx-swap-oob="innerHTML">{escape(text, quote=False)}</div>'


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


def attachment_chip(attachment) -> str:
    """A pending attachment's chip in the composer (returned by the upload view)."""
    return render_to_string("conversations/_attachments.html#chip", {"attachment": attachment})


def message(message: Message) -> str:
    """The whole message in place of the one on the page."""
    return _partial("message", message=message, oob="outerHTML")


def new_turns(messages: Iterable[Message]) -> str:
    """Messages appended to the list, and the send button disabled while their reply is written."""
    return _partial("messages_append", chat_messages=list(messages)) + send_button(busy=True)


def message_list(
    messages: list[Message], *, conversation=None, context_from: int = 0, earlier_before: int | None = None
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
        + send_button(busy=busy)
        + _partial("chat_error", oob=True)
    )


def context_marker(message_id: int) -> str:
    """The "no longer sent to Claude" marker moved to just before message `message_id`."""
    return _partial("context_marker_move", context_from=message_id)


def retrying(message_id: int, notice: str) -> str:
    """A streaming reply's status line saying that it waits to retry, and why (Stop stays)."""
    return _partial(
        "status_retrying", message=Message(pk=message_id, status=Message.Status.STREAMING), notice=notice
    )


def meter(meter) -> str:
    """The header's context meter and cost so far, brought up to date after a reply."""
    return _partial("meter", meter=meter, oob=True)


def send_button(*, busy: bool) -> str:
    return _partial("send_button", busy=busy, oob=True)


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


def title(conversation) -> str:
    """The conversation's new title in the page's header and in its sidebar entry."""
    return _partial("conversation_title", conversation=conversation, oob=True) + _partial(
        "sidebar_title", conversation=conversation
    )

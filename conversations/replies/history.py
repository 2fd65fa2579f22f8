"""What a reply's API call is sent: the conversation's turns as append-only history (the top-level
system prompt, system messages where the prompt changed, each call's thinking as it was written,
attachments), the owner's pauses (for the prompt cache's lifetime), and the bounds of a prompt's size
that budget holds and context fitting use. Reads only."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from .. import attachments
from ..catalog import model_info
from ..models import (
    Conversation,
    Message,
    may_have,
)
from ..web import compaction_web_on, web_system_message

CONTINUE_PROMPT = "Continue exactly where your last reply was cut off."


def _blocks(content: str | list[dict]) -> list[dict]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _merged(earlier: str | list[dict], later: str | list[dict]) -> str | list[dict]:
    """Two same-role turns as one (thinking blocks may only lead a turn: the later one's are dropped)."""
    if isinstance(earlier, str) and isinstance(later, str):
        return earlier + "\n\n" + later
    return _blocks(earlier) + [b for b in _blocks(later) if b["type"] != "thinking"]


def content_size(content: str | list[dict]) -> int:
    """UTF-8 bytes of a turn's text and thinking, plus the estimated tokens of its images and PDFs
    (either way an upper bound of its tokens, or the estimate the budget hold uses)."""
    if isinstance(content, str):
        return len(content.encode())
    size = 0
    for block in content:
        if block["type"] == "text":
            size += len(block["text"].encode())
            if block.get("citations"):
                size += _json_size(block["citations"])
        elif block["type"] == "thinking":
            size += len(block["thinking"].encode())
        elif block["type"] == "compaction":
            size += len(str(block.get("content") or "").encode())
        elif block["type"] in ("image", "document"):
            size += attachments.block_tokens(block)
        else:  # server tool uses and their results (a page read, search results), as sent
            size += _json_size(block)
    return size


def _json_size(value) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


def web_blocks_size(content_blocks: list[list[dict]]) -> int:
    """UTF-8 bytes of what a reply's stored content blocks send besides its text and thinking (server
    tool uses, their results, citations): with those, a bound of the tokens the reply adds to a prompt."""
    return sum(
        content_size([b for b in call if b["type"] not in ("text", "thinking")])
        + sum(_json_size(b["citations"]) for b in call if b["type"] == "text" and b.get("citations"))
        for call in content_blocks
    )


@dataclass
class Turn:
    """One turn of the history sent to Claude, with the messages it came from (first and last id: a
    turn may merge several messages, and a continued reply makes several turns of one message)."""

    role: str
    content: str | list[dict]
    first_pk: int
    last_pk: int
    # False for the continue instruction between the calls of a continued reply (and a user turn that
    # starts with it): not a message the owner sent, so no Web change goes after it.
    typed: bool = True


@dataclass
class History:
    """What a reply's call sends: the top-level system prompt, and the turns after the newest compaction
    (`compaction`, the block that stands for everything up to message `through`), with the system
    prompt's later edits placed among them (`messages`)."""

    system: str
    turns: list[Turn]
    changes: list[dict]
    compaction: dict | None = None
    through: int = 0
    # The owner's pauses in this conversation: seconds from each reply's end to their next message.
    pauses: list[float] = field(default_factory=list)
    # The Web switch's changes (`Conversation.web_changes`) the compaction block does not stand for.
    web_changes: list[dict] = field(default_factory=list)

    @property
    def messages(self) -> list[dict]:
        """The API's `messages`: the compaction block first (its own assistant turn), then the turns,
        each system-prompt edit as a `role: "system"` message right after the user turn it first
        reached, and each change of the Web switch as one after the first message the owner sent
        after it (see _web_positions)."""
        return _with_system_messages(self.turns, self.changes, self.compaction, self.web_changes)


def reply_turns(
    pk: int,
    content: str,
    blocks: list[dict],
    call_ends: list,
    with_thinking: bool,
    content_blocks: list[list[dict]] = (),
) -> list[Turn]:
    """A reply as the API returned it, call by call: [thinking..., text] per call, and between two calls
    the continue instruction the later one answered (a continued reply). A call with no real text
    goes back as nothing (the API rejects empty text); its thinking with it. A call that used server
    tools goes back as its stored content blocks (`content_blocks`, per call), exactly as returned."""
    signed = [{"type": "thinking", "thinking": b["thinking"], "signature": b["signature"]} for b in blocks]
    ends = [*call_ends, (len(content), len(blocks))]
    turns: list[Turn] = []
    text_start = block_start = 0
    for n, (text_end, block_end) in enumerate(ends):
        text = content[text_start:text_end]
        returned = content_blocks[n] if n < len(content_blocks) else []
        if returned:
            sent = returned if with_thinking else [b for b in returned if b["type"] != "thinking"]
            if sent:
                turns.append(Turn(Message.Role.ASSISTANT, sent, pk, pk))
        elif text.strip():
            thinking = signed[block_start:block_end] if with_thinking else []
            content_sent = [*thinking, {"type": "text", "text": text}] if thinking else text
            turns.append(Turn(Message.Role.ASSISTANT, content_sent, pk, pk))
        if n < len(ends) - 1:
            turns.append(Turn(Message.Role.USER, CONTINUE_PROMPT, pk, pk, typed=False))
        text_start, block_start = text_end, block_end
    return turns


def turns_append(turns: list[Turn], turn: Turn) -> None:
    """Add `turn`, merged into the last one when both are the same role (the API wants them alternating)."""
    if turns and turns[-1].role == turn.role:
        last = turns[-1]
        merged = _merged(last.content, turn.content)
        turns[-1] = Turn(turn.role, merged, last.first_pk, turn.last_pk, typed=last.typed)
    else:
        turns.append(turn)


def _history_turns(conversation: Conversation, rows) -> list[Turn]:
    """The turns `rows` (the active branch's messages, oldest first) send: see reply_history."""
    turns: list[Turn] = []
    media_of = (
        attachments.blocks_by_message([row[0] for row in rows if row[1] == Message.Role.USER])
        if may_have(conversation, "has_files")
        else {}
    )
    for pk, role, content, status, thinking_blocks, call_ends, content_blocks, _compaction, *_times in rows:
        if status == Message.Status.REFUSED:
            while turns and turns[-1].role == Message.Role.USER:
                turns.pop()
            continue
        if role == Message.Role.ASSISTANT:
            pieces = reply_turns(
                pk,
                content,
                thinking_blocks or [],
                call_ends or [],
                pk >= conversation.thinking_from,
                content_blocks or [],
            )
        elif not content.strip() and pk not in media_of:
            continue
        elif pk in media_of:
            # An empty text block is refused by the API: files alone are the whole turn.
            blocks = media_of[pk]
            pieces = [
                Turn(
                    role, [*blocks, {"type": "text", "text": content}] if content.strip() else blocks, pk, pk
                )
            ]
        else:
            pieces = [Turn(role, content, pk, pk)]
        for turn in pieces:
            turns_append(turns, turn)
    return turns


def _system_message_positions(turns: list[Turn], changes: list[dict]) -> list[tuple[int, str]]:
    """Where each system-prompt edit goes: after the user turn that the first reply after the edit
    answered (the user turn before the first turn newer than the edit, or that turn itself when it is
    the user's), which stays the same place however the conversation goes on."""
    placed = []
    for change in changes:
        index = next((i for i, turn in enumerate(turns) if turn.last_pk > change["after"]), len(turns))
        position = index + 1 if index < len(turns) and turns[index].role == Message.Role.USER else index
        placed.append((position, change["text"]))
    return placed


def _system_message_text(prompt: str) -> str:
    if not prompt:
        return "The system prompt was removed: the earlier system instructions no longer apply."
    return f"The system prompt was changed. From now on, follow these instructions instead of the earlier ones:\n\n{prompt}"


def _web_positions(turns: list[Turn], web_changes: list[dict], on: bool) -> dict[int, bool]:
    """Where the Web switch's changes go, as {position: on}, net of the state before (`on` at the start).

    A change goes after the first turn the owner sent later (a user turn that does not start with the
    continue instruction, newer than the message that was newest when the switch flipped), and only
    once that turn exists: a retry, a regenerated reply or a continuation keeps the switch its message
    was sent with, so what a call sent stays in place for every later one. Changes that land in the
    same place count as their last."""
    placed: dict[int, bool] = {}
    for change in web_changes:
        index = next(
            (
                i
                for i, turn in enumerate(turns)
                if turn.role == Message.Role.USER and turn.typed and turn.last_pk > change["after"]
            ),
            None,
        )
        if index is not None:
            placed[index + 1] = change["on"]
    net: dict[int, bool] = {}
    for position in sorted(placed):
        if placed[position] != on:
            on = net[position] = placed[position]
    return net


def _with_system_messages(
    turns: list[Turn], changes: list[dict], compaction: dict | None, web_changes: list[dict] = ()
) -> list[dict]:
    messages: list[dict] = [{"role": Message.Role.ASSISTANT, "content": [compaction]}] if compaction else []
    placed = _system_message_positions(turns, changes)
    web = _web_positions(turns, list(web_changes), compaction_web_on(compaction))
    for index, turn in enumerate(turns + [None]):
        for position, text in placed:
            if position == index and index > 0:
                messages.append({"role": "system", "content": _system_message_text(text)})
        if index in web:
            messages.append(web_system_message(web[index]))
        if turn is not None:
            messages.append({"role": turn.role, "content": turn.content})
    return messages


def owner_pauses(rows: list[tuple[str, datetime, datetime]]) -> list[float]:
    """Seconds from each reply's end to the owner's next message, oldest first, from the branch's
    (role, created_at, updated_at) in order: what chooses the cache lifetime (caching.choose_cache_ttl)."""
    return [
        (created - ended).total_seconds()
        for (earlier, _, ended), (role, created, _) in zip(rows, rows[1:], strict=False)
        if earlier == Message.Role.ASSISTANT and role == Message.Role.USER
    ]


#: What the history (history_for) and the prompt bound (_prompt_bound) read of each message: a Send
#: reads its branch once for both (`branch_rows`).
ROW_FIELDS = (
    "pk", "role", "content", "status", "model", "thinking", "thinking_blocks", "call_ends", "content_blocks",
    "compaction", "created_at", "updated_at", "input_tokens", "output_tokens", "cache_creation_input_tokens",
    "cache_read_input_tokens",
)  # fmt: skip
_HISTORY_FIELDS = (
    "pk", "role", "content", "status", "thinking_blocks", "call_ends", "content_blocks", "compaction",
    "created_at", "updated_at",
)  # fmt: skip


def branch_rows(conversation: Conversation, *, before: Message) -> list[Message]:
    """The active branch's messages a reply at `before` may send, oldest first, with what both the history
    and the prompt bound read of them: one query, for a caller that needs both (a Send)."""
    return list(_history_rows(conversation, before=before).only(*ROW_FIELDS))


def history_for(
    conversation: Conversation,
    *,
    before: Message,
    draft: Turn | None = None,
    rows: list[Message] | None = None,
) -> History:
    """The history a reply placed at `before` sends (see reply_history), as turns; with `draft`, a user
    turn not stored yet, placed after them (what a Send of it would send: the price shown before it).
    `rows`: the branch as `branch_rows` read it for `before` in this transaction (else read here)."""
    if rows is None:
        rows = list(_history_rows(conversation, before=before).values_list(*_HISTORY_FIELDS))
    else:
        rows = [tuple(getattr(row, name) for name in _HISTORY_FIELDS) for row in rows]
    pauses = owner_pauses([(row[1], row[8], row[9]) for row in rows])
    compaction, through = None, 0
    for index in range(len(rows) - 1, -1, -1):
        if rows[index][7]:
            compaction, through = rows[index][7]["block"], rows[index][0]
            rows = rows[index + 1 :]
            break
    turns = _history_turns(conversation, rows)
    if draft is not None:
        turns_append(turns, draft)
    while turns and turns[0].role != Message.Role.USER:
        turns.pop(0)
    while turns and turns[-1].role != Message.Role.USER:
        turns.pop()
    web_changes: list[dict] = []
    if model_info(conversation.model).system_messages:
        system = conversation.base_system_prompt
        changes = [c for c in conversation.system_messages if c["after"] >= through]
        # Those before the compaction are in its block's `tool_changes`.
        web_changes = [c for c in conversation.web_changes if c["after"] >= through]
    else:  # no system messages on this model: the prompt in force goes on top (old models check no prefix)
        system, changes = conversation.system_prompt, []
    return History(
        system=system,
        turns=turns,
        changes=changes,
        compaction=compaction,
        through=through,
        pauses=pauses,
        web_changes=web_changes,
    )


def reply_request_history(message: Message, *, rows: list[Message] | None = None) -> History:
    """What the call of the streaming reply `message` sends: the history before it, and when it is being
    continued, its earlier calls as they were sent with the continue instruction after them. `rows`:
    the branch before it as `branch_rows` read it in the transaction that started it."""
    conversation = message.conversation
    history = history_for(conversation, before=message, rows=rows)
    if message.content.strip() and history.turns:
        for turn in reply_turns(
            message.pk,
            message.content,
            message.thinking_blocks,
            message.call_ends,
            message.pk >= conversation.thinking_from,
            message.content_blocks,
        ):
            turns_append(history.turns, turn)
    return history


def reply_history(conversation: Conversation, *, before: Message) -> tuple[list[dict], int]:
    """The API `messages` for a reply placed at `before`, and the prompt's size (UTF-8 bytes of its
    text, plus the estimated tokens of its images and PDFs).

    Append-only (the 5.5 models check it): every call of a conversation sends what the previous one
    sent and adds to its end. A user turn with attachments is a list of content blocks, images and
    PDFs first (base64). A reply goes back as the API returned it, its signed thinking blocks first
    (thinking without a signature, a reply stopped mid-thought, is left out); a continued reply goes
    back as its calls, with the continue instruction between them. The top-level system prompt stays
    as the conversation started; each later edit is a `role: "system"` message after the user turn it
    first reached. Once a conversation was compacted, the compaction block stands for everything up to
    the message it summarised.

    Only the active branch is sent, and of it only messages from `conversation.context_from` on (older ones were left out to fit the
    context window on a model without compaction; replies written before that cut go back without
    their thinking, `thinking_from`). Turns with no real text (empty or whitespace-only: the API
    rejects them) are skipped; a refused exchange (the refusal and the user's turn it answered) is
    left out, since sending it again keeps the conversation refused; consecutive same-role turns are
    merged, so the list alternates and ends with the user's turn (API 2026-10-21 rejects prefill).
    """
    history = history_for(conversation, before=before)
    messages = history.messages
    size = len(history.system.encode()) + sum(content_size(m["content"]) for m in messages)
    return messages, size


def _history_rows(conversation: Conversation, *, before: Message):
    """The active branch's messages a reply placed at `before` may send (reply_history picks and merges
    the turns)."""
    return (
        conversation.messages.active().filter(pk__lt=before.pk, pk__gte=conversation.context_from).in_order()
    )


#: Per message framing that UTF-8 bytes do not see (role markers and the like), in tokens.
TURN_OVERHEAD_TOKENS = 8


#: Replies whose call ended with the API's final usage (message_delta): their counts are exact.
FINAL_USAGE = {Message.Status.COMPLETE, Message.Status.CUT_OFF, Message.Status.REFUSED}


def _counted(message: Message, conversation: Conversation) -> bool:
    """Whether `message`'s call reported a prompt the next call's prompt extends (same model, same
    system prompt, final usage)."""
    changed = conversation.prompt_changed_at
    return (
        message.role == Message.Role.ASSISTANT
        and message.status in FINAL_USAGE
        and message.prompt_tokens > 0
        and message.model == conversation.model
        and (changed is None or changed < message.created_at)
    )


def prompt_tokens_bound(conversation: Conversation, *, before: Message) -> int:
    """An upper bound of the prompt tokens of the call a reply at `before` makes (see _prompt_bound)."""
    return _prompt_bound(conversation, before=before)[0]


def _prompt_bound(
    conversation: Conversation, *, before: Message, rows: list[Message] | None = None
) -> tuple[int, list[float]]:
    """An upper bound of the prompt tokens of the call a reply at `before` makes (for the budget hold).

    A token is at least one UTF-8 byte, so bytes bound any text. Tighter, where the conversation has a
    reply whose call reported its prompt: that prompt (exact) plus that reply's output tokens (exact:
    it is sent back) plus the bytes of everything after it. Later changes only shrink the prompt
    (older turns left out, a refused exchange dropped), and a new model or system prompt falls back
    to bytes. `before` being continued adds its own text and the continuation prompt. The smallest
    of the bounds that apply is returned. Images and PDFs count at their estimated tokens. Also the
    owner's pauses (seconds from each reply's end to their next message), which choose the cache lifetime.
    `rows`: the branch as `branch_rows` read it for `before` (else read here).
    """
    if rows is None:
        rows = branch_rows(conversation, before=before)
    # Images and PDFs at their estimated tokens; thinking, and what server tools returned, are sent
    # back with their reply.
    media = (
        attachments.tokens_by_message([row.pk for row in rows]) if may_have(conversation, "has_files") else {}
    )
    sizes = [
        len(row.content.encode())
        + len(row.thinking.encode())
        + web_blocks_size(row.content_blocks)
        + media.get(row.pk, 0)
        + TURN_OVERHEAD_TOKENS
        for row in rows
    ]
    if model_info(conversation.model).system_messages:  # the first prompt on top, each edit a message
        system = len(conversation.base_system_prompt.encode()) + sum(
            len(_system_message_text(change["text"]).encode()) + TURN_OVERHEAD_TOKENS
            for change in conversation.system_messages
        )
    else:
        system = len(conversation.system_prompt.encode())
    if conversation.web_tools:  # the tools' definitions once surfaced, and the messages that switch them
        system += len(json.dumps(conversation.web_tools).encode()) + len(conversation.web_changes) * (
            len(json.dumps(web_system_message(True)).encode()) + TURN_OVERHEAD_TOKENS
        )
    continued = before.content if before.content.strip() else ""
    tail = (
        len(continued.encode())
        + web_blocks_size(before.content_blocks)
        + len(CONTINUE_PROMPT.encode())
        + 2 * TURN_OVERHEAD_TOKENS
        if continued
        else 0
    )
    bounds = [system + sum(sizes) + tail]
    for index in range(len(rows) - 1, -1, -1):
        if _counted(rows[index], conversation):
            last = rows[index]
            bounds.append(
                last.prompt_tokens
                + last.output_tokens
                + TURN_OVERHEAD_TOKENS
                + sum(sizes[index + 1 :])
                + tail
            )
            break
    if continued and _counted(before, conversation):
        # A continued reply's own last call: its prompt and the part it wrote, plus the continuation prompt.
        bounds.append(
            before.prompt_tokens
            + before.output_tokens
            + len(CONTINUE_PROMPT.encode())
            + 2 * TURN_OVERHEAD_TOKENS
        )
    return min(bounds), owner_pauses([(row.role, row.created_at, row.updated_at) for row in rows])


def context_sizes(*, conversation_id: int, before_id: int) -> list[tuple[int, str, int]]:
    """(id, role, UTF-8 bytes) of the active branch's messages still sent to Claude for a reply at `before_id`, oldest first."""
    conversation = Conversation.objects.get(pk=conversation_id)
    rows = (
        conversation.messages.active()
        .filter(pk__lt=before_id, pk__gte=conversation.context_from)
        .in_order()
        .values_list("pk", "role", "content", "content_blocks")
    )
    return [(pk, role, len(content.encode()) + web_blocks_size(blocks)) for pk, role, content, blocks in rows]

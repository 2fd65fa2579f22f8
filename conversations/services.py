"""Writes: small keyword-only functions, each atomic. Generations start only after the commit."""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, prefetch_related_objects
from django.utils import timezone

from billing.services import (
    granted_max_tokens,
    hold_prompt_known,
    spend_reserve,
    usage_record,
    usage_replace_estimate,
)
from billing.usage import LedgerLabels, Usage

from . import attachments
from .caching import choose_cache_ttl
from .catalog import EFFORTS, model_info, reply_max_tokens, takes_effort
from .claude import Completion, ReplyRequest, estimate_tokens_from_chars, opaque_user_id
from .control import request_stop
from .models import (
    Conversation,
    Message,
    Preset,
    ShareLink,
    annotate_branches,
    share_token_hash,
    usage_fields,
)
from .rendering import clean_title, render_markdown, without_control_words

logger = logging.getLogger(__name__)

CONTINUE_PROMPT = "Continue exactly where your last reply was cut off."


# Primary keys are 64-bit: anything larger can name no row (and would overflow the database's integer).
MAX_ID = 2**63 - 1


class InvalidInput(ValueError):
    """Bad input from a person; str(exc) says what to fix. Nothing was written."""


class NotFound(InvalidInput):
    """The thing named does not exist or is not the person's; which of the two is never said."""


def clean_id(value: object) -> int:
    """A row id from a form or a websocket frame: a positive integer (or its digits), else NotFound."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if type(value) is not int or not 0 < value <= MAX_ID:
        raise NotFound("No such message.")
    return value


def refuse_unstorable(text: str, what: str) -> str:
    """`text`, unless it holds characters no database stores as text: NUL (PostgreSQL refuses it) or a
    lone surrogate (not valid UTF-8). InvalidInput names `what` then."""
    if "\x00" in text:
        raise InvalidInput(f"{what} contains a NUL character, which cannot be stored: remove it and try again.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (e.g. "\ud800" in a websocket frame's JSON)
        raise InvalidInput(f"{what} contains characters that are not valid text.") from None
    return text


def clean_message_text(text: object, *, allow_empty: bool = False) -> str:
    """The message as stored; `allow_empty` when files go with it (an image may be the whole question)."""
    if text is None and allow_empty:
        text = ""
    if not isinstance(text, str):
        raise InvalidInput("The message must be text.")
    # The search's highlight markers (private-use characters) never come from a person's text.
    text = text.replace("\r\n", "\n").replace("\ue000", "").replace("\ue001", "").strip()
    if not text and not allow_empty:
        raise InvalidInput("The message is empty.")
    refuse_unstorable(text, "The message")
    if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise InvalidInput(
            f"The message is too long ({len(text):,} characters; the limit is {settings.CHAT_MAX_MESSAGE_CHARS:,})."
        )
    return text


def clean_model(model: object) -> str:
    if model not in settings.CHAT_MODELS:
        raise InvalidInput("Choose one of the offered models.")
    return model


def clean_system_prompt(system_prompt: object) -> str:
    if not isinstance(system_prompt, str) or len(system_prompt) > settings.CHAT_MAX_SYSTEM_PROMPT_CHARS:
        raise InvalidInput(
            f"The system prompt must be at most {settings.CHAT_MAX_SYSTEM_PROMPT_CHARS:,} characters."
        )
    return refuse_unstorable(system_prompt.replace("\r\n", "\n").strip(), "The system prompt")


def preset_offered(*, user, preset_id: object) -> Preset | None:
    """The preset `user` picked to start a conversation from (their own or a published site-wide one),
    None for none; InvalidInput for any other id."""
    if preset_id in (None, ""):
        return None
    try:
        pk = clean_id(preset_id)
    except NotFound:
        raise InvalidInput("Choose one of the offered presets.") from None
    preset = Preset.objects.offered_to(user).filter(pk=pk).first()
    if preset is None:
        raise InvalidInput("Choose one of the offered presets.")
    return preset


def conversation_create(
    *, owner, model: str | None = None, system_prompt: str = "", preset_id: object = None
) -> Conversation:
    """A new, empty conversation with the default model unless one is given. With a preset, the
    conversation gets a copy of its system prompt (later changes to the preset do not reach it)."""
    preset = preset_offered(user=owner, preset_id=preset_id)
    if preset is not None:
        system_prompt = preset.system_prompt
    return Conversation.objects.create(
        owner=owner,
        model=clean_model(model or settings.CHAT_DEFAULT_MODEL),
        system_prompt=clean_system_prompt(system_prompt),
    )


# Stop sequences per conversation. The API takes a list of strings, each with some non-whitespace
# (it answers 400 otherwise); the count and length caps are this app's, to keep requests small.
MAX_STOP_SEQUENCES = 8
MAX_STOP_SEQUENCE_CHARS = 200


def clean_stop_sequences(value: object) -> list[str]:
    """Stop sequences from the settings form: one per line (a written "\\n" stands for a line break),
    blank lines skipped, duplicates dropped. Raises InvalidInput naming what is wrong."""
    if value is None:
        return []
    if not isinstance(value, str):
        raise InvalidInput("Stop sequences must be text, one per line.")
    refuse_unstorable(value, "The stop sequences")
    sequences: list[str] = []
    for line in value.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        sequence = line.replace("\\n", "\n")
        if not sequence.strip():
            raise InvalidInput("A stop sequence must contain something other than spaces and line breaks.")
        if len(sequence) > MAX_STOP_SEQUENCE_CHARS:
            raise InvalidInput(f"A stop sequence can be at most {MAX_STOP_SEQUENCE_CHARS} characters.")
        if sequence not in sequences:
            sequences.append(sequence)
    if len(sequences) > MAX_STOP_SEQUENCES:
        raise InvalidInput(f"At most {MAX_STOP_SEQUENCES} stop sequences ({len(sequences)} given).")
    return sequences


def stop_sequences_text(sequences: list[str]) -> str:
    """The settings form's text for `sequences` (the inverse of `clean_stop_sequences`)."""
    return "\n".join(s.replace("\n", "\\n") for s in sequences)


def conversation_update_settings(
    *,
    conversation: Conversation,
    model: object,
    system_prompt: object,
    effort: object = None,
    stop_sequences: object = None,
) -> None:
    """Change the model, system prompt and (when given) thinking effort and stop sequences of the
    conversation's next replies. Raises InvalidInput with nothing changed.

    `effort` is one of EFFORTS or "" for the model's default; a model that takes none keeps "".
    """
    system_prompt = clean_system_prompt(system_prompt)
    if effort is not None and effort not in ("", *EFFORTS):
        raise InvalidInput("Choose one of the offered effort levels.")
    model = clean_model(model)
    sequences = conversation.stop_sequences if stop_sequences is None else clean_stop_sequences(stop_sequences)
    fields = ["model", "system_prompt", "stop_sequences", "updated_at"]
    if (model, system_prompt) != (conversation.model, conversation.system_prompt):
        conversation.prompt_changed_at = timezone.now()  # earlier calls' token counts no longer apply
        fields.append("prompt_changed_at")
    if system_prompt != conversation.system_prompt:
        newest = conversation.messages.order_by("-pk").values_list("pk", flat=True).first()
        if newest is None:  # nothing sent yet: the conversation simply starts with this prompt
            conversation.base_system_prompt = system_prompt
            fields.append("base_system_prompt")
        else:
            # Earlier thinking is bound to the prompt it was written under: the edit goes to the end of
            # the history, as a system message from the next reply on (see reply_history).
            _refuse_while_streaming(conversation, "changing the system prompt")
            conversation.system_messages = [*conversation.system_messages, {"after": newest, "text": system_prompt}]
            fields.append("system_messages")
    conversation.model, conversation.system_prompt = model, system_prompt
    conversation.stop_sequences = sequences
    if effort is not None:
        conversation.effort = effort if takes_effort(model) else ""
        fields.append("effort")
    conversation.save(update_fields=fields)


def conversation_rename(*, conversation: Conversation, title: object) -> None:
    """Rename by hand: this title wins over any Claude writes later."""
    if not isinstance(title, str) or not title.strip():
        raise InvalidInput("The title cannot be empty.")
    refuse_unstorable(title, "The title")
    conversation.title = title.strip()[:200]
    conversation.title_source = Conversation.TitleSource.USER
    conversation.save(update_fields=["title", "title_source", "updated_at"])


def conversation_pin(*, conversation: Conversation, pinned: bool) -> None:
    """Pin the conversation to the top of the sidebar, or unpin it (its place in time is unchanged)."""
    Conversation.objects.filter(pk=conversation.pk).update(pinned=pinned)
    conversation.pinned = pinned


def conversation_archive(*, conversation: Conversation, archived: bool) -> None:
    """Move the conversation out of the sidebar to the "Archived" list, or back. Archiving unpins it."""
    fields = {"archived": archived} | ({"pinned": False} if archived else {})
    Conversation.objects.filter(pk=conversation.pk).update(**fields)
    for name, value in fields.items():
        setattr(conversation, name, value)


def preset_create(*, owner, name: object, system_prompt: object) -> Preset:
    """Save a system prompt as one of `owner`'s presets."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("Give the preset a name.")
    refuse_unstorable(name, "The preset's name")
    if len(name.strip()) > 100:
        raise InvalidInput("The preset's name must be at most 100 characters.")
    prompt = clean_system_prompt(system_prompt)
    if not prompt:
        raise InvalidInput("The preset's system prompt is empty.")
    return Preset.objects.create(owner=owner, name=name.strip(), system_prompt=prompt)


def preset_delete(*, preset: Preset) -> None:
    """Delete one of a person's presets; conversations started from it keep their copy of the prompt."""
    preset.delete()


def share_create(*, conversation: Conversation) -> str:
    """A new read-only link token for the conversation, replacing any earlier link (which stops working).

    Only the token's hash is stored: the returned token is the one chance to show the link.
    """
    if not settings.CHAT_SHARING:
        raise InvalidInput("Sharing is turned off on this server.")
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        ShareLink.objects.filter(conversation=conversation).delete()
        ShareLink.objects.create(conversation=conversation, token_hash=share_token_hash(token))
    return token


def share_revoke(*, conversation: Conversation) -> bool:
    """Stop the conversation's read-only link from working. Returns whether there was one."""
    deleted, _ = ShareLink.objects.filter(conversation=conversation).delete()
    return bool(deleted)


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a conversation and its messages, stopping a reply still being written.

    Spend history lives in the ledger and is untouched; the stopped reply's call is recorded there too.
    """
    with transaction.atomic():
        streaming = list(
            conversation.messages.filter(status=Message.Status.STREAMING).values_list("pk", flat=True)
        )
        conversation_id = conversation.pk
        conversation.delete()
        for message_id in streaming:
            transaction.on_commit(lambda m=message_id: async_to_sync(request_stop)(conversation_id, m))


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
        elif block["type"] == "thinking":
            size += len(block["thinking"].encode())
        elif block["type"] == "compaction":
            size += len(str(block.get("content") or "").encode())
        else:
            size += attachments.block_tokens(block)
    return size


@dataclass
class Turn:
    """One turn of the history sent to Claude, with the messages it came from (first and last id: a
    turn may merge several messages, and a continued reply makes several turns of one message)."""

    role: str
    content: str | list[dict]
    first_pk: int
    last_pk: int


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

    @property
    def messages(self) -> list[dict]:
        """The API's `messages`: the compaction block first (its own assistant turn), then the turns,
        each system-prompt edit as a `role: "system"` message right after the user turn it first
        reached."""
        return _with_system_messages(self.turns, self.changes, self.compaction)


def reply_turns(pk: int, content: str, blocks: list[dict], call_ends: list, with_thinking: bool) -> list[Turn]:
    """A reply as the API returned it, call by call: [thinking..., text] per call, and between two calls
    the continue instruction the later one answered (a continued reply). A call with no real text
    goes back as nothing (the API rejects empty text); its thinking with it."""
    signed = [{"type": "thinking", "thinking": b["thinking"], "signature": b["signature"]} for b in blocks]
    ends = [*call_ends, (len(content), len(blocks))]
    turns: list[Turn] = []
    text_start = block_start = 0
    for n, (text_end, block_end) in enumerate(ends):
        text = content[text_start:text_end]
        if text.strip():
            thinking = signed[block_start:block_end] if with_thinking else []
            content_sent = [*thinking, {"type": "text", "text": text}] if thinking else text
            turns.append(Turn(Message.Role.ASSISTANT, content_sent, pk, pk))
        if n < len(ends) - 1:
            turns.append(Turn(Message.Role.USER, CONTINUE_PROMPT, pk, pk))
        text_start, block_start = text_end, block_end
    return turns


def turns_append(turns: list[Turn], turn: Turn) -> None:
    """Add `turn`, merged into the last one when both are the same role (the API wants them alternating)."""
    if turns and turns[-1].role == turn.role:
        last = turns[-1]
        turns[-1] = Turn(turn.role, _merged(last.content, turn.content), last.first_pk, turn.last_pk)
    else:
        turns.append(turn)


def _history_turns(conversation: Conversation, rows) -> list[Turn]:
    """The turns `rows` (the active branch's messages, oldest first) send: see reply_history."""
    turns: list[Turn] = []
    media_of = attachments.blocks_by_message([row[0] for row in rows if row[1] == Message.Role.USER])
    for pk, role, content, status, thinking_blocks, call_ends, _compaction, *_times in rows:
        if status == Message.Status.REFUSED:
            while turns and turns[-1].role == Message.Role.USER:
                turns.pop()
            continue
        if role == Message.Role.ASSISTANT:
            pieces = reply_turns(pk, content, thinking_blocks or [], call_ends or [], pk >= conversation.thinking_from)
        elif not content.strip() and pk not in media_of:
            continue
        elif pk in media_of:
            # An empty text block is refused by the API: files alone are the whole turn.
            blocks = media_of[pk]
            pieces = [Turn(role, [*blocks, {"type": "text", "text": content}] if content.strip() else blocks, pk, pk)]
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


def _with_system_messages(turns: list[Turn], changes: list[dict], compaction: dict | None) -> list[dict]:
    messages: list[dict] = [{"role": Message.Role.ASSISTANT, "content": [compaction]}] if compaction else []
    placed = _system_message_positions(turns, changes)
    for index, turn in enumerate(turns + [None]):
        for position, text in placed:
            if position == index and index > 0:
                messages.append({"role": "system", "content": _system_message_text(text)})
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


def history_for(conversation: Conversation, *, before: Message) -> History:
    """The history a reply placed at `before` sends (see reply_history), as turns."""
    rows = list(
        _history_rows(conversation, before=before).values_list(
            "pk", "role", "content", "status", "thinking_blocks", "call_ends", "compaction", "created_at", "updated_at"
        )
    )
    pauses = owner_pauses([(row[1], row[7], row[8]) for row in rows])
    compaction, through = None, 0
    for index in range(len(rows) - 1, -1, -1):
        if rows[index][6]:
            compaction, through = rows[index][6]["block"], rows[index][0]
            rows = rows[index + 1 :]
            break
    turns = _history_turns(conversation, rows)
    while turns and turns[0].role != Message.Role.USER:
        turns.pop(0)
    while turns and turns[-1].role != Message.Role.USER:
        turns.pop()
    if model_info(conversation.model).system_messages:
        system = conversation.base_system_prompt
        changes = [c for c in conversation.system_messages if c["after"] >= through]
    else:  # no system messages on this model: the prompt in force goes on top (old models check no prefix)
        system, changes = conversation.system_prompt, []
    return History(
        system=system, turns=turns, changes=changes, compaction=compaction, through=through, pauses=pauses
    )


def reply_request_history(message: Message) -> History:
    """What the call of the streaming reply `message` sends: the history before it, and when it is being
    continued, its earlier calls as they were sent with the continue instruction after them."""
    conversation = message.conversation
    history = history_for(conversation, before=message)
    if message.content.strip() and history.turns:
        for turn in reply_turns(
            message.pk, message.content, message.thinking_blocks, message.call_ends,
            message.pk >= conversation.thinking_from,
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


def _prompt_bound(conversation: Conversation, *, before: Message) -> tuple[int, list[float]]:
    """An upper bound of the prompt tokens of the call a reply at `before` makes (for the budget hold).

    A token is at least one UTF-8 byte, so bytes bound any text. Tighter, where the conversation has a
    reply whose call reported its prompt: that prompt (exact) plus that reply's output tokens (exact:
    it is sent back) plus the bytes of everything after it. Later changes only shrink the prompt
    (older turns left out, a refused exchange dropped), and a new model or system prompt falls back
    to bytes. `before` being continued adds its own text and the continuation prompt. The smallest
    of the bounds that apply is returned. Images and PDFs count at their estimated tokens. Also the
    owner's pauses (seconds from each reply's end to their next message), which choose the cache lifetime.
    """
    fields = (
        "pk", "role", "content", "status", "model", "created_at", "updated_at", "thinking",
        "input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
    )  # fmt: skip
    rows = list(_history_rows(conversation, before=before).only(*fields))
    # Images and PDFs at their estimated tokens; thinking is sent back with its reply.
    media = attachments.tokens_by_message([row.pk for row in rows])
    sizes = [
        len(row.content.encode()) + len(row.thinking.encode()) + media.get(row.pk, 0) + TURN_OVERHEAD_TOKENS
        for row in rows
    ]
    if model_info(conversation.model).system_messages:  # the first prompt on top, each edit a message
        system = len(conversation.base_system_prompt.encode()) + sum(
            len(_system_message_text(change["text"]).encode()) + TURN_OVERHEAD_TOKENS
            for change in conversation.system_messages
        )
    else:
        system = len(conversation.system_prompt.encode())
    continued = before.content if before.content.strip() else ""
    tail = (
        len(continued.encode()) + len(CONTINUE_PROMPT.encode()) + 2 * TURN_OVERHEAD_TOKENS if continued else 0
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
        .values_list("pk", "role", "content")
    )
    return [(pk, role, len(content.encode())) for pk, role, content in rows]


def conversation_leave_out_before(*, conversation_id: int, message_id: int, reply_id: int) -> bool:
    """Stop sending the messages older than `message_id` to Claude (the cut only moves forward), and the
    thinking of replies older than `reply_id`, the reply whose call makes the cut: it was bound to the
    turns left out. Returns whether it moved.
    """
    moved = Conversation.objects.filter(pk=conversation_id, context_from__lt=message_id).update(
        context_from=message_id, thinking_from=reply_id
    )
    return bool(moved)


#: The longest summary an on-demand compaction may write.
COMPACTION_MAX_TOKENS = 8_000


@dataclass(frozen=True)
class CompactionJob:
    """A compaction call about to be made for the reply `reply_id`: its request, the last message it
    summarises, and the spend held for it under `hold_id`."""

    reply_id: int
    through: int
    hold_id: int
    attempt_id: uuid.UUID
    request: ReplyRequest
    labels: LedgerLabels


def compaction_start(
    *, reply_id: int, keep_tokens: int, tokens_per_byte: float, request: ReplyRequest, window: int
) -> CompactionJob | None:
    """Plan the compaction a reply's call needs: the newest turns that fit in about `keep_tokens` are kept
    (at least the latest), everything before them is to be summarised, ending with one of Claude's
    turns (so the kept turns, starting with the user's, keep their thinking); the compaction call
    itself fits a window of `window` tokens. Holds the call's spend (raises SpendRefused). None when
    there is nothing before the latest turn to summarise."""
    with transaction.atomic():
        message = Message.objects.select_related("conversation__owner").get(pk=reply_id)
        conversation = message.conversation
        history = reply_request_history(message)
        turns = history.turns
        sizes = [int(content_size(t.content) * tokens_per_byte) + TURN_OVERHEAD_TOKENS for t in turns]
        cuts = [
            c for c in range(1, len(turns))
            if turns[c - 1].role == Message.Role.ASSISTANT and turns[c].role == Message.Role.USER
            and turns[c].first_pk != turns[c - 1].last_pk and turns[c].first_pk < message.pk
        ]
        if not cuts:
            return None
        # The compaction call must fit the window itself: summarise what fits of the older turns now, and
        # the rest in a next round (fit_request asks again), each from the summary before it.
        max_tokens = min(COMPACTION_MAX_TOKENS, window // 4)
        lead = content_size([history.compaction]) + TURN_OVERHEAD_TOKENS if history.compaction else 0
        room = window - max_tokens - int((len(history.system.encode()) + lead) * tokens_per_byte)
        summarisable = [c for c in cuts if sum(sizes[:c]) <= room]
        if not summarisable:
            return None
        fitting = [c for c in summarisable if sum(sizes[c:]) <= keep_tokens]
        cut = fitting[0] if fitting else summarisable[-1]
        through = turns[cut - 1].last_pk
        summarised = History(
            system=history.system,
            turns=turns[:cut],
            changes=[c for c in history.changes if c["after"] < through],
            compaction=history.compaction,
        )
        compaction_request = replace(
            request,
            messages=summarised.messages,
            system=history.system,
            max_tokens=max_tokens,
            stop_sequences=(),
            cache_ttl="",
        )
        prompt_bound = len(history.system.encode()) + sum(content_size(m["content"]) + TURN_OVERHEAD_TOKENS for m in summarised.messages)
        hold_id = message.parent_id or message.pk
        granted = spend_reserve(
            user=conversation.owner,
            model=message.model,
            prompt_tokens=prompt_bound,
            max_tokens=max_tokens,
            message_id=hold_id,
            cache_ttl="",  # a compaction call writes no cache
        )
        compaction_request = replace(compaction_request, max_tokens=granted)
        labels = ledger_labels_for(conversation, model=message.model)
    return CompactionJob(message.pk, through, hold_id, uuid.uuid4(), compaction_request, labels)


def compaction_finish(*, job: CompactionJob, block: dict | None, summary: str, usage: Usage, request_id: str) -> bool:
    """Record the compaction call's ledger row (purpose "compaction", on the reply's receipt) and, when it
    wrote a summary (`block`), keep it on the last message it summarises: later calls send it in place
    of everything up to there. Returns whether the summary was kept (the message may be gone)."""
    with transaction.atomic():
        usage_record(
            labels=job.labels,
            message_id=job.reply_id,
            hold_id=job.hold_id,
            request_id=request_id,
            usage=usage,
            estimated=False,
            attempt_id=job.attempt_id,
            purpose="compaction",
        )
        if block is None:
            return False
        return bool(Message.objects.filter(pk=job.through).update(compaction={"block": block, "summary": summary}))


def _reserve(*, conversation: Conversation, assistant: Message, prompt_tokens: int | None = None) -> None:
    """Hold the worst case of the call a reply at `assistant` makes (its max_tokens may be lowered to
    what the budget left covers; the generation asks billing for the one granted). The prompt bound
    counts images and PDFs at their estimated tokens; the reply keeps that estimate for its receipt."""
    bound, pauses = _prompt_bound(conversation, before=assistant)
    if prompt_tokens is None:
        prompt_tokens = bound
    media_tokens = attachments.tokens_before(conversation, before=assistant)
    if media_tokens != assistant.media_tokens:  # most turns have no files: nothing to write then
        assistant.media_tokens = media_tokens
        Message.objects.filter(pk=assistant.pk).update(media_tokens=media_tokens)
    assistant.max_tokens_granted = spend_reserve(
        user=conversation.owner,
        model=conversation.model,
        prompt_tokens=prompt_tokens,
        max_tokens=reply_max_tokens(conversation.model),
        message_id=assistant.pk,
        # Prompt tokens at the dearest rate this call can bill them: a cache write of the lifetime it
        # will write (the same choice the generation makes, from the same pauses).
        cache_ttl=choose_cache_ttl(settings.CHAT_PROMPT_CACHE_TTL, pauses).ttl,
    )


def reply_granted_max_tokens(message: Message) -> int:
    """`max_tokens` of the call a streaming reply makes: what its budget hold granted (less than the
    model's when the budget left was short), else the model's."""
    return message.max_tokens_granted or granted_max_tokens(message.pk) or reply_max_tokens(message.model)


def reply_prompt_known(*, message_id: int, model: str, usage: Usage) -> None:
    """The API reported the prompt's counts for a reply's call: its budget hold shrinks to them."""
    hold_prompt_known(message_id=message_id, model=model, usage=usage)


def lease_until(now: datetime | None = None) -> datetime:
    """When a lease taken or renewed now runs out."""
    return (now or timezone.now()) + timedelta(seconds=settings.CHAT_LEASE_SECONDS)


def _expired(now: datetime) -> Q:
    """Streaming replies whose worker stopped renewing their lease (or that never had one)."""
    return Q(status=Message.Status.STREAMING) & (Q(lease_until__lt=now) | Q(lease_until__isnull=True))


def _lease(message: Message, worker: str) -> None:
    """Make `message` a new API call held by `worker` (not saved)."""
    message.status = Message.Status.STREAMING
    message.attempt_id = uuid.uuid4()
    message.worker = worker
    message.lease_until = lease_until()


def _refuse_while_streaming(conversation: Conversation, what: str) -> None:
    if conversation.messages.filter(status=Message.Status.STREAMING).exists():
        raise InvalidInput(f"Wait for the current reply to finish, or stop it, before {what}.")


def _new_reply(conversation: Conversation, *, parent: Message, worker: str) -> Message:
    """An assistant placeholder answering `parent`, leased to `worker`, with its spend reserved."""
    assistant = Message(
        conversation=conversation, role=Message.Role.ASSISTANT, model=conversation.model, parent=parent
    )
    _lease(assistant, worker)
    assistant.save()
    _reserve(conversation=conversation, assistant=assistant)
    return assistant


def reply_start(
    *, conversation: Conversation, text: object, worker: str, attachment_ids: object = ()
) -> tuple[Message, Message]:
    """Persist the user's turn (with the pending attachments `attachment_ids`, the owner's, uploaded to
    this conversation and not yet sent) and an assistant placeholder in one transaction, with the spend
    reserved (the attachments' estimated tokens included).

    The placeholder is leased to `worker`, the process that will write it. Raises InvalidInput or
    billing's SpendRefused with nothing written. The caller starts the generation for the returned
    assistant message once this has returned (i.e. after commit).
    """
    try:
        return _reply_start(conversation=conversation, text=text, worker=worker, attachment_ids=attachment_ids)
    except attachments.AttachmentError as exc:
        raise InvalidInput(str(exc)) from None


def _reply_start(*, conversation: Conversation, text: object, worker: str, attachment_ids: object):
    attachment_ids = attachments.clean_ids(attachment_ids)
    text = clean_message_text(text, allow_empty=bool(attachment_ids))
    with transaction.atomic():
        conversation = (
            Conversation.objects.select_for_update().select_related("owner").get(pk=conversation.pk)
        )
        _refuse_while_streaming(conversation, "sending another message")
        tip = conversation.messages.active().order_by("-pk").only("pk").first()  # the new turn's parent
        user_message = Message(conversation=conversation, role=Message.Role.USER, content=text, parent=tip)
        user_message.starts_conversation = tip is None
        user_message.save()
        claimed = attachments.attachments_claim(
            owner=conversation.owner, conversation=conversation, ids=attachment_ids, message=user_message
        )
        assistant = _new_reply(conversation, parent=user_message, worker=worker)
        if not conversation.title:
            conversation.title = clean_title(text.splitlines()[0] if text else ", ".join(a.name for a in claimed))
            conversation.title_source = Conversation.TitleSource.FIRST_LINE
        conversation.save(update_fields=["title", "title_source", "updated_at"])
    prefetch_related_objects([user_message], "attachments")  # rendered next, outside any thread
    return user_message, assistant


def reply_continue(*, message: Message, worker: str) -> Message:
    """Extend a reply cut off by max_tokens, in place: the next call gets the text so far as Claude's
    turn and CONTINUE_PROMPT after it (prefill is rejected), and its text is appended to the same
    message (one text, one Copy, one receipt listing both calls). Only the active branch's latest
    reply can be continued."""
    with transaction.atomic():
        message = Message.objects.select_for_update().select_related("conversation__owner").get(pk=message.pk)
        conversation = message.conversation
        if message.role != Message.Role.ASSISTANT or message.status != Message.Status.CUT_OFF:
            raise InvalidInput("Only a reply that was cut off can be continued.")
        if not message.active or conversation.messages.active().filter(pk__gt=message.pk).exists():
            raise InvalidInput("Only the latest reply can be continued.")
        if not message.content.strip():
            raise InvalidInput("This reply has no text to continue: retry it instead.")
        prompt_tokens = prompt_tokens_bound(conversation, before=message)  # from its cut-off call's counts
        # Where this call's text and thinking begin: the history replays each call as it was sent.
        message.call_ends = [*message.call_ends, [len(message.content), len(message.thinking_blocks)]]
        # stop_reason stays until the end: a reply cut by the window is continued in a smaller one.
        message.error = message.stop_sequence = ""
        _lease(message, worker)
        message.model = conversation.model
        message.save()
        _reserve(conversation=conversation, assistant=message, prompt_tokens=prompt_tokens)
        conversation.save(update_fields=["updated_at"])
    return annotate_branches([message])[0]


def _show_branch(conversation: Conversation, *, leaving: Message | None, entering: Message) -> None:
    """Make `entering` the chosen version of its turn and the active branch run through it.

    `leaving` is the version shown until now (on the active branch), or None when `entering` is new.
    The active branch from `leaving` down is hidden; below `entering` it follows the chosen version at
    each turn. Nothing is deleted. A left-out cut (`context_from`) that is no longer on the active
    branch is dropped: the next reply fits the new branch afresh.
    """
    if leaving is not None:
        conversation.messages.active().filter(pk__gte=leaving.pk).update(active=False)
        Message.objects.filter(pk=leaving.pk).update(chosen=False)
    siblings = conversation.messages.filter(parent_id=entering.parent_id).exclude(pk=entering.pk)
    siblings.filter(chosen=True).update(chosen=False)
    path = [entering.pk]
    if entering.pk is not None:
        children: dict[int, list[tuple[int, bool]]] = {}
        below = conversation.messages.filter(pk__gt=entering.pk).order_by("pk")
        for pk, parent_id, chosen in below.values_list("pk", "parent_id", "chosen"):
            children.setdefault(parent_id, []).append((pk, chosen))
        node = entering.pk
        while node in children:
            versions = children[node]
            node = next((pk for pk, chosen in versions if chosen), versions[-1][0])
            path.append(node)
    Message.objects.filter(pk__in=path).update(active=True)
    Message.objects.filter(pk=entering.pk).update(chosen=True)
    entering.active = entering.chosen = True
    if conversation.context_from and not conversation.messages.active().filter(pk=conversation.context_from).exists():
        Conversation.objects.filter(pk=conversation.pk).update(context_from=0)
        conversation.context_from = 0


def _locked_message(message: Message) -> Message:
    return Message.objects.select_for_update().select_related("conversation__owner").get(pk=message.pk)


RETRYABLE = {Message.Status.ERROR, Message.Status.INTERRUPTED, Message.Status.STOPPED, Message.Status.CUT_OFF}


def reply_regenerate(*, message: Message, worker: str, model: object = None) -> Message:
    """Write one of the active branch's replies again, as a new version of it (a new branch): the
    earlier version stays, with its text and its calls in the ledger, one "< 1 / 2 >" away.

    A failed reply with no text at all is written again in place instead (there is nothing to keep;
    its receipt then lists both calls). With `model` (one of the offered ones), the conversation
    switches to it first ("Try with <model>" after a refusal). Returns the reply being written.
    """
    with transaction.atomic():
        message = _locked_message(message)
        conversation = message.conversation
        if model is not None and model != "":
            model = clean_model(model)
            if model != conversation.model:
                conversation.model = model
                conversation.prompt_changed_at = timezone.now()  # earlier calls' token counts no longer apply
                conversation.save(update_fields=["model", "prompt_changed_at"])
        if message.role != Message.Role.ASSISTANT or message.is_streaming:
            raise InvalidInput("Only a finished reply can be written again.")
        if not message.active:
            raise InvalidInput("That version is not the one shown: switch to it first.")
        _refuse_while_streaming(conversation, "retrying")
        if message.status in RETRYABLE and not message.content.strip():
            # stop_reason stays until the end: a reply cut by the window is retried in a smaller one.
            message.content = message.html = message.error = message.request_id = ""
            message.stop_sequence = ""
            message.thinking, message.thinking_blocks, message.thinking_ms = "", [], 0
            message.call_ends = []
            _lease(message, worker)
            message.model = conversation.model
            message.set_usage(Usage())
            message.save()
            _reserve(conversation=conversation, assistant=message)
            regenerated = message
        else:
            parent = message.parent
            regenerated = Message(
                conversation=conversation, role=Message.Role.ASSISTANT, model=conversation.model, parent=parent
            )
            regenerated.starts_conversation = parent is None
            _lease(regenerated, worker)
            regenerated.save()
            _show_branch(conversation, leaving=message, entering=regenerated)
            _reserve(conversation=conversation, assistant=regenerated)
        conversation.save(update_fields=["updated_at"])
    return annotate_branches([regenerated])[0]


def message_edit(*, message: Message, text: object, worker: str) -> tuple[Message, Message]:
    """Send an edited version of one of the active branch's user turns: a new version of that turn (a
    new branch from there, the earlier one kept) and a reply to it, with the spend reserved.
    Returns (the new user turn, the reply being written). Raises InvalidInput or SpendRefused with
    nothing written."""
    text = clean_message_text(text)
    with transaction.atomic():
        message = _locked_message(message)
        conversation = message.conversation
        if message.role != Message.Role.USER:
            raise InvalidInput("Only your own messages can be edited.")
        if not message.active:
            raise InvalidInput("That version is not the one shown: switch to it first.")
        _refuse_while_streaming(conversation, "editing a message")
        edited = Message(conversation=conversation, role=Message.Role.USER, content=text, parent=message.parent)
        edited.starts_conversation = message.parent_id is None
        edited.save()
        _show_branch(conversation, leaving=message, entering=edited)
        assistant = _new_reply(conversation, parent=edited, worker=worker)
        conversation.save(update_fields=["updated_at"])
    return annotate_branches([edited])[0], assistant


def branch_switch(*, message: Message, index: object) -> Message:
    """Show version `index` (1-based) of the turn `message` is a version of, and the branch below it
    as it was last shown. Returns the version now shown. Raises InvalidInput (an index out of range,
    a reply being written) with nothing changed."""
    if isinstance(index, str) and index.isascii() and index.isdigit() and len(index) < 10:
        index = int(index)
    with transaction.atomic():
        message = _locked_message(message)
        conversation = message.conversation
        versions = list(
            conversation.messages.filter(parent_id=message.parent_id).order_by("pk")
            if message.parent_id is not None
            else conversation.messages.filter(parent__isnull=True).order_by("pk")
        )
        if type(index) is not int or not 1 <= index <= len(versions):
            raise InvalidInput(
                f"There is no version {index} of this message: it has {len(versions)}."
                if type(index) is int
                else "Choose a version by its number."
            )
        target = versions[index - 1]
        shown = next((v for v in versions if v.active), None)
        if shown is None:
            raise InvalidInput("That message is not on the branch shown.")
        if target.pk != shown.pk:
            _refuse_while_streaming(conversation, "switching versions")
            _show_branch(conversation, leaving=shown, entering=target)
            conversation.save(update_fields=["updated_at"])
    return annotate_branches([target])[0]


TITLE_PROMPT = (
    "You name conversations. The user gives you a conversation's first message and, after a rule, the "
    "reply to it. Write a title for the conversation, at most six words, "
    "in the language of the conversation. Answer with the title alone: no quotes, no markdown, no full stop."
)
TITLE_EXCERPT_CHARS = 2000


@dataclass(frozen=True)
class TitleJob:
    """A title call about to be made: its request, and the spend held for it under `hold_id`."""

    conversation_id: int
    hold_id: int
    attempt_id: uuid.UUID
    request: ReplyRequest
    labels: LedgerLabels


def title_start(*, conversation_id: int) -> TitleJob | None:
    """Hold the spend of a title call for a conversation that wants one (see `title_wanted`), and
    build its request. None when no title is wanted; raises SpendRefused when the budget refuses."""
    with transaction.atomic():
        conversation = (
            Conversation.objects.select_for_update().select_related("owner").filter(pk=conversation_id).first()
        )
        if conversation is None or not title_wanted(conversation_id=conversation_id):
            return None
        reply = conversation.messages.get(role=Message.Role.ASSISTANT, status=Message.Status.COMPLETE)
        first = reply.parent
        # The first message, a rule, then the reply (the system prompt says what to do with them).
        excerpt = (
            f"{without_control_words(first.content if first else '').strip()[:TITLE_EXCERPT_CHARS]}\n\n---\n\n"
            f"{without_control_words(reply.content).strip()[:TITLE_EXCERPT_CHARS]}"
        )
        model = settings.CHAT_TITLE_MODEL
        # As little thinking as the model allows (catalog data: Sonnet 5.5 refuses "disabled", Opus 5.5
        # always thinks, at low effort then).
        quiet = model_info(model).quiet_thinking
        request = ReplyRequest(
            model=model,
            messages=[{"role": Message.Role.USER, "content": excerpt}],
            system=TITLE_PROMPT,
            max_tokens=40 if quiet else 1024,
            user_id=opaque_user_id(conversation.owner_id),
            quiet_thinking=quiet,
            effort="" if quiet or not takes_effort(model) else "low",
        )
        granted = spend_reserve(
            user=conversation.owner,
            model=model,
            prompt_tokens=len(TITLE_PROMPT.encode()) + len(excerpt.encode()) + 2 * TURN_OVERHEAD_TOKENS,
            max_tokens=request.max_tokens,
            message_id=reply.pk,
            cache_ttl="",  # a title call writes no cache
        )
        request = replace(request, max_tokens=granted)  # the call is made with what the hold covers
        labels = ledger_labels_for(conversation, model=model)
    return TitleJob(conversation.pk, reply.pk, uuid.uuid4(), request, labels)


def title_finish(*, job: TitleJob, completion: Completion | None) -> Conversation | None:
    """Record the title call's ledger row (a zero one when it failed: `completion` None) and set the
    title Claude wrote, unless the conversation was renamed by hand meanwhile or the answer holds no
    usable title (the first-line title stays). Returns the conversation when its title changed."""
    with transaction.atomic():
        usage_record(
            labels=job.labels,
            message_id=None,
            hold_id=job.hold_id,
            request_id=completion.request_id if completion else "",
            usage=completion.usage if completion else Usage(),
            estimated=False,
            attempt_id=job.attempt_id,
            purpose="title",
        )
        conversation = Conversation.objects.select_for_update().filter(pk=job.conversation_id).first()
        title = clean_title(completion.text) if completion else ""
        if conversation is None or not title or conversation.title_source == Conversation.TitleSource.USER:
            return None
        conversation.title = title
        conversation.title_source = Conversation.TitleSource.CLAUDE
        conversation.save(update_fields=["title", "title_source"])
    return conversation


def branch_delete(*, message: Message) -> Message:
    """Delete one version of a turn and everything that followed it; when it is the version shown, the
    one before it (else the one after) is shown instead. Returns the version shown now. A turn's only
    version cannot be deleted this way. The ledger is untouched: its rows name messages by plain ids."""
    with transaction.atomic():
        message = _locked_message(message)
        conversation = message.conversation
        versions = list(conversation.messages.filter(parent_id=message.parent_id).order_by("pk"))
        if len(versions) < 2:
            raise InvalidInput("This is the only version of this message.")
        _refuse_while_streaming(conversation, "deleting a version")
        position = versions.index(message)
        shown = next(v for v in versions if v.active or v.chosen)
        if message.active:
            shown = versions[position - 1] if position > 0 else versions[position + 1]
            _show_branch(conversation, leaving=message, entering=shown)
        elif message.chosen:  # not on the branch shown, but remembered as its turn's choice
            shown = versions[position - 1] if position > 0 else versions[position + 1]
            Message.objects.filter(pk=shown.pk).update(chosen=True)
        message.delete()  # with every message below it (parent cascades)
        conversation.save(update_fields=["updated_at"])
    return annotate_branches([shown])[0]


def title_wanted(*, conversation_id: int) -> bool:
    """Whether Claude should title the conversation now: its title is still the first line of its
    first message, and its first exchange has just completed (the first complete reply, on any branch:
    a first reply that failed and was retried as a new version still gets its title)."""
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is None or conversation.title_source != Conversation.TitleSource.FIRST_LINE:
        return False
    return conversation.messages.filter(role=Message.Role.ASSISTANT, status=Message.Status.COMPLETE).count() == 1


def replies_checkpoint(*, batch: dict[int, tuple[str, Usage | None, str]], worker: str) -> None:
    """Save partial text (and, once, the prompt counts message_start reported) of streaming replies — one
    statement, whatever the number of replies. (Leases are renewed by leases.heartbeat, apart.)

    The partial texts are one prepared UPDATE run for the whole batch (`executemany`: one driver call,
    one round trip on PostgreSQL). Building an ORM update per reply, or one CASE expression per field,
    cost more CPU than relaying the replies' deltas once a worker ran a hundred of them.

    `batch` maps message id to (text so far, usage or None, thinking so far). Replies that finished meanwhile are left
    alone: only rows still `streaming` are updated.
    """
    now = timezone.now()
    if batch:
        meta = Message._meta
        columns = list(usage_fields(Usage()))
        assignments = ", ".join(
            [f"{_column('content')} = %s", f"{_column('thinking')} = %s", f"{_column('updated_at')} = %s"]
            + [f"{_column(name)} = COALESCE(%s, {_column(name)})" for name in columns]
        )
        sql = (
            f"UPDATE {connection.ops.quote_name(meta.db_table)} SET {assignments} "
            f"WHERE {_column('id')} = %s AND {_column('status')} = %s"
        )
        updated_at = Message._meta.get_field("updated_at").get_db_prep_value(now, connection)
        rows = []
        for message_id, (content, usage, thinking) in batch.items():
            counts = usage_fields(usage) if usage is not None else dict.fromkeys(columns)
            rows.append([content, thinking, updated_at, *counts.values(), message_id, Message.Status.STREAMING])
    if batch:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, rows)


def _column(field_name: str) -> str:
    return connection.ops.quote_name(Message._meta.get_field(field_name).column)


@dataclass(frozen=True)
class ReplyThinking:
    """What a reply's calls thought: the summarized text shown, the signed blocks to send back, how long."""

    text: str = ""
    blocks: list[dict] = field(default_factory=list)
    ms: int = 0


@dataclass(frozen=True)
class ReplyEnd:
    """How a reply ended: its final text and state, and the usage its API call reported."""

    content: str
    status: str
    usage: Usage
    usage_estimated: bool
    stop_reason: str = ""
    stop_sequence: str = ""
    error: str = ""
    request_id: str = ""
    thinking: ReplyThinking | None = None  # None: keep what the checkpoint saved (a sweep)
    cache_note: str = ""  # which prompt-cache lifetime the call wrote, and why (the receipt shows it)


def reply_finish(
    *,
    message_id: int,
    attempt_id: uuid.UUID,
    end: ReplyEnd,
    labels: LedgerLabels,
    expired_at: datetime | None = None,
) -> Message | None:
    """Final state of a reply and the ledger row of its API call `attempt_id`, in one transaction.

    The end is written once: only while the reply is still streaming that same call (and, with
    `expired_at`, only if its lease has run out by then). Otherwise nothing is written and None is
    returned: whoever ended it first wrote its row. One exception: the worker writing a reply that a
    sweep ended as interrupted (it took the worker, only slow, for dead) brings the call's own end
    later; that end keeps the text the page saw and replaces the sweep's estimate in the same ledger
    row (see `_reply_keep_late_end`). If the conversation was deleted while the reply streamed, only
    the ledger row is written (with `labels`, captured when the reply started) and None is returned.
    """
    html = render_markdown(end.content)
    with transaction.atomic():
        message = Message.objects.select_for_update().filter(pk=message_id).first()
        if message is not None:
            if message.attempt_id != attempt_id:
                return None
            if message.status == Message.Status.INTERRUPTED and expired_at is None:
                return _reply_keep_late_end(message, attempt_id=attempt_id, end=end, html=html)
            if message.status != Message.Status.STREAMING:
                return None
            if (
                expired_at is not None
                and message.lease_until is not None
                and message.lease_until >= expired_at
            ):
                return None  # its worker renewed the lease meanwhile: it is alive
            message.content = end.content
            message.html = html
            message.status = end.status
            message.stop_reason = end.stop_reason
            message.stop_sequence = end.stop_sequence[:200]
            message.error = end.error
            message.request_id = end.request_id
            if end.thinking is not None:
                message.thinking = end.thinking.text
                message.thinking_blocks = end.thinking.blocks
                message.thinking_ms = end.thinking.ms
            message.lease_until = None
            message.set_usage(end.usage)
            message.save(update_fields=REPLY_END_FIELDS)
            annotate_branches([message])
        usage_record(
            labels=labels,
            message_id=message_id,
            request_id=end.request_id,
            usage=end.usage,
            estimated=end.usage_estimated,
            attempt_id=attempt_id,
            cache_note=end.cache_note,
        )
    return message


def _reply_keep_late_end(message: Message, *, attempt_id: uuid.UUID, end: ReplyEnd, html: str) -> Message | None:
    """The end a slow worker brings for a reply a sweep already ended: the reply stays interrupted (its
    conversation has moved on), keeps the longer text (what the page saw, not the last checkpoint), and
    its ledger row takes the call's own count in place of the sweep's estimate. None when the sweep's row
    was already exact or replaced (nothing changes)."""
    row = usage_replace_estimate(
        attempt_id=attempt_id, request_id=end.request_id, usage=end.usage, estimated=end.usage_estimated
    )
    if row is None:
        return None
    if len(end.content) > len(message.content):
        message.content = end.content
        message.html = html
    if end.thinking is not None and len(end.thinking.text) >= len(message.thinking):
        message.thinking = end.thinking.text
        message.thinking_blocks = end.thinking.blocks
        message.thinking_ms = end.thinking.ms
    message.request_id = end.request_id or message.request_id
    message.error = REPLY_STALLED
    message.set_usage(row.usage())
    message.save(update_fields=REPLY_END_FIELDS)
    annotate_branches([message])
    return message


#: Why a reply whose worker stopped renewing its lease ended (dead, or stalled past the lease).
REPLY_SWEPT = "The server stopped while writing this reply."
REPLY_STALLED = "The server writing this reply stalled, so it was stopped here."

#: The columns reply_finish writes (the rest of a streaming reply is not its to change).
REPLY_END_FIELDS = (
    "content", "html", "status", "stop_reason", "stop_sequence", "error", "request_id",
    "thinking", "thinking_blocks", "thinking_ms", "lease_until", *usage_fields(Usage()), "updated_at",
)  # fmt: skip


def reply_mark_failed(*, message_id: int, text: str) -> None:
    """Last resort when a reply's final save failed: never leave it `streaming` with its text lost."""
    Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        content=text,
        status=Message.Status.ERROR,
        error="The reply could not be saved completely. Please retry.",
        updated_at=timezone.now(),
    )


def ledger_labels_for(conversation: Conversation, *, model: str) -> LedgerLabels:
    """Who and what a ledger row is about, as plain values that outlive the conversation."""
    return LedgerLabels(
        user_id=conversation.owner_id,
        username=conversation.owner.get_username(),
        conversation_id=conversation.pk,
        conversation_title=conversation.display_title,
        model=model,
    )


def replies_end_expired(*, conversation_id: int | None = None) -> list[Message]:
    """End every streaming reply whose lease has expired (its worker died) as interrupted, keeping its
    partial text, with one estimated ledger row for its call. Returns the replies it ended.

    Safe at any time and in any worker: a reply whose worker is alive renews its lease and is never
    touched, and a reply is ended once however many workers sweep at the same moment.
    """
    now = timezone.now()
    expired = Message.objects.filter(_expired(now)).select_related("conversation__owner")
    if conversation_id is not None:
        expired = expired.filter(conversation_id=conversation_id)
    ended = []
    for message in expired:
        write_1h = min(message.cache_creation_1h_input_tokens, message.cache_creation_input_tokens)
        usage = Usage(
            input_tokens=message.input_tokens,
            # The checkpoint's estimate counts thinking too; the saved text and thinking are a floor.
            output_tokens=max(
                message.output_tokens, estimate_tokens_from_chars(len(message.content) + len(message.thinking))
            ),
            thinking_tokens=estimate_tokens_from_chars(len(message.thinking)),
            cache_write_5m_tokens=message.cache_creation_input_tokens - write_1h,
            cache_write_1h_tokens=write_1h,
            cache_read_tokens=message.cache_read_input_tokens,
        )
        end = ReplyEnd(
            content=message.content,
            status=Message.Status.INTERRUPTED,
            usage=usage,
            usage_estimated=True,
            error=REPLY_SWEPT,
            request_id=message.request_id,
        )
        finished = reply_finish(
            message_id=message.pk,
            attempt_id=message.attempt_id,
            end=end,
            labels=ledger_labels_for(message.conversation, model=message.model),
            expired_at=now,
        )
        if finished is not None:
            ended.append(finished)
    if ended:
        logger.warning("Ended %d reply(ies) whose worker stopped renewing their lease", len(ended))
    return ended

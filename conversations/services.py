"""Writes: small keyword-only functions, each atomic. Generations start only after the commit."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from billing.services import spend_reserve, usage_record
from billing.usage import LedgerLabels, Usage

from .catalog import reply_max_tokens
from .claude import estimate_tokens_from_chars
from .control import request_stop
from .models import Conversation, Message, usage_fields
from .rendering import render_markdown

logger = logging.getLogger(__name__)

TITLE_CHARS = 60
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


def clean_message_text(text: object) -> str:
    if not isinstance(text, str):
        raise InvalidInput("The message must be text.")
    text = text.replace("\r\n", "\n").strip()
    if not text:
        raise InvalidInput("The message is empty.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (e.g. "\ud800" in a websocket frame's JSON)
        raise InvalidInput("The message contains characters that are not valid text.") from None
    if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise InvalidInput(
            f"The message is too long ({len(text):,} characters; the limit is {settings.CHAT_MAX_MESSAGE_CHARS:,})."
        )
    return text


def clean_model(model: object) -> str:
    if model not in settings.CHAT_MODELS:
        raise InvalidInput("Choose one of the offered models.")
    return model


def conversation_create(*, owner, model: str | None = None, system_prompt: str = "") -> Conversation:
    """A new, empty conversation with the default model unless one is given."""
    return Conversation.objects.create(
        owner=owner, model=clean_model(model or settings.CHAT_DEFAULT_MODEL), system_prompt=system_prompt
    )


def conversation_update_settings(*, conversation: Conversation, model: object, system_prompt: object) -> None:
    """Change the model and system prompt used for the conversation's next replies."""
    if not isinstance(system_prompt, str) or len(system_prompt) > settings.CHAT_MAX_SYSTEM_PROMPT_CHARS:
        raise InvalidInput(
            f"The system prompt must be at most {settings.CHAT_MAX_SYSTEM_PROMPT_CHARS:,} characters."
        )
    conversation.model = clean_model(model)
    conversation.system_prompt = system_prompt.strip()
    conversation.save(update_fields=["model", "system_prompt", "updated_at"])


def conversation_rename(*, conversation: Conversation, title: object) -> None:
    if not isinstance(title, str) or not title.strip():
        raise InvalidInput("The title cannot be empty.")
    conversation.title = title.strip()[:200]
    conversation.save(update_fields=["title", "updated_at"])


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


def reply_history(conversation: Conversation, *, before: Message) -> tuple[list[dict], int]:
    """The API `messages` for a reply placed at `before`, and the prompt's UTF-8 size in bytes.

    Only messages from `conversation.context_from` on are sent (older ones were left out to fit the
    context window). Turns with no real text (empty or whitespace-only: the API rejects them) are
    skipped; a refused exchange (the refusal and the user's turn it answered) is left out, since
    sending it again keeps the conversation refused; consecutive same-role turns are merged, so the
    list alternates, starts and ends with the user's turn (API 2026-10-21 rejects prefill).
    """
    turns: list[dict] = []
    rows = (
        conversation.messages.filter(pk__lt=before.pk, pk__gte=conversation.context_from)
        .in_order()
        .values_list("role", "content", "status")
    )
    for role, content, status in rows:
        if status == Message.Status.REFUSED:
            while turns and turns[-1]["role"] == Message.Role.USER:
                turns.pop()
            continue
        if not content.strip():
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + content
        else:
            turns.append({"role": role, "content": content})
    while turns and turns[0]["role"] != Message.Role.USER:
        turns.pop(0)
    while turns and turns[-1]["role"] != Message.Role.USER:
        turns.pop()
    size = len(conversation.system_prompt.encode()) + sum(len(t["content"].encode()) for t in turns)
    return turns, size


def context_sizes(*, conversation_id: int, before_id: int) -> list[tuple[int, str, int]]:
    """(id, role, UTF-8 bytes) of the messages still sent to Claude for a reply at `before_id`, oldest first."""
    conversation = Conversation.objects.get(pk=conversation_id)
    rows = (
        conversation.messages.filter(pk__lt=before_id, pk__gte=conversation.context_from)
        .in_order()
        .values_list("pk", "role", "content")
    )
    return [(pk, role, len(content.encode())) for pk, role, content in rows]


def conversation_leave_out_before(*, conversation_id: int, message_id: int) -> bool:
    """Stop sending the messages older than `message_id` to Claude (the cut only moves forward).

    Returns whether it moved.
    """
    moved = Conversation.objects.filter(pk=conversation_id, context_from__lt=message_id).update(
        context_from=message_id
    )
    return bool(moved)


def _reserve(*, conversation: Conversation, assistant: Message) -> None:
    _, prompt_bytes = reply_history(conversation, before=assistant)
    spend_reserve(
        user=conversation.owner,
        model=conversation.model,
        prompt_bytes=prompt_bytes,
        max_tokens=reply_max_tokens(conversation.model),
        message_id=assistant.pk,
    )


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


def reply_start(*, conversation: Conversation, text: object, worker: str) -> tuple[Message, Message]:
    """Persist the user's turn and an assistant placeholder in one transaction, with the spend reserved.

    The placeholder is leased to `worker`, the process that will write it. Raises InvalidInput or
    billing's SpendRefused with nothing written. The caller starts the generation for the returned
    assistant message once this has returned (i.e. after commit).
    """
    text = clean_message_text(text)
    with transaction.atomic():
        conversation = (
            Conversation.objects.select_for_update().select_related("owner").get(pk=conversation.pk)
        )
        if conversation.messages.filter(status=Message.Status.STREAMING).exists():
            raise InvalidInput(
                "Wait for the current reply to finish, or stop it, before sending another message."
            )
        user_message = Message.objects.create(conversation=conversation, role=Message.Role.USER, content=text)
        assistant = Message(conversation=conversation, role=Message.Role.ASSISTANT, model=conversation.model)
        _lease(assistant, worker)
        assistant.save()
        _reserve(conversation=conversation, assistant=assistant)
        if not conversation.title:
            first_line = text.splitlines()[0]
            conversation.title = first_line[:TITLE_CHARS] + ("…" if len(first_line) > TITLE_CHARS else "")
        conversation.save(update_fields=["title", "updated_at"])
    return user_message, assistant


def reply_continue(*, message: Message, worker: str) -> Message:
    """Extend a reply cut off by max_tokens, in place: the next call gets the text so far as Claude's
    turn and CONTINUE_PROMPT after it (prefill is rejected), and its text is appended to the same
    message (one text, one Copy, one receipt listing both calls). Only the conversation's latest reply
    can be continued."""
    with transaction.atomic():
        message = Message.objects.select_for_update().select_related("conversation__owner").get(pk=message.pk)
        conversation = message.conversation
        if message.role != Message.Role.ASSISTANT or message.status != Message.Status.CUT_OFF:
            raise InvalidInput("Only a reply that was cut off can be continued.")
        if conversation.messages.filter(pk__gt=message.pk).exists():
            raise InvalidInput("Only the latest reply can be continued.")
        if not message.content.strip():
            raise InvalidInput("This reply has no text to continue: retry it instead.")
        message.error = message.stop_reason = ""
        _lease(message, worker)
        message.model = conversation.model
        message.save()
        _reserve(conversation=conversation, assistant=message)
        conversation.save(update_fields=["updated_at"])
    return message


def reply_retry(*, message: Message, worker: str) -> Message:
    """Generate a failed, stopped or interrupted reply again, in place (the earlier call stays in the ledger)."""
    retryable = {
        Message.Status.ERROR,
        Message.Status.INTERRUPTED,
        Message.Status.STOPPED,
        Message.Status.CUT_OFF,
    }
    with transaction.atomic():
        message = Message.objects.select_for_update().select_related("conversation__owner").get(pk=message.pk)
        conversation = message.conversation
        if message.role != Message.Role.ASSISTANT or message.status not in retryable:
            raise InvalidInput("This reply cannot be retried.")
        if conversation.messages.filter(status=Message.Status.STREAMING).exists():
            raise InvalidInput("Wait for the current reply to finish before retrying.")
        message.content = message.html = message.error = message.stop_reason = message.request_id = ""
        _lease(message, worker)
        message.model = conversation.model
        message.set_usage(Usage())
        message.save()
        _reserve(conversation=conversation, assistant=message)
        conversation.save(update_fields=["updated_at"])
    return message


def replies_checkpoint(*, batch: dict[int, tuple[str, Usage | None]], worker: str) -> None:
    """Save partial text (and, once, the prompt counts message_start reported) of streaming replies, and
    renew the lease of every reply `worker` is writing — one transaction of two statements, whatever
    the number of replies.

    The partial texts are one prepared UPDATE run for the whole batch (`executemany`: one driver call,
    one round trip on PostgreSQL). Building an ORM update per reply, or one CASE expression per field,
    cost more CPU than relaying the replies' deltas once a worker ran a hundred of them.

    `batch` maps message id to (text so far, usage or None). Replies that finished meanwhile are left
    alone: only rows still `streaming` are updated.
    """
    now = timezone.now()
    if batch:
        meta = Message._meta
        columns = list(usage_fields(Usage()))
        assignments = ", ".join(
            [f"{_column('content')} = %s", f"{_column('updated_at')} = %s"]
            + [f"{_column(name)} = COALESCE(%s, {_column(name)})" for name in columns]
        )
        sql = (
            f"UPDATE {connection.ops.quote_name(meta.db_table)} SET {assignments} "
            f"WHERE {_column('id')} = %s AND {_column('status')} = %s"
        )
        updated_at = Message._meta.get_field("updated_at").get_db_prep_value(now, connection)
        rows = []
        for message_id, (content, usage) in batch.items():
            counts = usage_fields(usage) if usage is not None else dict.fromkeys(columns)
            rows.append([content, updated_at, *counts.values(), message_id, Message.Status.STREAMING])
    with transaction.atomic():
        if batch:
            with connection.cursor() as cursor:
                cursor.executemany(sql, rows)
        Message.objects.filter(worker=worker, status=Message.Status.STREAMING).update(
            lease_until=lease_until(now)
        )


def _column(field_name: str) -> str:
    return connection.ops.quote_name(Message._meta.get_field(field_name).column)


@dataclass(frozen=True)
class ReplyEnd:
    """How a reply ended: its final text and state, and the usage its API call reported."""

    content: str
    status: str
    usage: Usage
    usage_estimated: bool
    stop_reason: str = ""
    error: str = ""
    request_id: str = ""


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
    returned: whoever ended it first wrote its row. If the conversation was deleted while the reply
    streamed, only the ledger row is written (with `labels`, captured when the reply started) and None
    is returned.
    """
    html = render_markdown(end.content)
    with transaction.atomic():
        message = Message.objects.select_for_update().filter(pk=message_id).first()
        if message is not None:
            if message.status != Message.Status.STREAMING or message.attempt_id != attempt_id:
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
            message.error = end.error
            message.request_id = end.request_id
            message.lease_until = None
            message.set_usage(end.usage)
            message.save()
        usage_record(
            labels=labels,
            message_id=message_id,
            request_id=end.request_id,
            usage=end.usage,
            estimated=end.usage_estimated,
            attempt_id=attempt_id,
        )
    return message


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
            # The checkpoint's estimate counts thinking too; the saved text is a floor.
            output_tokens=max(message.output_tokens, estimate_tokens_from_chars(len(message.content))),
            cache_write_5m_tokens=message.cache_creation_input_tokens - write_1h,
            cache_write_1h_tokens=write_1h,
            cache_read_tokens=message.cache_read_input_tokens,
        )
        end = ReplyEnd(
            content=message.content,
            status=Message.Status.INTERRUPTED,
            usage=usage,
            usage_estimated=True,
            error="The server stopped while writing this reply.",
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

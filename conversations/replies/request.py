"""What the generation of a reply needs from the database, read once when it starts (`reply_context`):
the request to send (history, model, max_tokens from its budget hold, cache lifetime, effort, stop
sequences), the ledger's labels, the window it must fit, and what a continued reply already has."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.conf import settings
from django.db.models import Q

from billing.models import UsageRecord
from billing.usage import LedgerLabels

from .. import web
from ..catalog import context_window, effort_for, model_info
from ..models import WINDOW_EXCEEDED, Conversation, Message, may_have
from ..sources import WebDisplay
from . import history, store
from .caching import choose_cache_ttl
from .claude import (
    ReplyRequest,
    opaque_user_id,
)


@dataclass(frozen=True)
class ReplyContext:
    """What a generation needs from the database, read once when it starts."""

    message_id: int
    attempt_id: uuid.UUID
    conversation_id: int
    request: ReplyRequest
    labels: LedgerLabels
    # Tokens the prompt and reply must fit in: the model's window, or less where the API said so.
    context_window: int
    # The text so far of a cut-off reply being continued ("" for a new reply): new text is appended.
    continued: str = ""
    # Its thinking so far, to which the new call's thinking is added.
    continued_thinking: store.ReplyThinking | None = None
    # Whether the conversation still has its first-line title (Claude titles it once a reply completes).
    untitled: bool = False
    # What it shows of the web so far (its steps, sources and citations), to which the new call adds.
    continued_web: WebDisplay | None = None


def reply_context(reply: int | Message, *, max_tokens: int | None = None) -> ReplyContext:
    """What the generation of a streaming reply needs from the database. `reply` is its id (raises
    Message.DoesNotExist if it is gone), or the reply as the transaction that started it left it (with
    its conversation and owner) along with `max_tokens`, what its hold granted: that spares reading
    them again. Sync: call it in the database thread."""
    message = (
        reply
        if isinstance(reply, Message)
        else Message.objects.select_related("conversation__owner").get(pk=reply)
    )
    conversation = message.conversation
    # The branch as the Send's transaction read it for this reply, when it did (else read now).
    sent = history.reply_request_history(message, rows=getattr(message, "history_rows", None))
    continued = message.content if message.content.strip() else ""
    cache = choose_cache_ttl(settings.CHAT_PROMPT_CACHE_TTL, sent.pauses)
    request = ReplyRequest(
        model=message.model,
        messages=sent.messages,
        max_tokens=max_tokens if max_tokens is not None else store.reply_held_max_tokens(message),
        system=sent.system,
        user_id=opaque_user_id(conversation.owner_id),
        cache_ttl=cache.ttl,
        cache_note=cache.note,
        summarize_thinking=model_info(message.model).thinks_by_default,
        stop_sequences=tuple(conversation.stop_sequences),
        effort=effort_for(message.model, conversation.effort),
        drop_mismatched_thinking=conversation.thinking_drop_mismatched,
        tools=web.web_tools_for(conversation, message).tools,
    )
    labels = store.ledger_labels_for(conversation, model=message.model)
    window = context_window(message.model)
    # A reply that ran into the window shows where it really ends (prompt and output filled it): an
    # earlier reply of the branch, this reply itself being continued, or an earlier version of it
    # being retried. Fit the request to it (never ask again with what already did not fit).
    cut = conversation.messages.filter(
        Q(active=True, pk__lt=message.pk) | Q(parent_id=message.parent_id),
        role=Message.Role.ASSISTANT,
        model=message.model,
        stop_reason=WINDOW_EXCEEDED,
    )
    if not may_have(conversation, "window_cut"):  # the Send's read saw none in the conversation
        cut = cut.none()
    cut = cut.only(
        "stop_reason",
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "output_tokens",
    )
    for earlier in cut:
        window = min(window, _tokens_used(earlier))
    earlier_thinking = (
        store.ReplyThinking(message.thinking, message.thinking_blocks, message.thinking_ms)
        if continued
        else None
    )
    untitled = conversation.title_source == Conversation.TitleSource.FIRST_LINE
    return ReplyContext(
        message.pk,
        message.attempt_id,
        conversation.pk,
        request,
        labels,
        window,
        continued,
        earlier_thinking,
        untitled,
        WebDisplay.of(message) if continued else None,
    )


def _tokens_used(reply: Message) -> int:
    """Prompt and output tokens of a reply's last call (from the ledger when the reply is being retried
    in place, which cleared its counts)."""
    if reply.prompt_tokens:
        return reply.prompt_tokens + reply.output_tokens
    row = UsageRecord.objects.filter(message_id=reply.pk, purpose="reply").order_by("-pk").first()
    if row is None:
        return 10**9
    return (
        row.input_tokens
        + row.cache_write_5m_tokens
        + row.cache_write_1h_tokens
        + row.cache_read_tokens
        + row.output_tokens
    )


load_context = database_sync_to_async(reply_context)

"""The reply store: every write in a reply's life, each in one transaction. Start (the user's turn, the
assistant placeholder, its lease and budget hold), continue a cut-off reply, checkpoint streaming text,
finish (the end and the call's one ledger row, written once whoever ends it), mark failed, and the
sweep of replies whose worker stopped renewing its lease; the rows of compaction calls."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Q, prefetch_related_objects
from django.utils import timezone

from billing.alerts import note_refusal
from billing.hold_state import HoldState
from billing.services import (
    BudgetExceeded,
    granted_max_tokens,
    hold_prompt_known,
    spend_reserve,
    usage_record,
    usage_replace_estimate,
)
from billing.usage import LedgerLabels, Usage

from .. import attachments
from ..catalog import reply_max_tokens
from ..inputs import InvalidInput, ModelChoice, model_choice, refuse_while_streaming
from ..models import (
    Conversation,
    Message,
    annotate_branches,
    known_none,
    may_have,
    usage_fields,
)
from ..rendering import clean_title, render_cited
from ..sources import WebDisplay
from ..web import reply_web_sync, web_tools_for
from .caching import choose_cache_ttl
from .claude import estimate_tokens_from_chars
from .history import (
    _prompt_bound,
    branch_rows,
    prompt_tokens_bound,
)
from .pause import PausedCall, usage_total
from .send_sql import send_state

logger = logging.getLogger(__name__)


def conversation_leave_out_before(*, conversation_id: int, message_id: int, reply_id: int) -> bool:
    """Stop sending the messages older than `message_id` to Claude (the cut only moves forward), and the
    thinking of replies older than `reply_id`, the reply whose call makes the cut: it was bound to the
    turns left out. Returns whether it moved.
    """
    moved = Conversation.objects.filter(pk=conversation_id, context_from__lt=message_id).update(
        context_from=message_id, thinking_from=reply_id
    )
    return bool(moved)


def reserve(
    *,
    conversation: Conversation,
    assistant: Message,
    prompt_tokens: int | None = None,
    models: ModelChoice | None = None,
    savepoint: bool = True,
    rows: list[Message] | None = None,
    state: HoldState | None = None,
) -> int:
    """Hold the worst case of the call a reply at `assistant` makes, and return the `max_tokens` the
    hold granted (less than the model's when the budget left covers only that): the call's own. The
    prompt bound counts images and PDFs at their estimated tokens; the reply keeps that estimate for
    its receipt. `models`: the owner's model choice when the caller read it (its team is the one the
    hold is under); `savepoint=False` when a refusal rolls the caller's whole transaction back; `rows`
    the branch before `assistant` as `branch_rows` read it in this transaction; `state` the hold's rows
    read ahead with the conversation (SQLite, billing/hold_state.py)."""
    bound, pauses = _prompt_bound(conversation, before=assistant, rows=rows)
    if prompt_tokens is None:
        prompt_tokens = bound
    media_tokens = (
        attachments.tokens_before(conversation, before=assistant)
        if may_have(conversation, "has_files")
        else 0
    )
    if media_tokens != assistant.media_tokens:  # most turns have no files: nothing to write then
        assistant.media_tokens = media_tokens
        Message.objects.filter(pk=assistant.pk).update(media_tokens=media_tokens)
    return spend_reserve(
        user=conversation.owner,
        model=conversation.model,
        prompt_tokens=prompt_tokens,
        max_tokens=reply_max_tokens(conversation.model),
        message_id=assistant.pk,
        # Prompt tokens at the dearest rate this call can bill them: a cache write of the lifetime it
        # will write (the same choice the generation makes, from the same pauses).
        cache_ttl=choose_cache_ttl(settings.CHAT_PROMPT_CACHE_TTL, pauses).ttl,
        # And every web search and fetch it may make, at their price.
        tool_caps=web_tools_for(conversation, assistant).caps,
        **({"team": models.team} if models is not None else {}),
        savepoint=savepoint,
        state=state,
    )


def reply_held_max_tokens(message: Message) -> int:
    """`max_tokens` of the call a streaming reply makes, read from its open budget hold (every reply is
    started with one; the model's own only for a reply that has none)."""
    return granted_max_tokens(message.pk) or reply_max_tokens(message.model)


def reply_prompt_known(*, message_id: int, model: str, usage: Usage) -> None:
    """The API reported the prompt's counts for a reply's call: its budget hold shrinks to them."""
    hold_prompt_known(message_id=message_id, model=model, usage=usage)


def lease_until(now: datetime | None = None) -> datetime:
    """When a lease taken or renewed now runs out."""
    return (now or timezone.now()) + timedelta(seconds=settings.CHAT_LEASE_SECONDS)


def _expired(now: datetime) -> Q:
    """Streaming replies whose worker stopped renewing their lease (or that never had one)."""
    return Q(status=Message.Status.STREAMING) & (Q(lease_until__lt=now) | Q(lease_until__isnull=True))


def lease(message: Message, worker: str) -> None:
    """Make `message` a new API call held by `worker` (not saved)."""
    message.status = Message.Status.STREAMING
    message.attempt_id = uuid.uuid4()
    message.worker = worker
    message.lease_until = lease_until()


def reply_model(conversation: Conversation, models: ModelChoice | None = None) -> str:
    """The model the conversation's next reply is written on: its own while the owner may use it, else
    the owner's default, which the conversation switches to (so the page, the history's thinking and
    every later reply agree). Never a model the owner's team does not allow, however old the
    conversation. `models` is the owner's choice when the caller read it already (else one query).
    Call in the reply's transaction."""
    models = models or model_choice(conversation.owner_id)
    model = models.allowed_or_default(conversation.model)
    if model != conversation.model:
        conversation.model = model
        conversation.prompt_changed_at = timezone.now()  # earlier calls' token counts no longer apply
        conversation.save(update_fields=["model", "prompt_changed_at"])
    return model


def budget_refusal_note(exc: BaseException, *, owner_id: int) -> None:
    """After a call of `owner_id`'s was refused and its transaction rolled back (the alert must outlive
    it): when a budget level was used up, its alert is stored and mailed, once per level and month. A
    rate limit, or any other refusal, is no budget's: nothing then."""
    if not isinstance(exc, BudgetExceeded):
        return
    try:
        # Read only now: a refusal is rare, and the name is only needed for it.
        owner = get_user_model().objects.filter(pk=owner_id).first()
        note_refusal(exc.level, username=owner.get_username() if owner else "")
    except Exception:
        # The person must still see why their message was refused: an alert that cannot be stored now
        # is logged instead of replacing that sentence with a failure.
        logger.exception("The budget alert of a refusal for user %s could not be stored", owner_id)


def new_reply(
    conversation: Conversation,
    *,
    parent: Message,
    worker: str,
    models: ModelChoice | None = None,
    price_estimate: int | None = None,
    state: HoldState | None = None,
) -> tuple[Message, int]:
    """An assistant placeholder answering `parent`, leased to `worker`, on the model the owner may use
    (`reply_model`, with their `models` when read already), with its spend reserved; and the
    `max_tokens` its hold granted. `price_estimate`: the price the page showed before the Send (pUSD)."""
    models = models or model_choice(conversation.owner_id)
    model = reply_model(conversation, models)
    assistant = Message(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        model=model,
        parent=parent,
        price_estimate=price_estimate,
    )
    lease(assistant, worker)
    assistant.save()
    reply_web_sync(conversation=conversation, message=parent)
    # The branch it answers, read once for its hold and, after the commit, its request (reply_context):
    # nothing can change the branch while its reply streams.
    assistant.history_rows = branch_rows(conversation, before=assistant)
    # No savepoint: a refused hold rolls back the whole transaction (the new turns with it).
    granted = reserve(
        conversation=conversation,
        assistant=assistant,
        models=models,
        savepoint=False,
        rows=assistant.history_rows,
        state=state,
    )
    return assistant, granted


def reply_start(
    *,
    conversation: Conversation,
    text: str,
    worker: str,
    attachment_ids: list[int] = (),
    models: ModelChoice | None = None,
    price_estimate: int | None = None,
) -> tuple[Message, Message, int]:
    """Persist the user's turn (with the pending attachments `attachment_ids`, the owner's, uploaded to
    this conversation and not yet sent) and an assistant placeholder in one transaction, with the spend
    reserved (the attachments' estimated tokens included). Returns both and the `max_tokens` the hold
    granted the reply's call. `text` and `attachment_ids` are cleaned by the caller (`inputs`,
    `attachments.clean_ids`); `price_estimate` is the price the page showed for it (pUSD), if any.

    The placeholder is leased to `worker`, the process that will write it, and written on a model the
    owner may use (`reply_model`; `models` is their choice when the caller read it). Raises InvalidInput or
    billing's SpendRefused with nothing written. The caller starts the generation for the returned
    assistant message once this has returned (i.e. after commit).
    """
    try:
        return _reply_start(
            conversation=conversation,
            text=text,
            worker=worker,
            attachment_ids=attachment_ids,
            models=models,
            price_estimate=price_estimate,
        )
    except attachments.AttachmentError as exc:
        raise InvalidInput(str(exc)) from None


def _reply_start(
    *,
    conversation: Conversation,
    text: str,
    worker: str,
    attachment_ids: list[int],
    models: ModelChoice | None,
    price_estimate: int | None = None,
):
    with transaction.atomic():
        # One statement locks the conversation and reads what the Send decides on (send_sql.py):
        # whether a reply streams, the tip, files, the owner's team and, on SQLite, the hold's rows.
        read = send_state(conversation.pk, timezone.now())
        conversation = read.conversation
        models = models or model_choice(conversation.owner_id, team=read.team)
        # Most conversations have no files and no reply cut by the window: their look-ups are skipped.
        conversation.has_files = read.has_files or bool(attachment_ids)
        conversation.window_cut = read.window_cut
        refuse_while_streaming(conversation, "sending another message", streaming=read.streaming)
        user_message = Message(
            conversation=conversation, role=Message.Role.USER, content=text, parent_id=read.tip_id
        )
        user_message.starts_conversation = read.tip_id is None
        user_message.save()
        claimed = attachments.attachments_claim(
            owner=conversation.owner, conversation=conversation, ids=attachment_ids, message=user_message
        )
        assistant, max_tokens = new_reply(
            conversation,
            parent=user_message,
            worker=worker,
            models=models,
            price_estimate=price_estimate,
            state=read.hold,
        )
        if not conversation.title:
            conversation.title = clean_title(
                text.splitlines()[0] if text else ", ".join(a.name for a in claimed)
            )
            conversation.title_source = Conversation.TitleSource.FIRST_LINE
        conversation.save(update_fields=["title", "title_source", "updated_at"])
    if conversation.has_files:
        prefetch_related_objects([user_message], "attachments")  # rendered next, outside any thread
    else:  # it has none: the page's render needs no query to know
        known_none(user_message, "attachments")
    return user_message, assistant, max_tokens


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
        lease(message, worker)
        message.model = reply_model(conversation)
        message.save()
        reserve(conversation=conversation, assistant=message, prompt_tokens=prompt_tokens)
        conversation.save(update_fields=["updated_at"])
    return annotate_branches([message])[0]


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
            rows.append(
                [content, thinking, updated_at, *counts.values(), message_id, Message.Status.STREAMING]
            )
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
    # The calls before it that Claude paused (pause_turn), each billed on its own row.
    paused_calls: tuple[PausedCall, ...] = ()
    # The call's content blocks when it used server tools ([] when it used none), its paused calls'
    # first; and what the reply shows of the web. None: keep what is stored (a sweep).
    blocks: list[dict] | None = None
    web: WebDisplay | None = None


def _per_call(stored: list, call: int, blocks: list[dict]) -> list:
    """A reply's `content_blocks` with call number `call`'s set to `blocks` (later ones dropped: they
    were never sent); [] while no call used a server tool."""
    calls = [*stored[:call], *[[]] * (call - len(stored)), blocks]
    return calls if any(calls) else []


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
    web = end.web
    html = render_cited(end.content, web.citations, web.sources) if web is not None else None
    with transaction.atomic():
        message = Message.objects.select_for_update().filter(pk=message_id).first()
        if message is not None and html is None:  # a sweep: the citations stored so far stand
            html = render_cited(end.content, message.citations, message.sources)
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
            _set_web(message, end)
            message.lease_until = None
            message.set_usage(end.usage)
            message.save(update_fields=REPLY_END_FIELDS)
            annotate_branches([message])
        for call in end.paused_calls:
            usage_record(
                labels=labels,
                message_id=message_id,
                request_id=call.request_id,
                usage=call.usage,
                estimated=False,
                attempt_id=call.attempt_id,
                cache_note=end.cache_note,
            )
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


def _reply_keep_late_end(
    message: Message, *, attempt_id: uuid.UUID, end: ReplyEnd, html: str
) -> Message | None:
    """The end a slow worker brings for a reply a sweep already ended: the reply stays interrupted (its
    conversation has moved on), keeps the longer text (what the page saw, not the last checkpoint), and
    its ledger row takes the call's own count in place of the sweep's estimate. None when the sweep's row
    was already exact or replaced (nothing changes)."""
    # The sweep's estimate counted every call of the reply (paused ones too): so does its replacement.
    usage = usage_total([*(call.usage for call in end.paused_calls), end.usage])
    row = usage_replace_estimate(
        attempt_id=attempt_id, request_id=end.request_id, usage=usage, estimated=end.usage_estimated
    )
    if row is None:
        return None
    if len(end.content) > len(message.content):
        message.content = end.content
        message.html = html
        _set_web(message, end)
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


def _set_web(message: Message, end: ReplyEnd) -> None:
    """The reply's content blocks and what it shows of the web, from `end` (when it brings them)."""
    if end.blocks is not None:
        message.content_blocks = _per_call(message.content_blocks, len(message.call_ends), end.blocks)
    if end.web is not None:
        message.web_steps, message.sources, message.citations = (
            end.web.steps,
            end.web.sources,
            end.web.citations,
        )


#: Why a reply whose worker stopped renewing its lease ended (dead, or stalled past the lease).
REPLY_SWEPT = "The server stopped while writing this reply."


REPLY_STALLED = "The server writing this reply stalled, so it was stopped here."


#: The columns reply_finish writes (the rest of a streaming reply is not its to change).
REPLY_END_FIELDS = (
    "content", "html", "status", "stop_reason", "stop_sequence", "error", "request_id",
    "thinking", "thinking_blocks", "thinking_ms", "content_blocks", "web_steps", "sources", "citations",
    "lease_until", *usage_fields(Usage()), "updated_at",
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
        usage = replace(
            message.usage(),
            # The checkpoint's estimate counts thinking too; the saved text and thinking are a floor.
            output_tokens=max(
                message.output_tokens,
                estimate_tokens_from_chars(len(message.content) + len(message.thinking)),
            ),
            thinking_tokens=estimate_tokens_from_chars(len(message.thinking)),
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

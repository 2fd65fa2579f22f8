"""Titles by Claude: after a conversation's first exchange, a small model names it.

The call is one more ledgered API call (purpose "title") through the same hold -> ledger path as a
reply, so it counts toward the user's budget. It runs as a server-owned task after the first reply
completes; the reply is on the page already and never waits for it. A title renamed by hand wins; if
the budget refuses or the call fails, the first-line title stays (a failed call still gets its
zero-token ledger row, like any call).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction

from billing.services import (
    SpendRefused,
    spend_reserve,
    usage_record,
)
from billing.usage import LedgerLabels, Usage

from .. import fragments
from ..catalog import model_info, takes_effort
from ..inputs import model_choice
from ..models import (
    Conversation,
    Message,
    conversation_group,
)
from ..rendering import clean_title, without_control_words
from . import store, tasks
from .claude import ClaudeError, Completion, ReplyRequest, complete, opaque_user_id
from .history import TURN_OVERHEAD_TOKENS
from .relay import relay

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
    build its request. None when no title is wanted; raises SpendRefused when the budget refuses (a
    used-up budget's alert noted, once the hold's transaction rolled back)."""
    try:
        return _title_start(conversation_id)
    except SpendRefused as exc:
        owner_id = Conversation.objects.filter(pk=conversation_id).values_list("owner_id", flat=True).first()
        if owner_id is not None:
            store.budget_refusal_note(exc, owner_id=owner_id)
        raise


def title_model(conversation: Conversation) -> str:
    """The model a title of `conversation` is written on: the site's CHAT_TITLE_MODEL, a side call the
    site chooses for everyone, unless the owner's team keeps a list of models without it; then the
    conversation's own model (one the owner may use), so a title never runs on a model their team
    does not allow, and the conversation still gets its title."""
    models = model_choice(conversation.owner_id)
    if models.allows_side_model(settings.CHAT_TITLE_MODEL):
        return settings.CHAT_TITLE_MODEL
    return models.allowed_or_default(conversation.model)


def _title_start(conversation_id: int) -> TitleJob | None:
    with transaction.atomic():
        conversation = (
            Conversation.objects.select_for_update()
            .select_related("owner")
            .filter(pk=conversation_id)
            .first()
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
        model = title_model(conversation)
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
        labels = store.ledger_labels_for(conversation, model=model)
    return TitleJob(conversation.pk, reply.pk, uuid.uuid4(), request, labels)


def title_finish(*, job: TitleJob, completion: Completion | None) -> Conversation | None:
    """Record the title call's ledger row (a zero one when it failed: `completion` None) and set the
    title Claude wrote, unless the conversation was renamed by hand meanwhile or the answer holds no
    usable title (the first-line title stays). Returns the conversation when its title changed."""
    with transaction.atomic():
        # The conversation first, then the budget rows usage_record locks: the order a Send takes them
        # in (reply_start), so a Send and this title's end never wait on each other in a circle.
        conversation = Conversation.objects.select_for_update().filter(pk=job.conversation_id).first()
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
        title = clean_title(completion.text) if completion else ""
        if conversation is None or not title or conversation.title_source == Conversation.TitleSource.USER:
            return None
        conversation.title = title
        conversation.title_source = Conversation.TitleSource.CLAUDE
        conversation.save(update_fields=["title", "title_source"])
    return conversation


def title_wanted(*, conversation_id: int) -> bool:
    """Whether Claude should title the conversation now: its title is still the first line of its
    first message, and its first exchange has just completed (the first complete reply, on any branch:
    a first reply that failed and was retried as a new version still gets its title)."""
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is None or conversation.title_source != Conversation.TitleSource.FIRST_LINE:
        return False
    return (
        conversation.messages.filter(role=Message.Role.ASSISTANT, status=Message.Status.COMPLETE).count() == 1
    )


logger = logging.getLogger(__name__)

# Title tasks of this process, by conversation id (for tests and shutdown).


async def title_write(conversation_id: int) -> Conversation | None:
    """Have Claude title the conversation if it wants a title now; show the new title on every page
    viewing it. Returns the conversation when its title changed."""
    try:
        job = await database_sync_to_async(title_start)(conversation_id=conversation_id)
    except SpendRefused as exc:
        logger.info("Conversation %s keeps its first-line title: %s", conversation_id, exc)
        return None
    if job is None:
        return None
    try:
        completion = await complete(job.request)
    except ClaudeError as exc:
        logger.warning("Titling conversation %s failed: %s", conversation_id, exc)
        completion = None
    conversation = await database_sync_to_async(title_finish)(job=job, completion=completion)
    if conversation is not None:
        await relay.publish(conversation_group(conversation_id), fragments.title(conversation))
    return conversation


def title_schedule(conversation_id: int) -> None:
    """Start `title_write` as a task of its own (it outlives the reply and any socket)."""
    if not settings.CHAT_TITLE_MODEL or tasks.get("title", conversation_id) is not None:
        return
    tasks.start("title", conversation_id, _guarded(conversation_id))


async def _guarded(conversation_id: int) -> None:
    try:
        await title_write(conversation_id)
    except Exception:
        logger.exception("Titling conversation %s failed", conversation_id)


async def title_wait(conversation_id: int, timeout: float = 30) -> None:
    """Wait until the title task of `conversation_id` in this process has finished (tests)."""
    await tasks.wait("title", conversation_id, timeout)

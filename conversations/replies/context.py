"""Fitting a reply's request into the model's context window, without changing what was sent before.

Before each call the prompt's size is known: its UTF-8 bytes are an upper bound of its tokens (a
token is at least one byte), so an ordinary conversation needs no count at all. Only when that bound
plus `max_tokens` would not fit does the API count it exactly (count_tokens, free). If it really does
not fit, the history is shortened the way the 5.5 models accept (their thinking is bound to what came
before it, see history.reply_history):

- on models with on-demand compaction, Claude summarises the older turns (one more ledgered call,
  purpose "compaction"); the summary block stands in for them from then on and the newest turns,
  about half of what fits, are kept with their thinking;
- on others, the oldest turns are left out (down to half of what fits) and the turns kept go back
  without their thinking, which was bound to the turns left out.

Either way the cut then stays put for many turns, the stored messages stay whole, and the latest user
turn is always sent.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace

from channels.db import database_sync_to_async

from billing.services import SpendRefused
from billing.usage import Usage

from ..catalog import model_info
from ..models import Message
from . import compacting, history, store
from .claude import ClaudeError, ReplyRequest, compact, count_prompt_tokens
from .history import TURN_OVERHEAD_TOKENS

logger = logging.getLogger(__name__)


def prompt_bytes_bound(request: ReplyRequest) -> int:
    """An upper bound of the request's prompt tokens, from its bytes (images and PDFs at their estimate;
    the tools it declares as their JSON)."""
    return (
        len(request.system.encode())
        + sum(history.content_size(turn["content"]) + TURN_OVERHEAD_TOKENS for turn in request.messages)
        + sum(len(json.dumps(tool).encode()) for tool in request.tools)
    )


def context_budget(request: ReplyRequest, window: int) -> int:
    """Prompt tokens that fit beside the reply's `max_tokens` in a window of `window` tokens."""
    return max(window - request.max_tokens, window // 2)


@dataclass(frozen=True)
class Shortened:
    """How a request was shortened: the older turns summarised up to message `through` (`summary`), or
    left out before message `left_out_before`."""

    through: int = 0
    summary: str = ""
    left_out_before: int = 0


@database_sync_to_async
def _messages(message_id: int) -> list[dict]:
    message = Message.objects.select_related("conversation").get(pk=message_id)
    return history.reply_request_history(message).messages


@database_sync_to_async
def _cut(conversation_id: int, message_id: int, keep_tokens: int, tokens_per_byte: float) -> int | None:
    """Leave out the oldest messages so that about `keep_tokens` remain (from a user turn); the id of the
    oldest message kept, or None when only the latest turn is left."""
    sizes = history.context_sizes(conversation_id=conversation_id, before_id=message_id)
    if not sizes:
        return None
    kept = 0
    cut = None
    for pk, role, size in reversed(sizes):
        kept += int(size * tokens_per_byte) + TURN_OVERHEAD_TOKENS
        if kept > keep_tokens and cut is not None:
            break
        if role == Message.Role.USER:
            cut = pk
    if cut is None or cut == sizes[0][0]:
        return None
    store.conversation_leave_out_before(conversation_id=conversation_id, message_id=cut, reply_id=message_id)
    return cut


@database_sync_to_async
def _compaction_start(*, reply_id: int, **kwargs) -> compacting.CompactionJob | None:
    """`compacting.compaction_start`; when the budget refuses it, the alert is noted too (in the database
    thread, once the hold's transaction rolled back)."""
    try:
        return compacting.compaction_start(reply_id=reply_id, **kwargs)
    except SpendRefused as exc:
        owner_id = (
            Message.objects.filter(pk=reply_id).values_list("conversation__owner_id", flat=True).first()
        )
        if owner_id is not None:
            store.budget_refusal_note(exc, owner_id=owner_id)
        raise


async def _compact(
    request: ReplyRequest, message_id: int, keep_tokens: int, tokens_per_byte: float, window: int
) -> Shortened | None:
    """Have Claude summarise the turns before the newest ones that fit in about `keep_tokens`. Raises
    ClaudeError when the call fails or the budget refuses it (the conversation stays as it was)."""
    try:
        job = await _compaction_start(
            reply_id=message_id,
            keep_tokens=keep_tokens,
            tokens_per_byte=tokens_per_byte,
            request=request,
            window=window,
        )
    except SpendRefused as exc:
        raise ClaudeError(
            "compaction_refused",
            f"This conversation is too long for the model, and summarising its earlier messages was refused: {exc}",
        ) from exc
    if job is None:
        return None
    try:
        result = await compact(job.request)
    except ClaudeError as exc:
        await database_sync_to_async(compacting.compaction_finish)(
            job=job, block=None, summary="", usage=exc.usage or Usage(), request_id=exc.request_id
        )
        raise ClaudeError(
            "compaction_failed",
            "This conversation is too long for the model, and summarising its earlier messages failed "
            f"({exc.user_message.rstrip('.')}). Nothing was lost: please retry.",
            str(exc),
            exc.request_id,
        ) from exc
    kept = await database_sync_to_async(compacting.compaction_finish)(
        job=job, block=result.block, summary=result.summary, usage=result.usage, request_id=result.request_id
    )
    if not kept:
        return None
    logger.info("Reply %s: messages up to %s summarised by compaction", message_id, job.through)
    return Shortened(through=job.through, summary=result.summary)


async def fit_request(
    request: ReplyRequest, *, window: int, conversation_id: int, message_id: int
) -> tuple[ReplyRequest, Shortened | None]:
    """`request` shortened if it would not fit a window of `window` tokens (see the module's docstring),
    and how, when it was (None when nothing changed). Raises ClaudeError when a compaction fails."""
    budget = context_budget(request, window)
    if prompt_bytes_bound(request) <= budget:
        return request, None
    shortened = None
    for _ in range(4):
        tokens = await count_prompt_tokens(request)
        if tokens <= budget:
            return request, shortened
        system_tokens = len(request.system.encode())  # its share is never left out
        tokens_per_byte = tokens / max(1, prompt_bytes_bound(request))
        keep = max(0, budget // 2 - int(system_tokens * tokens_per_byte))
        if model_info(request.model).compaction:
            step = await _compact(request, message_id, keep, tokens_per_byte, window)
        else:
            cut = await _cut(conversation_id, message_id, keep, tokens_per_byte)
            step = Shortened(left_out_before=cut) if cut is not None else None
            if cut is not None:
                logger.info(
                    "Conversation %s: messages before %s are no longer sent to Claude", conversation_id, cut
                )
        if step is None:
            break  # only the latest turn is left: send it, the API says whether it fits
        shortened = step
        request = replace(request, messages=await _messages(message_id))
    return request, shortened

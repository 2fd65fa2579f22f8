"""Fitting a reply's request into the model's context window.

Before each call the prompt's size is known: its UTF-8 bytes are an upper bound of its tokens (a
token is at least one byte), so an ordinary conversation needs no count at all. Only when that bound
plus `max_tokens` would not fit does the API count it exactly (count_tokens, free); if it really
does not fit, the oldest turns are left out — the system prompt and the latest turns stay — down to
half of what fits, so the cut (and with it the cached prompt prefix) then stays put for many turns.
A conversation never becomes unusable: the latest user turn is always sent.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from channels.db import database_sync_to_async

from . import services
from .claude import ReplyRequest, count_prompt_tokens
from .models import Conversation, Message
from .services import TURN_OVERHEAD_TOKENS

logger = logging.getLogger(__name__)

def prompt_bytes_bound(request: ReplyRequest) -> int:
    """An upper bound of the request's prompt tokens, from its bytes (images and PDFs at their estimate)."""
    return len(request.system.encode()) + sum(
        services.content_size(turn["content"]) + TURN_OVERHEAD_TOKENS for turn in request.messages
    )


def context_budget(request: ReplyRequest, window: int) -> int:
    """Prompt tokens that fit beside the reply's `max_tokens` in a window of `window` tokens."""
    return max(window - request.max_tokens, window // 2)


@database_sync_to_async
def _history(conversation_id: int, message_id: int) -> list[dict]:
    conversation = Conversation.objects.get(pk=conversation_id)
    return services.reply_history(conversation, before=Message(pk=message_id))[0]


@database_sync_to_async
def _cut(conversation_id: int, message_id: int, keep_tokens: int, tokens_per_byte: float) -> int | None:
    """The id of the oldest message to keep so that about `keep_tokens` remain (a user turn)."""
    sizes = services.context_sizes(conversation_id=conversation_id, before_id=message_id)
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
    services.conversation_leave_out_before(conversation_id=conversation_id, message_id=cut)
    return cut


async def fit_request(
    request: ReplyRequest, *, window: int, conversation_id: int, message_id: int
) -> tuple[ReplyRequest, int | None]:
    """`request` with its oldest turns left out if it would not fit a window of `window` tokens, and
    the id of the first message still sent when the cut moved (None when nothing changed)."""
    budget = context_budget(request, window)
    if prompt_bytes_bound(request) <= budget:
        return request, None
    moved_to = None
    for _ in range(4):
        tokens = await count_prompt_tokens(request)
        if tokens <= budget:
            return request, moved_to
        system_tokens = len(request.system.encode())  # its share is never left out
        tokens_per_byte = tokens / max(1, prompt_bytes_bound(request))
        keep = max(0, budget // 2 - int(system_tokens * tokens_per_byte))
        cut = await _cut(conversation_id, message_id, keep, tokens_per_byte)
        if cut is None:
            break  # only the latest turn is left: send it, the API says whether it fits
        moved_to = cut
        logger.info("Conversation %s: messages before %s are no longer sent to Claude", conversation_id, cut)
        request = replace(request, messages=await _history(conversation_id, message_id))
    return request, moved_to

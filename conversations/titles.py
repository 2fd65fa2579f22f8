"""Titles by Claude: after a conversation's first exchange, a small model names it.

The call is one more ledgered API call (purpose "title") through the same hold -> ledger path as a
reply, so it counts toward the user's budget. It runs as a server-owned task after the first reply
completes; the reply is on the page already and never waits for it. A title renamed by hand wins; if
the budget refuses or the call fails, the first-line title stays (a failed call still gets its
zero-token ledger row, like any call).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging

from channels.db import database_sync_to_async
from django.conf import settings

from billing.services import SpendRefused

from . import fragments, services
from .claude import ClaudeError, complete
from .models import Conversation, conversation_group
from .relay import relay

logger = logging.getLogger(__name__)

# Title tasks of this process, by conversation id (for tests and shutdown).
_running: dict[int, asyncio.Task] = {}


async def title_write(conversation_id: int) -> Conversation | None:
    """Have Claude title the conversation if it wants a title now; show the new title on every page
    viewing it. Returns the conversation when its title changed."""
    try:
        job = await database_sync_to_async(services.title_start)(conversation_id=conversation_id)
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
    conversation = await database_sync_to_async(services.title_finish)(job=job, completion=completion)
    if conversation is not None:
        await relay.publish(conversation_group(conversation_id), fragments.title(conversation))
    return conversation


def title_schedule(conversation_id: int) -> None:
    """Start `title_write` as a task of its own (it outlives the reply and any socket)."""
    if not settings.CHAT_TITLE_MODEL or conversation_id in _running:
        return
    task = asyncio.get_running_loop().create_task(
        _guarded(conversation_id), name=f"title-{conversation_id}", context=contextvars.Context()
    )
    _running[conversation_id] = task
    task.add_done_callback(lambda _task: _running.pop(conversation_id, None))


async def _guarded(conversation_id: int) -> None:
    try:
        await title_write(conversation_id)
    except Exception:
        logger.exception("Titling conversation %s failed", conversation_id)


async def title_wait(conversation_id: int, timeout: float = 30) -> None:
    """Wait until the title task of `conversation_id` in this process has finished (tests)."""
    task = _running.get(conversation_id)
    if task is not None:
        await asyncio.wait_for(asyncio.shield(task), timeout)

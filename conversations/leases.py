"""This worker's identity, and the sweep that ends replies whose worker died.

A streaming reply is leased to the worker process writing it (`WORKER_ID`); the per-process
checkpointer renews the leases of all its replies in one write a second (see generation.py). Every
worker runs a sweeper that ends replies whose lease ran out, with their ledger row, and shows their
end to every page viewing them. Send and Stop sweep their own conversation first, so an orphaned
reply never blocks its conversation for longer than the lease.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import re
import secrets
import socket

from channels.db import database_sync_to_async
from django.conf import settings

from . import fragments, services
from .models import Message, conversation_group
from .relay import relay

logger = logging.getLogger(__name__)

#: Names this process in the leases it holds: host, pid, and a random part so a reused pid differs.
WORKER_ID = f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"
#: Channel-layer group of every socket this process serves (told when the process shuts down).
WORKER_GROUP = "worker-" + re.sub(r"[^A-Za-z0-9._-]", "-", WORKER_ID)[:90]

_sweepers: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}


async def end_expired(conversation_id: int | None = None) -> int:
    """End the replies whose lease expired (in one conversation, or all) and show their end."""
    ended = await database_sync_to_async(services.replies_end_expired)(conversation_id=conversation_id)
    await show_ended(ended)
    return len(ended)


async def show_ended(ended: list[Message]) -> None:
    """Show the end of replies `services.replies_end_expired` ended on their conversations' pages."""
    for message in ended:
        html = fragments.message(message) + fragments.send_button(busy=False)
        await relay.publish(conversation_group(message.conversation_id), html)


def sweeper_start() -> None:
    """Make sure this process sweeps expired leases every fifth of a lease (idempotent, per event loop)."""
    loop = asyncio.get_running_loop()
    task = _sweepers.get(loop)
    if task is None or task.done():
        for stale in [other for other in _sweepers if other.is_closed()]:
            del _sweepers[stale]
        _sweepers[loop] = loop.create_task(_sweep_forever(), name="lease-sweeper", context=contextvars.Context())


async def _sweep_forever() -> None:
    while True:
        await asyncio.sleep(settings.CHAT_LEASE_SECONDS / 5)
        try:
            await end_expired()
        except Exception:
            logger.exception("Sweeping expired reply leases failed; trying again shortly")

"""Graceful shutdown under daphne: on SIGTERM or SIGINT a worker drains before it exits.

Draining means: take no new replies, tell this worker's sockets that the server is restarting (the
page reconnects, to another worker or to this one once it is back, and catches up), let running
replies finish for CHAT_SHUTDOWN_GRACE_SECONDS, then end the rest as interrupted with their text and
ledger rows. Only then does the server stop. A second signal stops it at once (the leases of any reply
still running then expire and another worker ends them).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from channels.layers import get_channel_layer
from django.conf import settings

from . import claude
from .generation import generations_drain
from .leases import WORKER_GROUP, sweeper_start

logger = logging.getLogger(__name__)


def install_under_daphne() -> None:
    """Take over SIGTERM/SIGINT once daphne's reactor runs (no-op under any other server or in tests)."""
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is not None:
        reactor.callWhenRunning(_on_start, reactor)


def _on_start(reactor) -> None:
    loop = asyncio.get_event_loop()
    stopping = False

    def on_signal(signum: int) -> None:
        nonlocal stopping
        if stopping:
            logger.warning("Second signal: stopping now without waiting for replies")
            reactor.stop()
            return
        stopping = True
        logger.warning(
            "Signal %s: draining replies for up to %s s, then stopping",
            signum,
            settings.CHAT_SHUTDOWN_GRACE_SECONDS,
        )
        loop.create_task(_drain_then_stop(reactor))

    # Twisted installed its own handlers (stop at once) before calling us: these replace them.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    # End the replies of workers that died, even before anyone connects here (once the loop runs:
    # twisted calls this just before it starts the loop).
    loop.call_soon(sweeper_start)


async def drain() -> None:
    """Tell this worker's sockets the server is restarting, then drain its replies."""
    try:
        await get_channel_layer().group_send(WORKER_GROUP, {"type": "server.restarting"})
    except Exception:
        logger.exception("Could not tell the sockets that the server is restarting")
    await generations_drain(settings.CHAT_SHUTDOWN_GRACE_SECONDS)
    await claude.client_close()


async def _drain_then_stop(reactor) -> None:
    try:
        await drain()
    except Exception:
        logger.exception("Draining replies failed; stopping anyway")
    finally:
        reactor.stop()

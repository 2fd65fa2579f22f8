"""This worker's identity, the heartbeat that keeps its replies' leases, and the sweep that ends
replies whose worker died.

A streaming reply is leased to the worker process writing it (`WORKER_ID`). The `heartbeat` renews
the leases of the replies this process is writing, once a second, from a thread of its own on a
database connection of its own: a worker that is merely slow (a burst of Sends queued on its database
thread, a lock held by someone else) keeps its leases, because the renewal never waits behind that
queue. It renews only replies whose generation is running here, so a reply whose task is gone
expires. When a renewal finds one of them ended by someone else (a sweep after a real stall), its
generation is told to stop: the upstream call ends and nothing is written twice. Every worker runs a
sweeper that ends replies whose lease ran out, with their ledger row, and shows their end to every
page viewing them. Send and Stop sweep their own conversation first, so an orphaned reply never blocks
its conversation for longer than the lease.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import socket
import threading
from collections.abc import Callable

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from .. import fragments
from ..models import Message, conversation_group
from . import store, tasks
from .relay import relay

logger = logging.getLogger(__name__)

#: Names this process in the leases it holds: host, pid, and a random part so a reused pid differs.
WORKER_ID = f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"
#: Channel-layer group of every socket this process serves (told when the process shuts down).
WORKER_GROUP = "worker-" + re.sub(r"[^A-Za-z0-9._-]", "-", WORKER_ID)[:90]


async def end_expired(conversation_id: int | None = None) -> int:
    """End the replies whose lease expired (in one conversation, or all) and show their end."""
    ended = await database_sync_to_async(store.replies_end_expired)(conversation_id=conversation_id)
    await show_ended(ended)
    return len(ended)


async def show_ended(ended: list[Message]) -> None:
    """Show the end of replies `store.replies_end_expired` ended on their conversations' pages."""
    for message in ended:
        html = fragments.message(message) + fragments.send_button(busy=False)
        await relay.publish(conversation_group(message.conversation_id), html)


def sweeper_start() -> None:
    """Make sure this process sweeps expired leases every fifth of a lease (idempotent, per event loop)."""
    loop = asyncio.get_running_loop()
    if tasks.get("sweeper", loop) is None:
        tasks.start("sweeper", loop, _sweep_forever())


async def _sweep_forever() -> None:
    while True:
        await asyncio.sleep(settings.CHAT_LEASE_SECONDS / 5)
        try:
            await end_expired()
        except Exception:
            logger.exception("Sweeping expired reply leases failed; trying again shortly")


class Heartbeat:
    """Renews the leases of this process's running replies from its own thread and database connection."""

    def __init__(self) -> None:
        self._held: dict[int, tuple[asyncio.AbstractEventLoop, Callable[[], None]]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self.failures = 0  # consecutive failed beats (logged once per outage)

    def hold(self, message_id: int, on_lost: Callable[[], None]) -> None:
        """Keep renewing `message_id`'s lease until `release`; `on_lost` is called on the running event
        loop if the reply turns out to have been ended by someone else meanwhile."""
        loop = asyncio.get_running_loop()
        with self._lock:
            self._held[message_id] = (loop, on_lost)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)
                self._thread.start()

    def release(self, message_id: int) -> None:
        with self._lock:
            self._held.pop(message_id, None)

    def held(self) -> list[int]:
        """The replies held now (a reply whose event loop is gone, with its task, is let go)."""
        with self._lock:
            for message_id, (loop, _on_lost) in list(self._held.items()):
                if loop.is_closed():
                    del self._held[message_id]
            return list(self._held)

    def _run(self) -> None:
        while True:  # never ends: a failure is logged (once per outage) and the next beat tries again
            self._wake.wait(settings.CHAT_CHECKPOINT_SECONDS)
            self._wake.clear()
            try:
                self.beat()
            except Exception:
                self.failures += 1
                if self.failures == 1:
                    logger.exception("Renewing this worker's reply leases failed; retrying every second")
                try:
                    connection.close()  # a fresh connection next time
                except Exception:
                    pass
            else:
                if self.failures:
                    logger.info(
                        "Renewing this worker's reply leases works again (after %d failed tries)",
                        self.failures,
                    )
                self.failures = 0

    def beat(self) -> None:
        """Renew the held replies' leases (one UPDATE); tell the generations of those ended elsewhere."""
        ids = self.held()
        if not ids:
            return  # nothing held: no database work at all
        try:
            lost = self._renew(ids)
        finally:
            close_old_connections()  # as a request's end would: this thread's connection is kept within its age
        self._tell_lost(lost)

    def _renew(self, ids: list[int]) -> set[int]:
        with transaction.atomic():
            mine = Message.objects.filter(pk__in=ids, worker=WORKER_ID, status=Message.Status.STREAMING)
            # Lock first (in id order), then date the new lease: a renewal that waited behind someone's
            # row lock must not commit a lease that ran out while it waited (a sweep queued behind it
            # would then take this live worker for dead).
            locked = list(mine.select_for_update().order_by("pk").values_list("pk", flat=True))
            renewed = Message.objects.filter(pk__in=locked).update(
                lease_until=store.lease_until(timezone.now())
            )
            lost = set()
            if renewed < len(ids):
                # Not renewed: most have just ended here (their end is saved before they are released);
                # lost are those another worker ended as interrupted, or took over.
                for pk, status, worker in Message.objects.filter(pk__in=ids).values_list(
                    "pk", "status", "worker"
                ):
                    if status == Message.Status.INTERRUPTED or (
                        status == Message.Status.STREAMING and worker != WORKER_ID
                    ):
                        lost.add(pk)
        return lost

    def _tell_lost(self, lost: set[int]) -> None:
        for message_id in lost:
            with self._lock:
                held = self._held.pop(message_id, None)
            if held is None:
                continue  # it finished here meanwhile
            loop, on_lost = held
            logger.warning(
                "Reply %s was ended by another worker while this one still wrote it; stopping it", message_id
            )
            try:
                loop.call_soon_threadsafe(on_lost)
            except RuntimeError:
                pass  # its event loop is gone


heartbeat = Heartbeat()

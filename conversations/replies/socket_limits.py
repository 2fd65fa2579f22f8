"""Per-user limits on chat sockets and on the frames they send, kept in this worker process.

CHAT_MAX_SOCKETS_PER_USER caps the sockets one user holds open in this process; CHAT_MAX_FRAMES_PER_SECOND
is the refill rate of a token bucket per user (shared by all their sockets here) holding at most
CHAT_FRAME_BURST frames. Both are checked in memory, before a frame is parsed or the database is touched,
so one user's flood costs other users nothing but the bytes. 0 turns a limit off.

Why per process and not across workers: the limits protect each worker's memory, CPU and database
connections, which is where a flood hurts; a global count would add a Redis round trip to every
connect and a heartbeat to forget the sockets of a worker that died. With N workers, one user can hold
at most N times the limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings


@dataclass
class _Bucket:
    tokens: float
    updated: float

    def refill(self, now: float, rate: float, burst: int) -> None:
        self.tokens = min(float(burst), self.tokens + (now - self.updated) * rate)
        self.updated = now


class UserSocketLimits:
    """The sockets and frame buckets of every user with a socket in this process (one event loop, so no
    locks). A bucket outlives its user's last socket until it is full again, so reconnecting does not
    refill it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._sockets: dict[int, set[str]] = {}
        self._buckets: dict[int, _Bucket] = {}

    def open(self, user_id: int, channel_name: str) -> bool:
        """Count a new socket of the user's; False (and nothing counted) if they hold the maximum already."""
        limit = settings.CHAT_MAX_SOCKETS_PER_USER
        if limit and len(self._sockets.get(user_id, ())) >= limit:
            return False
        self._sockets.setdefault(user_id, set()).add(channel_name)
        return True

    def close(self, user_id: int, channel_name: str) -> None:
        """Forget a socket (idempotent)."""
        sockets = self._sockets.get(user_id)
        if sockets is None:
            return
        sockets.discard(channel_name)
        if not sockets:
            del self._sockets[user_id]
            self._forget_full_buckets()

    def allow_frame(self, user_id: int) -> bool:
        """Take one frame from the user's bucket; False if it is empty."""
        rate, burst = settings.CHAT_MAX_FRAMES_PER_SECOND, settings.CHAT_FRAME_BURST
        if rate <= 0:
            return True
        now = self._clock()
        bucket = self._buckets.get(user_id)
        if bucket is None:
            bucket = self._buckets[user_id] = _Bucket(tokens=float(max(burst, 1)), updated=now)
        bucket.refill(now, rate, max(burst, 1))
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def open_sockets(self, user_id: int) -> int:
        return len(self._sockets.get(user_id, ()))

    def _forget_full_buckets(self) -> None:
        rate, burst = settings.CHAT_MAX_FRAMES_PER_SECOND, max(settings.CHAT_FRAME_BURST, 1)
        now = self._clock()
        for user_id, bucket in list(self._buckets.items()):
            if user_id in self._sockets:
                continue
            bucket.refill(now, rate, burst)
            if rate <= 0 or bucket.tokens >= burst:
                del self._buckets[user_id]


limits = UserSocketLimits()

"""The embedded default channel layer: Channels' in-memory layer, made cheap per message.

Upstream's InMemoryChannelLayer scans every channel and group for expired entries on every send
and receive, and starts one asyncio task per group member on every group_send. With a frame every
~40 ms per streaming reply and a socket plus a control channel per reply, that bookkeeping costs
more CPU than relaying the frames. Here housekeeping runs at most once a second, and group_send
queues to each member directly. A send also builds no throwaway queue (upstream makes one per call, used
or not) and copies a flat message (strings and numbers, as every frame is) with one dict copy instead of
a deep copy. Semantics are unchanged: same capacity, expiry, ChannelFull, and no receiver shares a
mutable value with the sender.
"""

from __future__ import annotations

import asyncio
import logging
import time
from copy import deepcopy

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer as UpstreamRedisChannelLayer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

HOUSEKEEPING_INTERVAL_SECONDS = 1.0
_IMMUTABLE = (str, int, float, bool, bytes, type(None))

logger = logging.getLogger(__name__)


class InProcessChannelLayer(InMemoryChannelLayer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._next_housekeeping = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now < self._next_housekeeping:
            return
        self._next_housekeeping = now + HOUSEKEEPING_INTERVAL_SECONDS
        super()._clean_expired()

    def _queue(self, channel: str) -> asyncio.Queue:
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        return queue

    async def send(self, channel: str, message: dict) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        flat = all(type(value) in _IMMUTABLE for value in message.values())
        copied = dict(message) if flat else deepcopy(message)
        try:
            self._queue(channel).put_nowait((time.time() + self.expiry, copied))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    async def receive(self, channel: str) -> dict:
        self.require_valid_channel_name(channel)
        self._clean_expired()
        queue = self._queue(channel)
        try:
            _, message = await queue.get()
        finally:
            if queue.empty():
                self.channels.pop(channel, None)
        return message

    async def group_members(self, group: str) -> set[str]:
        """The channels in `group` now (conversations.replies.relay delivers to this process's own directly)."""
        return set(self.groups.get(group, ()))

    async def group_send(self, group: str, message: dict) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, ())):
            try:
                await self.send(channel, message)
            except ChannelFull:
                pass  # a member too slow to keep up misses this message, as with upstream


class _Outage:
    """Whether this process reaches Redis, logged once per outage."""

    def __init__(self) -> None:
        self.down = False

    def failed(self, exc: BaseException) -> None:
        if not self.down:
            self.down = True
            logger.warning("Redis is unreachable (%s); the channel layer waits for it", exc)

    def recovered(self) -> None:
        if self.down:
            self.down = False
            logger.info("Redis is reachable again")


_outage = _Outage()


class RedisChannelLayer(UpstreamRedisChannelLayer):
    """channels-redis's layer (several daphne workers, several machines), able to say who is in a group.

    Its connection pool blocks when all its connections are busy (a burst of replies on one worker)
    instead of raising MaxConnectionsError: a frame waits a moment rather than being lost. Size it with
    CHAT_REDIS_MAX_CONNECTIONS."""

    async def receive(self, channel: str) -> dict:
        """The next message for `channel`. While Redis is unreachable (restarting, a network blip) this
        keeps waiting and trying again each second instead of raising: a socket or a reply's control
        channel waiting for messages just waits longer, and is not closed for it. One log line per
        outage for the process."""
        while True:
            try:
                message = await super().receive(channel)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                _outage.failed(exc)
                await asyncio.sleep(1)
                continue
            _outage.recovered()
            return message

    def create_pool(self, index):
        from django.conf import settings
        from redis.asyncio import BlockingConnectionPool

        host = dict(self.hosts[index])
        if "address" not in host:
            return super().create_pool(index)
        address = host.pop("address")
        return BlockingConnectionPool.from_url(
            address, max_connections=settings.CHAT_REDIS_MAX_CONNECTIONS, timeout=10, **host
        )

    async def group_members(self, group: str) -> set[str]:
        """The channels in `group` now, by the same key and expiry as group_send reads them."""
        assert self.require_valid_group_name(group), "Group name not valid"
        connection = self.connection(self.consistent_hash(group))
        members = await connection.zrangebyscore(
            self._group_key(group), int(time.time()) - self.group_expiry, "+inf"
        )
        return {member.decode("utf8") for member in members}

"""The embedded default channel layer: Channels' in-memory layer, made cheap per message.

Upstream's InMemoryChannelLayer scans every channel and group for expired entries on every send
and receive, and starts one asyncio task per group member on every group_send. With a frame every
~40 ms per streaming reply and a socket plus a control channel per reply, that bookkeeping costs
more CPU than relaying the frames. Here housekeeping runs at most once a second, and group_send
queues to each member directly. Semantics are unchanged: same capacity, expiry and ChannelFull.
"""

from __future__ import annotations

import time

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

HOUSEKEEPING_INTERVAL_SECONDS = 1.0


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

    async def group_send(self, group: str, message: dict) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, ())):
            try:
                await self.send(channel, message)
            except ChannelFull:
                pass  # a member too slow to keep up misses this message, as with upstream

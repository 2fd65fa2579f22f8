"""Frames to the pages viewing a conversation: straight to the sockets of this process, and through the
channel layer only to sockets in other processes.

A streaming reply publishes a frame up to 25 times a second, and the socket reading it is almost always
served by the very process that runs the reply (the one its message was sent to). Through the channel
layer, each frame would cost a copy and a queue hop per socket in memory, or a script, a pipeline and a
pop per socket on Redis (which, past its capacity, drops frames: a reply's last one with them). So each
socket also registers here, with its process; a frame goes to the registered sockets directly, in the
order it was published, and through the layer only to the group's members this process does not serve.

Who those are: the layer's group as it stands (chatsite.channel_layers), read at every publish, or for
a streaming reply's text at most every MEMBERS_MAX_AGE seconds. A page opening in another process while
a reply streams asks that reply for a snapshot (control.py), which counts it in at once; so it misses
no frame between two reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings

logger = logging.getLogger(__name__)

FRAME = "chat.frame"
# How old the list of a group's sockets elsewhere may be for a streaming reply's text frames (seconds).
MEMBERS_MAX_AGE = 1.0


class Socket(Protocol):
    channel_name: str

    async def relay_frame(self, html: str) -> None: ...


class LayerOutage:
    """Whether this process can reach the channel layer: logged once per outage, and tried again at
    most once a second meanwhile (not once per frame of every reply)."""

    RETRY_SECONDS = 1.0

    def __init__(self) -> None:
        self.down = False
        self._retry_at = 0.0

    def waiting(self, now: float) -> bool:
        """True while a recent failure says not to try the layer yet."""
        return self.down and now < self._retry_at

    def failed(self) -> None:
        self._retry_at = time.monotonic() + self.RETRY_SECONDS
        if not self.down:
            self.down = True
            logger.warning(
                "The channel layer is unreachable (Redis down?): pages elsewhere, Stop and catch-up wait for it",
                exc_info=True,
            )

    def recovered(self) -> None:
        if self.down:
            self.down = False
            logger.info("The channel layer is reachable again")


layer_outage = LayerOutage()


class Relay:
    """This process's sockets by group, and what it last read of each group's other members."""

    def __init__(self) -> None:
        self.local: dict[str, dict[str, Socket]] = {}  # group -> channel name -> socket
        self._sockets: dict[str, Socket] = {}  # channel name -> socket, whatever its group
        self._loops: dict[str, asyncio.AbstractEventLoop] = {}  # channel name -> the loop serving it
        # group -> (read at, channels): kept only while a reply of the group streams (see forget)
        self._elsewhere: dict[str, tuple[float, set[str]]] = {}

    def join(self, group: str, socket: Socket) -> None:
        self.local.setdefault(group, {})[socket.channel_name] = socket
        self._sockets[socket.channel_name] = socket
        self._loops[socket.channel_name] = asyncio.get_running_loop()

    def leave(self, group: str, socket: Socket) -> None:
        members = self.local.get(group)
        if members is not None and members.get(socket.channel_name) is socket:
            del members[socket.channel_name]
            if not members:
                del self.local[group]
        if self._sockets.get(socket.channel_name) is socket:
            del self._sockets[socket.channel_name]
            self._loops.pop(socket.channel_name, None)

    def forget(self, group: str) -> None:
        """Read the group's members afresh at its next publish (a reply starts or ends: generation.py)."""
        self._elsewhere.pop(group, None)

    async def publish(self, group: str, html: str, *, max_age: float = 0.0) -> None:
        """Show `html` on every page in `group`: this process's first, in publish order, then the rest."""
        for socket in list(self.local.get(group, {}).values()):
            await self._deliver(socket, html)
        for channel in await self._members_elsewhere(group, max_age):
            await _send_elsewhere(channel, html)

    async def send(self, channel: str, html: str, *, group: str) -> None:
        """Show `html` on the one page behind `channel`, a member of `group`, wherever it is served."""
        socket = self._sockets.get(channel)
        if socket is not None:
            await self._deliver(socket, html)
            return
        read_at, members = self._elsewhere.get(group, (0.0, set()))
        self._elsewhere[group] = (read_at, members | {channel})  # frames for `group` go there from now on
        await _send_elsewhere(channel, html)

    async def _members_elsewhere(self, group: str, max_age: float) -> set[str]:
        known = self._elsewhere.get(group)
        now = time.monotonic()
        if known is not None and now - known[0] <= max_age:
            return known[1]
        if layer_outage.waiting(now):  # the layer was unreachable a moment ago: no try per frame
            return known[1] if known is not None else set()
        try:
            members = await get_channel_layer().group_members(group)
        except Exception:
            # The layer is unreachable (Redis restarting): this process's pages still get the frame.
            layer_outage.failed()
            return known[1] if known is not None else set()
        layer_outage.recovered()
        elsewhere = members - self.local.get(group, {}).keys()
        if max_age:  # a streaming reply's frame: keep the list until it is too old, or the reply ends
            self._elsewhere[group] = (now, elsewhere)
        return elsewhere

    async def _deliver(self, socket: Socket, html: str) -> None:
        loop = self._loops.get(socket.channel_name)
        if loop is not None and loop is not asyncio.get_running_loop():
            # Published from another event loop (a sync caller's async_to_sync): hand it to the socket's.
            if not loop.is_closed():
                asyncio.run_coroutine_threadsafe(_relay_frame(socket, html), loop)
            return
        await _relay_frame(socket, html)


async def _send_elsewhere(channel: str, html: str) -> None:
    try:
        await get_channel_layer().send(channel, {"type": FRAME, "html": html})
    except ChannelFull:
        pass  # a page too slow to keep up misses this frame, as with group_send
    except Exception:
        layer_outage.failed()  # that page catches up when it reconnects (or at the reply's end)


async def _relay_frame(socket: Socket, html: str) -> None:
    try:
        await socket.relay_frame(html)
    except Exception:
        # One broken socket must not keep the frame from the others (or fail the reply).
        logger.exception("Could not relay a frame to %s", socket.channel_name)


relay = Relay()


class FramePace:
    """The coalescing window of this process's frames: CHAT_COALESCE_MS while the event loop keeps up,
    wider (up to CHAT_COALESCE_MAX_MS) while it falls behind.

    Every frame costs the same whatever it carries (markdown of the open block, the fragment, the
    channel layer, a websocket send), so when there is more to relay than the process can send at the
    base window, fewer and fuller frames are what keeps it up to date. Lateness is how much later than
    due the flushers wake (their sleeps queue behind everything else on the loop), smoothed over
    recent wakes; the window is the base plus twice that, so it narrows again as the load goes."""

    SMOOTHING = 0.05  # weight of each wake in the running lateness (about the last 20 wakes)

    def __init__(self) -> None:
        self.lateness = 0.0  # seconds

    def window(self) -> float:
        base, widest = settings.CHAT_COALESCE_MS / 1000, settings.CHAT_COALESCE_MAX_MS / 1000
        return min(max(base, widest), base + 2 * self.lateness)

    def woke(self, late: float) -> None:
        self.lateness += self.SMOOTHING * (max(late, 0.0) - self.lateness)


frame_pace = FramePace()

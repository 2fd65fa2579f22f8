"""The chat websocket: authenticate, authorize, validate, hand each intent to `replies`, relay fragments."""

from __future__ import annotations

import asyncio
import functools
import json
import logging

from autobahn.exception import Disconnected
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from accounts.revocation import session_digest, session_is_current, user_group
from billing.services import SpendRefused, budget_status

from .. import budget_push, fragments, inputs
from ..control import request_snapshot
from ..models import Conversation, Message
from . import intents
from .generation import snapshot_here, writing_here
from .leases import WORKER_GROUP
from .relay import layer_outage, relay
from .socket_limits import limits

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 256 * 1024
# Close codes: 4401 not (or no longer) logged in: the page reloads, which lands on the login page;
# 4404 no such conversation for this user; 4429 too many sockets for this user.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY_SOCKETS = 4429
SERVER_RESTARTING = "The server is restarting — reconnecting…"

UNREADABLE = "That message could not be read"
TOO_MANY_SOCKETS = (
    "Too many chat pages are open for your account (at most {limit}). Close some, then reload this one."
)
TOO_MANY_FRAMES = "Too many messages at once: wait a moment, then try again."
BUSY = "Busy: your message is kept, sending in a few seconds…"


class ChatConsumer(AsyncWebsocketConsumer):
    """One socket per open conversation page, at /ws/chat/<conversation id>/."""

    _joined: tuple[str, ...] = ()
    _counted = False  # whether this socket counts against the user's socket limit
    _serving = True  # False once the user's sign-in ended: frames still queued are dropped
    _throttled = False  # whether the user was told about the frame limit since their last served frame
    # Frames relayed to this socket while it connects, sent once the page is brought up to date.
    _held: list[str] | None = None
    _relayed_group = ""  # the conversation group this socket gets frames of through `relay`
    _rejoining: asyncio.Task | None = None  # joins the groups the channel layer refused while it was down

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._rejoin: set[str] = set()

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # However the consumer ends (closed, failed, or cancelled once its connection is gone),
            # its socket stops counting against the user's limit.
            if self._counted:
                limits.close(self.user.pk, self.channel_name)
            self._relay_leave()

    async def connect(self) -> None:
        self.user = self.scope["user"]
        if not self.user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not limits.open(self.user.pk, self.channel_name):
            # Accepted only to say why: a handshake refused outright reaches the page without a reason.
            await self.accept()
            message = TOO_MANY_SOCKETS.format(limit=settings.CHAT_MAX_SOCKETS_PER_USER)
            await self._send_html(fragments.error(message))
            await self.close(code=CLOSE_TOO_MANY_SOCKETS, reason="Too many sockets")
            return
        self._counted = True
        conversation_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        self.conversation = await self._owned_conversation(conversation_id)
        if self.conversation is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.session_key = self.scope["session"].session_key
        self.session_digest = session_digest(self.session_key or "")
        # Revocations of the user's sign-in (logout, password change, deactivation): joined before the
        # session is checked again, so none can fall between the check and the join.
        await self._join(user_group(self.user.pk))
        if not await self._signed_in():
            await self._leave_groups()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        # Its conversation's frames (from this process straight through `relay`, from others through
        # the layer), and this worker's notice when it shuts down.
        self._held = []
        self._relayed_group = self.conversation.group_name
        relay.join(self._relayed_group, self)
        await self._join(self.conversation.group_name)
        await self._join(WORKER_GROUP)
        await self._join(budget_push.EVERYONE)
        await self.accept()
        # The page may be older than this socket (a reconnect after a network blip or a server
        # restart): bring the message list and the send button up to date first.
        html, streaming_id = await self._current_state()
        await self._send_html(html)
        if streaming_id is not None and not await snapshot_here(streaming_id, self.channel_name):
            # Catch up: the generation (in another worker) answers with the text so far; live deltas
            # follow it. Without the channel layer the page has the text of the last checkpoint.
            try:
                await request_snapshot(self.conversation.pk, streaming_id, self.channel_name)
            except Exception:
                layer_outage.failed()
        # Then what was relayed meanwhile, in order (as the layer's queue would have delivered it).
        while self._held:
            await self._send_html(self._held.pop(0))
        self._held = None

    async def disconnect(self, code: int) -> None:
        # Leaving the groups is all: the generation belongs to the server and keeps going.
        await self._leave_groups()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self._serving:
            return
        # The frame limit comes first and is checked in memory: a refused frame costs no database work.
        if not limits.allow_frame(self.user.pk):
            if not self._throttled:  # say it once per flood, not once per frame
                self._throttled = True
                await self._send_html(fragments.error(TOO_MANY_FRAMES))
            return
        self._throttled = False
        # No frame is served once the sign-in has ended, even if its revocation event was missed (a
        # QuerySet.update, or another process on the in-memory channel layer). A message to send is
        # checked in the same trip to the database thread that stores it, before anything is written;
        # any other frame first.
        try:
            frame, problem = self._parse(text_data), ""
        except inputs.InvalidInput as exc:
            frame, problem = None, str(exc)
        action = (frame.get("action") or "send") if frame is not None else ""
        if action != "send" and not await self._signed_in():
            await self._sign_out()
            return
        if frame is None:  # unreadable: the sender is told why, and nothing else happens
            await self._send_html(fragments.error(problem))
            return
        try:
            if action == "send":
                await self._send(frame)
                return
            intent = intents.INTENTS[action]
            await intent.run(
                user=self.user,
                message_id=inputs.clean_id(frame.get("message_id")),
                conversation_id=self.conversation.pk,
                **intent.arguments(frame),
            )
        except (inputs.InvalidInput, SpendRefused) as exc:
            await self._send_html(fragments.error(str(exc)))

    async def _send(self, frame: dict) -> None:
        sending = asyncio.ensure_future(
            intents.send(
                conversation=self.conversation,
                text=frame.get("message"),
                attachment_ids=frame.get("attachments"),
                signed_in=functools.partial(session_is_current, self.session_key, self.user.pk),
                price_token=frame.get("price_estimate"),
            )
        )
        try:
            # Sends wait their turn for the database thread, in order; one that waits long (a burst on
            # this worker) says so rather than look lost. Its text stays in the box meanwhile.
            try:
                done, _ = await asyncio.wait({sending}, timeout=settings.CHAT_BUSY_NOTICE_SECONDS)
            except asyncio.CancelledError:
                sending.cancel()  # as an awaited Send would be: the page keeps the text, unsent
                raise
            if not done:
                await self._send_html(fragments.notice(BUSY))
            await sending
        except intents.SignedOut:
            await self._sign_out()
            return
        # Only the sender's composer is emptied (and an earlier error cleared), and only now that the
        # message is safely stored.
        await self._send_html(fragments.composer_cleared())

    def _parse(self, text_data: str | None) -> dict:
        """The frame as a dict with a known action, or InvalidInput saying why it cannot be read."""
        if text_data is None or len(text_data.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
            raise inputs.InvalidInput(f"{UNREADABLE} (too large or not text).")
        try:
            frame = json.loads(text_data)
        except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python can parse
            raise inputs.InvalidInput(f"{UNREADABLE} (not valid JSON).") from None
        if not isinstance(frame, dict):
            raise inputs.InvalidInput(f"{UNREADABLE} (expected an object).")
        action = frame.get("action") or "send"
        if not isinstance(action, str) or action not in intents.ACTIONS:
            raise inputs.InvalidInput("Unknown action.")
        conversation = frame.get("conversation")
        if conversation is not None and str(conversation) != str(self.conversation.pk):
            raise inputs.InvalidInput("That message was sent for another conversation.")
        return frame

    async def dispatch(self, message: dict) -> None:
        # Channels makes a trip to the database thread before every handler, to close stale
        # connections. Every database call here is a database_sync_to_async, which does that itself
        # in the same thread, before and after: the extra trip only queued each frame a user sends
        # behind every other reply's database work, and relayed frames (~25 a second per streaming
        # reply) touch no database at all.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def chat_frame(self, event: dict) -> None:
        await self._send_html(event["html"])

    async def relay_frame(self, html: str) -> None:
        """A frame of this socket's conversation published in this process (see relay.py)."""
        if self._held is not None:
            self._held.append(html)
        else:
            await self._send_html(html)

    async def auth_session_ended(self, event: dict) -> None:
        """A session was logged out (accounts.revocation): close if it is this socket's."""
        if event["session"] == self.session_digest:
            await self._sign_out()

    async def auth_recheck(self, event: dict) -> None:
        """The user's password, active flag or row changed (accounts.revocation): close if signed out."""
        if self._serving and not await self._signed_in():
            await self._sign_out()

    async def budget_changed(self, event: dict) -> None:
        """Staff or a manager changed a budget that applies to this user (budget_push): the banner and
        the Send button say where the user stands now."""
        if self._serving:
            await self._send_html(await self._budget_state())

    async def _sign_out(self) -> None:
        self._serving = False
        await self._leave_groups()
        await self.close(code=CLOSE_UNAUTHENTICATED, reason="Logged out")

    async def server_restarting(self, event: dict) -> None:
        """This worker is shutting down: say so. A page whose conversation has no reply being written here
        is let go at once (code 1012, service restart), so it reconnects (to another worker behind the
        proxy) and can send there; one with a reply in flight stays while it finishes, and reconnects
        and catches up when the server stops."""
        await self._send_html(fragments.error(SERVER_RESTARTING))
        if not writing_here(self.conversation.pk):
            await self.close(code=1012)

    async def _send_html(self, html: str) -> None:
        try:
            await self.send(text_data=html)
        except Disconnected:
            # The browser closed the socket while this frame was on its way. daphne may never deliver
            # the disconnect to a consumer whose send failed, so leave the groups now.
            await self._leave_groups()

    async def _join(self, group: str) -> None:
        """Join `group` on the channel layer. While the layer is unreachable (Redis restarting) the socket
        opens all the same (frames of this process's replies reach it directly, see relay) and joins
        in the background once the layer is back."""
        self._joined = (*self._joined, group)
        try:
            await self.channel_layer.group_add(group, self.channel_name)
        except Exception:
            layer_outage.failed()
            self._rejoin.add(group)
            if self._rejoining is None or self._rejoining.done():
                self._rejoining = asyncio.get_running_loop().create_task(self._join_when_back())

    async def _join_when_back(self) -> None:
        while self._rejoin:
            await asyncio.sleep(1)
            for group in list(self._rejoin):
                if group not in self._joined:
                    self._rejoin.discard(group)  # left meanwhile
                    continue
                try:
                    await self.channel_layer.group_add(group, self.channel_name)
                except Exception:
                    break
                self._rejoin.discard(group)
                layer_outage.recovered()

    async def _signed_in(self) -> bool:
        """Whether the session this socket was opened with still authenticates its (active) user."""
        return await database_sync_to_async(session_is_current)(self.session_key, self.user.pk)

    def _relay_leave(self) -> None:
        if self._relayed_group:
            relay.leave(self._relayed_group, self)
            self._relayed_group = ""

    async def _leave_groups(self) -> None:
        self._relay_leave()
        joined, self._joined = self._joined, ()
        self._rejoin.clear()
        for group in joined:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:  # the layer is unreachable: its group entries expire by themselves
                layer_outage.failed()

    @database_sync_to_async
    def _owned_conversation(self, conversation_id: int) -> Conversation | None:
        return Conversation.objects.owned_by(self.user).filter(pk=conversation_id).first()

    @database_sync_to_async
    def _budget_state(self) -> str:
        status = budget_status(self.user)
        busy = self.conversation.messages.filter(status=Message.Status.STREAMING).exists()
        return fragments.budget(self.user, status) + fragments.send_button(
            busy=busy, budget_exhausted=status.state == "exhausted"
        )

    @database_sync_to_async
    def _current_state(self) -> tuple[str, int | None]:
        chat_messages, earlier_before = self.conversation.messages.page()
        streaming_id = next((m.pk for m in chat_messages if m.is_streaming), None)
        context_from = Conversation.objects.values_list("context_from", flat=True).get(
            pk=self.conversation.pk
        )
        return (
            fragments.message_list(
                chat_messages,
                conversation=self.conversation,
                context_from=context_from,
                earlier_before=earlier_before,
                budget_exhausted=budget_status(self.user).state == "exhausted",
            ),
            streaming_id,
        )

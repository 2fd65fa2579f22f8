"""The chat websocket: authenticate, authorize, validate, delegate to services, relay fragments."""

from __future__ import annotations

import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string

from billing.services import SpendRefused

from . import services
from .generation import control_group, generation_start, message_fragment, request_stop, send_button_fragment
from .models import Conversation, Message

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 256 * 1024
# Close codes: 4401 not logged in, 4404 no such conversation for this user.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404


class ChatConsumer(AsyncWebsocketConsumer):
    """One socket per open conversation page, at /ws/chat/<conversation id>/."""

    async def connect(self) -> None:
        self.user = self.scope["user"]
        if not self.user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        conversation_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        self.conversation = await self._owned_conversation(conversation_id)
        if self.conversation is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.group = self.conversation.group_name
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        # The page may be older than this socket (a reconnect after a network blip or a server
        # restart): bring the message list and the send button up to date first.
        html, streaming_id = await self._current_state()
        await self.send(text_data=html)
        if streaming_id is not None:
            # Catch up: the generation answers with the text so far; live deltas follow it.
            await self.channel_layer.group_send(
                control_group(self.conversation.pk),
                {"type": "reply.snapshot", "message_id": streaming_id, "reply_channel": self.channel_name},
            )

    async def disconnect(self, code: int) -> None:
        # Leaving the group is all: the generation belongs to the server and keeps going.
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            frame = self._parse(text_data, bytes_data)
            action = frame.get("action") or "send"
            handler = {
                "send": self._send_message,
                "stop": self._stop,
                "retry": self._retry,
                "continue": self._continue,
            }.get(action)
            if handler is None:
                raise services.InvalidInput("Unknown action.")
            await handler(frame)
        except (services.InvalidInput, SpendRefused) as exc:
            await self._error(str(exc))

    def _parse(self, text_data: str | None, bytes_data: bytes | None) -> dict:
        if text_data is None or len(text_data.encode()) > MAX_FRAME_BYTES:
            raise services.InvalidInput("That message could not be read (too large or not text).")
        try:
            frame = json.loads(text_data)
        except ValueError:
            raise services.InvalidInput("That message could not be read (not valid JSON).") from None
        if not isinstance(frame, dict):
            raise services.InvalidInput("That message could not be read (expected an object).")
        conversation = frame.get("conversation")
        if conversation is not None and str(conversation) != str(self.conversation.pk):
            raise services.InvalidInput("That message was sent for another conversation.")
        return frame

    async def _send_message(self, frame: dict) -> None:
        user_message, assistant = await database_sync_to_async(services.reply_start)(
            conversation=self.conversation, text=frame.get("message")
        )
        await self._announce_new_turns([user_message, assistant])
        # Only the sender's composer is emptied (and an earlier error cleared), and only now that the
        # message is safely stored.
        await self.send(
            text_data=render_to_string("conversations/conversation.html#composer_input", {"oob": True})
            + render_to_string("conversations/conversation.html#chat_error", {"oob": True})
        )
        generation_start(assistant.pk)

    async def _continue(self, frame: dict) -> None:
        message = await self._owned_message(frame.get("message_id"))
        user_message, assistant = await database_sync_to_async(services.reply_continue)(message=message)
        await self._announce_new_turns([user_message, assistant])
        generation_start(assistant.pk)

    async def _retry(self, frame: dict) -> None:
        message = await self._owned_message(frame.get("message_id"))
        message = await database_sync_to_async(services.reply_retry)(message=message)
        await self.channel_layer.group_send(
            self.group, {"type": "chat.frame", "html": message_fragment(message)}
        )
        await self.channel_layer.group_send(
            self.group, {"type": "chat.frame", "html": send_button_fragment(busy=True)}
        )
        generation_start(message.pk)

    async def _stop(self, frame: dict) -> None:
        message = await self._owned_message(frame.get("message_id"))
        if message.status == Message.Status.STREAMING:
            await request_stop(self.conversation.pk, message.pk)

    async def _announce_new_turns(self, messages: list[Message]) -> None:
        html = (
            '<div hx-swap-oob="beforeend:#messages">'
            + "".join(message_fragment(m, oob="") for m in messages)
            + "</div>"
        )
        await self.channel_layer.group_send(self.group, {"type": "chat.frame", "html": html})
        await self.channel_layer.group_send(
            self.group, {"type": "chat.frame", "html": send_button_fragment(busy=True)}
        )

    async def _error(self, text: str) -> None:
        await self.send(
            text_data=render_to_string("conversations/conversation.html#chat_error", {"error": text})
        )

    async def dispatch(self, message: dict) -> None:
        # Channels hops to a thread to close stale DB connections before every handler. Relaying a
        # frame touches no database and happens ~25 times a second per streaming reply: skip the hop.
        if message["type"] == "chat.frame":
            await self.chat_frame(message)
        else:
            await super().dispatch(message)

    async def chat_frame(self, event: dict) -> None:
        await self.send(text_data=event["html"])

    @database_sync_to_async
    def _owned_conversation(self, conversation_id: int) -> Conversation | None:
        return Conversation.objects.filter(pk=conversation_id, owner=self.user).first()

    @database_sync_to_async
    def _current_state(self) -> tuple[str, int | None]:
        chat_messages = list(self.conversation.messages.in_order())
        streaming_id = next((m.pk for m in chat_messages if m.is_streaming), None)
        html = (
            '<div id="messages" hx-swap-oob="innerHTML">'
            + render_to_string(
                "conversations/conversation.html#message_list", {"chat_messages": chat_messages}
            )
            + "</div>"
            + send_button_fragment(busy=streaming_id is not None)
        )
        return html, streaming_id

    @database_sync_to_async
    def _owned_message(self, message_id: object) -> Message:
        """A message of this socket's conversation; anything else is refused without saying whether it exists."""
        try:
            message_id = int(message_id)
        except (TypeError, ValueError):
            raise services.InvalidInput("No such message.") from None
        message = (
            Message.objects.select_related("conversation")
            .filter(pk=message_id, conversation=self.conversation, conversation__owner=self.user)
            .first()
        )
        if message is None:
            raise services.InvalidInput("No such message.")
        return message

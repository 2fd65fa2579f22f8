"""Plain factory functions and a websocket helper shared by the tests."""

from __future__ import annotations

import asyncio
import itertools
import json

from asgiref.sync import sync_to_async

_counter = itertools.count(1)


def make_user(username: str | None = None, **fields):
    from django.contrib.auth import get_user_model

    username = username or f"user{next(_counter)}"
    return get_user_model().objects.create_user(username=username, password="a-Long-passw0rd!", **fields)


def make_conversation(owner=None, **fields):
    from conversations.models import Conversation

    return Conversation.objects.create(
        owner=owner or make_user(), model=fields.pop("model", "claude-sonnet-5-5"), **fields
    )


def make_message(conversation, role="user", content="Hello", **fields):
    from conversations.models import Message

    return Message.objects.create(conversation=conversation, role=role, content=content, **fields)


def session_cookie_for(user) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


class ChatSocket:
    """A logged-in browser's websocket on one conversation, through the real ASGI application."""

    def __init__(self, communicator):
        self.communicator = communicator
        self.frames: list[str] = []

    async def send(self, **frame) -> None:
        await self.communicator.send_to(text_data=json.dumps(frame))

    async def receive(self, timeout: float = 10) -> str:
        frame = await self.communicator.receive_from(timeout=timeout)
        self.frames.append(frame)
        return frame

    async def receive_until(self, predicate, timeout: float = 15) -> list[str]:
        """Frames up to and including the first one for which predicate(frame) is true."""
        seen = []
        while True:
            frame = await self.receive(timeout=timeout)
            seen.append(frame)
            if predicate(frame):
                return seen

    async def nothing_more(self, timeout: float = 0.3) -> bool:
        return await self.communicator.receive_nothing(timeout=timeout)

    async def close(self) -> None:
        await self.communicator.disconnect()


async def open_socket(
    user, conversation_id: int, *, origin: str = "http://localhost"
) -> tuple[ChatSocket, bool, int | None]:
    from channels.testing import WebsocketCommunicator

    from chatsite.asgi import application

    cookie = await sync_to_async(session_cookie_for)(user)
    communicator = WebsocketCommunicator(
        application,
        f"/ws/chat/{conversation_id}/",
        headers=[
            (b"origin", origin.encode()),
            (b"host", b"localhost"),
            (b"cookie", f"sessionid={cookie}".encode()),
        ],
    )
    connected, code = await communicator.connect(timeout=5)
    return ChatSocket(communicator), connected, code


async def eventually(check, *, timeout: float = 10, interval: float = 0.05):
    """Poll `check` (sync or async) until it returns something truthy, and return that; fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        assert loop.time() < deadline, f"still not true after {timeout} s: {check}"
        await asyncio.sleep(interval)

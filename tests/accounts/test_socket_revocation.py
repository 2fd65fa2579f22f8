"""Logout, password change and deactivation close the user's open sockets; no frame is served after."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

from conversations.models import Message
from tests.helpers import ChatSocket, make_conversation, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("offline_claude")]

PASSWORD = "a-Long-passw0rd!"
SIGNED_OUT = 4401


class Browser:
    """One logged-in browser: a session of its own, used by its pages and its sockets."""

    def __init__(self, user):
        self.client = Client()
        self.client.force_login(user)

    @property
    def cookie(self) -> str:
        return self.client.cookies["sessionid"].value

    async def open_socket(self, conversation) -> ChatSocket:
        from channels.testing import WebsocketCommunicator

        from chatsite.asgi import application

        communicator = WebsocketCommunicator(
            application,
            f"/ws/chat/{conversation.pk}/",
            headers=[
                (b"origin", b"http://localhost"),
                (b"host", b"localhost"),
                (b"cookie", f"sessionid={self.cookie}".encode()),
            ],
        )
        connected, code = await communicator.connect(timeout=5)
        assert connected, code
        socket = ChatSocket(communicator)
        await socket.receive()  # the state every socket gets on connect
        return socket


async def close_code(socket: ChatSocket, timeout: float = 10) -> int:
    """The code the server closed `socket` with, skipping any frames sent before it."""
    async with asyncio.timeout(timeout):
        while True:
            output = await socket.communicator.receive_output(timeout)
            if output["type"] == "websocket.close":
                return output["code"]


async def still_served(socket: ChatSocket) -> bool:
    """Whether the server still answers this socket (an unreadable frame gets its error back)."""
    await socket.communicator.send_to(text_data="not json")
    return "not valid JSON" in await socket.receive()


@sync_to_async
def two_browsers_and_a_stranger():
    user, stranger = make_user(), make_user()
    return (
        user,
        make_conversation(owner=user),
        Browser(user),
        Browser(user),
        Browser(stranger),
        make_conversation(owner=stranger),
    )


async def test_logout_closes_that_browsers_sockets_only():
    _, conversation, laptop, phone, stranger, theirs = await two_browsers_and_a_stranger()
    laptop_sockets = [await laptop.open_socket(conversation) for _ in range(2)]
    phone_socket = await phone.open_socket(conversation)
    stranger_socket = await stranger.open_socket(theirs)

    await sync_to_async(laptop.client.post)(reverse("logout"))

    assert [await close_code(socket) for socket in laptop_sockets] == [SIGNED_OUT, SIGNED_OUT]
    assert await still_served(phone_socket)  # the same user's other browser stays logged in
    assert await still_served(stranger_socket)
    for socket in (*laptop_sockets, phone_socket, stranger_socket):
        await socket.close()


async def test_password_change_closes_every_socket_of_that_user_and_no_one_elses():
    _, conversation, laptop, phone, stranger, theirs = await two_browsers_and_a_stranger()
    laptop_socket, phone_socket = (
        await laptop.open_socket(conversation),
        await phone.open_socket(conversation),
    )
    stranger_socket = await stranger.open_socket(theirs)

    new = "an-Other-passw0rd!"
    response = await sync_to_async(laptop.client.post)(
        reverse("password_change"), {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
    )
    assert response.status_code == 302

    assert await close_code(phone_socket) == SIGNED_OUT
    # The changing browser keeps its sign-in under a new session key; its pages reload and reconnect.
    assert await close_code(laptop_socket) == SIGNED_OUT
    assert await still_served(await laptop.open_socket(conversation))
    assert await still_served(stranger_socket)
    await stranger_socket.close()


@pytest.mark.parametrize("revoke", ["deactivate", "set_password", "delete"])
async def test_deactivation_password_reset_or_deletion_in_the_admin_closes_sockets_at_once(revoke):
    user, conversation, laptop, _, stranger, theirs = await two_browsers_and_a_stranger()
    socket = await laptop.open_socket(conversation)
    stranger_socket = await stranger.open_socket(theirs)

    @sync_to_async
    def act():
        user.refresh_from_db()
        if revoke == "deactivate":
            user.is_active = False
            user.save()
        elif revoke == "set_password":
            user.set_password("reset-By-staff-0")
            user.save()
        else:
            user.delete()

    await act()
    assert await close_code(socket) == SIGNED_OUT
    assert await still_served(stranger_socket)
    await stranger_socket.close()


async def test_a_staff_member_changing_a_users_password_in_the_admin_closes_their_sockets():
    user, conversation, laptop, _, _, _ = await two_browsers_and_a_stranger()
    socket = await laptop.open_socket(conversation)

    @sync_to_async
    def change_password_in_admin():
        staff = Client()
        staff.force_login(make_user(is_staff=True, is_superuser=True))
        new = "set-By-staff-0"
        form = {"password1": new, "password2": new, "usable_password": "true"}
        return staff.post(reverse("admin:auth_user_password_change", args=[user.pk]), form)

    assert (await change_password_in_admin()).status_code == 302
    assert await close_code(socket) == SIGNED_OUT


@pytest.mark.parametrize("frame", ["send", "other action", "unreadable"])
@pytest.mark.parametrize("revoke", ["deactivate", "end_session"])
async def test_no_frame_is_served_once_the_sign_in_ended_even_without_a_revocation_event(revoke, frame):
    user, conversation, laptop, _, _, _ = await two_browsers_and_a_stranger()
    socket = await laptop.open_socket(conversation)

    @sync_to_async
    def revoke_behind_the_sockets_back():  # QuerySet methods send no signals
        if revoke == "deactivate":
            get_user_model().objects.filter(pk=user.pk).update(is_active=False)
        else:
            Session.objects.filter(session_key=laptop.cookie).delete()

    await revoke_behind_the_sockets_back()
    if frame == "send":  # checked in the same trip to the database that would store it
        await socket.send(message="Bill this to me", conversation=conversation.pk)
    elif frame == "other action":
        await socket.send(action="stop", message_id=1, conversation=conversation.pk)
    else:  # not even an error message for a frame that cannot be read
        await socket.communicator.send_to(text_data="{not json")
    assert await close_code(socket) == SIGNED_OUT
    assert not await Message.objects.filter(conversation=conversation).aexists()

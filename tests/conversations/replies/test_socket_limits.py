"""Per-user limits on open sockets and on frames per second, with a clear error, and no cost to others."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from conversations import fragments
from conversations.models import Message
from conversations.replies import consumer, intents
from conversations.replies.socket_limits import UserSocketLimits
from tests.helpers import eventually, make_conversation, make_user, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("offline_claude")]

TOO_MANY_SOCKETS = 4429


@sync_to_async
def user_with_conversation():
    user = make_user()
    return user, make_conversation(owner=user)


async def test_a_socket_beyond_the_per_user_limit_is_refused_with_a_reason(settings):
    settings.CHAT_MAX_SOCKETS_PER_USER = 2
    user, conversation = await user_with_conversation()
    other, theirs = await user_with_conversation()
    first, _, _ = await open_socket(user, conversation.pk)
    second, _, _ = await open_socket(user, conversation.pk)

    third, connected, _ = await open_socket(user, conversation.pk)
    assert connected  # accepted only to say why, then closed
    assert "Too many chat pages are open for your account (at most 2)" in await third.receive()
    closing = await third.communicator.receive_output(5)
    assert closing["type"] == "websocket.close" and closing["code"] == TOO_MANY_SOCKETS

    others, connected, _ = await open_socket(other, theirs.pk)  # another user is not affected
    assert connected and "messages" in await others.receive()

    await first.close()
    again, connected, _ = await open_socket(user, conversation.pk)  # a closed socket frees its place
    assert connected and "Too many" not in await again.receive()
    for socket in (second, others, again):
        await socket.close()


async def test_a_frame_flood_is_refused_before_any_database_work_and_other_users_keep_chatting(
    settings, monkeypatch
):
    settings.CHAT_MAX_FRAMES_PER_SECOND = 0.001  # no refill during the test: exactly the burst is served
    settings.CHAT_FRAME_BURST = 3
    flooder, conversation = await user_with_conversation()
    other, theirs = await user_with_conversation()
    flood, _, _ = await open_socket(flooder, conversation.pk)
    await flood.receive()
    bystander, _, _ = await open_socket(other, theirs.pk)
    await bystander.receive()

    verdicts = []  # the frame limit's answer to each of the flooder's frames, in order
    served = []  # what got as far as the database: the sign-in check, then the intent

    def recording_allow_frame(user_id):
        allowed = real_allow_frame(user_id)
        if user_id == flooder.pk:
            verdicts.append(allowed)
        return allowed

    def counting_session_check(session_key, user_id):
        served.append(("session", user_id))
        return real_session_check(session_key, user_id)

    async def counting_stop(**kwargs):
        served.append(("stop", kwargs["user"].pk))
        return await real_stop(**kwargs)

    real_allow_frame, real_session_check, real_stop = (
        consumer.limits.allow_frame,
        consumer.session_is_current,
        intents.stop,
    )
    monkeypatch.setattr(consumer.limits, "allow_frame", recording_allow_frame)
    monkeypatch.setattr(consumer, "session_is_current", counting_session_check)
    monkeypatch.setitem(intents.INTENTS, "stop", intents.Intent(counting_stop))

    for _ in range(50):
        await flood.send(action="stop", message_id=999_999_999)
    # Another user chats as usual meanwhile: their frames come out of their own allowance.
    await bystander.send(message="Hello there", conversation=theirs.pk)
    await bystander.receive_until(lambda frame: "assistant status-complete" in frame, timeout=20)

    # A socket's frames are handled one after the other: once the limit has judged the 50th, the ones
    # before it are done.
    await eventually(lambda: len(verdicts) == 50)
    assert verdicts == [True] * 3 + [False] * 47
    assert [await flood.receive() for _ in range(4)] == [
        *[fragments.error("No such message.")] * 3,
        fragments.error("Too many messages at once: wait a moment, then try again."),
    ]
    assert flood.communicator.output_queue.empty()  # the error is said once per flood, not per frame
    assert [what for what, user_id in served if user_id == flooder.pk] == ["session", "stop"] * 3
    assert (
        await Message.objects.filter(conversation=theirs, role="assistant", status="complete").acount() == 1
    )
    await flood.close()
    await bystander.close()


def test_the_frame_allowance_refills_at_the_configured_rate(settings):
    settings.CHAT_MAX_FRAMES_PER_SECOND = 2
    settings.CHAT_FRAME_BURST = 4
    now = [100.0]
    limits = UserSocketLimits(clock=lambda: now[0])
    assert [limits.allow_frame(1) for _ in range(5)] == [True] * 4 + [False]
    assert limits.allow_frame(2)  # each user has their own bucket
    now[0] += 0.5  # one frame's worth
    assert [limits.allow_frame(1) for _ in range(2)] == [True, False]
    now[0] += 60  # refills up to the burst, not beyond
    assert [limits.allow_frame(1) for _ in range(5)] == [True] * 4 + [False]


def test_reconnecting_does_not_refill_the_frame_allowance(settings):
    settings.CHAT_MAX_FRAMES_PER_SECOND = 1
    settings.CHAT_FRAME_BURST = 2
    now = [0.0]
    limits = UserSocketLimits(clock=lambda: now[0])
    assert limits.open(1, "a")
    assert limits.allow_frame(1) and limits.allow_frame(1) and not limits.allow_frame(1)
    limits.close(1, "a")
    assert limits.open(1, "b")
    assert not limits.allow_frame(1)

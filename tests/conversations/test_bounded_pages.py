"""However long a conversation grows, its page and the frames a socket gets carry only its latest messages."""

from __future__ import annotations

import re

import pytest
from asgiref.sync import sync_to_async

from conversations.models import PAGE_MESSAGES, Message
from tests.helpers import make_conversation, make_user, open_socket

FRAME_LIMIT = 64 * 1024


def long_conversation(count: int, chars: int = 40):
    user = make_user()
    conversation = make_conversation(owner=user)
    Message.objects.bulk_create(
        Message(
            conversation=conversation,
            role="user" if i % 2 == 0 else "assistant",
            content=f"message {i} " + "x" * chars,
            html=f"<p>message {i} {'x' * chars}</p>" if i % 2 else "",
        )
        for i in range(count)
    )
    # One linear branch: each message follows the one before it.
    linked = list(conversation.messages.order_by("pk"))
    for previous, message in zip(linked, linked[1:], strict=False):
        message.parent = previous
    Message.objects.bulk_update(linked, ["parent"])
    return user, conversation


def shown(html: str) -> list[int]:
    return [int(n) for n in re.findall(r"message (\d+) x", html)]


@pytest.mark.django_db
def test_the_page_shows_the_latest_messages_and_show_earlier_loads_the_rest_with_or_without_js(client):
    user, conversation = long_conversation(120)
    client.force_login(user)
    page = client.get(conversation.get_absolute_url()).content.decode()
    assert shown(page) == list(range(120 - PAGE_MESSAGES, 120))
    assert "Show earlier messages" in page

    link = re.search(r'hx-get="([^"]+)"[^>]*>Show earlier messages', page).group(1).replace("&amp;", "&")
    earlier = client.get(link, headers={"HX-Request": "true"}).content.decode()
    assert shown(earlier) == list(range(120 - 2 * PAGE_MESSAGES, 120 - PAGE_MESSAGES))

    no_js = re.search(r'<a id="show-earlier"[^>]*href="([^"#]+)', earlier).group(1).replace("&amp;", "&")
    oldest = client.get(no_js).content.decode()
    assert shown(oldest) == list(range(0, 120 - 2 * PAGE_MESSAGES))
    assert "Show earlier messages" not in oldest and "start of the conversation" in oldest


@pytest.mark.django_db(transaction=True)
async def test_the_connect_frame_carries_only_the_latest_messages_and_stays_under_64_kb():
    user, conversation = await sync_to_async(long_conversation)(400, chars=6_000)
    socket, connected, _ = await open_socket(user, conversation.pk)
    assert connected
    frame = await socket.receive()
    await socket.close()
    assert len(frame.encode()) < FRAME_LIMIT
    assert shown(frame)[-1] == 399 and 0 not in shown(frame)
    assert "Show earlier messages" in frame

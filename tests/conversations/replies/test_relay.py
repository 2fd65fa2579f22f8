"""The relay: a conversation's frames reach this process's sockets directly, and other processes' pages
through the channel layer (in-process on SQLite runs, Redis on PostgreSQL runs), each exactly once."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from channels.layers import get_channel_layer

from conversations.replies.relay import MEMBERS_MAX_AGE, Relay


class Page:
    """A socket served by this process: what reached it directly, in order."""

    def __init__(self, channel_name: str) -> None:
        self.channel_name = channel_name
        self.frames: list[str] = []

    async def relay_frame(self, html: str) -> None:
        self.frames.append(html)


async def nothing_for(channel: str) -> bool:
    try:
        await asyncio.wait_for(get_channel_layer().receive(channel), 0.3)
    except TimeoutError:
        return True
    return False


@pytest.fixture
async def group():
    name = f"conversation-relay-{uuid.uuid4().hex}"
    yield name
    layer = get_channel_layer()
    for channel in await layer.group_members(name):
        await layer.group_discard(name, channel)


async def test_frames_reach_local_pages_directly_and_pages_elsewhere_through_the_layer(group):
    layer, relay = get_channel_layer(), Relay()
    here = [Page(await layer.new_channel()) for _ in range(2)]
    for page in here:  # as ChatConsumer does: registered here, and in the layer's group for other processes
        relay.join(group, page)
        await layer.group_add(group, page.channel_name)
    elsewhere = await layer.new_channel()  # a page another process serves
    await layer.group_add(group, elsewhere)

    for n in range(3):
        await relay.publish(group, f"<p>{n}</p>")

    assert [page.frames for page in here] == [["<p>0</p>", "<p>1</p>", "<p>2</p>"]] * 2
    assert [(await layer.receive(elsewhere))["html"] for _ in range(3)] == [
        "<p>0</p>",
        "<p>1</p>",
        "<p>2</p>",
    ]
    for page in here:  # no second copy through the layer
        assert await nothing_for(page.channel_name)

    relay.leave(group, here[0])
    await relay.publish(group, "<p>after</p>")
    assert here[0].frames[-1] == "<p>2</p>" and here[1].frames[-1] == "<p>after</p>"


async def test_a_streaming_reply_reads_members_once_a_second_and_counts_a_catching_up_page_at_once(group):
    layer, relay = get_channel_layer(), Relay()
    page = Page(await layer.new_channel())
    relay.join(group, page)
    await layer.group_add(group, page.channel_name)
    await relay.publish(group, "<p>1</p>", max_age=MEMBERS_MAX_AGE)  # reads: nobody elsewhere

    late = await layer.new_channel()  # opens in another process after that read, and asks for a snapshot
    await layer.group_add(group, late)
    await relay.publish(group, "<p>2</p>", max_age=MEMBERS_MAX_AGE)
    assert await nothing_for(late)  # within the second, the list read before stands
    await relay.send(late, "<p>snapshot</p>", group=group)
    await relay.publish(group, "<p>3</p>", max_age=MEMBERS_MAX_AGE)
    assert [(await layer.receive(late))["html"] for _ in range(2)] == ["<p>snapshot</p>", "<p>3</p>"]

    await relay.send(page.channel_name, "<p>local snapshot</p>", group=group)
    assert page.frames == ["<p>1</p>", "<p>2</p>", "<p>3</p>", "<p>local snapshot</p>"]
    assert await nothing_for(page.channel_name)


async def test_one_failing_page_does_not_keep_a_frame_from_the_others(group):
    class Broken(Page):
        async def relay_frame(self, html: str) -> None:
            raise ConnectionError("gone")

    layer, relay = get_channel_layer(), Relay()
    broken, fine = Broken(await layer.new_channel()), Page(await layer.new_channel())
    relay.join(group, broken)
    relay.join(group, fine)
    await relay.publish(group, "<p>hi</p>")
    assert fine.frames == ["<p>hi</p>"]


async def test_pages_of_this_process_get_their_frames_while_the_layer_is_unreachable(group, monkeypatch):
    layer, relay = get_channel_layer(), Relay()
    page = Page(await layer.new_channel())
    relay.join(group, page)

    async def unreachable(*args, **kwargs):
        raise ConnectionError("Redis is restarting")

    with monkeypatch.context() as patched:
        patched.setattr(layer, "group_members", unreachable)
        patched.setattr(layer, "send", unreachable)
        await relay.publish(group, "<p>1</p>")
        await relay.publish(group, "<p>2</p>", max_age=MEMBERS_MAX_AGE)
        await relay.send("specific.elsewhere!1", "<p>snapshot</p>", group=group)
    assert page.frames == ["<p>1</p>", "<p>2</p>"]


async def test_an_unreachable_layer_is_tried_at_most_once_a_second_and_logged_once(monkeypatch, caplog):
    from conversations.replies import relay as relay_module

    monkeypatch.setattr(relay_module, "layer_outage", relay_module.LayerOutage())
    layer = get_channel_layer()
    tries = []

    async def unreachable(group):
        tries.append(group)
        raise ConnectionError("Redis is restarting")

    monkeypatch.setattr(layer, "group_members", unreachable, raising=False)
    relay = Relay()
    for _ in range(50):  # a streaming reply's frames, one after the other
        await relay.publish("conversation-outage", "<p>frame</p>")
    assert len(tries) == 1
    assert sum("unreachable" in r.getMessage() for r in caplog.records) == 1
    relay_module.layer_outage._retry_at = 0  # a second later
    await relay.publish("conversation-outage", "<p>frame</p>")
    assert len(tries) == 2

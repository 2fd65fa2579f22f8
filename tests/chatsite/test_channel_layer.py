"""The embedded channel layer keeps upstream's semantics while skipping its per-message bookkeeping."""

from __future__ import annotations

import asyncio

from chatsite.channel_layers import InProcessChannelLayer


async def test_group_send_reaches_every_member_once_and_in_order():
    layer = InProcessChannelLayer()
    members = [await layer.new_channel() for _ in range(3)]
    outsider = await layer.new_channel()
    for channel in members:
        await layer.group_add("conversation-1", channel)
    for n in range(5):
        await layer.group_send("conversation-1", {"type": "chat.frame", "n": n})
    for channel in members:
        assert [(await layer.receive(channel))["n"] for _ in range(5)] == [0, 1, 2, 3, 4]
    await layer.group_send("conversation-2", {"type": "chat.frame"})
    try:
        await asyncio.wait_for(layer.receive(outsider), 0.05)
        raise AssertionError("a channel outside the group received a message")
    except TimeoutError:
        pass


async def test_a_full_member_does_not_block_the_others():
    layer = InProcessChannelLayer(capacity=1)
    slow, fast = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", slow)
    await layer.group_add("g", fast)
    await layer.group_send("g", {"type": "x", "n": 1})
    assert (await layer.receive(fast))["n"] == 1
    await layer.group_send("g", {"type": "x", "n": 2})  # slow is full: dropped for slow only
    assert (await layer.receive(fast))["n"] == 2
    assert (await layer.receive(slow))["n"] == 1


async def test_expired_messages_are_still_cleaned_up(monkeypatch):
    import time

    layer = InProcessChannelLayer(expiry=10)
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    await layer.send(channel, {"type": "x"})
    later = time.time() + 60
    monkeypatch.setattr(time, "time", lambda: later)  # a minute on: past the message's expiry
    layer._next_housekeeping = 0  # the next operation runs housekeeping
    await layer.group_send("other", {"type": "y"})
    assert channel not in layer.channels and channel not in layer.groups.get("g", {})


async def test_a_receiver_never_shares_a_mutable_value_with_the_sender():
    layer = InProcessChannelLayer()
    channel = await layer.new_channel()
    nested = {"type": "x", "items": [1, 2]}
    flat = {"type": "chat.frame", "html": "<p>hi</p>", "n": 1}
    await layer.send(channel, nested)
    await layer.send(channel, flat)
    nested["items"].append(3)
    flat["html"] = "changed"
    assert (await layer.receive(channel))["items"] == [1, 2]
    assert (await layer.receive(channel))["html"] == "<p>hi</p>"
    assert channel not in layer.channels  # an emptied channel holds no queue


class _PrivateRedis:
    """A redis-server of this test's own on a port the OS picked, that the test can stop and restart."""

    def __init__(self, tmp_path) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.dir = tmp_path
        self.process = None

    def start(self) -> None:
        import subprocess
        import time

        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import socket

        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


async def test_a_redis_outage_makes_receivers_wait_not_fail(tmp_path):
    import shutil

    import pytest

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs the services it needs)")
    from chatsite.channel_layers import RedisChannelLayer

    redis = _PrivateRedis(tmp_path)
    redis.start()
    try:
        layer = RedisChannelLayer(
            hosts=[{"address": f"redis://127.0.0.1:{redis.port}/0", "socket_timeout": 30}]
        )
        channel = await layer.new_channel()
        waiting = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(0.2)
        redis.stop()  # Redis goes away while a socket waits for its next frame
        await asyncio.sleep(2.5)
        assert not waiting.done()  # still waiting: no exception closed the socket
        redis.start()
        await asyncio.sleep(1.5)
        await layer.send(channel, {"type": "chat.frame", "text": "after the outage"})
        message = await asyncio.wait_for(waiting, 10)
        assert message["text"] == "after the outage"
        await layer.flush()
    finally:
        redis.stop()

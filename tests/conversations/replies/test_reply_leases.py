"""Leases, sweeps and draining: no reply outlives its worker unnoticed, and every call is billed once."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.utils import timezone

from conversations.models import Message
from conversations.replies import generation, intents, leases
from tests.conversations.replies.test_chat_streaming import deltas_in
from tests.helpers import eventually, make_conversation, make_message, make_user, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("offline_claude")]


@pytest.fixture(autouse=True)
def _not_draining():
    yield
    generation._draining = False  # a test that drains leaves the next one a working process


@sync_to_async
def orphan_in_new_conversation(*, expired: bool = True):
    """A conversation whose reply was being written by a worker that died (lease expired or not yet)."""
    user = make_user()
    conversation = make_conversation(owner=user)
    make_message(conversation, content="Tell me about tides")
    lease = timezone.now() + timedelta(seconds=-1 if expired else 60)
    orphan = make_message(
        conversation,
        role="assistant",
        content="Tides are caused by",
        status=Message.Status.STREAMING,
        model=conversation.model,
        input_tokens=12,
        attempt_id=uuid.uuid4(),
        worker="gone-host:4242:dead",
        lease_until=lease,
    )
    return user, conversation, orphan


@sync_to_async
def fetch(message: Message) -> Message:
    return Message.objects.get(pk=message.pk)


@sync_to_async
def ledger_rows(message: Message) -> list:
    from billing.models import UsageRecord

    return list(UsageRecord.objects.filter(message_id=message.pk))


def final_frame(message_id: int):
    marker = f'id="msg-{message_id}" class="message assistant status-'
    return lambda frame: marker in frame and f"{marker}streaming" not in frame


async def test_a_reply_whose_worker_died_is_ended_with_its_text_and_one_estimated_row():
    user, conversation, orphan = await orphan_in_new_conversation()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()

    assert await leases.end_expired() >= 1
    frames = await socket.receive_until(final_frame(orphan.pk))
    assert "status-interrupted" in frames[-1] and "Retry" in frames[-1]
    ended = await fetch(orphan)
    assert ended.status == Message.Status.INTERRUPTED and ended.content == "Tides are caused by"
    assert await leases.end_expired() == 0  # ended once, however often workers sweep
    [row] = await ledger_rows(orphan)
    assert row.estimated and row.input_tokens == 12 and row.output_tokens > 0
    assert row.attempt_id == orphan.attempt_id
    await socket.close()


async def test_a_live_reply_is_never_touched_by_a_sweep_or_recover_replies():
    user = await sync_to_async(make_user)()
    conversation = await sync_to_async(make_conversation)(owner=user)
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(message="Slowly [[offline tps=40 reply_tokens=2000]]")
    await socket.receive_until(lambda f: "status-streaming" in f)
    reply = await sync_to_async(lambda: conversation.messages.get(role="assistant"))()
    first_lease = reply.lease_until
    assert reply.worker == leases.WORKER_ID and first_lease > timezone.now()

    await sync_to_async(call_command)("recover_replies")
    assert await leases.end_expired() == 0
    # The worker renews the lease with its checkpoints while it writes.
    renewed = await eventually(lambda: _lease_later_than(reply, first_lease))
    assert renewed.status == Message.Status.STREAMING

    await socket.send(action="stop", message_id=reply.pk)
    await socket.receive_until(final_frame(reply.pk))
    await generation.generation_wait(reply.pk)
    await socket.close()
    stopped = await fetch(reply)
    assert stopped.status == Message.Status.STOPPED and stopped.lease_until is None
    assert len(await ledger_rows(reply)) == 1


@sync_to_async
def _lease_later_than(message: Message, when) -> Message | None:
    message = Message.objects.get(pk=message.pk)
    return message if message.lease_until and message.lease_until > when else None


async def test_send_after_a_worker_died_ends_its_orphaned_reply_and_answers():
    user, conversation, orphan = await orphan_in_new_conversation()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(message="Are you there? [[offline reply_tokens=8]]")
    await socket.receive_until(final_frame(orphan.pk))  # the orphan ends first, for every viewer
    newest = await eventually(
        sync_to_async(lambda: conversation.messages.filter(role="assistant").exclude(pk=orphan.pk).first())
    )
    await socket.receive_until(final_frame(newest.pk))
    await generation.generation_wait(newest.pk)
    await socket.close()
    assert (await fetch(orphan)).status == Message.Status.INTERRUPTED
    assert (await fetch(newest)).status == Message.Status.COMPLETE


async def test_a_refused_send_after_a_worker_died_still_shows_the_orphans_end_then_why():
    user, conversation, orphan = await orphan_in_new_conversation()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(message="   ")  # empty: refused, nothing stored
    frames = await socket.receive_until(lambda f: 'id="chat-errors"' in f and '<p class="error">' in f)
    assert any(final_frame(orphan.pk)(f) for f in frames[:-1])  # the orphan's end came first
    await socket.close()
    assert (await fetch(orphan)).status == Message.Status.INTERRUPTED
    assert await conversation.messages.acount() == 2  # the orphan and its question: nothing added


async def test_stop_on_an_orphaned_reply_ends_it_at_once():
    user, conversation, orphan = await orphan_in_new_conversation()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(action="stop", message_id=orphan.pk)
    frames = await socket.receive_until(final_frame(orphan.pk))
    await socket.close()
    assert "status-interrupted" in frames[-1]
    assert len(await ledger_rows(orphan)) == 1


async def test_a_reply_swept_while_its_worker_still_ran_keeps_the_pages_text_and_is_billed_once_by_its_own_count():
    # A worker that stalled past its lease (so another worker swept its reply) notices, stops the call,
    # and brings its end: the reply stays interrupted but keeps all the text the page was shown, and the
    # one ledger row of the call takes the worker's count in place of the sweep's estimate.
    user = await sync_to_async(make_user)()
    conversation = await sync_to_async(make_conversation)(owner=user)
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(message="Go on [[offline tps=40 reply_tokens=400]]")
    frames = await socket.receive_until(lambda f: "status-streaming" in f)
    reply = await sync_to_async(lambda: conversation.messages.get(role="assistant"))()
    await eventually(lambda: _content_saved(reply))

    @sync_to_async
    def steal_the_lease():  # what a stalled worker looks like to everyone else
        Message.objects.filter(pk=reply.pk).update(
            worker="stalled", lease_until=timezone.now() - timedelta(seconds=1)
        )

    await steal_the_lease()
    assert await leases.end_expired(conversation.pk) == 1
    swept = await fetch(reply)
    [estimate] = await ledger_rows(reply)
    await generation.generation_wait(reply.pk)
    after = await fetch(reply)
    assert after.status == Message.Status.INTERRUPTED and "stalled" in after.error
    # The page is shown the kept text in its final state, after the sweep's checkpoint; what is kept is
    # every word the page was sent, not the checkpoint's (at most a second older).
    frames += await socket.receive_until(lambda f: after.html in f and final_frame(reply.pk)(f), timeout=10)
    await socket.close()
    assert after.content == deltas_in(frames, reply.pk) and after.content.startswith(swept.content)
    [row] = await ledger_rows(reply)
    assert row.pk == estimate.pk and row.attempt_id == reply.attempt_id
    assert row.replaced_at is not None and row.replaced_cost == estimate.cost
    assert row.output_tokens >= estimate.output_tokens and row.cost >= estimate.cost
    assert after.output_tokens == row.output_tokens


@sync_to_async
def _content_saved(message: Message) -> bool:
    return bool(Message.objects.get(pk=message.pk).content)


@pytest.mark.django_db(transaction=True)
def test_the_database_refuses_a_second_ledger_row_for_one_call():
    from billing.services import usage_record
    from billing.usage import LedgerLabels, Usage

    labels = LedgerLabels(
        user_id=1, username="ada", conversation_id=1, conversation_title="t", model="claude-sonnet-5-5"
    )
    attempt = uuid.uuid4()
    first = usage_record(
        labels=labels,
        message_id=1,
        request_id="r",
        usage=Usage(input_tokens=5),
        estimated=False,
        attempt_id=attempt,
    )
    again = usage_record(
        labels=labels,
        message_id=1,
        request_id="r",
        usage=Usage(input_tokens=9),
        estimated=True,
        attempt_id=attempt,
    )
    assert again.pk == first.pk  # the second end of the same call writes nothing
    from billing.models import UsageRecord

    with pytest.raises(IntegrityError), transaction.atomic():
        UsageRecord.objects.create(user_id=1, username="ada", model="claude-sonnet-5-5", attempt_id=attempt)
    assert UsageRecord.objects.filter(attempt_id=attempt).count() == 1


async def test_draining_lets_short_replies_finish_and_ends_long_ones_as_interrupted():
    from conversations.replies.shutdown import drain

    user = await sync_to_async(make_user)()
    quick_chat = await sync_to_async(make_conversation)(owner=user)
    long_chat = await sync_to_async(make_conversation)(owner=user)
    quick, _, _ = await open_socket(user, quick_chat.pk)
    slow, _, _ = await open_socket(user, long_chat.pk)
    await quick.receive()
    await slow.receive()
    await slow.send(message="A saga [[offline tps=30 reply_tokens=3000]]")
    await slow.receive_until(lambda f: "beforeend" in f)  # it has started writing
    await quick.send(message="Short one [[offline tps=100 reply_tokens=20]]")
    await quick.receive_until(lambda f: "status-streaming" in f)

    from django.test import override_settings

    with override_settings(CHAT_SHUTDOWN_GRACE_SECONDS=1.5):
        await drain()

    # The sockets were told at once (they stay open while replies finish; the server's stop drops them).
    frames = await slow.receive_until(lambda f: "restarting" in f)
    assert "reconnecting" in frames[-1]
    # A page with nothing being written here was let go at once, to reconnect elsewhere.
    idle_chat = await sync_to_async(make_conversation)(owner=user)
    idle, _, _ = await open_socket(user, idle_chat.pk)
    await idle.receive()
    from channels.layers import get_channel_layer

    await get_channel_layer().group_send(leases.WORKER_GROUP, {"type": "server.restarting"})
    assert "restarting" in await idle.receive()
    closed = await idle.communicator.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 1012}

    short = await sync_to_async(lambda: quick_chat.messages.get(role="assistant"))()
    long = await sync_to_async(lambda: long_chat.messages.get(role="assistant"))()
    assert short.status == Message.Status.COMPLETE
    assert long.status == Message.Status.INTERRUPTED and long.content  # its text so far is kept
    for reply in (short, long):
        assert len(await ledger_rows(reply)) == 1
    from billing.models import SpendReservation

    open_holds = await sync_to_async(SpendReservation.objects.filter(settled_at__isnull=True).count)()
    assert open_holds == 0

    # While draining, nothing new starts, and what the person typed is not lost.
    again, connected, _ = await open_socket(user, quick_chat.pk)
    assert connected
    await again.receive()
    await again.send(message="One more")
    refusal = await again.receive()
    assert "restarting" in refusal and "kept" in refusal
    assert await sync_to_async(quick_chat.messages.filter(content="One more").exists)() is False
    await again.close()


@sync_to_async
def _checkpoint_many_replies():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from billing.usage import Usage
    from conversations.replies import store

    user = make_user()
    conversation = make_conversation(owner=user)
    make_message(conversation, content="Tell me about rivers")

    def streaming(worker: str):
        return make_message(
            conversation, role="assistant", content="", status=Message.Status.STREAMING, worker=worker
        )

    ours = [streaming(leases.WORKER_ID) for _ in range(30)]
    finished = make_message(conversation, role="assistant", content="Done.", status=Message.Status.COMPLETE)
    elsewhere = streaming("another-worker")
    batch = {
        m.pk: (
            f"Partial text {i} <b>&</b>",
            None if i % 2 else Usage(input_tokens=10 + i, output_tokens=i),
            f"Thinking {i}",
        )
        for i, m in enumerate(ours)
    }
    batch[finished.pk] = ("Overwritten?", Usage(input_tokens=1), "")
    with CaptureQueriesContext(connection) as queries:
        store.replies_checkpoint(batch=batch, worker=leases.WORKER_ID)
    # A statement run for many rows at once is captured once, as "<n> times: UPDATE ...".
    writes = [q["sql"] for q in queries.captured_queries if "UPDATE" in q["sql"].upper()]
    return ours, finished, elsewhere, writes


async def test_checkpoint_saves_every_reply_of_a_batch_in_a_fixed_number_of_statements():
    ours, finished, elsewhere, writes = await _checkpoint_many_replies()
    # 31 replies in the batch: one statement for their texts (the leases are the heartbeat's).
    assert len(writes) == 1, writes
    for i, message in enumerate(ours):
        saved = await fetch(message)
        assert saved.content == f"Partial text {i} <b>&</b>" and saved.thinking == f"Thinking {i}"
        assert saved.status == Message.Status.STREAMING
        if i % 2 == 0:
            assert (saved.input_tokens, saved.output_tokens) == (10 + i, i)
        else:
            assert saved.input_tokens == 0
    # A reply that finished meanwhile keeps its end; another worker's lease is its own business.
    assert (await fetch(finished)).content == "Done."
    assert (await fetch(elsewhere)).lease_until is None


async def test_a_worker_whose_database_thread_is_busy_past_the_lease_keeps_its_reply(settings):
    # A burst of Sends (or a lock) holds this worker's database thread longer than a lease: its
    # replies' leases are renewed apart from that queue, so another worker's sweep leaves them alone,
    # and the reply ends with its whole text and its real usage.
    import asyncio
    import time

    from channels.db import database_sync_to_async

    settings.CHAT_LEASE_SECONDS = 1.5
    settings.CHAT_CHECKPOINT_SECONDS = 0.2
    socket, conversation, reply = await streaming_reply("Slowly [[offline tps=100 reply_tokens=400]]")
    busy = asyncio.ensure_future(database_sync_to_async(time.sleep)(4.5))  # three leases long
    swept = []
    for _ in range(8):  # another worker sweeping, from its own thread and connection
        await asyncio.sleep(0.5)
        swept += await asyncio.to_thread(_sweep_elsewhere)
    await busy
    await generation.generation_wait(reply.pk)
    await socket.close()
    assert swept == []
    done = await fetch(reply)
    assert done.status == Message.Status.COMPLETE and done.output_tokens >= 400
    [row] = await ledger_rows(reply)
    assert not row.estimated and row.output_tokens == done.output_tokens
    assert leases.heartbeat.held() == []


async def streaming_reply(text: str):
    """A new person's conversation, a socket on it, and Claude's reply to `text` once it streams."""
    user = await sync_to_async(make_user)()
    conversation = await sync_to_async(make_conversation)(owner=user)
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(message=text)
    await socket.receive_until(lambda f: "status-streaming" in f)
    reply = await sync_to_async(lambda: conversation.messages.get(role="assistant"))()
    return socket, conversation, reply


def _sweep_elsewhere() -> list[int]:
    from django.db import connection

    from conversations.replies import store

    try:
        return [m.pk for m in store.replies_end_expired()]
    finally:
        connection.close()


async def test_a_reply_swept_while_its_worker_stalled_stops_its_call_when_the_worker_notices(settings):
    settings.CHAT_CHECKPOINT_SECONDS = 0.2
    socket, conversation, reply = await streaming_reply(
        "Go on [[offline tps=20 reply_tokens=2000]]"
    )  # 100 s if nothing stops it

    @sync_to_async
    def swept_by_another_worker():
        Message.objects.filter(pk=reply.pk).update(
            worker="stalled", lease_until=timezone.now() - timedelta(seconds=1)
        )

    await swept_by_another_worker()
    assert await leases.end_expired(conversation.pk) == 1
    await generation.generation_wait(reply.pk, timeout=5)  # the heartbeat noticed and stopped the call
    await socket.close()
    after = await fetch(reply)
    assert after.status == Message.Status.INTERRUPTED
    assert len(await ledger_rows(reply)) == 1


async def test_the_end_of_a_reply_is_kept_and_saved_once_the_database_takes_it_again(monkeypatch):
    from django.db import OperationalError

    from conversations.replies import store

    real = store.reply_finish
    failures = []

    def flaky(**kwargs):
        if len(failures) < 3:
            failures.append(1)
            raise OperationalError("could not connect to server")
        return real(**kwargs)

    monkeypatch.setattr(store, "reply_finish", flaky)
    socket, conversation, reply = await streaming_reply("Tell me about rivers")
    frames = await socket.receive_until(final_frame(reply.pk), timeout=20)
    await generation.generation_wait(reply.pk)
    await socket.close()
    assert len(failures) == 3
    # Meanwhile the page was told how the reply ended and that it is being saved, before its final frame.
    saving = [i for i, f in enumerate(frames) if "Claude finished this reply. Saving it" in f]
    assert saving and saving[0] < len(frames) - 1 and "Writing…" not in "".join(frames[saving[0] :])
    done = await fetch(reply)
    assert done.status == Message.Status.COMPLETE and done.content and done.output_tokens > 0
    assert len(await ledger_rows(reply)) == 1


async def test_a_channel_layer_that_fails_at_the_end_of_a_reply_does_not_keep_it_streaming(monkeypatch):
    from channels.layers import get_channel_layer

    layer = get_channel_layer()

    async def unreachable(*args, **kwargs):
        raise ConnectionError("Redis is restarting")

    monkeypatch.setattr(layer, "group_discard", unreachable)
    socket, conversation, reply = await streaming_reply("Tell me about lakes")
    await generation.generation_wait(reply.pk)
    monkeypatch.undo()
    await socket.close()
    done = await fetch(reply)
    assert done.status == Message.Status.COMPLETE and done.lease_until is None
    assert len(await ledger_rows(reply)) == 1


async def test_the_drain_waits_for_a_send_accepted_just_before_it_began():
    # A Send passed the draining check and is storing its message (here: behind a busy database
    # thread) when SIGTERM's drain begins: its reply must be written too, not left streaming.
    import asyncio
    import time

    from channels.db import database_sync_to_async

    user = await sync_to_async(make_user)()
    conversation = await sync_to_async(make_conversation)(owner=user)
    busy = asyncio.ensure_future(database_sync_to_async(time.sleep)(0.5))
    await asyncio.sleep(0.05)
    send = asyncio.ensure_future(intents.send(conversation=conversation, text="Tell me about seas"))
    await asyncio.sleep(0.05)  # the Send is past the check, its database work queued
    await generation.generations_drain(5)
    await busy
    reply = await send
    done = await fetch(reply)
    assert done.status == Message.Status.COMPLETE and done.content
    assert len(await ledger_rows(reply)) == 1


async def test_a_channel_layer_outage_is_logged_once_and_replies_still_end(monkeypatch):
    import asyncio

    from conversations.replies import relay

    warnings: list[str] = []
    real_warning = relay.logger.warning
    monkeypatch.setattr(
        relay.logger, "warning", lambda msg, *a, **k: warnings.append(msg) or real_warning(msg, *a, **k)
    )
    relay.layer_outage.down = False

    from channels.layers import get_channel_layer

    from conversations.control import control_group

    layer = get_channel_layer()
    real_receive = layer.receive
    down = [True]
    calls = []

    async def receive(channel):
        if down[0]:
            calls.append(channel)
            await asyncio.sleep(0.01)
            raise ConnectionError("Redis is restarting")
        return await real_receive(channel)

    user = await sync_to_async(make_user)()
    replies = []
    for topic in ("rivers", "lakes"):
        conversation = await sync_to_async(make_conversation)(owner=user)
        socket, _, _ = await open_socket(user, conversation.pk)
        await socket.receive()
        await socket.send(message=f"Tell me about {topic} [[offline tps=50 reply_tokens=250]]")
        await socket.receive_until(lambda f: "status-streaming" in f)
        replies.append(
            (
                socket,
                conversation,
                await sync_to_async(lambda c=conversation: c.messages.get(role="assistant"))(),
            )
        )
    monkeypatch.setattr(layer, "receive", receive)
    for _socket, conversation, _reply in replies:  # each listener takes an event, then finds the layer gone
        await layer.group_send(control_group(conversation.pk), {"type": "control.nothing", "message_id": -1})
    await asyncio.sleep(1.5)
    down[0] = False
    for socket, _conversation, reply in replies:
        await generation.generation_wait(reply.pk)
        await socket.close()
        assert (await fetch(reply)).status == Message.Status.COMPLETE
    assert len(calls) >= 4  # both replies' listeners met the outage, more than once each
    assert len([w for w in warnings if "channel layer is unreachable" in w]) == 1


@pytest.mark.django_db(transaction=True)
def test_the_reported_usage_of_a_swept_call_replaces_its_estimate_once_and_moves_the_rollups():
    from billing.models import UsageDailyUser, UsageRecord
    from billing.usage import Usage
    from conversations.replies import store

    user = make_user()
    conversation = make_conversation(owner=user)
    make_message(conversation, content="Tell me about tides")
    attempt = uuid.uuid4()
    reply = make_message(
        conversation, role="assistant", content="Tides are", status=Message.Status.STREAMING,
        model=conversation.model, input_tokens=40, output_tokens=3, attempt_id=attempt,
        worker="slow-host:1:abc", lease_until=timezone.now() - timedelta(seconds=1),
    )  # fmt: skip
    [swept] = store.replies_end_expired()
    estimate = UsageRecord.objects.get(attempt_id=attempt)
    assert estimate.estimated and swept.error == store.REPLY_SWEPT

    labels = store.ledger_labels_for(conversation, model=conversation.model)
    reported = Usage(input_tokens=40, output_tokens=250, cache_read_tokens=1000)
    end = store.ReplyEnd(
        content="Tides are caused by the Moon.", status=Message.Status.COMPLETE, usage=reported,
        usage_estimated=False, request_id="req_real",
    )  # fmt: skip
    kept = store.reply_finish(message_id=reply.pk, attempt_id=attempt, end=end, labels=labels)
    assert kept.status == Message.Status.INTERRUPTED and kept.content == "Tides are caused by the Moon."
    row = UsageRecord.objects.get(attempt_id=attempt)
    assert not row.estimated and row.usage() == reported and row.request_id == "req_real"
    assert row.cost == row.rates.cost(
        input=40, output=250, cache_write_5m=0, cache_write_1h=0, cache_read=1000
    )
    assert row.replaced_cost == estimate.cost
    [day] = UsageDailyUser.objects.filter(user_id=user.pk)
    assert (day.calls, day.estimated_calls, day.cost, day.output_tokens) == (1, 0, row.cost, 250)

    # A second late end (or a retried save) changes nothing: the row is the call's own count now.
    again = store.ReplyEnd(
        content="x", status=Message.Status.COMPLETE, usage=Usage(output_tokens=9), usage_estimated=False
    )
    assert store.reply_finish(message_id=reply.pk, attempt_id=attempt, end=again, labels=labels) is None
    assert UsageRecord.objects.get(attempt_id=attempt).output_tokens == 250
    assert Message.objects.get(pk=reply.pk).content == "Tides are caused by the Moon."
    # And the rollups still equal the ledger.
    call_command("rebuild_usage_rollups")
    [day] = UsageDailyUser.objects.filter(user_id=user.pk)
    assert (day.calls, day.estimated_calls, day.cost, day.output_tokens) == (1, 0, row.cost, 250)


async def test_the_drain_waits_for_titles_being_written_too_and_cancels_what_outlives_the_grace():
    import asyncio

    from conversations.replies import tasks

    written, cut = [], []

    async def title(seconds: float, into: list) -> None:
        try:
            await asyncio.sleep(seconds)
            into.append("done")
        except asyncio.CancelledError:
            cut.append("cancelled")
            raise

    tasks.start("title", -1, title(0.3, written))  # a short title call: finished within the grace
    tasks.start("title", -2, title(60, written))  # one that outlives it: cancelled at the deadline
    await generation.generations_drain(1)
    assert written == ["done"] and cut == ["cancelled"]
    assert tasks.running(generation.DRAINED) == []

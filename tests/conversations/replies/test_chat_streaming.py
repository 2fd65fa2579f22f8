"""The websocket flow of one reply, end to end against the in-process offline Claude."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from asgiref.sync import sync_to_async

from conversations.models import Message
from conversations.replies.generation import generation_wait
from tests.helpers import eventually, make_conversation, make_user, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("offline_claude")]


def final_frame_for(message_id: int):
    marker = f'id="msg-{message_id}" class="message assistant status-'

    def is_final(frame: str) -> bool:
        return marker in frame and f"{marker}streaming" not in frame

    return is_final


def deltas_in(frames: list[str], message_id: int) -> str:
    """The text appended by delta frames, unescaped."""
    import html

    pattern = re.compile(rf'<div id="msg-{message_id}-body" hx-swap-oob="beforeend">(.*?)</div>', re.S)
    return "".join(html.unescape(m) for f in frames for m in pattern.findall(f))


@sync_to_async
def setup_chat(**conversation_fields):
    user = make_user()
    return user, make_conversation(owner=user, **conversation_fields)


@sync_to_async
def latest_assistant(conversation) -> Message:
    return conversation.messages.filter(role="assistant").order_by("-id").first()


@sync_to_async
def reload(message: Message) -> Message:
    message.refresh_from_db()
    return message


@sync_to_async
def _content_longer_than(message: Message, chars: int) -> Message | None:
    """The message as saved, if its saved text is longer than `chars`."""
    message = Message.objects.get(pk=message.pk)
    return message if len(message.content) > chars else None


@sync_to_async
def ledger_rows_for(message: Message) -> list:
    from billing.models import UsageRecord

    return list(UsageRecord.objects.filter(message_id=message.pk))


async def send_and_finish(socket, conversation, text: str, timeout: float = 20) -> tuple[Message, list[str]]:
    await socket.send(message=text, conversation=conversation.pk)
    await socket.receive_until(lambda f: "msg-" in f and "status-streaming" in f)
    assistant = await latest_assistant(conversation)
    frames = await socket.receive_until(final_frame_for(assistant.pk), timeout=timeout)
    await generation_wait(assistant.pk)
    return await reload(assistant), frames


async def test_send_streams_deltas_then_final_rendered_reply_with_usage():
    user, conversation = await setup_chat()
    socket, connected, _ = await open_socket(user, conversation.pk)
    assert connected
    await socket.receive()  # the state sync every socket gets on connect
    assistant, frames = await send_and_finish(socket, conversation, "Compare **tea** and coffee, please")
    await socket.close()

    assert assistant.status == Message.Status.COMPLETE
    assert assistant.stop_reason == "end_turn"
    assert "tea" in assistant.content.lower()
    assert deltas_in(frames, assistant.pk) == assistant.content  # the live text is exactly the stored text
    assert "<table>" in assistant.html  # a comparison renders as a markdown table, server-side
    assert assistant.output_tokens > 0 and assistant.prompt_tokens > 0
    [row] = await ledger_rows_for(assistant)
    assert row.output_tokens == assistant.output_tokens
    assert row.input_tokens == assistant.input_tokens
    assert not row.estimated


async def test_the_users_message_is_stored_before_claude_is_called_and_survives_a_failure():
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    text = "Keep this safe [[offline fault=500]]"
    assistant, _ = await send_and_finish(socket, conversation, text)
    await socket.close()
    assert assistant.status == Message.Status.ERROR
    assert "retry" in assistant.error.lower()
    user_turn = await sync_to_async(lambda: conversation.messages.get(role="user"))()
    assert user_turn.content == text


async def test_stop_closes_upstream_stream_and_keeps_partial_text(offline_claude):
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(
        message="Tell me a long story [[offline tps=40 reply_tokens=2000]]", conversation=conversation.pk
    )
    await socket.receive_until(lambda f: "status-streaming" in f)
    assistant = await latest_assistant(conversation)
    await socket.receive_until(lambda f: f'id="msg-{assistant.pk}-body" hx-swap-oob="beforeend"' in f)
    await socket.send(action="stop", message_id=assistant.pk)
    frames = await socket.receive_until(final_frame_for(assistant.pk))
    await socket.close()
    assistant = await reload(assistant)

    assert assistant.status == Message.Status.STOPPED
    assert assistant.content  # partial text kept
    assert "status-stopped" in frames[-1]
    assert assistant.output_tokens < 2000  # billing stopped with the stream
    [row] = await ledger_rows_for(assistant)
    assert row.estimated  # no final usage came: input from message_start, output estimated
    assert row.prompt_tokens > 0
    # The offline Claude saw its client close the stream (so the real API would stop billing).
    await eventually(lambda: offline_claude.server.stats.get("client_closed", 0) >= 1)


async def test_closing_the_socket_does_not_stop_the_reply_and_a_reconnect_catches_up():
    user, conversation = await setup_chat()
    first, _, _ = await open_socket(user, conversation.pk)
    await first.receive()
    await first.send(
        message="Explain websockets [[offline tps=150 reply_tokens=300]]", conversation=conversation.pk
    )
    await first.receive_until(lambda f: "status-streaming" in f)
    assistant = await latest_assistant(conversation)
    await first.receive_until(lambda f: f"msg-{assistant.pk}-body" in f)
    seen_by_first = deltas_in(first.frames, assistant.pk)
    await first.close()  # the tab closes mid-reply

    # The reply goes on with no socket open: its saved text grows past what the closed tab saw.
    await eventually(lambda: _content_longer_than(assistant, len(seen_by_first)))
    second, connected, _ = await open_socket(user, conversation.pk)
    assert connected
    frames = await second.receive_until(final_frame_for(assistant.pk), timeout=20)
    await second.close()
    await generation_wait(assistant.pk)
    assistant = await reload(assistant)
    assert assistant.status == Message.Status.COMPLETE

    # The reconnected socket got the text so far (one snapshot) and then only the rest, live.
    snapshot = re.search(
        rf'<div id="msg-{assistant.pk}-body" data-catch-up hx-swap-oob="innerHTML">(.*?)</div>',
        "".join(frames),
        re.S,
    )
    assert snapshot, "no catch-up snapshot after reconnect"
    import html

    caught_up = html.unescape(snapshot.group(1))
    after = frames[
        [i for i, f in enumerate(frames) if f'id="msg-{assistant.pk}-body" data-catch-up' in f][-1] + 1 :
    ]
    assert caught_up and caught_up + deltas_in(after, assistant.pk) == assistant.content


async def test_two_sockets_on_one_conversation_see_the_same_reply():
    user, conversation = await setup_chat()
    a, _, _ = await open_socket(user, conversation.pk)
    b, _, _ = await open_socket(user, conversation.pk)
    await a.receive()
    await b.receive()
    assistant, frames_a = await send_and_finish(a, conversation, "Hello from tab A")
    frames_b = await b.receive_until(final_frame_for(assistant.pk))
    await a.close()
    await b.close()
    assert deltas_in(frames_a, assistant.pk) == deltas_in(frames_b, assistant.pk) == assistant.content
    assert any("Hello from tab A" in f for f in frames_b)  # the user's turn shows in the other tab too
    # Only the sender's composer is cleared (with any earlier error message).
    assert any('id="composer-input"' in f and 'id="chat-errors"' in f for f in a.frames)
    assert not any('id="composer-input"' in f for f in b.frames)


async def test_another_users_conversation_and_messages_are_refused():
    owner, conversation = await setup_chat()
    intruder = await sync_to_async(make_user)()
    _, connected, code = await open_socket(intruder, conversation.pk)
    assert not connected and code == 4404

    own = await sync_to_async(make_conversation)(owner=intruder)
    socket, connected, _ = await open_socket(intruder, own.pk)
    assert connected
    await socket.receive()
    victim_message = await sync_to_async(
        lambda: conversation.messages.create(role="assistant", content="x", status="error")
    )()
    for action in ("stop", "retry", "continue"):
        await socket.send(action=action, message_id=victim_message.pk)
        frame = await socket.receive()
        assert "No such message" in frame
    await socket.send(message="hi", conversation=conversation.pk)  # someone else's conversation id
    assert "another conversation" in await socket.receive()
    await socket.close()
    assert await sync_to_async(conversation.messages.count)() == 1


async def test_anonymous_socket_and_foreign_origin_are_refused():
    from channels.testing import WebsocketCommunicator

    from chatsite.asgi import application

    user, conversation = await setup_chat()
    anonymous = WebsocketCommunicator(
        application,
        f"/ws/chat/{conversation.pk}/",
        headers=[(b"origin", b"http://localhost"), (b"host", b"localhost")],
    )
    connected, code = await anonymous.connect()
    assert not connected and code == 4401
    _, connected, _ = await open_socket(user, conversation.pk, origin="http://evil.example")
    assert not connected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "expected an object"),
        ('{"message": ""}', "empty"),
        ('{"message": "   \\n "}', "empty"),
        ('{"message": 42}', "must be text"),
        ('{"action": "dance"}', "Unknown action"),
        ('{"action": "stop", "message_id": "abc"}', "No such message"),
        # Type-confused frames get the same clear error as any bad frame (not a 1011 and a traceback).
        ('{"action": ["send"]}', "Unknown action"),
        ('{"action": {"a": 1}}', "Unknown action"),
        ('{"action": "stop", "message_id": 1e309}', "No such message"),
        ('{"action": "stop", "message_id": 1.0}', "No such message"),
        ('{"action": "stop", "message_id": true}', "No such message"),
        ('{"action": "retry", "message_id": 123456789012345678901234567890}', "No such message"),
        ('{"message": "\\ud800"}', "not valid text"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ],
    ids=lambda value: value[:40] if isinstance(value, str) else value,
)
async def test_bad_frames_get_a_clear_error_and_change_nothing(raw, expected):
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.communicator.send_to(text_data=raw)
    frame = await socket.receive()
    assert 'id="chat-errors"' in frame and expected in frame
    # The socket stays open and usable.
    await socket.send(message="still here [[offline reply_tokens=5]]")
    await socket.receive_until(lambda f: "still here" in f)
    await socket.close()


async def test_oversized_message_is_refused_and_nothing_is_written(settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 100
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(message="x" * 101)
    assert "too long" in await socket.receive()
    await socket.communicator.send_to(bytes_data=b"\x00\x01")
    assert "could not be read" in await socket.receive()
    await socket.close()
    assert await sync_to_async(conversation.messages.count)() == 0


async def test_a_second_message_while_a_reply_streams_is_refused_not_lost():
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(message="first [[offline tps=50 reply_tokens=100]]")
    await socket.receive_until(lambda f: "status-streaming" in f)
    await socket.send(message="second")
    frame = await socket.receive_until(lambda f: '<p class="error">' in f)
    assert "Wait for the current reply" in frame[-1]
    assistant = await latest_assistant(conversation)
    await socket.send(action="stop", message_id=assistant.pk)
    await socket.receive_until(final_frame_for(assistant.pk))
    await socket.close()
    assert await sync_to_async(conversation.messages.filter(role="user").count)() == 1


async def test_a_send_that_waits_for_a_busy_database_says_so_then_is_stored_and_answered(
    monkeypatch, settings
):
    # A burst of Sends queues on the worker's database thread; one that waits past the notice delay tells
    # its page it is kept, and is then stored and answered in order (its text stays in the box till then).
    from conversations.replies import store

    settings.CHAT_BUSY_NOTICE_SECONDS = 0.2
    real = store.reply_start

    def slow(**kwargs):
        import time

        time.sleep(1)  # as if many Sends were ahead of this one on the database thread
        return real(**kwargs)

    monkeypatch.setattr(store, "reply_start", slow)
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(message="Hello there")
    [busy] = await socket.receive_until(lambda f: "busy" in f)
    assert "Busy: your message is kept, sending in a few seconds" in busy
    assert 'id="composer-input"' not in busy  # the box is not emptied while the message is unsent
    frames = await socket.receive_until(lambda f: 'id="chat-errors"' in f)  # cleared once it is stored
    assert "Busy:" not in frames[-1] and any("Hello there" in f for f in frames)
    assistant = await latest_assistant(conversation)
    await socket.receive_until(final_frame_for(assistant.pk))
    await generation_wait(assistant.pk)
    await socket.close()
    assert (await reload(assistant)).status == Message.Status.COMPLETE


# The default model thinks first (about a dozen thinking deltas, streamed as a summary): each fault
# below comes after it has begun to write text.
@pytest.mark.parametrize(
    "magic, status, error_words",
    [
        ("fault=error fault_after=30", Message.Status.ERROR, "overloaded"),
        ("fault=drop fault_after=30", Message.Status.ERROR, "connection"),
        ("fault=end fault_after=30", Message.Status.ERROR, "ended early"),
        ("fault=stall fault_after=30", Message.Status.ERROR, "stopped responding"),
        ("fault=malformed fault_after=30", Message.Status.ERROR, "connection"),
    ],
)
# Both of the SDK's transports map a dropped or stalled stream to the same visible state.
@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
async def test_mid_stream_failures_end_in_a_visible_state_with_partial_text_kept(
    settings, caplog, magic, status, error_words, http_client
):
    settings.CHAT_READ_TIMEOUT_SECONDS = 1
    settings.CHAT_HTTP_CLIENT = http_client
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    assistant, frames = await send_and_finish(
        socket, conversation, f"Tell me about rivers [[offline {magic} tokens_per_delta=2]]"
    )
    await socket.close()
    assert assistant.status == status
    assert error_words in assistant.error.lower()
    assert assistant.content and deltas_in(frames, assistant.pk) == assistant.content
    assert "Retry" in frames[-1] and "status-error" in frames[-1]
    assert frames[-1].count("The text so far is kept.") == 1
    [row] = await ledger_rows_for(assistant)
    assert row.prompt_tokens > 0  # the prompt was billed even though the reply failed
    assert row.estimated  # no final usage arrived: the output is estimated from the text
    # Failures of Claude or the network are expected events, logged without an ERROR traceback.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_malformed_first_event_bills_an_estimated_row_and_claims_no_text_was_kept(caplog):
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    assistant, frames = await send_and_finish(socket, conversation, "Hello [[offline fault=malformed_start]]")
    await socket.close()
    assert assistant.status == Message.Status.ERROR
    assert (
        assistant.error == "Claude's reply could not be read. Please retry."
    )  # nothing was "lost mid-reply"
    assert assistant.content == ""
    assert "Retry" in frames[-1] and "so far is kept" not in frames[-1]
    [row] = await ledger_rows_for(assistant)
    assert row.estimated  # the API answered 200, so the call may be billed: never an exact-looking 0/0
    # ...and the prompt it took is on the row, at its counted size.
    assert row.input_tokens > 0 and row.output_tokens == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_rate_limit_and_overload_before_the_first_token_are_retried_by_the_sdk():
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    assistant, _ = await send_and_finish(
        socket, conversation, "Hi [[offline fault=429 fault_times=1 retry_after_ms=50]]"
    )
    assert assistant.status == Message.Status.COMPLETE
    assistant2, _ = await send_and_finish(
        socket, conversation, "Again [[offline fault=529 fault_times=2 retry_after_ms=50]]"
    )
    assert assistant2.status == Message.Status.COMPLETE
    await socket.close()


async def test_an_invalid_key_tells_people_the_service_is_not_configured_and_logs_why(caplog):
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    assistant, frames = await send_and_finish(socket, conversation, "Hello [[offline fault=401]]")
    await socket.close()
    assert assistant.status == Message.Status.ERROR
    assert "not configured" in assistant.error
    assert "not configured" in frames[-1]
    assert any("ANTHROPIC_API_KEY" in r.getMessage() for r in caplog.records)


async def test_continue_extends_the_same_reply_without_showing_the_instruction(settings):
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    settings.CHAT_MAX_TOKENS = 90  # room for the default model's thinking and a little text
    assistant, frames = await send_and_finish(
        socket, conversation, "Write an essay [[offline reply_tokens=400]]"
    )
    assert assistant.status == Message.Status.CUT_OFF and assistant.content.strip()
    assert "Continue" in frames[-1]
    first_part = assistant.content
    await socket.send(action="continue", message_id=assistant.pk)
    frames = await socket.receive_until(final_frame_for(assistant.pk))
    await generation_wait(assistant.pk)
    await socket.close()
    assistant = await reload(assistant)
    assert assistant.content.startswith(first_part) and len(assistant.content) > len(first_part)
    assert deltas_in(frames, assistant.pk) == assistant.content[len(first_part) :]  # appended live, in place
    assert 'class="message user' not in "".join(frames)  # no new user turn appears
    rows = await sync_to_async(
        lambda: list(conversation.messages.in_order().values_list("role", "content"))
    )()
    assert [role for role, _ in rows] == ["user", "assistant"]  # no instruction shown as the user's turn
    assert len(await ledger_rows_for(assistant)) == 2  # one receipt listing both calls


async def test_only_the_latest_reply_can_be_continued(settings):
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    settings.CHAT_MAX_TOKENS = 90
    cut, _ = await send_and_finish(socket, conversation, "Write an essay [[offline reply_tokens=400]]")
    settings.CHAT_MAX_TOKENS = 0
    await send_and_finish(socket, conversation, "Something else")
    await socket.send(action="continue", message_id=cut.pk)
    error = await socket.receive()
    await socket.close()
    assert "Only the latest reply can be continued." in error
    assert (await reload(cut)).status == Message.Status.CUT_OFF


async def test_retry_regenerates_a_failed_reply_in_place():
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    assistant, _ = await send_and_finish(
        socket, conversation, "Hello [[offline fault=error fault_after=2 fault_times=1]]"
    )
    assert assistant.status == Message.Status.ERROR
    await socket.send(action="retry", message_id=assistant.pk)
    await socket.receive_until(final_frame_for(assistant.pk))
    await generation_wait(assistant.pk)
    await socket.close()
    assistant = await reload(assistant)
    assert assistant.status == Message.Status.COMPLETE
    assert len(await ledger_rows_for(assistant)) == 2  # both calls billed, one row each


async def test_db_writes_and_frames_per_reply_are_bounded_by_time_not_tokens(monkeypatch):
    from conversations.replies import store

    checkpoints = []
    original = store.replies_checkpoint
    monkeypatch.setattr(store, "replies_checkpoint", lambda **kw: (checkpoints.append(1), original(**kw)))
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assistant, frames = await send_and_finish(
        socket, conversation, "Long one [[offline tps=2000 tokens_per_delta=1 reply_tokens=2000]]"
    )
    elapsed = loop.time() - started
    await socket.close()
    assert assistant.output_tokens >= 2000
    # Checkpoints at most every 0.2 s (the test setting), and frames at most every 20 ms.
    assert len(checkpoints) <= elapsed / 0.2 + 2
    delta_frames = [f for f in frames if f'msg-{assistant.pk}-body" hx-swap-oob="beforeend"' in f]
    assert len(delta_frames) <= elapsed / 0.02 + 5
    assert len(delta_frames) < 2000 / 4


async def test_deleting_a_conversation_mid_reply_stops_it_and_keeps_its_spend(offline_claude):
    from conversations.services import conversation_delete

    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(message="A long one [[offline tps=40 reply_tokens=2000]]")
    await socket.receive_until(lambda f: "status-streaming" in f)
    assistant = await latest_assistant(conversation)
    await socket.receive_until(lambda f: f"msg-{assistant.pk}-body" in f)
    conversation_id = conversation.pk
    await sync_to_async(conversation_delete)(conversation=conversation)
    await generation_wait(assistant.pk)
    await socket.close()
    [row] = await ledger_rows_for(assistant)
    assert row.conversation_id == conversation_id and row.prompt_tokens > 0
    assert row.output_tokens < 2000


async def test_partial_text_is_checkpointed_while_streaming_so_a_reload_shows_it():
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(message="Slowly please [[offline tps=40 reply_tokens=400]]")
    await socket.receive_until(lambda f: "status-streaming" in f)
    assistant = await latest_assistant(conversation)
    # Within a few checkpoint intervals (0.2 s in tests) the text so far and the billed prompt counts are saved.
    saved = await eventually(lambda: _content_longer_than(assistant, 0))
    assert saved.status == Message.Status.STREAMING
    assert saved.prompt_tokens > 0
    await socket.send(action="stop", message_id=assistant.pk)
    await socket.receive_until(final_frame_for(assistant.pk))
    await generation_wait(assistant.pk)
    await socket.close()


async def test_a_reply_whose_final_save_fails_still_ends_in_a_visible_state_with_its_text(
    monkeypatch, settings
):
    from conversations.replies import store

    def broken_finish(**kwargs):
        raise RuntimeError("database went away")

    settings.CHAT_END_SAVE_SECONDS = 1  # kept and tried again for a second, then the last resort

    monkeypatch.setattr(store, "reply_finish", broken_finish)
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(message="Hello [[offline reply_tokens=30]]")
    await socket.receive_until(lambda f: "status-streaming" in f)
    assistant = await latest_assistant(conversation)
    await generation_wait(assistant.pk)
    await socket.close()
    assistant = await reload(assistant)
    assert assistant.status == Message.Status.ERROR
    assert assistant.content  # the text received is kept


async def _group_members(group: str) -> set[str]:
    """Channels in `group`, read from whichever channel layer the test run uses."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if hasattr(layer, "groups"):  # the embedded in-process layer
        return set(layer.groups.get(group, {}))
    async with layer.connection(layer.consistent_hash(group)) as connection:  # channels-redis
        return {m.decode() for m in await connection.zrange(layer._group_key(group), 0, -1)}


async def test_a_socket_closed_while_a_frame_is_in_flight_leaves_its_group_quietly(caplog):
    from autobahn.exception import Disconnected
    from channels.layers import get_channel_layer
    from channels.testing import WebsocketCommunicator

    from chatsite.asgi import application
    from tests.helpers import session_cookie_for

    user, conversation = await setup_chat()
    peer_closing = asyncio.Event()

    async def daphne_like(scope, receive, send):
        # What daphne does when the browser has begun closing: the send raises (autobahn), and the
        # disconnect event may never reach the consumer.
        async def send_or_fail(message):
            if message["type"] == "websocket.send" and peer_closing.is_set():
                raise Disconnected("Attempt to send on a closed protocol")
            await send(message)

        return await application(scope, receive, send_or_fail)

    cookie = await sync_to_async(session_cookie_for)(user)
    communicator = WebsocketCommunicator(
        daphne_like,
        f"/ws/chat/{conversation.pk}/",
        headers=[
            (b"origin", b"http://localhost"),
            (b"host", b"localhost"),
            (b"cookie", f"sessionid={cookie}".encode()),
        ],
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    await communicator.receive_from(timeout=5)
    group = f"conversation-{conversation.pk}"
    assert len(await _group_members(group)) == 1

    peer_closing.set()
    await get_channel_layer().group_send(group, {"type": "chat.frame", "html": "<p>in flight</p>"})
    await eventually(lambda: _no_members(group))  # it left the group, though no disconnect came
    assert not communicator.future.done()  # the consumer did not crash
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    await communicator.disconnect()


async def _no_members(group: str) -> bool:
    return not await _group_members(group)


async def test_the_answers_first_words_go_out_at_once_after_the_thinking(settings):
    """The flusher may be waiting out a window the thinking began: the first text does not wait for it."""
    settings.CHAT_COALESCE_MS = settings.CHAT_COALESCE_MAX_MS = 5_000
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    assistant, frames = await send_and_finish(
        socket, conversation, "Tell me about rivers [[offline tps=100 tokens_per_delta=1 reply_tokens=40]]"
    )
    await socket.close()
    assert assistant.thinking  # the default model thought first, so a window was running
    appended = [text for text in (deltas_in([f], assistant.pk) for f in frames) if text]
    assert appended, "the answer's first words came in their own frame, before the reply ended"
    assert 0 < len(appended[0]) < len(assistant.content) / 4

"""Conversations that outgrow the context window, refusals and empty turns: the conversation always goes on."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from billing.models import UsageRecord
from conversations.models import Conversation, Message
from conversations.replies import history
from tests.conversations.replies.test_chat_streaming import send_and_finish, setup_chat
from tests.helpers import make_message, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("offline_claude")]


@sync_to_async
def history_for_next_reply(conversation: Conversation) -> list[dict]:
    conversation.refresh_from_db()
    return history.reply_history(conversation, before=Message(pk=2**62))[0]


async def test_a_stopped_reply_of_only_whitespace_is_never_sent_back():
    user, conversation = await setup_chat()
    await sync_to_async(make_message)(conversation, content="First question")
    await sync_to_async(make_message)(
        conversation, role="assistant", content=" \n\n ", status=Message.Status.STOPPED
    )
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    assistant, _ = await send_and_finish(socket, conversation, "Second question")
    await socket.close()
    # The offline Claude answers 400 to whitespace-only text, as the API does: the reply would fail.
    assert assistant.status == Message.Status.COMPLETE, assistant.error
    sent = await history_for_next_reply(conversation)
    assert sent == [{"role": "user", "content": "First question\n\nSecond question"}]


async def test_a_refusal_shows_a_notice_and_the_refused_exchange_is_left_out_afterwards():
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    first, _ = await send_and_finish(socket, conversation, "Tell me about tea")
    refused, frames = await send_and_finish(socket, conversation, "Something forbidden [[offline refuse=1]]")
    assert refused.status == Message.Status.REFUSED and refused.stop_reason == "refusal"
    assert "Claude declined to answer this" in frames[-1]
    after, _ = await send_and_finish(socket, conversation, "Tell me about coffee instead")
    await socket.close()
    assert after.status == Message.Status.COMPLETE
    sent = await history_for_next_reply(conversation)
    assert "forbidden" not in str(sent) and refused.content not in str(sent)
    # The earlier reply goes back with its signed thinking block first, then its text.
    assert sent[0]["content"] == "Tell me about tea" and sent[1]["content"][-1]["text"] == first.content
    assert [block["type"] for block in sent[1]["content"]] == ["thinking", "text"]


async def test_a_conversation_that_outgrows_the_window_is_summarised_and_goes_on(settings, offline_claude):
    settings.CHAT_CONTEXT_WINDOW = 3_000
    settings.CHAT_MAX_TOKENS = 400
    offline_claude.set_defaults(context_window=3_000, reply_tokens=300)
    user, conversation = await setup_chat(system_prompt="You are terse.")
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    marker_frames = []
    for turn in range(12):
        assistant, frames = await send_and_finish(
            socket, conversation, f"Question number {turn} about caching"
        )
        # Every request passes the offline Claude's prefix check: a trim would have failed it.
        assert assistant.status == Message.Status.COMPLETE, (turn, assistant.error)
        assert assistant.prompt_tokens + settings.CHAT_MAX_TOKENS <= 3_000
        marker_frames += [f for f in frames if "Earlier messages were summarised" in f]
    await socket.close()
    summarised = await sync_to_async(list)(
        Message.objects.filter(conversation=conversation, compaction__isnull=False).order_by("pk")
    )
    assert summarised and marker_frames and f"beforeend:#msg-{summarised[-1].pk}" in marker_frames[-1]
    assert "Question number 0" in summarised[0].compaction["summary"]
    sent = await history_for_next_reply(conversation)
    assert sent[0]["content"][0]["type"] == "compaction"
    assert "Question number 0 " not in str(sent[1:]) and "Question number 11 " in str(sent)
    # The messages stay whole; each compaction call is one more ledger row on the reply's receipt.
    assert await sync_to_async(Message.objects.filter(conversation=conversation).count)() == 24
    rows = await sync_to_async(list)(UsageRecord.objects.filter(purpose="compaction"))
    assert len(rows) >= len(summarised) and all(r.input_tokens > 0 and r.output_tokens > 0 for r in rows)


async def test_on_a_model_without_compaction_old_turns_are_left_out_and_the_kept_ones_lose_their_thinking(
    settings, offline_claude
):
    settings.CHAT_CONTEXT_WINDOW = 3_000
    settings.CHAT_MAX_TOKENS = 400
    offline_claude.set_defaults(context_window=3_000, reply_tokens=300)
    user, conversation = await setup_chat(system_prompt="You are terse.", model="claude-haiku-5-5")
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    marker_frames = []
    for turn in range(12):
        assistant, frames = await send_and_finish(
            socket, conversation, f"Question number {turn} about caching"
        )
        assert assistant.status == Message.Status.COMPLETE, (turn, assistant.error)
        marker_frames += [f for f in frames if "Earlier messages are no longer sent to Claude" in f]
    await socket.close()
    await sync_to_async(conversation.refresh_from_db)()
    assert conversation.context_from > 0 and conversation.thinking_from > conversation.context_from
    assert marker_frames and f"beforebegin:#msg-{conversation.context_from}" in marker_frames[-1]
    sent = await history_for_next_reply(conversation)
    assert "Question number 0 " not in str(sent) and "Question number 11 " in str(sent)


async def test_a_reply_that_runs_into_the_window_says_so_and_the_next_one_is_trimmed_to_fit(
    settings, offline_claude
):
    # The app believes the window is larger than it is (e.g. a wrong catalog entry): the API stops
    # the reply at the window; the next request leaves old turns out instead of failing for good.
    settings.CHAT_CONTEXT_WINDOW = 100_000
    settings.CHAT_MAX_TOKENS = 400
    offline_claude.set_defaults(context_window=2_000, reply_tokens=350)
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    statuses = []
    for turn in range(8):
        assistant, frames = await send_and_finish(socket, conversation, f"Tell me more, part {turn}")
        statuses.append(assistant.stop_reason)
        assert assistant.status in (Message.Status.COMPLETE, Message.Status.CUT_OFF), assistant.error
        if assistant.stop_reason == "model_context_window_exceeded":
            assert "filled the model's context window" in frames[-1]
    await socket.close()
    assert "model_context_window_exceeded" in statuses
    assert statuses[-1] == "end_turn"
    assert await sync_to_async(
        Message.objects.filter(conversation=conversation, compaction__isnull=False).exists
    )()


@pytest.mark.django_db
def test_the_page_shows_where_earlier_messages_stop_being_sent(client):
    from tests.helpers import make_conversation, make_user

    user = make_user()
    conversation = make_conversation(owner=user)
    make_message(conversation, content="old")
    kept = make_message(conversation, content="new")
    Conversation.objects.filter(pk=conversation.pk).update(context_from=kept.pk)
    client.force_login(user)
    page = client.get(conversation.get_absolute_url()).content.decode()
    marker = page.index("Earlier messages are no longer sent to Claude")
    assert page.index(">old<") < marker < page.index(">new<")


async def test_a_prompt_the_api_calls_too_long_is_trimmed_and_sent_again_instead_of_failing(
    settings, offline_claude
):
    settings.CHAT_CONTEXT_WINDOW = 100_000  # the app believes in a far larger window than the model has
    settings.CHAT_MAX_TOKENS = 300
    offline_claude.set_defaults(context_window=2_000, reply_tokens=100)
    user, conversation = await setup_chat()
    for turn in range(10):
        await sync_to_async(make_message)(conversation, content=f"old question {turn} " + "word " * 150)
        await sync_to_async(make_message)(
            conversation, role="assistant", content="old answer " + "word " * 150
        )
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    assistant, frames = await send_and_finish(socket, conversation, "A new question")
    await socket.close()
    assert assistant.status == Message.Status.COMPLETE, assistant.error
    assert assistant.prompt_tokens <= 2_000
    assert any("Earlier messages were summarised" in f for f in frames)

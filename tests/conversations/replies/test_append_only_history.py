"""The history sent to Claude is append-only, so the 5.5 models keep accepting it: every case that used
to change what was sent before (a system-prompt edit, Continue, a conversation that outgrew the window,
a retry after a window cut) passes the offline Claude's prefix check, which refuses the old shapes."""

from __future__ import annotations

import anthropic
import pytest
from asgiref.sync import sync_to_async

from billing.models import UsageRecord
from conversations import inputs, services
from conversations.models import Conversation, Message
from conversations.replies import history, titles
from conversations.replies.claude import BINDING_BETA, ReplyRequest, build_params
from conversations.replies.generation import generation_wait
from offline_claude.testing import sync_client
from tests.conversations.replies.test_chat_streaming import (
    final_frame_for,
    ledger_rows_for,
    reload,
    send_and_finish,
    setup_chat,
)
from tests.helpers import make_message, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("offline_claude")]

SONNET = "claude-sonnet-5-5"


@sync_to_async
def next_history(conversation: Conversation) -> tuple[str, list[dict]]:
    """(top-level system, messages) of the conversation's next reply."""
    conversation.refresh_from_db()
    sent = history.history_for(conversation, before=Message(pk=2**62))
    return sent.system, sent.messages


def ask_offline(offline_claude, *, system: str, messages: list[dict], **extra):
    """Send a history to the offline Claude with the SDK, as the app would, plus a new user turn."""
    return sync_client(offline_claude).messages.create(
        model=SONNET,
        max_tokens=2000,
        system=system,
        messages=[*messages, {"role": "user", "content": "And then?"}],
        thinking={"type": "adaptive", "display": "summarized"},
        **extra,
    )


async def test_a_system_prompt_edit_goes_in_at_the_end_and_every_later_turn_passes_the_prefix_check(
    offline_claude,
):
    user, conversation = await setup_chat(system_prompt="Answer in English.")
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await send_and_finish(socket, conversation, "Tell me about owls")
    await send_and_finish(socket, conversation, "And bats?")
    await sync_to_async(services.conversation_update_settings)(
        conversation=conversation, model=SONNET, system_prompt="Answer in French."
    )
    replies = [
        (await send_and_finish(socket, conversation, text))[0] for text in ("And frogs?", "And newts?")
    ]
    await socket.close()
    assert all(r.status == Message.Status.COMPLETE for r in replies), [r.error for r in replies]
    system, messages = await next_history(conversation)
    assert system == "Answer in English."  # the top-level prompt stays as the conversation started
    roles = [m["role"] for m in messages]
    assert roles == ["user", "assistant", "user", "assistant", "user", "system", "assistant", "user"]
    assert messages[4]["content"] == "And frogs?" and "Answer in French." in messages[5]["content"]
    # The old way (the new prompt on top) breaks every thinking block already sent.
    with pytest.raises(anthropic.BadRequestError) as caught:
        ask_offline(
            offline_claude,
            system="Answer in French.",
            messages=[m for m in messages if m["role"] != "system"],
        )
    assert "bound to a different conversation" in caught.value.message
    # The settings now say where the prompt sits in the conversation.
    page = await sync_to_async(_page_for)(user, conversation)
    assert "A change applies from your next message on" in page


def _page_for(user, conversation) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.get(conversation.get_absolute_url()).content.decode()


async def test_a_system_prompt_edit_while_a_reply_streams_is_refused_with_a_sentence():
    _user, conversation = await setup_chat(system_prompt="Be brief.")
    await sync_to_async(make_message)(conversation, content="Hello")
    await sync_to_async(make_message)(
        conversation, role="assistant", content="", status=Message.Status.STREAMING
    )
    with pytest.raises(inputs.InvalidInput) as caught:
        await sync_to_async(services.conversation_update_settings)(
            conversation=conversation, model=SONNET, system_prompt="Be long."
        )
    assert "Wait for the current reply to finish" in str(caught.value)
    await sync_to_async(conversation.refresh_from_db)()
    assert conversation.system_prompt == "Be brief." and conversation.system_messages == []


async def test_continue_replays_both_calls_so_the_next_turn_passes_the_check_and_reads_the_cache(
    settings, offline_claude
):
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    settings.CHAT_MAX_TOKENS = 90
    cut, _ = await send_and_finish(socket, conversation, "Write an essay [[offline reply_tokens=400]]")
    assert cut.status == Message.Status.CUT_OFF
    first_part = cut.content
    await socket.send(action="continue", message_id=cut.pk)
    await socket.receive_until(final_frame_for(cut.pk))
    await generation_wait(cut.pk)
    settings.CHAT_MAX_TOKENS = 4000
    after, _ = await send_and_finish(socket, conversation, "Thanks, now a summary")
    await socket.close()
    assert after.status == Message.Status.COMPLETE, after.error
    continued = await reload(cut)
    assert continued.call_ends == [[len(first_part), 1]]
    _system, messages = await next_history(conversation)
    assert [m["role"] for m in messages[:5]] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[1]["content"][-1]["text"] == first_part
    assert messages[2]["content"] == history.CONTINUE_PROMPT
    assert [b["type"] for b in messages[3]["content"]] == ["thinking", "text"]
    # The turn after Continue read the whole earlier prompt from the cache: nothing was written twice.
    second_call = (await ledger_rows_for(continued))[-1]
    assert (
        after.cache_read_input_tokens
        >= second_call.input_tokens
        + second_call.cache_read_tokens
        + second_call.cache_write_5m_tokens
        + second_call.cache_write_1h_tokens
    )
    # The old way (both thinking blocks, then the whole text) is refused.
    old = [
        *messages[:1],
        {
            "role": "assistant",
            "content": [
                *({"type": "thinking", **b} for b in continued.thinking_blocks),
                {"type": "text", "text": continued.content},
            ],
        },
    ]
    with pytest.raises(anthropic.BadRequestError) as caught:
        ask_offline(offline_claude, system="", messages=old)
    assert "bound to a different conversation" in caught.value.message
    # The page still shows one reply, one Copy and one receipt.
    page = await sync_to_async(_page_for)(user, conversation)
    assert page.count(f'data-copy-message="msg-{cut.pk}-body"') == 1


async def test_a_stored_conversation_whose_history_changed_keeps_working_with_drop_block(offline_claude):
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    for text in ("Tell me about owls", "And bats?", "And frogs?"):
        await send_and_finish(socket, conversation, text)
    # As an earlier version of the app left it: the oldest exchange no longer sent (a trim).
    third_user = await sync_to_async(lambda: conversation.messages.filter(role="user").order_by("pk")[1].pk)()
    await sync_to_async(Conversation.objects.filter(pk=conversation.pk).update)(context_from=third_user)
    failed, _ = await send_and_finish(socket, conversation, "Which sleeps longer?")
    assert failed.status == Message.Status.ERROR and "bound to a different conversation" in failed.error
    await sync_to_async(Conversation.objects.filter(pk=conversation.pk).update)(thinking_drop_mismatched=True)
    fixed, _ = await send_and_finish(socket, conversation, "Which sleeps longer, then?")
    await socket.close()
    assert fixed.status == Message.Status.COMPLETE, fixed.error
    params = build_params(
        ReplyRequest(
            model=SONNET, messages=[], max_tokens=10, summarize_thinking=True, drop_mismatched_thinking=True
        )
    )
    assert params["thinking"]["block_binding"] == {"prefix_mismatch_behavior": "drop_block"}
    assert BINDING_BETA in params["extra_headers"]["anthropic-beta"]


async def test_the_migration_marks_conversations_whose_history_changed():
    from importlib import import_module

    from django.apps import apps

    migration = import_module("conversations.migrations.0010_append_only_history")
    _user, trimmed = await setup_chat()
    _user, plain = await setup_chat()
    _user, continued = await setup_chat()
    await sync_to_async(Conversation.objects.filter(pk=trimmed.pk).update)(context_from=5)
    await sync_to_async(make_message)(
        continued,
        role="assistant",
        content="x",
        thinking_blocks=[{"thinking": "", "signature": "a"}, {"thinking": "", "signature": "b"}],
    )
    await sync_to_async(migration.keep_stored_conversations_working)(apps, None)
    flags = await sync_to_async(dict)(Conversation.objects.values_list("pk", "thinking_drop_mismatched"))
    assert flags[trimmed.pk] and flags[continued.pk] and not flags[plain.pk]


async def test_compaction_that_fails_leaves_the_conversation_as_it_was_and_retry_works(
    settings, offline_claude
):
    settings.CHAT_CONTEXT_WINDOW = 3_000
    settings.CHAT_MAX_TOKENS = 400
    offline_claude.set_defaults(context_window=3_000, reply_tokens=300)
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()

    @sync_to_async
    def summaries() -> int:
        return Message.objects.filter(conversation=conversation, compaction__isnull=False).count()

    # The offline Claude is deterministic: a first run finds the turn whose reply needs a compaction.
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    settings.CHAT_MAX_FRAMES_PER_SECOND = 0
    _user, rehearsal = await setup_chat()
    rehearsal_socket, _, _ = await open_socket(_user, rehearsal.pk)
    await rehearsal_socket.receive()
    turns = 0
    while not await sync_to_async(
        Message.objects.filter(conversation=rehearsal, compaction__isnull=False).exists
    )():
        await send_and_finish(rehearsal_socket, rehearsal, f"Question {turns} about caching")
        turns += 1
        assert turns < 20
    await rehearsal_socket.close()
    sent = 0
    while sent < turns - 1:
        await send_and_finish(socket, conversation, f"Question {sent} about caching")
        sent += 1
    offline_claude.set_defaults(fault="500")
    try:
        failed, frames = await send_and_finish(socket, conversation, f"Question {sent} about caching")
        sent += 1
    finally:
        offline_claude.set_defaults(fault=None)
    assert failed.status == Message.Status.ERROR
    assert failed is not None
    assert "summarising its earlier messages failed" in failed.error and "Retry" in frames[-1]
    assert await summaries() == 0  # the conversation is as it was
    assert (
        await sync_to_async(Message.objects.filter(conversation=conversation).count)() == 2 * sent
    )  # nothing lost
    await socket.send(action="retry", message_id=failed.pk)
    await socket.receive_until(lambda f: "status-streaming" in f)
    latest = await sync_to_async(
        lambda: conversation.messages.filter(role="assistant").order_by("-pk").first()
    )()
    await socket.receive_until(final_frame_for(latest.pk))
    await generation_wait(latest.pk)
    await socket.close()
    latest = await reload(latest)
    assert latest.status == Message.Status.COMPLETE, latest.error
    assert await summaries() == 1
    rows = await sync_to_async(list)(
        UsageRecord.objects.filter(conversation_id=conversation.pk, purpose="compaction")
    )
    assert len(rows) == 2  # the one that failed and the one that worked, each one ledger row
    assert sum(1 for r in rows if r.output_tokens == 0) == 1


async def test_retrying_a_reply_cut_by_the_window_compacts_first_instead_of_asking_again(
    settings, offline_claude
):
    settings.CHAT_CONTEXT_WINDOW = 100_000  # the app believes in a larger window than the model has
    settings.CHAT_MAX_TOKENS = 400
    offline_claude.set_defaults(context_window=2_000, reply_tokens=350)
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    cut = None
    for turn in range(10):
        reply, _ = await send_and_finish(socket, conversation, f"Tell me more, part {turn}")
        if reply.stop_reason == "model_context_window_exceeded":
            cut = reply
            break
    assert cut is not None
    await socket.send(action="retry", message_id=cut.pk)
    await socket.receive_until(lambda f: "status-streaming" in f)
    retried = await sync_to_async(
        lambda: conversation.messages.filter(role="assistant").order_by("-pk").first()
    )()
    await socket.receive_until(final_frame_for(retried.pk))
    await generation_wait(retried.pk)
    await socket.close()
    retried = await reload(retried)  # a new version, or the same reply retried in place when it had no text
    assert retried.status == Message.Status.COMPLETE and retried.stop_reason == "end_turn", retried.error
    assert await sync_to_async(
        Message.objects.filter(conversation=conversation, compaction__isnull=False).exists
    )()


async def test_a_hundred_turns_on_a_small_window_keep_answering(settings, offline_claude):
    settings.CHAT_CONTEXT_WINDOW = 2_500
    settings.CHAT_MAX_TOKENS = 300
    settings.CHAT_TITLE_MODEL = ""
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0  # a hundred messages in seconds: no person sends that fast
    settings.CHAT_MAX_FRAMES_PER_SECOND = 0
    offline_claude.set_defaults(context_window=2_500, reply_tokens=60)
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    for turn in range(100):
        reply, _ = await send_and_finish(socket, conversation, f"Turn {turn}: tell me something new")
        assert reply.status == Message.Status.COMPLETE, (turn, reply.error)
    await socket.close()
    summaries = await sync_to_async(
        Message.objects.filter(conversation=conversation, compaction__isnull=False).count
    )()
    assert summaries >= 3
    assert await sync_to_async(Message.objects.filter(conversation=conversation).count)() == 200


@pytest.mark.parametrize(
    "model",
    ["claude-sonnet-5-5", "claude-opus-5-5", "claude-haiku-5-5", "claude-opus-4-8", "claude-sonnet-4-6"],
)
async def test_the_title_call_works_on_every_model(settings, model):
    settings.CHAT_TITLE_MODEL = model
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await send_and_finish(socket, conversation, "How do tides work")
    await titles.title_wait(conversation.pk)
    await socket.close()
    await sync_to_async(conversation.refresh_from_db)()
    assert conversation.title_source == Conversation.TitleSource.CLAUDE, conversation.title
    [row] = await sync_to_async(list)(
        UsageRecord.objects.filter(conversation_id=conversation.pk, purpose="title")
    )
    assert row.model == model and row.output_tokens > 0


async def test_a_refusal_shows_claudes_explanation():
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    refused, frames = await send_and_finish(socket, conversation, "Something forbidden [[offline refuse=1]]")
    await socket.close()
    assert refused.status == Message.Status.REFUSED
    assert refused.error == "The offline Claude was asked to refuse (control refuse=1)."
    assert "Claude&#x27;s explanation" in frames[-1] or "Claude's explanation" in frames[-1]
    assert "asked to refuse (control refuse=1)" in frames[-1]


async def test_after_a_refusal_the_page_offers_another_model_and_trying_it_switches_the_conversation():
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    refused, frames = await send_and_finish(socket, conversation, "Something forbidden [[offline refuse=1]]")
    assert "Try with claude-opus-5-5" in frames[-1]
    await socket.send(action="retry", message_id=refused.pk, model="claude-opus-5-5")
    await socket.receive_until(lambda f: "status-streaming" in f)
    retried = await sync_to_async(
        lambda: conversation.messages.filter(role="assistant").order_by("-pk").first()
    )()
    await socket.receive_until(final_frame_for(retried.pk))
    await generation_wait(retried.pk)
    # A model nobody offered is refused with a sentence, and changes nothing.
    await socket.send(action="retry", message_id=retried.pk, model="claude-made-up")
    error = await socket.receive_until(lambda f: "chat-errors" in f)
    await socket.close()
    assert "Choose one of the offered models." in error[-1]
    retried = await reload(retried)
    await sync_to_async(conversation.refresh_from_db)()
    assert retried.pk != refused.pk and retried.model == "claude-opus-5-5" == conversation.model

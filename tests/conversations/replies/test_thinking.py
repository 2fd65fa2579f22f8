"""Visible thinking: streamed into its own section above the answer, kept, shown on reload, billed,
sent back signed in later requests; a per-conversation effort for the models that take one."""

from __future__ import annotations

import html
import re

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.urls import reverse

from conversations import inputs
from conversations.models import Conversation
from conversations.replies import claude
from tests.conversations.replies.test_chat_streaming import (
    final_frame_for,
    latest_assistant,
    reload,
    send_and_finish,
)
from tests.helpers import make_conversation, make_user, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("offline_claude")]


def thinking_in(frames: list[str], message_id: int) -> str:
    pattern = re.compile(
        rf'<div id="msg-{message_id}-thinking-body" hx-swap-oob="beforeend">(.*?)</div>', re.S
    )
    return "".join(html.unescape(m) for f in frames for m in pattern.findall(f))


@sync_to_async
def setup_chat(**fields):
    user = make_user()
    return user, make_conversation(owner=user, **fields)


async def test_thinking_streams_above_the_answer_is_kept_and_shows_again_on_reload():
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    assistant, frames = await send_and_finish(
        socket, conversation, "Explain tides [[offline tokens_per_delta=1]]"
    )
    await socket.close()
    streamed = thinking_in(frames, assistant.pk)
    assert streamed.startswith("The user asks “Explain tides”")
    assert assistant.thinking == streamed and assistant.content and streamed not in assistant.content
    # While it streamed, the section said "Thinking…" and was open; once the answer began: "Thought for".
    first = next(f for f in socket.frames if f'id="msg-{assistant.pk}"' in f)
    assert "Thinking…" in first and f'id="msg-{assistant.pk}-thinking" class="thinking" open' in first
    assert any(
        f'id="msg-{assistant.pk}-thinking-summary" hx-swap-oob="outerHTML">Thought for' in f for f in frames
    )
    assert re.search(
        rf'id="msg-{assistant.pk}-thinking" class="thinking">\s*<summary[^>]*>Thought for \d+ s', frames[-1]
    )
    assert len(assistant.thinking_blocks) == 1 and assistant.thinking_blocks[0]["signature"]
    page = await sync_to_async(_page_of)(user, conversation)
    assert f'id="msg-{assistant.pk}-thinking"' in page and html.escape(streamed, quote=False)[:40] in page


def _page_of(user, conversation) -> str:
    client = Client()
    client.force_login(user)
    return client.get(conversation.get_absolute_url()).text


async def test_thinking_tokens_are_on_the_ledger_and_the_receipt():
    from billing.models import UsageRecord

    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    assistant, _ = await send_and_finish(socket, conversation, "Explain tides")
    await socket.close()
    record = await UsageRecord.objects.aget(message_id=assistant.pk)
    assert 0 < record.thinking_tokens < record.output_tokens
    receipt = await sync_to_async(_receipt_of)(user, assistant.pk)
    assert f"{record.thinking_tokens} thinking tokens" in receipt


def _receipt_of(user, message_id: int) -> str:
    client = Client()
    client.force_login(user)
    return client.get(reverse("billing:receipt", args=[message_id])).text


async def test_the_next_request_sends_the_signed_thinking_back_first(monkeypatch):
    sent: list[dict] = []
    build = claude.build_params
    monkeypatch.setattr(claude, "build_params", lambda request: sent.append(build(request)) or sent[-1])
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    first, _ = await send_and_finish(socket, conversation, "Explain tides")
    second, _ = await send_and_finish(socket, conversation, "And waves?")
    await socket.close()
    assert second.status == "complete", second.error  # the offline Claude checked the signature
    earlier = sent[-1]["messages"][1]["content"]
    assert earlier[0] == {
        "type": "thinking",
        "thinking": first.thinking,
        "signature": first.thinking_blocks[0]["signature"],
    }
    assert earlier[-1] == {"type": "text", "text": first.content}


async def test_a_reply_stopped_while_thinking_keeps_its_thinking_and_is_billed_for_it():
    from billing.models import UsageRecord

    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(message="Plan a trip [[offline tps=20 tokens_per_delta=1]]")
    await socket.receive_until(lambda f: "status-streaming" in f)
    assistant = await latest_assistant(conversation)
    await socket.receive_until(lambda f: len(thinking_in(socket.frames, assistant.pk)) > 40)
    await socket.send(action="stop", message_id=assistant.pk)
    await socket.receive_until(final_frame_for(assistant.pk))
    await socket.close()
    assistant = await reload(assistant)
    assert assistant.status == "stopped" and assistant.thinking and not assistant.content
    assert assistant.thinking_blocks == []  # no signature arrived: never sent back
    record = await UsageRecord.objects.aget(message_id=assistant.pk)
    assert record.estimated and record.output_tokens >= len(assistant.thinking) // 4 > 0
    assert record.thinking_tokens > 0


async def test_the_conversations_effort_goes_out_as_output_config(monkeypatch):
    sent: list[dict] = []
    build = claude.build_params
    monkeypatch.setattr(claude, "build_params", lambda request: sent.append(build(request)) or sent[-1])
    user, conversation = await setup_chat(effort="low")
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    low, _ = await send_and_finish(socket, conversation, "Plan a garden")
    await sync_to_async(Conversation.objects.filter(pk=conversation.pk).update)(effort="max")
    high, _ = await send_and_finish(socket, conversation, "Plan a garden")
    await socket.close()
    assert sent[0]["output_config"] == {"effort": "low"} and sent[-1]["output_config"] == {"effort": "max"}
    assert len(low.thinking) < len(high.thinking)


def test_effort_is_a_setting_of_the_conversation_for_models_that_take_one():
    user = make_user()
    conversation = make_conversation(owner=user, model="claude-sonnet-5-5")
    client = Client()
    client.force_login(user)
    page = client.get(conversation.get_absolute_url()).text
    assert 'name="effort"' in page and "Model default (high)" in page
    url = reverse("conversation_settings", args=[conversation.pk])
    client.post(url, {"model": "claude-sonnet-5-5", "system_prompt": "", "effort": "xhigh"})
    conversation.refresh_from_db()
    assert conversation.effort == "xhigh"
    client.post(url, {"model": "claude-sonnet-5-5", "system_prompt": "", "effort": "extreme"})
    conversation.refresh_from_db()
    assert conversation.effort == "xhigh"  # refused, unchanged
    with pytest.raises(inputs.InvalidInput, match="effort"):  # the edge that refused it
        inputs.clean_settings(
            {"model": "claude-sonnet-5-5", "system_prompt": "", "effort": "extreme"},
            inputs.model_choice(None),
        )


async def test_a_page_that_reconnects_while_claude_thinks_catches_up_on_the_thinking():
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(message="Plan a trip [[offline tps=30 tokens_per_delta=1]]")
    await socket.receive_until(lambda f: "status-streaming" in f)
    assistant = await latest_assistant(conversation)
    await socket.receive_until(lambda f: len(thinking_in(socket.frames, assistant.pk)) > 20)
    late, _, _ = await open_socket(user, conversation.pk)
    frames = await late.receive_until(
        lambda f: f'id="msg-{assistant.pk}-thinking-body" hx-swap-oob="innerHTML"' in f
    )
    caught_up = re.search(r'-thinking-body" hx-swap-oob="innerHTML">(.*?)</div>', frames[-1], re.S).group(1)
    assert len(caught_up) > 20 and html.unescape(caught_up).startswith("The user asks “Plan a")
    await socket.send(action="stop", message_id=assistant.pk)
    await socket.receive_until(final_frame_for(assistant.pk))
    await late.close()
    await socket.close()

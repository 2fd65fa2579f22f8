"""Every reply request caches its prompt; the savings show on the receipt and in the conversation header."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from conversations.replies.claude import ReplyRequest, build_params
from tests.conversations.replies.test_chat_budget import PRICES
from tests.conversations.replies.test_chat_streaming import ledger_rows_for, send_and_finish, setup_chat
from tests.helpers import open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("offline_claude")]


def test_each_request_carries_one_rolling_breakpoint_with_the_configured_ttl():
    request = ReplyRequest(model="claude-sonnet-5-5", messages=[], max_tokens=10, cache_ttl="1h")
    assert build_params(request)["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert "cache_control" not in build_params(ReplyRequest(model="m", messages=[], max_tokens=10))


async def test_the_second_turn_reads_the_cached_prompt_and_the_receipt_and_header_show_the_saving(client):
    await sync_to_async(call_command)("load_prices", str(PRICES), verbosity=0)  # the flush removed them
    user, conversation = await setup_chat(system_prompt="You are a patient tutor. " * 200)
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    first, _ = await send_and_finish(socket, conversation, "What is a cache?")
    second, frames = await send_and_finish(socket, conversation, "And a cache line?")
    await socket.close()

    assert first.cache_creation_input_tokens > 0 and first.cache_read_input_tokens == 0
    assert second.cache_read_input_tokens >= first.cache_creation_input_tokens
    [first_row] = await ledger_rows_for(first)
    [row] = await ledger_rows_for(second)
    # The start of the conversation is kept an hour; the turns that follow quickly, five minutes.
    assert (
        first_row.cache_write_1h_tokens > 0
        and "1-hour cache: the start of a conversation" in first_row.cache_note
    )
    assert row.cache_write_5m_tokens > 0 and row.cache_write_1h_tokens == 0
    assert row.cache_note == "5-minute cache: your recent replies came within minutes"
    assert row.cache_savings > 0
    assert 'id="conversation-meter"' in frames[-1] and "prompt caching saved" in frames[-1]

    await sync_to_async(client.force_login)(user)
    receipt = (await sync_to_async(client.get)(f"/usage/receipt/{second.pk}/")).content.decode()
    assert (
        "Prompt caching saved" in receipt
        and "5-minute cache: your recent replies came within minutes" in receipt
    )
    page = (await sync_to_async(client.get)(conversation.get_absolute_url())).content.decode()
    assert "Cost so far $" in page and "prompt caching saved" in page
    assert f"Context {second.prompt_tokens + second.output_tokens:,} of 1,000,000 tokens" in page


async def test_after_a_long_pause_the_next_reply_writes_the_cache_for_an_hour():
    from datetime import timedelta

    from django.utils import timezone

    from conversations.models import Message

    user, conversation = await setup_chat(system_prompt="You are a patient tutor. " * 200)
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    first, _ = await send_and_finish(socket, conversation, "What is a cache?")
    quick, _ = await send_and_finish(socket, conversation, "And a cache line?")
    # The person came back ten minutes after the last reply: a 5-minute entry would be gone next time too.
    await sync_to_async(Message.objects.filter(pk=quick.pk).update)(
        updated_at=timezone.now() - timedelta(minutes=10)
    )
    later, _ = await send_and_finish(socket, conversation, "And eviction?")
    await socket.close()
    [row] = await ledger_rows_for(later)
    assert row.cache_write_1h_tokens > 0 and row.cache_write_5m_tokens == 0
    assert row.cache_note == "1-hour cache: a recent pause of about 10 min would outlast a 5-minute cache"

"""Estimated usage is honest: thinking streamed before a drop is billed, and a sweep prices 1-hour cache writes at the 1-hour rate."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.utils import timezone

from conversations.models import Message
from conversations.replies import store
from conversations.replies.claude import ClaudeError, ReplyRequest, ReplyStream
from tests.conversations.replies.test_chat_budget import PRICES
from tests.helpers import make_conversation, make_message, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("offline_claude")]


async def test_a_reply_dropped_while_thinking_is_billed_for_the_thinking_it_streamed():
    stream = ReplyStream(
        ReplyRequest(
            model="claude-sonnet-5-5",
            messages=[
                {
                    "role": "user",
                    "content": "Plan a trip [[offline fault=drop fault_after=6 tokens_per_delta=1]]",
                }
            ],
            max_tokens=2000,
            summarize_thinking=True,
        )
    )
    with pytest.raises(ClaudeError):
        async for _ in stream.deltas():
            pass
    assert stream.text_chars == 0 and stream.thinking_chars > 0  # it died mid-thought
    assert stream.usage_is_estimated
    assert stream.billable_usage().output_tokens >= 2  # not ~0: six thinking deltas were streamed


@sync_to_async
def orphan_with_hour_long_cache_writes() -> Message:
    call_command("load_prices", str(PRICES), verbosity=0)
    user = make_user()
    conversation = make_conversation(owner=user)
    make_message(conversation, content="Tell me about tides")
    return make_message(
        conversation,
        role="assistant",
        content="Tides are caused by",
        status=Message.Status.STREAMING,
        model=conversation.model,
        input_tokens=5,
        cache_creation_input_tokens=3_000,
        cache_creation_1h_input_tokens=3_000,
        output_tokens=40,  # the checkpoint's estimate, thinking included
        attempt_id=uuid.uuid4(),
        worker="gone-host:1:dead",
        lease_until=timezone.now() - timedelta(seconds=1),
    )


async def test_a_swept_reply_prices_its_hour_long_cache_writes_at_the_hour_rate():
    from billing.models import UsageRecord

    orphan = await orphan_with_hour_long_cache_writes()
    [ended] = await sync_to_async(store.replies_end_expired)(conversation_id=orphan.conversation_id)
    assert ended.status == Message.Status.INTERRUPTED
    row = await UsageRecord.objects.aget(message_id=orphan.pk)
    assert (row.cache_write_1h_tokens, row.cache_write_5m_tokens) == (3_000, 0)
    assert row.output_tokens == 40 and row.estimated
    assert row.cost == 5 * row.rate_input + 3_000 * row.rate_cache_write_1h + 40 * row.rate_output


def test_a_messages_usage_is_what_set_usage_copied():
    from billing.usage import Usage
    from conversations.models import Message

    usage = Usage(
        input_tokens=12,
        output_tokens=340,
        cache_write_5m_tokens=5,
        cache_write_1h_tokens=700,
        cache_read_tokens=9000,
    )
    message = Message()
    message.set_usage(usage)
    assert message.usage() == usage

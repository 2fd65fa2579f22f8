"""Retries are visible and bounded: the reply says why it waits and for how long, and gives up past a cap."""

from __future__ import annotations

import pytest

from conversations.models import Message
from tests.conversations.replies.test_chat_streaming import ledger_rows_for, send_and_finish, setup_chat
from tests.helpers import open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("offline_claude")]


async def test_an_overloaded_claude_is_retried_and_the_reply_says_so_while_it_waits():
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    assistant, frames = await send_and_finish(
        socket, conversation, "Hello [[offline fault=529 fault_times=2 retry_after_ms=300]]"
    )
    await socket.close()
    notices = [f for f in frames if "retrying in" in f]
    assert "Claude is overloaded - retrying in 1 s (attempt 2 of 3)" in notices[0]
    assert "Claude is overloaded - retrying in 1 s (attempt 3 of 3)" in notices[1]
    assert "Stop" in notices[0]
    assert assistant.status == Message.Status.COMPLETE
    assert len(await ledger_rows_for(assistant)) == 1


async def test_a_wait_longer_than_the_cap_ends_in_an_error_with_retry(settings):
    settings.CHAT_RETRY_MAX_WAIT_SECONDS = 5
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    assistant, frames = await send_and_finish(
        socket, conversation, "Hello [[offline fault=429 fault_times=1 retry_after=600]]"
    )
    await socket.close()
    assert not any("retrying in" in f for f in frames)  # it did not sit silent for ten minutes either
    assert assistant.status == Message.Status.ERROR
    assert "rate limit" in assistant.error and "Retry" in frames[-1]

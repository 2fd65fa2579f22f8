"""Budgets seen from the chat: concurrent sends from several sockets never overshoot a hard cap."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.utils import timezone

from billing.holds import MIN_REPLY_TOKENS
from billing.models import SpendReservation, UsageRecord
from conversations.catalog import reply_max_tokens
from conversations.models import Message
from conversations.replies.generation import generation_wait
from tests.helpers import make_conversation, make_user, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("offline_claude")]

PRICES = Path(__file__).resolve().parents[3] / "billing" / "prices" / "anthropic-2026-11.json"


@sync_to_async
def user_with_budget_for(replies: float, text: str, conversations: int):
    from billing.holds import worst_case_cost
    from billing.models import BudgetPolicy, UserBudget

    call_command("load_prices", str(PRICES), verbosity=0)
    user = make_user()
    worst = worst_case_cost(
        model="claude-sonnet-5-5",
        prompt_tokens=len(text.encode()),
        max_tokens=reply_max_tokens("claude-sonnet-5-5"),
        at=timezone.now(),
    )
    assert worst > 0
    UserBudget.objects.update_or_create(
        user=user, defaults={"policy": BudgetPolicy.LIMIT, "monthly_limit": int(worst * replies)}
    )
    return user, [make_conversation(owner=user) for _ in range(conversations)], int(worst * replies)


async def test_concurrent_sends_from_several_sockets_never_overshoot_the_budget():
    text = "Hello [[offline tps=200 reply_tokens=60]]"
    user, conversations, limit = await user_with_budget_for(2.5, text, conversations=6)
    sockets = []
    for conversation in conversations:
        socket, connected, _ = await open_socket(user, conversation.pk)
        assert connected
        await socket.receive()
        sockets.append(socket)

    await asyncio.gather(*(s.send(message=text) for s in sockets))
    outcomes = await asyncio.gather(
        *(s.receive_until(lambda f: "status-streaming" in f or '<p class="error">' in f) for s in sockets)
    )
    refused = [frames[-1] for frames in outcomes if '<p class="error">' in frames[-1]]
    started = await sync_to_async(
        lambda: list(Message.objects.filter(role="assistant", conversation__owner=user))
    )()
    for message in started:
        await generation_wait(message.pk)
    for socket in sockets:
        await socket.close()

    # Worst case of each reply is reserved before its call: two full ones fit in 2.5 worst cases, and
    # a third with a shorter max_tokens (what is left covers more than the minimum reply).
    assert len(started) == 3
    assert len(refused) == 3 and all("budget" in frame for frame in refused)
    granted = await sync_to_async(
        lambda: sorted(SpendReservation.objects.filter(user_id=user.pk).values_list("max_tokens", flat=True))
    )()
    full = reply_max_tokens("claude-sonnet-5-5")
    assert granted[1:] == [full, full] and MIN_REPLY_TOKENS <= granted[0] < full
    spent = await sync_to_async(
        lambda: sum(UsageRecord.objects.filter(user_id=user.pk).values_list("cost", flat=True))
    )()
    assert 0 < spent <= limit
    assert not await SpendReservation.objects.filter(user_id=user.pk, settled_at__isnull=True).aexists()
    # Refused sends wrote nothing: only the started replies' turns exist.
    assert await Message.objects.filter(conversation__owner=user, role="user").acount() == 3


async def test_a_refused_send_keeps_the_text_in_the_composer():
    text = "Please keep my words [[offline reply_tokens=5]]"
    # Less than the smallest reply granted (MIN_REPLY_TOKENS of the model's max_tokens) is left.
    user, [conversation], _ = await user_with_budget_for(0.05, text, conversations=1)
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(message=text)
    frame = await socket.receive()
    await socket.close()
    assert "budget" in frame
    assert 'id="composer-input"' not in frame  # the composer is only emptied once a message is stored


async def test_the_banner_follows_each_reply_and_send_is_disabled_once_the_budget_is_used_up():
    from billing.models import UserBudget

    text = "Use it up [[offline tps=40 reply_tokens=40]]"
    user, [conversation], _ = await user_with_budget_for(3, text, conversations=1)
    socket, _, _ = await open_socket(user, conversation.pk)
    first = await socket.receive()
    assert "Monthly budget reached" not in first
    await socket.send(message=text)
    await socket.receive_until(lambda f: "status-streaming" in f)
    # Meanwhile an administrator lowers the budget below what this reply costs.
    await sync_to_async(UserBudget.objects.filter(user=user).update)(monthly_limit=1)
    frames = await socket.receive_until(lambda f: "assistant status-complete" in f, timeout=20)
    await socket.close()
    final = frames[-1]
    assert '<div class="chat-banners" id="chat-banners" hx-swap-oob="true">' in final
    assert "Monthly budget reached" in final
    button = final[final.index('<button id="send-button"') :].split(">", 1)[0]
    assert "disabled" in button and "budget is used up" in button


async def test_a_reply_the_budget_grants_less_is_asked_with_that_max_tokens_and_cut_off_there():
    """When the budget left covers less than a full reply, the call is made with the max_tokens the hold
    granted (not the model's), so the reply stops there, as Cut off, and its cost stays within the hold."""
    text = "Write at length [[offline reply_tokens=12000]]"
    user, [conversation], limit = await user_with_budget_for(0.5, text, conversations=1)
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(message=text)
    await socket.receive_until(lambda f: "status-streaming" in f)
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    await generation_wait(reply.pk)
    await socket.close()
    reply = await Message.objects.aget(pk=reply.pk)
    granted = (
        await SpendReservation.objects.filter(message_id=reply.pk).values_list("max_tokens", flat=True).aget()
    )
    assert MIN_REPLY_TOKENS <= granted < reply_max_tokens("claude-sonnet-5-5")
    assert reply.status == Message.Status.CUT_OFF
    assert reply.output_tokens == granted
    spent = await sync_to_async(
        lambda: sum(UsageRecord.objects.filter(user_id=user.pk).values_list("cost", flat=True))
    )()
    assert 0 < spent <= limit

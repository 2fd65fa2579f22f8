"""Budget holds from tokens: tight enough not to refuse what a user can afford, never below the real cost.

Through the real SDK against the offline Claude: the prompt bound comes from the previous call's
reported counts, the hold shrinks to the prompt's exact cost once message_start reports it, and a
budget too short for a full reply grants a smaller max_tokens instead of refusing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from billing.holds import MIN_REPLY_TOKENS, worst_case_cost
from billing.models import BudgetPolicy, ModelPrice, SpendReservation, UsageRecord, UserBudget
from billing.money import usd_to_pico
from billing.services import hold_prompt_known, spend_reserve
from billing.usage import Usage
from conversations import services
from conversations.models import Message
from conversations.replies import history
from conversations.replies.generation import generation_wait
from tests.conversations.replies.test_chat_streaming import (
    final_frame_for,
    reload,
    send_and_finish,
    setup_chat,
)
from tests.helpers import make_conversation, make_message, make_user, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("offline_claude")]

PRICES = Path(__file__).resolve().parents[3] / "billing" / "prices" / "anthropic-2026-11.json"
SONNET = "claude-sonnet-5-5"


@pytest.fixture(autouse=True)
def _prices(settings):
    call_command("load_prices", str(PRICES), verbosity=0)
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0


def bytes_bound(conversation, before: Message) -> int:
    turns, size = history.reply_history(conversation, before=before)
    return size + history.TURN_OVERHEAD_TOKENS * len(turns)


@sync_to_async
def bound_at(assistant: Message) -> int:
    """The prompt bound the reply's hold was taken with (its history is unchanged since)."""
    conversation = assistant.conversation
    conversation.refresh_from_db()
    return history.prompt_tokens_bound(conversation, before=Message(pk=assistant.pk, content=""))


@sync_to_async
def hold_and_cost(assistant: Message) -> tuple[int, int, int]:
    reservation = SpendReservation.objects.get(message_id=assistant.pk)
    [record] = UsageRecord.objects.filter(message_id=assistant.pk)
    return reservation.amount, record.cost, reservation.max_tokens


async def test_the_prompt_bound_is_never_below_the_real_prompt_and_far_below_its_bytes():
    user, conversation = await setup_chat(system_prompt="You answer briefly and precisely. " * 20)
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    for turn in range(6):
        assistant, _ = await send_and_finish(
            socket, conversation, f"Question {turn}: how do caches, tokens and ledgers relate? " * 4
        )
        assert assistant.status == Message.Status.COMPLETE, assistant.error
        bound = await bound_at(assistant)
        assert bound >= assistant.prompt_tokens  # the hold covered the real prompt
        if turn >= 2:
            # From the previous call's counts: only the newest turn is counted by its bytes.
            by_bytes = await sync_to_async(bytes_bound)(conversation, Message(pk=assistant.pk))
            assert bound < by_bytes / 2, (bound, by_bytes)
            assert bound - assistant.prompt_tokens < 400
    await socket.close()


async def test_the_hold_never_falls_below_the_real_cost_and_shrinks_to_the_known_prompt():
    user, conversation = await setup_chat(system_prompt="Be brief.")
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    for turn in range(4):
        assistant, _ = await send_and_finish(socket, conversation, f"Turn {turn} about prompt caching " * 10)
        held, cost, max_tokens = await hold_and_cost(assistant)
        assert cost <= held  # zero overshoot: no call costs more than it held
        price = await sync_to_async(ModelPrice.objects.in_effect)(SONNET, timezone.now())
        rates, _ = price.rates_for(assistant.prompt_tokens)
        # After message_start the hold is the prompt's exact cost plus max_tokens at the output rate.
        assert held == rates.cost(
            input=assistant.input_tokens,
            output=max_tokens,
            cache_write_5m=assistant.cache_creation_input_tokens - assistant.cache_creation_1h_input_tokens,
            cache_write_1h=assistant.cache_creation_1h_input_tokens,
            cache_read=assistant.cache_read_input_tokens,
        )
    await socket.close()


async def test_a_short_budget_grants_a_shorter_reply_instead_of_refusing(settings, offline_claude):
    offline_claude.set_defaults(reply_tokens=6_000)
    user, conversation = await setup_chat()
    text = "Explain the ledger in detail"
    full = await sync_to_async(worst_case_cost)(
        model=SONNET, prompt_tokens=len(text) + 8, max_tokens=16_000, at=timezone.now()
    )
    # Enough for about a quarter of the model's max_tokens: a full hold would be refused.
    limit = full // 4
    await sync_to_async(UserBudget.objects.update_or_create)(
        user=user, defaults={"policy": BudgetPolicy.LIMIT, "monthly_limit": limit}
    )
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    assistant, _ = await send_and_finish(socket, conversation, text)
    await socket.close()
    held, cost, granted = await hold_and_cost(assistant)
    assert MIN_REPLY_TOKENS <= granted < 16_000
    assert assistant.status == Message.Status.CUT_OFF and assistant.output_tokens == granted
    assert cost <= held <= limit


def test_no_reply_is_granted_less_than_the_minimum():
    user = make_user()
    UserBudget.objects.update_or_create(
        user=user, defaults={"policy": BudgetPolicy.LIMIT, "monthly_limit": usd_to_pico("0.01")}
    )
    message = make_message(make_conversation(user), role="assistant")
    with pytest.raises(Exception) as excinfo, transaction.atomic():
        spend_reserve(user=user, model=SONNET, prompt_tokens=1_000, max_tokens=16_000, message_id=message.pk)
    assert "could cost up to" in str(excinfo.value)
    assert not SpendReservation.objects.exists()


def test_a_known_prompt_only_ever_lowers_the_hold():
    user = make_user()
    message = make_message(make_conversation(user), role="assistant")
    with transaction.atomic():
        granted = spend_reserve(
            user=user, model=SONNET, prompt_tokens=1_000, max_tokens=4_000, message_id=message.pk
        )
    assert granted == 4_000
    before = SpendReservation.objects.get(message_id=message.pk).amount
    hold_prompt_known(
        message_id=message.pk, model=SONNET, usage=Usage(cache_read_tokens=900, input_tokens=50)
    )
    lowered = SpendReservation.objects.get(message_id=message.pk).amount
    assert lowered < before
    # A report larger than the bound (it cannot happen: the bound is an upper one) never raises it.
    hold_prompt_known(message_id=message.pk, model=SONNET, usage=Usage(cache_write_1h_tokens=50_000))
    assert SpendReservation.objects.get(message_id=message.pk).amount == lowered


async def test_a_new_system_prompt_bounds_the_next_prompt_by_its_bytes_again():
    user, conversation = await setup_chat(system_prompt="Short.")
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await send_and_finish(socket, conversation, "First question about tokens")
    await sync_to_async(services.conversation_update_settings)(
        conversation=conversation, model=SONNET, system_prompt="A much longer system prompt. " * 50
    )
    assistant, _ = await send_and_finish(socket, conversation, "Second question")
    await socket.close()
    bound = await bound_at(assistant)
    assert bound == await sync_to_async(bytes_bound)(conversation, Message(pk=assistant.pk))
    assert bound >= assistant.prompt_tokens


async def test_continuing_a_cut_off_reply_is_bounded_by_its_own_call(settings, offline_claude):
    settings.CHAT_MAX_TOKENS = 300
    offline_claude.set_defaults(reply_tokens=500)
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    cut, _ = await send_and_finish(socket, conversation, "A long answer, please")
    assert cut.status == Message.Status.CUT_OFF
    bound = await sync_to_async(history.prompt_tokens_bound)(conversation, before=cut)
    assert bound < await sync_to_async(bytes_bound)(conversation, cut) + len(cut.content.encode())
    await socket.send(action="continue", message_id=cut.pk)
    await socket.receive_until(final_frame_for(cut.pk), timeout=20)
    await generation_wait(cut.pk)
    continued = await reload(cut)
    await socket.close()
    assert continued.prompt_tokens <= bound

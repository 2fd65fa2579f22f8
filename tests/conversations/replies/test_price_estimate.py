"""The price under the message box: its arithmetic, its endpoint, and how close it comes to the ledger."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.management import call_command
from django.db.models import F

from billing.models import Rates
from billing.money import format_money
from conversations.replies import price
from conversations.replies.generation import generation_wait
from offline_claude.tokenizer import count_tokens
from tests.conversations.replies.test_chat_budget import PRICES
from tests.conversations.replies.test_chat_streaming import (
    final_frame_for,
    latest_assistant,
    ledger_rows_for,
    reload,
)
from tests.helpers import make_conversation, make_message, make_user, open_socket

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
# Rates in pUSD per token ($3 input, $15 output, $3.75 / $6 cache writes, $0.30 reads a million).
RATES = Rates(
    input=3_000_000, output=15_000_000, cache_write_5m=3_750_000, cache_write_1h=6_000_000, cache_read=300_000
)


# --- The arithmetic --------------------------------------------------------------------------------


def test_a_warm_cache_is_read_and_only_the_new_turns_are_written_at_exact_pico_dollars():
    tokens = price.split(prompt_tokens=2_500, read=2_300, ttl="5m", output=400)
    assert (tokens.read, tokens.written, tokens.uncached) == (2_300, 200, 0)
    # 2,300 × 0.30 + 200 × 3.75 + 400 × 15 USD/MTok, in pico-dollars, exactly.
    assert tokens.cost(RATES) == 2_300 * 300_000 + 200 * 3_750_000 + 400 * 15_000_000 == 7_440_000_000


def test_with_caching_off_every_prompt_token_is_plain_input():
    tokens = price.split(prompt_tokens=2_500, read=2_300, ttl="", output=10)
    assert (tokens.read, tokens.written, tokens.uncached) == (0, 0, 2_500)
    assert tokens.cost(RATES) == 2_500 * 3_000_000 + 10 * 15_000_000


def test_the_cache_of_the_last_call_lives_for_its_lifetime_and_a_read_renews_it():
    calls = [
        price.Call(T0, 2_000, "1h"),  # the start, kept an hour
        price.Call(T0 + timedelta(minutes=1), 2_400, "5m"),
        price.Call(T0 + timedelta(minutes=2), 2_800, "5m"),
    ]
    warm = price.cache_state(calls, now=T0 + timedelta(minutes=6), prompt_tokens=3_200)
    assert warm == price.CacheState(read=2_800, expired=False)
    # Ten minutes later the 5-minute entries are gone; the hour's start (renewed at 12:01) is read.
    cold = price.cache_state(calls, now=T0 + timedelta(minutes=12), prompt_tokens=3_200)
    assert cold == price.CacheState(read=2_000, expired=True)
    # Past the hour since its last read, nothing is cached any more.
    assert price.cache_state(calls, now=T0 + timedelta(minutes=62), prompt_tokens=3_200).read == 0
    assert price.cache_state([], now=T0, prompt_tokens=100) == price.CacheState(read=0, expired=False)


def test_the_output_assumed_is_the_median_reply_else_the_typical_one():
    assert price.assumed_output([300, 900, 320, 0]) == 320
    assert price.assumed_output([]) == price.TYPICAL_REPLY_TOKENS
    assert price.model_label("claude-sonnet-5-5") == "Sonnet 5.5"
    assert price.model_label("claude-haiku-5-5") == "Haiku 5.5"


def test_the_estimate_sent_with_a_message_counts_only_for_that_text_in_that_conversation(settings):
    from django.core import signing

    token = signing.dumps({"c": 7, "h": price.text_hash("Hello there"), "p": 1234}, salt=price._SALT)
    assert price.estimate_sent(token, conversation_id=7, text="Hello there\r\n") == 1234
    assert price.estimate_sent(token, conversation_id=8, text="Hello there") is None
    assert price.estimate_sent(token, conversation_id=7, text="Hello") is None
    assert price.estimate_sent(token[:-2] + "xx", conversation_id=7, text="Hello there") is None
    assert price.estimate_sent(None, conversation_id=7, text="Hello there") is None


# --- Against the offline Claude, through the real SDK and the ledger -------------------------------

WORDS = ["cache", "prompt", "window", "token", "reply", "budget", "ledger", "stream", "model", "turn"]


def text_of(tokens: int, seed: int) -> str:
    """Deterministic prose of exactly `tokens` offline-Claude tokens (the shape of bench/prompt_caching.py)."""
    text = " ".join(WORDS[(seed * 7 + i * 3) % len(WORDS)] + str(seed % 10) for i in range(tokens))
    assert count_tokens(text) == tokens
    return text


# The benchmark's conversation: a 2,000-token system prompt, 300-token turns, 300-token answers.
SYSTEM = text_of(2_000, 999)
SCRIPT = [f"Question {n}: {text_of(295, n)}" for n in range(1, 7)]


async def _send_priced(socket, conversation, text: str):
    """The estimate a page shows for `text`, then Send with it, as the composer does: the reply and it."""
    estimate = await price.estimate(conversation, text, [])
    await socket.send(message=text, conversation=conversation.pk, price_estimate=estimate.token)
    await socket.receive_until(lambda f: "msg-" in f and "status-streaming" in f)
    assistant = await latest_assistant(conversation)
    await socket.receive_until(final_frame_for(assistant.pk), timeout=20)
    await generation_wait(assistant.pk)
    return await reload(assistant), estimate


@sync_to_async
def _pause(conversation, seconds: int) -> None:
    """The person was away `seconds`: every timestamp of the conversation moves back by that much."""
    conversation.messages.update(
        created_at=F("created_at") - timedelta(seconds=seconds),
        updated_at=F("updated_at") - timedelta(seconds=seconds),
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("offline_claude")
async def test_the_price_shown_before_each_send_is_within_ten_percent_of_the_ledger(offline_claude):
    await sync_to_async(call_command)("load_prices", str(PRICES), verbosity=0)
    offline_claude.set_defaults(reply_tokens=300)  # scripted: every answer 300 tokens (thinking besides)
    ahead = [0.0]
    offline_claude.server.cache._clock = lambda: time.monotonic() + ahead[0]
    try:
        user = await sync_to_async(make_user)()
        conversation = await sync_to_async(make_conversation)(
            owner=user, model="claude-sonnet-5-5", system_prompt=SYSTEM
        )
        socket, _, _ = await open_socket(user, conversation.pk)
        await socket.receive()
        seen = []
        for text in SCRIPT:
            reply, estimate = await _send_priced(socket, conversation, text)
            seen.append((reply, estimate))
        # The person comes back after ten minutes: the 5-minute entries expired (on both clocks).
        ahead[0] += 600
        await _pause(conversation, 600)
        after, late = await _send_priced(socket, conversation, f"Back again: {text_of(295, 42)}")
        await socket.close()
    finally:
        offline_claude.server.cache._clock = time.monotonic
        offline_claude.set_defaults(reply_tokens=None)

    for reply, estimate in [*seen, (after, late)]:
        [row] = await ledger_rows_for(reply)
        assert abs(estimate.cost - row.cost) <= row.cost / 10, (estimate, row.cost)
        # The prompt was counted exactly; the cache split is the one the API reported.
        assert estimate.prompt_tokens == row.prompt_tokens
        assert estimate.tokens.read == row.cache_read_tokens
        assert reply.price_estimate == estimate.cost  # kept for the receipt
    assert seen[1][1].tokens.read > 0 and not seen[1][1].expired
    # The hour-long start is still read; the line says the rest expired and what this once costs.
    assert late.expired and late.tokens.read == seen[0][1].prompt_tokens
    assert price.line(late)[0] == (
        f"the cache expired: ≈ {format_money(late.cost)}, this once ({late.cached_percent}% still cached)"
    )
    assert late.cost > seen[-1][1].cost  # this once dearer
    assert f"{seen[2][1].cached_percent}% from cache" in price.line(seen[2][1])[1]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("offline_claude")
async def test_a_cheaper_allowed_model_is_named_and_near_the_budget_the_line_speaks_of_it():
    from billing.models import UserBudget

    await sync_to_async(call_command)("load_prices", str(PRICES), verbosity=0)
    user = await sync_to_async(make_user)()
    conversation = await sync_to_async(make_conversation)(
        owner=user, model="claude-opus-5-5", system_prompt="Be brief. " * 500
    )
    estimate = await price.estimate(conversation, "Hello, how are you?", [])
    words = " · ".join(price.line(estimate))
    assert estimate.cheaper is not None and estimate.cheaper[0] == "claude-haiku-5-5"
    assert "Haiku 5.5: ≈ $" in words and "Opus 5.5" in words and not estimate.near_budget

    # A budget of 20 cents leaves room for a shorter reply only: the line says what is left and the most.
    budget = await sync_to_async(UserBudget.objects.create)(
        user=user, policy="limit", monthly_limit=200_000_000_000
    )
    near = await price.estimate(conversation, "Hello, how are you?", [])
    first = price.line(near)[0]
    assert near.near_budget
    assert first.startswith("$0.20 left of your $0.20 budget: this message may cost at most $0.")
    assert first.endswith("(a shorter reply)")
    # A cent is not enough for even a short reply: the line is the sentence a Send would be refused with.
    budget.monthly_limit = 10_000_000_000
    await sync_to_async(budget.save)()
    refused = price.line(await price.estimate(conversation, "Hello, how are you?", []))
    assert refused == [
        "This message could cost up to $0.081, but only $0.01 of your $0.01 monthly budget is left. "
        "Try a shorter conversation, or ask an administrator for a higher budget."
    ]


# --- The endpoint and the receipt -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("offline_claude")
def test_the_line_is_only_for_the_owner_signed_in_with_the_csrf_token(client):
    from django.test import Client

    call_command("load_prices", str(PRICES), verbosity=0)
    owner, other = make_user(), make_user()
    conversation = make_conversation(owner=owner, model="claude-sonnet-5-5")
    url = f"/c/{conversation.pk}/price/"

    anonymous = client.post(url, {"message": "Hello"})
    assert anonymous.status_code == 302 and "/login" in anonymous["Location"]

    client.force_login(other)
    assert client.post(url, {"message": "Hello"}).status_code == 404

    client.force_login(owner)
    assert client.get(url).status_code == 405
    page = client.post(url, {"message": "Hello, what is a cache?"}).content.decode()
    assert "≈ $" in page and "Sonnet 5.5" in page and 'name="price_estimate"' in page
    assert client.post(url, {"message": "   "}).content.decode().strip() == ""

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(owner)
    assert strict.post(url, {"message": "Hello"}).status_code == 403


@pytest.mark.django_db
@pytest.mark.usefixtures("offline_claude")
def test_a_receipt_shows_the_estimate_beside_the_real_cost_and_only_to_its_owner(client):
    from tests.billing.billing_factories import record_call

    call_command("load_prices", str(PRICES), verbosity=0)
    owner, other = make_user(), make_user()
    conversation = make_conversation(owner=owner, model="claude-sonnet-5-5")
    reply = make_message(conversation, role="assistant", content="Hi", price_estimate=8_500_000_000)
    # 1,000 prompt tokens at $2 and 600 output tokens at $10 a million (Sonnet 5.5): $0.008 exactly.
    record_call(
        owner,
        model="claude-sonnet-5-5",
        conversation=conversation,
        message=reply,
        input_tokens=1_000,
        output_tokens=600,
    )
    client.force_login(owner)
    receipt = client.get(f"/usage/receipt/{reply.pk}/").content.decode()
    assert "Cost $0.008 · estimated ≈ $0.0085 before sending" in receipt
    client.force_login(other)
    assert client.get(f"/usage/receipt/{reply.pk}/").status_code == 404


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("offline_claude", "private_media")
def test_a_draft_is_counted_once_never_billed_and_its_own_pending_files_add_their_estimate(
    client, offline_claude
):
    from conversations import attachments
    from tests.media_factories import image_bytes, upload

    call_command("load_prices", str(PRICES), verbosity=0)
    owner, other = make_user(), make_user()
    conversation = make_conversation(owner=owner, model="claude-sonnet-5-5")
    elsewhere = make_conversation(owner=other, model="claude-sonnet-5-5")
    picture = image_bytes(800, 600)
    mine = attachments.attachment_add(
        owner=owner,
        conversation=conversation,
        checked=attachments.check_upload(upload("a.png", picture, "image/png")),
    )
    theirs = attachments.attachment_add(
        owner=other,
        conversation=elsewhere,
        checked=attachments.check_upload(upload("b.png", picture, "image/png")),
    )
    client.force_login(owner)
    url = f"/c/{conversation.pk}/price/"

    def counted() -> int:
        return sum(
            n for key, n in offline_claude.server.stats.items() if key.startswith("/v1/messages/count_tokens")
        )

    def billed() -> int:
        return sum(n for key, n in offline_claude.server.stats.items() if key.startswith("/v1/messages "))

    before = counted()
    text_only = client.post(url, {"message": "What is in this picture?"}).content.decode()
    again = client.post(url, {"message": "What is in this picture?"}).content.decode()
    assert "≈ $" in text_only and "≈ $" in again
    assert counted() == before + 1 and billed() == 0  # the same draft is not counted twice; nothing billed

    plain = async_to_sync(price.estimate)(conversation, "What is in this picture?", [])
    with_file = async_to_sync(price.estimate)(conversation, "What is in this picture?", [mine.pk])
    assert with_file.prompt_tokens == plain.prompt_tokens + mine.tokens
    # Someone else's file (or one of another conversation) is not theirs to price: it adds nothing.
    assert async_to_sync(price.estimate)(
        conversation, "What is in this picture?", [theirs.pk]
    ).prompt_tokens == (plain.prompt_tokens)
    files_alone = client.post(url, {"message": "", "attachments": [str(mine.pk)]}).content.decode()
    assert "≈ $" in files_alone
    refused = client.post(url, {"message": "Hi", "attachments": ["x"]}).content.decode()
    assert "≈ $" not in refused and "price_estimate" not in refused


@pytest.mark.django_db(transaction=True)
def test_a_person_pricing_many_drafts_a_minute_is_paused_without_a_count(client, offline_claude, settings):
    call_command("load_prices", str(PRICES), verbosity=0)
    settings.CHAT_PRICE_LINE_PER_MINUTE = 3
    owner, neighbour = make_user(), make_user()
    conversation = make_conversation(owner=owner, model="claude-sonnet-5-5")
    theirs = make_conversation(owner=neighbour, model="claude-sonnet-5-5")

    def counted() -> int:
        return sum(
            n for key, n in offline_claude.server.stats.items() if key.startswith("/v1/messages/count_tokens")
        )

    client.force_login(owner)
    lines = [
        client.post(f"/c/{conversation.pk}/price/", {"message": f"Draft number {n}"}).content.decode()
        for n in range(3)
    ]
    assert all("≈ $" in line for line in lines)
    before = counted()
    paused = client.post(f"/c/{conversation.pk}/price/", {"message": "Draft number 4"}).content.decode()
    assert "pauses for a moment" in paused and "≈ $" not in paused
    assert counted() == before  # no count_tokens call for it
    client.force_login(neighbour)  # another person is not paused by it
    assert "≈ $" in client.post(f"/c/{theirs.pk}/price/", {"message": "Mine"}).content.decode()

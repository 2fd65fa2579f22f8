"""Every web search is money: server tools priced per use from effective-dated price rows, on the ledger
row, in the rollups, in the budget hold (a reply with Web on holds its max_uses searches: zero overshoot
stays), and reconciled with Anthropic (what people see of them: test_web_tools_pages.py).

Prices seeded from Anthropic's pricing page: web search $10 per 1,000 searches, web fetch no charge
beyond the tokens of what it fetched (billing/migrations/0012_server_tool_prices.py)."""

from __future__ import annotations

import io
import json
import uuid
from datetime import timedelta

import pytest
from billing_factories import (
    MODEL,
    make_conversation,
    make_message,
    make_staff,
    make_user,
    record_call,
)
from django.core.management import CommandError, call_command
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from billing.keys import OFFLINE_KEY
from billing.models import (
    SpendReservation,
    UsageDaily,
    UsageMonthlyTeam,
    UsageMonthlyUser,
    UsageRecord,
)
from billing.money import rate_from_usd_per_thousand, usd_to_pico
from billing.reconcile import reconcile, utc_today
from billing.rollups import rollup_rebuild
from billing.services import (
    BudgetExceeded,
    budget_status,
    hold_preview,
    hold_prompt_known,
    spend_reserve,
    usage_record,
    usage_replace_estimate,
)
from billing.tool_prices import ServerToolPrice
from billing.usage import LedgerLabels, ServerToolCaps, Usage
from offline_claude.testing import sync_client

pytestmark = pytest.mark.django_db

SEARCH = 10 * 10**9  # the seeded price: $10 per 1,000 searches = $0.01 = 10^10 pUSD a search
SONNET_5_5_TOKENS = 1000 * 2_000_000 + 500 * 10_000_000  # 1,000 in at $2/MTok, 500 out at $10/MTok

# The hold: claude-sonnet-4-6 writes a 1,000-token prompt to the 1-hour cache at most ($6/MTok: $0.006)
# and outputs at $15/MTok; with Web on it may search 5 times ($0.05).
SONNET = "claude-sonnet-4-6"
PROMPT, ASKED = 1_000, 8_000
FIVE_SEARCHES = ServerToolCaps(web_searches=5)


@pytest.fixture(autouse=True)
def _knobs(settings):
    settings.CHAT_DEFAULT_MONTHLY_BUDGET_USD = "1"
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0


def price_fetches(per_thousand: str, *, from_=None) -> ServerToolPrice:
    """A version of the web fetch price (the seeded one is $0: fetched content is billed as tokens)."""
    return ServerToolPrice.objects.create(
        tool="web_fetch",
        effective_from=from_ or timezone.now() - timedelta(seconds=1),
        rate=rate_from_usd_per_thousand(per_thousand),
    )


def spend(user, usd: str) -> None:
    """A call costing exactly `usd` (Haiku 4.5 input at $1/MTok)."""
    record_call(user, model="claude-haiku-4-5", input_tokens=usd_to_pico(usd) // 1_000_000)


def reserve(user, message, *, tool_caps: ServerToolCaps = FIVE_SEARCHES) -> SpendReservation:
    with transaction.atomic():
        spend_reserve(
            user=user,
            model=SONNET,
            prompt_tokens=PROMPT,
            max_tokens=ASKED,
            message_id=message.pk,
            tool_caps=tool_caps,
        )
    return SpendReservation.objects.get(message_id=message.pk, settled_at__isnull=True)


# --- Prices and the ledger ---------------------------------------------------------------------------


def test_the_seeded_prices_are_anthropics():
    seeded = {price.tool: price.rate for price in ServerToolPrice.objects.all()}
    assert seeded == {"web_search": SEARCH, "web_fetch": 0}


def test_a_reply_with_two_searches_and_a_fetch_costs_its_tokens_and_each_use_at_the_price_rows():
    fetch_price = price_fetches("1")  # $0.001 a fetch
    user = make_user()

    row = record_call(user, input_tokens=1000, output_tokens=500, web_search_requests=2, web_fetch_requests=1)

    assert row.cost == SONNET_5_5_TOKENS + 2 * SEARCH + 1 * 10**9
    assert row.server_tool_cost == 2 * SEARCH + 10**9
    assert (row.web_search_requests, row.web_fetch_requests) == (2, 1)
    assert (row.rate_web_search, row.rate_web_fetch) == (SEARCH, 10**9)
    assert row.web_search_price == ServerToolPrice.objects.get(tool="web_search")
    assert row.web_fetch_price == fetch_price
    assert row.usage() == Usage(
        input_tokens=1000, output_tokens=500, web_search_requests=2, web_fetch_requests=1
    )
    # The rollups carry the uses and their cost, so no page needs the ledger to show them.
    daily = UsageDaily.objects.get(user_id=user.pk, model=MODEL)
    month = UsageMonthlyTeam.objects.get(team_id=0)
    for rollup in (daily, month):
        assert (rollup.web_search_requests, rollup.web_fetch_requests) == (2, 1)
        assert (rollup.server_tool_cost, rollup.cost) == (row.server_tool_cost, row.cost)
    # Rebuilt from the ledger, they are the same.
    rollup_rebuild()
    rebuilt = UsageMonthlyUser.objects.get(user_id=user.pk)
    assert (rebuilt.web_search_requests, rebuilt.server_tool_cost) == (2, row.server_tool_cost)


def test_a_call_without_server_tools_records_no_tool_price_and_costs_its_tokens():
    row = record_call(make_user(), input_tokens=1000, output_tokens=500)
    assert row.cost == SONNET_5_5_TOKENS
    assert (row.server_tool_cost, row.rate_web_search, row.web_search_price) == (0, 0, None)


def test_searches_on_an_unpriced_model_are_still_charged():
    row = record_call(make_user(), model="claude-mystery-9", input_tokens=500, web_search_requests=1)
    assert not row.priced
    assert row.cost == row.server_tool_cost == SEARCH


def test_a_later_search_price_applies_only_from_its_date(monkeypatch):
    now = timezone.now()
    later = ServerToolPrice.objects.create(
        tool="web_search", effective_from=now + timedelta(days=3), rate=rate_from_usd_per_thousand("14")
    )
    user = make_user()
    before = record_call(user, web_search_requests=3)
    assert before.cost == 3 * SEARCH

    monkeypatch.setattr(timezone, "now", lambda: now + timedelta(days=4))
    after = record_call(user, web_search_requests=3)

    assert after.cost == 3 * 14 * 10**9
    assert after.web_search_price == later
    before.refresh_from_db()
    assert (before.cost, before.rate_web_search) == (3 * SEARCH, SEARCH)  # a recorded cost never moves


def test_an_estimate_replaced_by_the_calls_own_count_prices_its_searches_and_moves_the_rollups():
    user = make_user()
    attempt = uuid.uuid4()
    labels = LedgerLabels(user.pk, user.username, None, "", MODEL)
    usage_record(
        labels=labels,
        message_id=None,
        request_id="",
        usage=Usage(input_tokens=1000, output_tokens=100),
        estimated=True,
        attempt_id=attempt,
    )

    row = usage_replace_estimate(
        attempt_id=attempt,
        request_id="req_1",
        usage=Usage(input_tokens=1000, output_tokens=500, web_search_requests=2),
        estimated=False,
    )

    assert row.cost == SONNET_5_5_TOKENS + 2 * SEARCH
    assert row.web_search_price == ServerToolPrice.objects.get(tool="web_search")
    month = UsageMonthlyUser.objects.get(user_id=user.pk)
    assert (month.web_search_requests, month.server_tool_cost, month.cost) == (2, 2 * SEARCH, row.cost)


def test_staff_price_searches_per_thousand_and_a_used_version_is_locked(client):
    staff = make_staff()
    client.force_login(staff)
    response = client.post(
        reverse("admin:billing_servertoolprice_add"),
        {
            "tool": "web_search",
            "effective_from_0": "2026-01-02",
            "effective_from_1": "00:00:00",
            "per_thousand_usd": "12.5",
            "note": "test",
        },
    )
    assert response.status_code == 302
    added = ServerToolPrice.objects.get(tool="web_search", note="test")
    assert added.rate == 12_500_000_000  # $0.0125 a search

    record_call(make_user(), web_search_requests=1)  # priced with the latest version: the one added
    page = client.get(reverse("admin:billing_servertoolprice_change", args=[added.pk])).content.decode()
    assert "Add a new version of this price" in page
    change = reverse("admin:billing_servertoolprice_change", args=[added.pk])
    assert client.post(change, {"per_thousand_usd": "1"}).status_code == 403
    added.refresh_from_db()
    assert added.rate == 12_500_000_000


def test_a_price_list_file_loads_server_tool_prices_and_never_changes_a_used_one(tmp_path):
    def load(entries) -> str:
        path = tmp_path / "prices.json"
        path.write_text(json.dumps({"server_tools": entries}))
        out = io.StringIO()
        call_command("load_prices", str(path), stdout=out)
        return out.getvalue()

    since = (timezone.localdate() - timedelta(days=1)).isoformat()
    dearer = {"tool": "web_search", "effective_from": since, "per_thousand": "12.5"}
    assert "1 created" in load([dearer])
    assert "0 created, 0 updated, 1 unchanged" in load([dearer])
    version = ServerToolPrice.objects.get(tool="web_search", rate=12_500_000_000)

    assert record_call(make_user(), web_search_requests=1).web_search_price == version
    with pytest.raises(CommandError, match="already used to price recorded calls"):
        load([{**dearer, "per_thousand": "20"}])
    with pytest.raises(CommandError, match="tool must be one of web_search, web_fetch"):
        load([{**dearer, "tool": "code_execution"}])


# --- The hold: max_uses searches at their price, on top of the tokens -------------------------------------


def test_a_hold_covers_the_replys_tokens_and_max_uses_searches_at_their_price():
    user = make_user()
    message = make_message(make_conversation(user))

    hold = reserve(user, message)

    # $0.006 prompt + 8,000 × $15/MTok ($0.12) + 5 searches ($0.05)
    assert hold.amount == usd_to_pico("0.176")
    assert (hold.max_tokens, hold.tools_held) == (ASKED, 5 * SEARCH)
    # The prompt's counts do not shrink it: the searches' results are input tokens still to come.
    hold_prompt_known(message_id=message.pk, model=SONNET, usage=Usage(input_tokens=PROMPT))
    hold.refresh_from_db()
    assert hold.amount == usd_to_pico("0.176")


def test_the_tokens_the_results_may_add_are_held_as_prompt_tokens():
    user = make_user()
    message = make_message(make_conversation(user))

    hold = reserve(user, message, tool_caps=ServerToolCaps(web_searches=5, result_tokens=10_000))

    # (1,000 + 10,000) prompt tokens at $6/MTok + $0.12 of output + $0.05 of searches
    assert hold.amount == usd_to_pico("0.236")
    assert hold.tools_held == usd_to_pico("0.11")  # the searches and the 10,000 tokens they may read


def test_the_searches_are_held_first_and_max_tokens_shrinks_to_what_is_left():
    user = make_user()
    message = make_message(make_conversation(user))
    spend(user, "0.90")  # $0.10 left: $0.05 for the searches, $0.05 for the reply

    hold = reserve(user, message)

    # ($0.05 − $0.006 prompt) / $15 per million output tokens = 2,933 tokens (without Web: 6,266)
    assert hold.max_tokens == 2_933
    assert hold.amount == usd_to_pico("0.05") + usd_to_pico("0.006") + 2_933 * 15_000_000
    assert hold.amount <= usd_to_pico("0.10")
    # The dearest call the API allows (every search, every token granted) costs no more than was held.
    row = record_call(
        user, model=SONNET, message=message, input_tokens=PROMPT, output_tokens=2_933, web_search_requests=5
    )
    assert row.cost <= hold.amount
    assert budget_status(user).spent <= usd_to_pico("1")


def test_a_budget_that_pays_the_tokens_but_not_the_searches_is_refused_before_the_call():
    user = make_user()
    message = make_message(make_conversation(user))
    spend(user, "0.94")  # $0.06 left: a 2,048-token reply ($0.037) fits, with 5 searches ($0.05) it does not

    with pytest.raises(BudgetExceeded) as refused:
        reserve(user, message)

    assert str(refused.value) == (
        "With Web on, this message could cost up to $0.087: $0.037 for the reply and $0.05 for up to 5 web "
        "searches. Only $0.06 of your $1.00 monthly budget is left, so the web searches are what does not "
        "fit. Turn Web off in this conversation to send it without them, or ask an administrator for a "
        "higher budget."
    )
    assert not SpendReservation.objects.filter(message_id=message.pk).exists()
    # The price line says the same before Send.
    preview = hold_preview(
        status=budget_status(user),
        model=SONNET,
        prompt_tokens=PROMPT,
        max_tokens=ASKED,
        cache_ttl="1h",
        tool_caps=FIVE_SEARCHES,
    )
    assert preview.refusal == str(refused.value)
    # With Web off the same message goes, with what is left for its reply: ($0.06 − $0.006) / $15/MTok.
    hold = reserve(user, message, tool_caps=ServerToolCaps())
    assert (hold.max_tokens, hold.tools_held, hold.amount) == (3_600, 0, usd_to_pico("0.06"))


# --- Reconciled with Anthropic's report, which counts the searches too ---------------------------------


def test_a_call_with_searches_reconciles_exactly_with_anthropics_usage_and_cost(settings, offline_claude):
    settings.ANTHROPIC_ADMIN_KEY = "sk-ant-admin01-offline-test"
    user = make_user()
    reply = sync_client(offline_claude, api_key=OFFLINE_KEY).messages.create(
        model=MODEL,
        max_tokens=2000,
        messages=[{"role": "user", "content": "How do I brew green tea? [[offline web_searches=2]]"}],
        tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
    )
    counted = reply.usage
    row = usage_record(
        labels=LedgerLabels(user.pk, user.username, None, "", MODEL),
        message_id=None,
        request_id=reply.id,
        usage=Usage(
            input_tokens=counted.input_tokens,
            output_tokens=counted.output_tokens,
            cache_read_tokens=counted.cache_read_input_tokens or 0,
            cache_write_5m_tokens=counted.cache_creation.ephemeral_5m_input_tokens,
            cache_write_1h_tokens=counted.cache_creation.ephemeral_1h_input_tokens,
            web_search_requests=counted.server_tool_use.web_search_requests,
        ),
        estimated=False,
    )
    assert row.web_search_requests == 2 and row.server_tool_cost == 2 * SEARCH

    [outcome] = reconcile([utc_today()], sleep=lambda _s: None)

    assert outcome.differences == []
    by_kind = {(r.model, r.kind): r for r in outcome.rows}
    assert (by_kind[(MODEL, "web_search")].ours, by_kind[(MODEL, "web_search")].theirs) == (2, 2)
    assert by_kind[("", "cost")].theirs == by_kind[("", "cost")].ours == UsageRecord.objects.get().cost

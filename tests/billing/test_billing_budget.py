from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from billing_factories import make_conversation, make_message, make_user, record_call
from django.contrib import admin
from django.db import transaction
from django.template import Context, Template
from django.utils import timezone

from billing import dashboard, rollups
from billing.holds import worst_case_cost
from billing.models import BudgetPolicy, SiteBudget, SpendReservation, UserBudget
from billing.money import usd_to_pico
from billing.periods import preset
from billing.services import (
    BudgetExceeded,
    RateLimited,
    budget_status,
    spend_reserve,
)

pytestmark = pytest.mark.django_db

SONNET = "claude-sonnet-4-6"


@pytest.fixture(autouse=True)
def _knobs(settings):
    settings.CHAT_DEFAULT_MONTHLY_BUDGET_USD = "1"
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0


def reserve(user, *, message_id: int, prompt_tokens: int = 1000, max_tokens: int = 1000, model: str = SONNET):
    with transaction.atomic():
        spend_reserve(
            user=user, model=model, prompt_tokens=prompt_tokens, max_tokens=max_tokens, message_id=message_id
        )


def spend(user, usd: str):
    """Record a call costing exactly `usd` on Haiku 4.5 (input at $1/MTok)."""
    tokens = usd_to_pico(usd) // 1_000_000
    assert tokens * 1_000_000 == usd_to_pico(usd)
    return record_call(user, model="claude-haiku-4-5", input_tokens=tokens)


def set_budget(user, policy: str, usd: str | None = None):
    UserBudget.objects.update_or_create(
        user=user, defaults={"policy": policy, "monthly_limit": usd_to_pico(usd) if usd else None}
    )


def test_worst_case_is_prompt_bytes_at_the_dearest_prompt_rate_plus_max_tokens_at_output_rate():
    worst = worst_case_cost(model=SONNET, prompt_tokens=1000, max_tokens=1000, at=timezone.now())
    assert worst == 1000 * 6_000_000 + 1000 * 15_000_000  # 1h cache write is the dearest prompt rate


def test_worst_case_uses_the_band_a_long_prompt_could_fall_in():
    at = timezone.now()
    assert (
        worst_case_cost(model="claude-haiku-5-5", prompt_tokens=100_000, max_tokens=0, at=at)
        == 100_000 * 200_000
    )
    assert (
        worst_case_cost(model="claude-haiku-5-5", prompt_tokens=100_001, max_tokens=0, at=at)
        == 100_001 * 1_000_000
    )


def test_under_budget_reserves_then_usage_settles_the_reservation():
    user = make_user()
    message = make_message(make_conversation(user))
    reserve(user, message_id=message.pk)
    assert SpendReservation.objects.open(timezone.now()).filter(message_id=message.pk).count() == 1
    assert budget_status(user).held == 21_000_000_000
    record_call(user, model=SONNET, message=message, input_tokens=100, output_tokens=100)
    assert SpendReservation.objects.open(timezone.now()).count() == 0
    assert budget_status(user).held == 0


def test_hard_stop_at_the_budget_with_a_clear_message():
    user = make_user()
    spend(user, "1")
    with pytest.raises(BudgetExceeded) as excinfo:
        reserve(user, message_id=1)
    assert "monthly budget of $1.00" in str(excinfo.value)
    assert not SpendReservation.objects.exists()


def test_refused_when_the_worst_case_would_not_fit_in_what_is_left():
    user = make_user()
    spend(user, "0.99")  # $0.01 left; the worst case is $0.021
    with pytest.raises(BudgetExceeded) as excinfo:
        reserve(user, message_id=1)
    assert "could cost up to $0.021" in str(excinfo.value)
    reserve(user, message_id=2, prompt_tokens=100, max_tokens=100)  # $0.0021 fits


def test_open_reservations_count_against_the_budget_until_settled():
    user = make_user()
    conversation = make_conversation(user)
    first, second = make_message(conversation), make_message(conversation)
    spend(user, "0.96")  # $0.04 left: room for one $0.021 worst case, not two
    reserve(user, message_id=first.pk)
    with pytest.raises(BudgetExceeded):
        reserve(user, message_id=second.pk)
    record_call(user, model=SONNET, message=first)  # the call failed before any tokens: costs nothing
    reserve(user, message_id=second.pk)


def test_stale_reservations_are_ignored_and_cleaned_up():
    user = make_user()
    spend(user, "0.96")
    SpendReservation.objects.create(
        user=user,
        message_id=99,
        model=SONNET,
        amount=usd_to_pico("0.5"),
        created_at=timezone.now() - timedelta(hours=2),
    )
    reserve(user, message_id=1)
    assert not SpendReservation.objects.filter(message_id=99).exists()


def test_eighty_percent_warning_and_exhausted_levels():
    user = make_user()
    spend(user, "0.79")
    assert budget_status(user).level == "ok"
    spend(user, "0.01")
    status = budget_status(user)
    assert status.level == "warning"
    assert status.fraction == Decimal("0.8")
    spend(user, "0.2")
    assert budget_status(user).level == "exhausted"


def test_banner_is_empty_when_ok_warns_at_80_percent_and_stops_at_100():
    user = make_user()
    template = Template("{% load billing_tags %}{% budget_banner user %}")
    assert template.render(Context({"user": user})).strip() == ""
    spend(user, "0.85")
    warning = template.render(Context({"user": user}))
    assert "$0.85" in warning and "$1.00" in warning
    spend(user, "0.15")
    assert "Monthly budget reached" in template.render(Context({"user": user}))


def test_unlimited_user_override_never_refuses():
    user = make_user()
    set_budget(user, BudgetPolicy.UNLIMITED)
    spend(user, "5")
    reserve(user, message_id=1, prompt_tokens=10_000_000, max_tokens=64_000)
    status = budget_status(user)
    assert status.limit is None and status.level == "ok"


def test_per_user_limit_overrides_the_site_default():
    rich, default = make_user(), make_user()
    set_budget(rich, BudgetPolicy.LIMIT, "50")
    spend(rich, "10")
    spend(default, "10")
    reserve(rich, message_id=1)
    with pytest.raises(BudgetExceeded):
        reserve(default, message_id=2)
    assert budget_status(rich).limit == usd_to_pico("50")


def test_configured_default_unlimited_and_db_site_default(settings):
    user = make_user()
    spend(user, "2")
    settings.CHAT_DEFAULT_MONTHLY_BUDGET_USD = "unlimited"
    assert budget_status(user).limit is None
    settings.CHAT_DEFAULT_MONTHLY_BUDGET_USD = ""
    assert budget_status(user).limit is None
    settings.CHAT_DEFAULT_MONTHLY_BUDGET_USD = "2.5"
    assert budget_status(user).limit == usd_to_pico("2.5")
    SiteBudget.objects.update_or_create(
        pk=1, defaults={"policy": BudgetPolicy.LIMIT, "monthly_limit": usd_to_pico("3")}
    )
    assert budget_status(user).limit == usd_to_pico("3")
    assert budget_status(user).level == "ok"


def test_spend_of_last_month_does_not_count(monkeypatch):
    user = make_user()
    real_now = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: real_now - timedelta(days=40))
    spend(user, "1")
    monkeypatch.setattr(timezone, "now", lambda: real_now)
    assert budget_status(user).spent == 0
    reserve(user, message_id=1)


def test_rate_limit_refuses_the_extra_message_in_a_minute(settings, monkeypatch):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 3
    user, other = make_user(), make_user()
    for message_id in range(3):
        reserve(user, message_id=message_id, prompt_tokens=10, max_tokens=10)
    with pytest.raises(RateLimited) as excinfo:
        reserve(user, message_id=4, prompt_tokens=10, max_tokens=10)
    assert "3 per minute" in str(excinfo.value)
    reserve(other, message_id=5, prompt_tokens=10, max_tokens=10)
    real_now = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: real_now + timedelta(seconds=61))
    reserve(user, message_id=6, prompt_tokens=10, max_tokens=10)


def test_a_refused_reserve_writes_nothing_in_the_callers_transaction():
    user = make_user()
    spend(user, "1")
    conversation = make_conversation(user)
    with pytest.raises(BudgetExceeded), transaction.atomic():
        message = make_message(conversation)
        spend_reserve(user=user, model=SONNET, prompt_tokens=10, max_tokens=10, message_id=message.pk)
    assert not conversation.messages.exists()
    assert not SpendReservation.objects.exists()


def test_enforcement_dashboard_and_admin_apply_the_same_budget_rule(settings):
    settings.CHAT_DEFAULT_MONTHLY_BUDGET_USD = "1"
    limited, unlimited, deferring, without_row = (make_user() for _ in range(4))
    set_budget(limited, BudgetPolicy.LIMIT, "50")
    set_budget(unlimited, BudgetPolicy.UNLIMITED)
    set_budget(deferring, BudgetPolicy.DEFAULT)
    users = (limited, unlimited, deferring, without_row)
    for user in users:
        spend(user, "0.01")

    def enforced() -> dict:
        return {user.pk: budget_status(user).limit for user in users}

    def shown_on_dashboard() -> dict:
        rows = dashboard.user_rows(rollups.period_by_user(preset("month")))
        return {row["user_id"]: row["limit"] for row in rows}

    one, three, fifty = usd_to_pico("1"), usd_to_pico("3"), usd_to_pico("50")
    expected = {limited.pk: fifty, unlimited.pk: None, deferring.pk: one, without_row.pk: one}
    assert enforced() == shown_on_dashboard() == expected

    site = SiteBudget.objects.create(pk=1, policy=BudgetPolicy.LIMIT, monthly_limit=three)
    expected = {limited.pk: fifty, unlimited.pk: None, deferring.pk: three, without_row.pk: three}
    assert enforced() == shown_on_dashboard() == expected

    user_admin, site_admin = admin.site._registry[UserBudget], admin.site._registry[SiteBudget]
    by_user = {budget.user_id: budget for budget in UserBudget.objects.all()}
    assert [user_admin.limit(by_user[user.pk]) for user in (limited, unlimited, deferring)] == [
        "$50.00",
        "unlimited",
        "site default",
    ]
    assert site_admin.limit(site) == "$3.00"
    site.policy = BudgetPolicy.DEFAULT
    assert site_admin.limit(site) == "$1.00"
    site.policy = BudgetPolicy.UNLIMITED
    assert site_admin.limit(site) == "unlimited"


def test_rate_limit_says_how_long_to_wait(settings, monkeypatch):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 2
    user = make_user()
    start = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: start)
    reserve(user, message_id=1, prompt_tokens=10, max_tokens=10)
    monkeypatch.setattr(timezone, "now", lambda: start + timedelta(seconds=20))
    reserve(user, message_id=2, prompt_tokens=10, max_tokens=10)
    monkeypatch.setattr(timezone, "now", lambda: start + timedelta(seconds=45))
    with pytest.raises(RateLimited) as excinfo:
        reserve(user, message_id=3, prompt_tokens=10, max_tokens=10)
    # The first of the two leaves the minute 15 s from now.
    assert "Please wait 15 s" in str(excinfo.value)

"""Many threads reserving at once for one user never overshoot the budget (bound: zero).

Runs against the configured database: SQLite (writers serialised by BEGIN IMMEDIATE) and PostgreSQL
(the per-user UserBudget row locked with SELECT … FOR UPDATE).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from billing_factories import make_conversation, make_message, make_user, record_call, run_in_threads
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from billing.holds import worst_case_cost
from billing.models import SpendReservation, UsageRecord
from billing.money import usd_to_pico
from billing.services import BudgetExceeded, budget_status, spend_reserve

pytestmark = pytest.mark.django_db(transaction=True)
PRICES = Path(__file__).resolve().parents[2] / "billing" / "prices" / "anthropic-2026-11.json"

SONNET = "claude-sonnet-4-6"
THREADS = 12


@pytest.fixture(autouse=True)
def _knobs(settings):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    # The prices the migrations seed are flushed by earlier transactional tests: load them here
    # (serialized_rollback would restore them, but collides with what post_migrate re-creates).
    call_command("load_prices", str(PRICES), verbosity=0)


def test_concurrent_reservations_never_overshoot_the_budget(settings):
    worst = worst_case_cost(model=SONNET, prompt_tokens=1000, max_tokens=1000, at=timezone.now())
    fits = 5
    settings.CHAT_DEFAULT_MONTHLY_BUDGET_USD = "unlimited"
    user = make_user()
    from billing.models import BudgetPolicy, UserBudget

    UserBudget.objects.create(user=user, policy=BudgetPolicy.LIMIT, monthly_limit=fits * worst + worst // 2)

    def work(index: int):
        with transaction.atomic():
            spend_reserve(
                user=user, model=SONNET, prompt_tokens=1000, max_tokens=1000, message_id=1000 + index
            )
        return "reserved"

    outcomes = run_in_threads(work, THREADS)
    assert outcomes.count("reserved") == fits, outcomes
    assert all(isinstance(o, BudgetExceeded) for o in outcomes if o != "reserved"), outcomes
    assert SpendReservation.objects.filter(user=user).count() == fits
    assert budget_status(user).held <= budget_status(user).limit


def test_concurrent_reserve_and_settle_cycles_never_overshoot(settings):
    """Each thread reserves then records the dearest possible real usage; total spend stays <= limit."""
    settings.CHAT_DEFAULT_MONTHLY_BUDGET_USD = "0.1"
    user = make_user()
    conversation = make_conversation(user)
    messages = [make_message(conversation) for _ in range(THREADS * 2)]

    def work(index: int):
        done = 0
        for message in messages[index * 2 : index * 2 + 2]:
            try:
                with transaction.atomic():
                    spend_reserve(
                        user=user, model=SONNET, prompt_tokens=1000, max_tokens=1000, message_id=message.pk
                    )
            except BudgetExceeded:
                continue
            with transaction.atomic():
                record_call(
                    user,
                    model=SONNET,
                    conversation=conversation,
                    message=message,
                    cache_write_1h_tokens=1000,
                    output_tokens=1000,
                )
            done += 1
        return done

    outcomes = run_in_threads(work, THREADS)
    assert all(isinstance(o, int) for o in outcomes), outcomes
    spent = UsageRecord.objects.for_user(user.pk).total_cost()
    assert spent <= usd_to_pico("0.1")
    assert sum(outcomes) == 4  # 4 × $0.021 fit in $0.10; a fifth would overshoot
    assert SpendReservation.objects.open(timezone.now()).count() == 0


def test_concurrent_records_of_many_users_keep_the_rollups_equal_to_the_ledger():
    """Rollup upserts (INSERT … ON CONFLICT DO UPDATE x = x + excluded.x) never lose an increment."""
    from billing.models import UsageDayModel
    from billing.periods import preset

    users = [make_user() for _ in range(THREADS)]

    def work(index: int):
        for round_ in range(5):
            with transaction.atomic():
                record_call(users[index], model=SONNET, input_tokens=100 + round_, output_tokens=index)
        return "ok"

    outcomes = run_in_threads(work, THREADS)
    assert outcomes == ["ok"] * THREADS, outcomes
    ledger = UsageRecord.objects.for_period(preset("today").start, preset("today").end).totals()
    rolled = UsageDayModel.objects.get(day=preset("today").first_day, model=SONNET)
    assert (rolled.calls, rolled.cost, rolled.input_tokens) == (
        ledger["calls"],
        ledger["cost"],
        ledger["input_tokens"],
    )
    assert rolled.calls == THREADS * 5

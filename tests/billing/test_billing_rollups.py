"""The rollups the dashboard reads equal the ledger, for any whole-day period."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from billing_factories import make_user, record_call
from django.core.management import call_command
from django.utils import timezone

from billing import dashboard, rollups
from billing.models import (
    UsageDaily,
    UsageDailyTeam,
    UsageDailyUser,
    UsageDayModel,
    UsageMonthly,
    UsageMonthlyTeam,
    UsageMonthlyUser,
    UsageRecord,
)
from billing.periods import Period, local_midnight, preset
from billing.queries import ROLLUP_SUMS

pytestmark = pytest.mark.django_db

MODELS = ("claude-sonnet-4-6", "claude-haiku-5-5", "claude-opus-5", "claude-unpriced-0")


def spread_calls(monkeypatch, days_back: int = 75) -> list:
    users = [make_user(f"roll{n}") for n in range(3)]
    today = timezone.localtime().date()
    for offset in range(0, days_back, 2):
        day = today - timedelta(days=offset)
        for index, user in enumerate(users):
            if (offset + index) % 3 == 0:
                continue
            # Late evening local time: near the day boundary, where a UTC/local mix-up would show.
            when = local_midnight(day) + timedelta(hours=23, minutes=50 - index)
            monkeypatch.setattr(timezone, "now", lambda when=when: when)
            record_call(
                user,
                model=MODELS[(offset + index) % len(MODELS)],
                input_tokens=1000 + offset,
                output_tokens=10 * index,
                cache_read_tokens=offset * 7,
                cache_write_5m_tokens=index * 11,
                estimated=offset % 5 == 0,
            )
    monkeypatch.undo()
    return users


def ledger_view(period: Period):
    qs = UsageRecord.objects.for_period(period.start, period.end)
    return qs.totals(), qs.by_user(), qs.by_model(), qs.by_day()


def assert_rollups_match_ledger(period: Period) -> None:
    totals, by_user, by_model, by_day = ledger_view(period)
    pairs = rollups.period_by_user_model(period)
    rolled_totals = dashboard.totals_of(pairs)
    for name in ROLLUP_SUMS:
        assert rolled_totals[name] == totals[name], (period, name)
    assert rolled_totals["active_users"] == totals["active_users"]

    def keyed(rows, key):
        return {row[key]: tuple(row[name] for name in ROLLUP_SUMS) for row in rows}

    per_user = rollups.period_by_user(period)
    assert dashboard.totals_of(per_user) == rolled_totals
    ledger_last_seen = {row["user_id"]: row["last_activity"] for row in by_user}
    for rows in (dashboard.user_rows(pairs), dashboard.user_rows(per_user)):
        assert keyed(rows, "user_id") == keyed(by_user, "user_id")
        assert {row["user_id"]: row["last_activity"] for row in rows} == ledger_last_seen
    assert rollups.period_totals(period) == {name: totals[name] for name in ROLLUP_SUMS}
    light = rollups.period_user_keys(period, sums=("cost", *dashboard.TOKEN_FIELDS), latest=True)
    figures = ("calls", "cost", *dashboard.TOKEN_FIELDS)
    assert {row["user_id"]: tuple(row[name] for name in figures) for row in light} == {
        row["user_id"]: tuple(row[name] for name in figures) for row in by_user
    }
    assert {row["user_id"]: row["username_label"] for row in light} == {
        row["user_id"]: row["username_label"] for row in by_user
    }
    by_team = rollups.period_by_team(period)
    assert sum(row["cost"] for row in by_team) == totals["cost"]
    assert sum(row["calls"] for row in by_team) == totals["calls"]
    assert keyed(dashboard.model_rows(pairs), "model") == keyed(by_model, "model")
    assert keyed(dashboard.model_rows(rollups.period_by_model(period)), "model") == keyed(by_model, "model")
    days = [row for row in dashboard.day_rows(rollups.period_by_day(period), period) if row["calls"]]
    assert keyed(days, "day") == keyed(by_day, "day")
    # Every call here was made under no team (0): that team's days and totals are everyone's.
    team_days = rollups.period_by_day(period, team_id=0)
    assert keyed(team_days, "day") == keyed(by_day, "day")
    assert rollups.period_totals(period, team_id=0) == {name: totals[name] for name in ROLLUP_SUMS}


def test_incremental_rollups_equal_the_ledger_for_every_kind_of_period(monkeypatch):
    spread_calls(monkeypatch)
    today = timezone.localtime().date()
    periods = [preset(name) for name in ("today", "7d", "30d", "month", "last_month", "365d")]
    periods += [
        Period(today - timedelta(days=70), today - timedelta(days=3)),  # edges + whole month(s)
        Period((today - timedelta(days=40)).replace(day=1), today),
        Period(date(2020, 1, 1), today),
        Period(today.replace(day=1) + timedelta(days=2), today),  # current month minus its first days
        Period(today - timedelta(days=60), today - timedelta(days=33)),  # past partial months only
    ]
    for period in periods:
        assert_rollups_match_ledger(period)


def test_rebuild_reproduces_the_incremental_rollups(monkeypatch):
    spread_calls(monkeypatch, days_back=40)

    def snapshot():
        return (
            sorted(UsageDaily.objects.values_list("day", "user_id", "model", *ROLLUP_SUMS)),
            sorted(UsageMonthly.objects.values_list("month", "user_id", "model", *ROLLUP_SUMS)),
            sorted(UsageDayModel.objects.values_list("day", "model", *ROLLUP_SUMS)),
            sorted(UsageDailyUser.objects.values_list("day", "user_id", *ROLLUP_SUMS)),
            sorted(UsageMonthlyUser.objects.values_list("month", "user_id", *ROLLUP_SUMS)),
            sorted(UsageDailyTeam.objects.values_list("day", "team_id", "team_name", *ROLLUP_SUMS)),
            sorted(UsageMonthlyTeam.objects.values_list("month", "team_id", "team_name", *ROLLUP_SUMS)),
        )

    incremental = snapshot()
    call_command("rebuild_usage_rollups", verbosity=0)
    assert snapshot() == incremental
    assert_rollups_match_ledger(preset("365d"))


def test_rollup_day_is_the_local_day(settings, monkeypatch):
    settings.TIME_ZONE = "Asia/Tokyo"
    from zoneinfo import ZoneInfo

    with timezone.override(ZoneInfo("Asia/Tokyo")):
        user = make_user()
        when = datetime(2026, 6, 30, 16, 30, tzinfo=ZoneInfo("UTC"))  # 01:30 on 1 July in Tokyo
        monkeypatch.setattr(timezone, "now", lambda: when)
        record_call(user, input_tokens=5)
        row = UsageDaily.objects.get(user_id=user.pk)
        assert row.day == date(2026, 7, 1)
        assert UsageMonthly.objects.get(user_id=user.pk).month == date(2026, 7, 1)

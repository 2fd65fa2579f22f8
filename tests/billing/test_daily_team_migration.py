"""Existing per-user days become per-team days when the daily team rollup arrives (billing 0010)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("billing", "0009_rollup_team_user_day_indexes")]
AFTER = [("billing", "0010_usage_daily_team")]


@pytest.fixture
def latest_schema_after():
    """Back to the latest migrations (whatever came after 0010) for the tests that follow, pass or fail."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("latest_schema_after")
def test_each_teams_days_are_the_sum_of_its_members_days_named_as_that_month():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    DailyUser = old.get_model("billing", "UsageDailyUser")
    MonthlyTeam = old.get_model("billing", "UsageMonthlyTeam")
    seen = datetime(2026, 11, 30, 12, tzinfo=UTC)
    rows = [  # (day, team, user, cost, calls, output tokens)
        (date(2026, 11, 30), 7, 1, 10**12, 3, 40),
        (date(2026, 11, 30), 7, 2, 5, 1, 2),
        (date(2026, 11, 30), 0, 3, 11, 2, 9),
        (date(2026, 12, 1), 7, 1, 2**40, 1, 1),
    ]
    for day, team, user, cost, calls, output in rows:
        DailyUser.objects.create(
            day=day,
            team_id=team,
            user_id=user,
            username=f"u{user}",
            cost=cost,
            calls=calls,
            output_tokens=output,
            last_activity=seen,
        )
    MonthlyTeam.objects.create(month=date(2026, 11, 1), team_id=7, team_name="Compilers", last_activity=seen)
    MonthlyTeam.objects.create(month=date(2026, 12, 1), team_id=7, team_name="Kernel", last_activity=seen)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    DailyTeam = executor.loader.project_state(AFTER).apps.get_model("billing", "UsageDailyTeam")
    found = sorted(
        DailyTeam.objects.values_list("day", "team_id", "team_name", "cost", "calls", "output_tokens")
    )
    assert found == [
        (date(2026, 11, 30), 0, "", 11, 2, 9),
        (date(2026, 11, 30), 7, "Compilers", 10**12 + 5, 4, 42),
        (date(2026, 12, 1), 7, "Kernel", 2**40, 1, 1),
    ]

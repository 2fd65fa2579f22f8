"""The dashboard's teams panel: each team's spend in the period, its budget, this month's forecast and
its members; the organisation's cap; the month's budget alerts.

All from the rollups in a fixed number of queries, whatever the number of teams: the period's spend per
team, this month's spend per team, the last complete days' spend per team and day (the forecasts), the
teams with their member counts, and the names recorded for teams since deleted.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta

from django.db.models import Count

from billing import rollups
from billing.alerts import describe, month_alerts
from billing.forecast import RECENT_DAYS, forecast
from billing.models import OrganisationBudget, UsageDailyTeam, UsageMonthlyTeam
from billing.periods import Period, current_month, local_today
from teams.models import Team

NO_TEAM = 0


def team_choices() -> list[tuple[int, str]]:
    """(id, name) of every team, for the dashboard's team filter."""
    return list(Team.objects.order_by("name").values_list("pk", "name"))


def recent_days(month: Period, now: datetime) -> tuple[date, date]:
    """The days of `month` a forecast reads besides the month's total: the last complete ones (see
    billing/forecast.py), so a forecast never reads the whole month's days. Empty when first > last."""
    today = local_today(now)
    return max(month.first_day, today - timedelta(days=RECENT_DAYS)), today - timedelta(days=1)


def team_rows(period: Period, now: datetime) -> list[dict]:
    """One row per team (and one for calls made under no team): spend in `period`, this month's spend,
    budget and forecast, members. A deleted team with spend in the period is listed by its recorded name."""
    month = current_month(now)
    in_period = {row["team_id"]: row for row in rollups.period_by_team(period)}
    this_month = dict(UsageMonthlyTeam.objects.filter(month=month.first_day).values_list("team_id", "cost"))
    daily: dict[int, list] = defaultdict(list)
    first, last = recent_days(month, now)
    days = UsageDailyTeam.objects.filter(day__gte=first, day__lte=last).values_list("team_id", "day", "cost")
    for team_id, day, cost in days if first <= last else []:
        daily[team_id].append((day, cost))
    teams = {team.pk: team for team in Team.objects.annotate(members=Count("memberships"))}
    gone = [team_id for team_id in in_period if team_id != NO_TEAM and team_id not in teams]
    recorded = dict(
        UsageMonthlyTeam.objects.filter(team_id__in=gone)
        .order_by("month")
        .values_list("team_id", "team_name")
    )
    rows = []
    for team_id in [*teams, *gone, *([NO_TEAM] if NO_TEAM in in_period else [])]:
        team = teams.get(team_id)
        limit = team.monthly_limit if team else None
        spent = int(this_month.get(team_id, 0))
        row = in_period.get(team_id)
        rows.append(
            {
                "team_id": team_id,
                "name": team.name if team else (recorded.get(team_id) or f"team #{team_id}"),
                "exists": team is not None,
                "no_team": team_id == NO_TEAM,
                "cost": row["cost"] if row else 0,
                "calls": row["calls"] if row else 0,
                "month_spent": spent,
                "limit": limit,
                "percent": None if limit is None else (100 if limit == 0 else spent * 100 // limit),
                "members": team.members if team else None,
                "forecast": forecast(spent, limit, month, now, daily.get(team_id)),
            }
        )
    # Teams needing attention first (used up, or running out this month), then the dearest; no team last.
    rows.sort(
        key=lambda row: (
            row["no_team"],
            row["forecast"].state not in ("used_up", "runs_out"),
            -row["cost"],
            row["name"].lower(),
        )
    )
    return rows


def organisation_row(now: datetime) -> dict:
    """The organisation's cap this month (None when it has none), spend and forecast."""
    month = current_month(now)
    budget = OrganisationBudget.objects.filter(pk=1).first()
    limit = budget.monthly_limit if budget else None
    spent = rollups.organisation_spent(month)
    daily = [(row["day"], row["cost"]) for row in rollups.period_by_day(month)]
    return {
        "limit": limit,
        "spent": spent,
        "percent": None if limit is None else (100 if limit == 0 else spent * 100 // limit),
        "forecast": forecast(spent, limit, month, now, daily),
        "month": month,
    }


def alert_rows(now: datetime, limit: int = 20) -> list[tuple]:
    """This month's budget alerts, newest first, each with its sentence."""
    return [(alert, describe(alert)) for alert in month_alerts(current_month(now))[:limit]]

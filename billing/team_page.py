"""What the team page shows: the team's budget and forecast, each member's spend, budget and forecast,
usage by model and by day, and the month's alerts. Costs and names only, never conversation content.

Every figure comes from the rollups (a fixed number of queries, whatever the team's size or the
ledger's): the month's spend under the team per member, each member's spend under any team (their own
budget counts all of it), the last complete days for the forecasts, the month's days for the chart.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from django.db.models import Sum
from django.utils import timezone

from billing import rollups
from billing.alerts import describe, month_alerts
from billing.dashboard import chart, model_rows
from billing.forecast import forecast
from billing.levels import TEAM, Level, team_spent, user_limits
from billing.models import SpendReservation, UsageDailyUser, UsageMonthlyUser, UserBudget
from billing.money import format_money_together
from billing.periods import Period, current_month
from billing.services import site_default_limit
from billing.team_panel import recent_days
from teams.models import Membership, Team


def _month_keys(period: Period) -> tuple[str, str]:
    previous = period.first_day - timedelta(days=1)
    return f"{period.first_day:%Y-%m}", f"{previous:%Y-%m}"


def team_standing(team: Team, period: Period, now: datetime) -> dict:
    """The team's budget this month: spend, open holds, state and forecast."""
    level = Level(TEAM, team.monthly_limit, team.warning_percent, name=team.name, subject_id=team.pk)
    level.spent = team_spent(team.pk, period)
    level.held = SpendReservation.objects.filter(team_id=team.pk).held(now)
    daily = [(row["day"], row["cost"]) for row in rollups.period_by_day(period, team_id=team.pk)]
    return {"level": level, "forecast": forecast(level.spent, level.limit, period, now, daily)}


def member_rows(team: Team, period: Period, now: datetime) -> list[dict]:
    """Current members and anyone who spent under the team this month (a member who left is listed,
    marked), with their spend under the team, their whole month's spend, budget and forecast."""
    members = {m.user_id: m for m in Membership.objects.filter(team=team).select_related("user")}
    under_team = {row["user_id"]: row for row in rollups.period_by_user(period, team_id=team.pk)}
    ids = sorted(set(members) | set(under_team))
    month_spent: dict[int, int] = defaultdict(int)
    for user_id, cost in UsageMonthlyUser.objects.filter(month=period.first_day, user_id__in=ids).values_list(
        "user_id", "cost"
    ):
        month_spent[user_id] += cost  # a row per team the person spent under this month
    daily: dict[int, list] = defaultdict(list)
    first, last = recent_days(period, now)
    days = (
        UsageDailyUser.objects.filter(day__gte=first, day__lte=last, user_id__in=ids)
        .values("user_id", "day")
        .annotate(cost=Sum("cost"))
    )
    for row in days if first <= last else []:
        daily[row["user_id"]].append((row["day"], int(row["cost"])))
    budgets = {budget.user_id: budget for budget in UserBudget.objects.filter(user_id__in=ids)}
    default = site_default_limit()
    rows = []
    for user_id in ids:
        membership = members.get(user_id)
        budget = budgets.get(user_id)
        limit, personal = user_limits(user_id, budget, lambda: default)
        spent = month_spent.get(user_id, 0)
        spent_here = under_team[user_id]["cost"] if user_id in under_team else 0
        user = membership.user if membership else None
        rows.append(
            {
                "user_id": user_id,
                "name": (user.get_full_name() or user.get_username())
                if user
                else under_team[user_id]["username_label"],
                "username": user.get_username() if user else under_team[user_id]["username_label"],
                "member": membership is not None,
                "spent_here": spent_here,
                "spent": spent,
                "calls": under_team[user_id]["calls"] if user_id in under_team else 0,
                "limit": limit,
                "personal": personal,
                "policy": budget.policy if budget else "default",
                "assigned_limit": budget.monthly_limit if budget else None,
                "percent": None if limit is None else (100 if limit == 0 else spent * 100 // limit),
                "forecast": forecast(spent, limit, period, now, daily.get(user_id)),
            }
        )
    rows.sort(key=lambda row: (not row["member"], -row["spent_here"], row["username"].lower()))
    return rows


def budgets_note(team: Team, rows: list[dict]) -> str:
    """Says so when the members' budgets add up to more than the team's (allowed: the team's cap holds)."""
    if team.monthly_limit is None:
        return ""
    members = [row for row in rows if row["member"]]
    unlimited = sum(1 for row in members if row["limit"] is None)
    total = sum(row["limit"] for row in members if row["limit"] is not None)
    if unlimited:
        return (
            f"{unlimited} member{'s' if unlimited != 1 else ''} ha{'ve' if unlimited != 1 else 's'} no "
            "budget of their own: the team's budget is their limit."
        )
    if total > team.monthly_limit:
        shown_total, shown_team = format_money_together(total, team.monthly_limit)
        return (
            f"Members' budgets add up to {shown_total}, more than the team's {shown_team}: allowed, and the "
            "team's budget still holds for everyone together."
        )
    return ""


def team_page_context(team: Team, viewer, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    period = current_month(now)
    rows = member_rows(team, period, now)
    pairs = rollups.period_by_user_model(period, team_id=team.pk)
    models = model_rows(pairs)
    alerts = list(month_alerts(period, team_id=team.pk, member_ids=[row["user_id"] for row in rows])[:20])
    this_month, last_month = _month_keys(period)
    return {
        "team": team,
        "period": period,
        **team_standing(team, period, now),
        "members": rows,
        "budgets_note": budgets_note(team, rows),
        "models": models,
        "chart": chart(rollups.period_cost_by_day_model(period, team_id=team.pk), period, models),
        "alerts": [(alert, describe(alert)) for alert in alerts],
        "this_month": this_month,
        "last_month": last_month,
        "viewer_may_set_own": viewer.is_staff,
        "manager_names": team.manager_names(),
    }

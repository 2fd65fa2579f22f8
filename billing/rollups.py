"""Daily and monthly rollups of the ledger, so a year of dashboard stays fast. Exact: integer sums.

The ledger (UsageRecord) is the source of truth. usage_record() adds each new row to seven rollups in
the same transaction, with one `INSERT … ON CONFLICT … DO UPDATE SET x = x + excluded.x` each (atomic
on SQLite and PostgreSQL alike, so concurrent calls never lose an increment):
  UsageDaily (local day, team, user, model) · UsageMonthly (local month, team, user, model)
  UsageDailyUser (local day, team, user) · UsageMonthlyUser (local month, team, user)
  UsageDayModel (local day, model) · UsageDailyTeam (local day, team) · UsageMonthlyTeam (local month, team)
"Team" is the team the call was made under (0: none), so a person who moved mid-month has a row per team.
"Local" is TIME_ZONE at the time of the call: after changing TIME_ZONE, run
`manage.py rebuild_usage_rollups` (also the repair tool; it recomputes everything from the ledger).

A dashboard period of whole days reads whole months from a monthly table (UsageMonthly, or
UsageMonthlyUser for the per-user table) and the remaining edge days from the matching daily one (see
_plan), then merges the grouped rows: tens of thousands of rollup rows instead of a year of ledger.
Site-wide per-model and per-day figures come from the small UsageDayModel table directly, one user's
days from UsageDaily.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

from django.db import connection, transaction
from django.db.models import CharField, DateTimeField, F, Max, Q, Sum, Value
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

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
from billing.periods import Period, month_of
from billing.queries import ROLLUP_SUMS, SUM_FIELDS, _sums

RECORD_SUMS = tuple(SUM_FIELDS)  # the UsageRecord columns summed into the rollups


def _upsert(model, keys: dict, values: dict) -> None:
    table = model._meta.db_table
    ops = connection.ops
    columns = [*keys, *values]
    params = []
    for name, value in (*keys.items(), *values.items()):
        if name == "last_activity":
            value = ops.adapt_datetimefield_value(value)
        elif name in ("day", "month"):
            value = ops.adapt_datefield_value(value)
        params.append(value)
    assignments = [f"{name} = {table}.{name} + excluded.{name}" for name in ROLLUP_SUMS]
    assignments.append(
        f"last_activity = CASE WHEN excluded.last_activity > {table}.last_activity "
        f"THEN excluded.last_activity ELSE {table}.last_activity END"
    )
    for label in ("username", "team_name"):
        if label in values:
            assignments.append(f"{label} = excluded.{label}")
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(assignments)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def rollup_add(record: UsageRecord) -> None:
    """Add one new ledger row to the rollups (call in the transaction that created it)."""
    values = {name: getattr(record, name) for name in RECORD_SUMS}
    values.update(
        calls=1,
        unpriced_calls=0 if record.priced else 1,
        estimated_calls=1 if record.estimated else 0,
        last_activity=record.created_at,
    )
    _rollups_add(record, values)


def rollup_replace(old: UsageRecord, new: UsageRecord) -> None:
    """Move the rollups from ledger row `old` to `new`, the same row after its estimate was replaced."""
    values = {name: getattr(new, name) - getattr(old, name) for name in RECORD_SUMS}
    values.update(
        calls=0,
        unpriced_calls=0,
        estimated_calls=int(new.estimated) - int(old.estimated),
        last_activity=old.created_at,
    )
    _rollups_add(old, values)


def _rollups_add(record: UsageRecord, values: dict) -> None:
    """Add `values` to the seven rollup rows `record` counts in (its local day and month, team, user, model)."""
    day = timezone.localtime(record.created_at).date()
    labelled = {**values, "username": record.username}
    month = day.replace(day=1)
    team, user, model = record.team_id or 0, record.user_id, record.model
    with transaction.atomic(savepoint=False):  # part of usage_record's transaction: no savepoint
        _upsert(UsageDaily, {"day": day, "team_id": team, "user_id": user, "model": model}, labelled)
        _upsert(UsageMonthly, {"month": month, "team_id": team, "user_id": user, "model": model}, labelled)
        _upsert(UsageDayModel, {"day": day, "model": model}, values)
        _upsert(UsageDailyUser, {"day": day, "team_id": team, "user_id": user}, labelled)
        _upsert(UsageMonthlyUser, {"month": month, "team_id": team, "user_id": user}, labelled)
        named = {**values, "team_name": record.team_name}
        _upsert(UsageDailyTeam, {"day": day, "team_id": team}, named)
        _upsert(UsageMonthlyTeam, {"month": month, "team_id": team}, named)


def rollup_rebuild(batch_size: int = 5000) -> int:
    """Recompute every rollup from the ledger in the current TIME_ZONE; returns daily rows written."""
    tz = timezone.get_current_timezone()
    daily = list(
        UsageRecord.objects.order_by()
        .annotate(day=TruncDate("created_at", tzinfo=tz), team=Coalesce("team_id", 0))
        .values("day", "team", "user_id", "model")
        .annotate(
            **_sums(), username=Max("username"), team_name=Max("team_name"), last_activity=Max("created_at")
        )
    )
    monthly: dict = defaultdict(lambda: defaultdict(int))
    per_day_model: dict = defaultdict(lambda: defaultdict(int))
    per_day_user: dict = defaultdict(lambda: defaultdict(int))
    per_month_user: dict = defaultdict(lambda: defaultdict(int))
    per_month_team: dict = defaultdict(lambda: defaultdict(int))
    per_day_team: dict = defaultdict(lambda: defaultdict(int))
    for row in daily:  # grouped rows (one per day × team × user × model), not ledger rows
        month = row["day"].replace(day=1)
        team = row["team"]
        for bucket in (
            monthly[(month, team, row["user_id"], row["model"])],
            per_day_model[(row["day"], row["model"])],
            per_day_user[(row["day"], team, row["user_id"])],
            per_month_user[(month, team, row["user_id"])],
            per_month_team[(month, team)],
            per_day_team[(row["day"], team)],
        ):
            for name in ROLLUP_SUMS:
                bucket[name] += int(row[name])
            bucket["last_activity"] = max(
                bucket.get("last_activity") or row["last_activity"], row["last_activity"]
            )
            bucket["username"] = row["username"]
            bucket["team_name"] = max(bucket.get("team_name") or "", row["team_name"] or "")

    def sums(row) -> dict:
        return {name: int(row[name]) for name in ROLLUP_SUMS} | {"last_activity": row["last_activity"]}

    with transaction.atomic():
        for model in (
            UsageDaily,
            UsageMonthly,
            UsageDayModel,
            UsageDailyUser,
            UsageMonthlyUser,
            UsageDailyTeam,
            UsageMonthlyTeam,
        ):
            model.objects.all().delete()
        UsageDaily.objects.bulk_create(
            [
                UsageDaily(
                    day=r["day"],
                    team_id=r["team"],
                    user_id=r["user_id"],
                    model=r["model"],
                    username=r["username"],
                    **sums(r),
                )
                for r in daily
            ],
            batch_size=batch_size,
        )
        UsageMonthly.objects.bulk_create(
            [
                UsageMonthly(month=m, team_id=t, user_id=u, model=mod, username=b["username"], **sums(b))
                for (m, t, u, mod), b in monthly.items()
            ],
            batch_size=batch_size,
        )
        UsageDayModel.objects.bulk_create(
            [UsageDayModel(day=d, model=mod, **sums(b)) for (d, mod), b in per_day_model.items()],
            batch_size=batch_size,
        )
        UsageDailyUser.objects.bulk_create(
            [
                UsageDailyUser(day=d, team_id=t, user_id=u, username=b["username"], **sums(b))
                for (d, t, u), b in per_day_user.items()
            ],
            batch_size=batch_size,
        )
        UsageMonthlyUser.objects.bulk_create(
            [
                UsageMonthlyUser(month=m, team_id=t, user_id=u, username=b["username"], **sums(b))
                for (m, t, u), b in per_month_user.items()
            ],
            batch_size=batch_size,
        )
        UsageMonthlyTeam.objects.bulk_create(
            [
                UsageMonthlyTeam(month=m, team_id=t, team_name=b["team_name"], **sums(b))
                for (m, t), b in per_month_team.items()
            ],
            batch_size=batch_size,
        )
        UsageDailyTeam.objects.bulk_create(
            [
                UsageDailyTeam(day=d, team_id=t, team_name=b["team_name"], **sums(b))
                for (d, t), b in per_day_team.items()
            ],
            batch_size=batch_size,
        )
    return len(daily)


def _plan(period: Period, today: date) -> tuple[list[date], list[tuple[date, date]], list[tuple[date, date]]]:
    """Read plan for a whole-day period: months to add, day ranges to add, day ranges to subtract.

    Each calendar month the period touches is read as cheaply as exactness allows:
    - the whole month (UsageMonthly) when the period covers it to its end — or up to today, since
      no calls exist after now;
    - the whole month minus its earlier days not in the period, when that subtracts fewer days than
      reading the period's days (subtracting only earlier days keeps "last activity" exact);
    - otherwise the period's days from UsageDaily.
    """
    months: list[date] = []
    plus: list[tuple[date, date]] = []
    minus: list[tuple[date, date]] = []
    cursor = period.first_day
    while cursor <= period.last_day:
        month = month_of(cursor)
        start, end = cursor, min(period.last_day, month.last_day)
        covers_to_end = end == month.last_day or end >= today
        if covers_to_end and start == month.first_day:
            months.append(month.first_day)
        elif covers_to_end and (start - month.first_day).days < (end - start).days + 1:
            months.append(month.first_day)
            minus.append((month.first_day, start - timedelta(days=1)))
        else:
            plus.append((start, end))
        cursor = month.last_day + timedelta(days=1)
    return months, plus, minus


def _days(ranges: list[tuple[date, date]]) -> Q:
    """Rows of any of the inclusive day ranges."""
    return Q(*[Q(day__gte=a, day__lte=b) for a, b in ranges], _connector=Q.OR)


def _read(
    period: Period,
    daily,
    monthly,
    keys: tuple[str, ...],
    user_id: int | None,
    team_id: int | None = None,
    *,
    user_ids: list[int] | None = None,
    sums: tuple[str, ...] = ROLLUP_SUMS,
    latest: bool = True,
) -> list[dict]:
    """Exact sums per `keys` over `period`, following _plan; rows without calls are dropped. `team_id`
    keeps the calls made under that team (0: under none), `user_ids` those people's; `sums` names the
    figures to add up (calls among them), `latest` adds last activity (and the latest username)."""
    months, plus, minus = _plan(period, timezone.localtime().date())
    only = {name: value for name, value in (("user_id", user_id), ("team_id", team_id)) if value is not None}
    if user_ids is not None:
        only["user_id__in"] = user_ids

    def days(ranges: list[tuple[date, date]]) -> list[dict]:
        if not ranges:
            return []
        return daily.objects.filter(_days(ranges)).filter(**only).grouped(*keys, sums=sums, latest=latest)

    parts = days(plus)
    if months:
        parts += monthly.objects.filter(month__in=months, **only).grouped(*keys, sums=sums, latest=latest)
    merged: dict = {}
    for row in parts:  # grouped rows, not ledger rows
        key = tuple(row[k] for k in keys)
        target = merged.get(key)
        if target is None:
            merged[key] = dict(row)
            continue
        for name in sums:
            target[name] += row[name]
        if latest:
            target["last_activity"] = max(target["last_activity"], row["last_activity"])
        if "username_label" in row:
            target["username_label"] = max(target["username_label"], row["username_label"])
    for row in days(minus):
        target = merged[tuple(row[k] for k in keys)]
        for name in sums:
            target[name] -= row[name]
    return [row for row in merged.values() if row["calls"]]


def period_by_user(
    period: Period, team_id: int | None = None, user_ids: list[int] | None = None
) -> list[dict]:
    """Sums per user_id over the whole days of `period` (the dashboard's per-user table), with the latest
    username and last activity; only `user_ids`' when given."""
    return _read(period, UsageDailyUser, UsageMonthlyUser, ("user_id",), None, team_id, user_ids=user_ids)


def period_user_keys(
    period: Period, team_id: int | None = None, *, sums: tuple[str, ...] = (), latest: bool = False
) -> list[dict]:
    """Per user with calls in the whole days of `period` (one team's: `team_id`): user_id, calls, the
    `sums` named and, with `latest`, last_activity and username_label (as period_by_user gives them).

    The light read that orders every user of the period: the rows of _plan's parts (subtracted days
    negated) are put together with UNION ALL and grouped once by user, so the database returns one small
    row per user. last_activity is what the database returns (a string on SQLite): fit to compare, not
    to show."""
    months, plus, minus = _plan(period, timezone.localtime().date())
    only = {} if team_id is None else {"team_id": team_id}
    names = ("calls", *(name for name in sums if name != "calls"))

    def part(rows, sign: int) -> tuple[str, tuple]:
        figures = {f"s_{name}": F(name) if sign > 0 else -F(name) for name in names}
        if latest:  # subtracted days never make the latest activity or name
            figures["s_last"] = F("last_activity") if sign > 0 else Value(None, output_field=DateTimeField())
            figures["s_name"] = F("username") if sign > 0 else Value(None, output_field=CharField())
        picked = rows.filter(**only).order_by().annotate(**figures).values_list("user_id", *figures)
        return picked.query.sql_with_params()

    parts = [part(UsageMonthlyUser.objects.filter(month__in=months), 1)] if months else []
    parts += [
        part(UsageDailyUser.objects.filter(_days(ranges)), sign)
        for ranges, sign in ((plus, 1), (minus, -1))
        if ranges
    ]
    if not parts:
        return []
    # Integer sums, exact (a sum past the column's range would fail, never round).
    columns = ["user_id", *(f"CAST(SUM(s_{name}) AS BIGINT)" for name in names)]
    if latest:
        columns += ["MAX(s_last)", "MAX(s_name)"]
    sql = (
        f"SELECT {', '.join(columns)} FROM ({' UNION ALL '.join(sql for sql, _ in parts)}) parts "
        "GROUP BY user_id HAVING SUM(s_calls) <> 0"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [param for _, params in parts for param in params])
        found = cursor.fetchall()
    keys = ["user_id", *names, *(["last_activity", "username_label"] if latest else [])]
    return [dict(zip(keys, row, strict=True)) for row in found]


def period_by_team(period: Period) -> list[dict]:
    """Cost and calls per team_id (0: no team) over the whole days of `period` (the dashboard's teams
    table): whole months and edge days from the small per-team tables."""
    return _read(
        period, UsageDailyTeam, UsageMonthlyTeam, ("team_id",), None, sums=("calls", "cost"), latest=False
    )


def period_totals(period: Period, team_id: int | None = None) -> dict:
    """Every summed figure over the whole days of `period`, everyone's or one team's (0: no team), from
    the smallest tables that hold them: whole months per team, days per model (a team's: per team)."""
    months, plus, minus = _plan(period, timezone.localtime().date())
    only = {} if team_id is None else {"team_id": team_id}
    daily = UsageDayModel if team_id is None else UsageDailyTeam
    sums = {name: Coalesce(Sum(name), 0) for name in ROLLUP_SUMS}
    totals = dict.fromkeys(ROLLUP_SUMS, 0)
    parts = [(UsageMonthlyTeam.objects.filter(month__in=months, **only), 1)] if months else []
    parts += [
        (daily.objects.filter(_days(ranges), **only), sign)
        for ranges, sign in ((plus, 1), (minus, -1))
        if ranges
    ]
    for rows, sign in parts:
        for name, value in rows.aggregate(**sums).items():
            totals[name] += sign * int(value)
    return totals


def period_by_user_model(
    period: Period, user_id: int | None = None, team_id: int | None = None
) -> list[dict]:
    """Sums per (user_id, model) over the whole days of `period` (optionally one user's, one team's)."""
    return _read(period, UsageDaily, UsageMonthly, ("user_id", "model"), user_id, team_id)


def period_by_model(period: Period) -> list[dict]:
    """Sums per model over the whole days of `period` (from the small per-day-per-model table)."""
    return UsageDayModel.objects.for_days(period.first_day, period.last_day).grouped("model")


def _daily(period: Period, user_id: int | None, team_id: int | None):
    """The day rows of `period`: site-wide per model, or one user's or one team's per user and model."""
    if user_id is None and team_id is None:
        return UsageDayModel.objects.for_days(period.first_day, period.last_day)
    rows = UsageDaily.objects.for_days(period.first_day, period.last_day)
    if user_id is not None:
        rows = rows.filter(user_id=user_id)
    if team_id is not None:
        rows = rows.filter(team_id=team_id)
    return rows


def period_by_day_model(period: Period, user_id: int | None = None, team_id: int | None = None) -> list[dict]:
    """Sums per (local day, model) over `period` (days without calls omitted): site-wide, one user's or
    one team's. Enough for the chart, the per-day table and, site-wide, the per-model table."""
    rows = _daily(period, user_id, team_id)
    if user_id is None and team_id is None:  # one row per day and model already: read, not grouped
        return list(rows.order_by().values("day", "model", *ROLLUP_SUMS, "last_activity"))
    return rows.grouped("day", "model")


def period_by_day(period: Period, user_id: int | None = None, team_id: int | None = None) -> list[dict]:
    """Sums per local day over `period` (days without calls omitted)."""
    if user_id is None and team_id is not None:  # a team's days: its own small table
        days = UsageDailyTeam.objects.for_days(period.first_day, period.last_day).filter(team_id=team_id)
        return days.grouped("day")
    return _daily(period, user_id, team_id).grouped("day")


def period_cost_by_day_model(
    period: Period, user_id: int | None = None, team_id: int | None = None
) -> list[dict]:
    """Cost and calls per (local day, model) over `period` (days without calls omitted): the chart's
    split by model. Only the two sums it draws, so a year of days stays a light read."""
    rows = _daily(period, user_id, team_id)
    rows = rows.order_by().values("day", "model").annotate(cost=Sum("cost"), calls=Sum("calls"))
    return [{**row, "cost": int(row["cost"]), "calls": int(row["calls"])} for row in rows]


def organisation_spent(period: Period) -> int:
    """What everyone together spent in `period`'s month (the monthly team rollup, every team and none)."""
    total = UsageMonthlyTeam.objects.filter(month=period.first_day).aggregate(cost=Sum("cost"))["cost"]
    return int(total or 0)

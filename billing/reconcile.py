"""Reconcile the ledger with Anthropic's own report, per UTC day: tokens and web searches per model and
kind, cost per day.

`reconcile(days)` reads Anthropic's report (billing/usage_report.py: every page, or nothing), sums the
ledger for the same UTC days, and stores one Reconciliation per (day, model, kind) and one per day for
cost, in one transaction: running it again updates those rows, never adds to them. A difference is
never hidden: `suspects()` lists the ledger rows most likely responsible, and staff settle it with an
append-only Adjustment (`adjustment_book`); the ledger's rows are never edited.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from django.db import transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.dateformat import format as date_format

from billing.keys import current_key_fingerprint
from billing.models import Adjustment, Reconciliation, ReconciliationKind, UsageRecord
from billing.money import format_money
from billing.signals import usage_reconciled
from billing.usage_report import Report, TokenCounts, fetch_minutes, fetch_report

# Ledger column per token kind (and web searches, counted in the report's server_tool_use), in the order
# of TokenCounts.
KIND_COLUMNS = {
    ReconciliationKind.INPUT: "input_tokens",
    ReconciliationKind.CACHE_READ: "cache_read_tokens",
    ReconciliationKind.CACHE_WRITE_5M: "cache_write_5m_tokens",
    ReconciliationKind.CACHE_WRITE_1H: "cache_write_1h_tokens",
    ReconciliationKind.OUTPUT: "output_tokens",
    ReconciliationKind.WEB_SEARCH: "web_search_requests",
}
DEFAULT_DAYS = 3
# The report's longest page of one-day buckets: one run reconciles at most this many days.
MAX_DAYS = 31
# A call this close to midnight UTC may be booked by Anthropic on the other side of it.
MIDNIGHT_MARGIN = timedelta(minutes=2)


class ReconcileInputError(ValueError):
    """Days that cannot be reconciled; the message says why, for a person."""


@dataclass(frozen=True)
class DayOutcome:
    """One day's result: its stored rows and those with a difference."""

    day: date
    rows: list[Reconciliation]
    # Ledger rows counted on this day though written on the next or previous one (moved_in), and rows
    # written on it counted on the day Anthropic booked them (moved_out): see _midnight_moves.
    moved_in: int = 0
    moved_out: int = 0

    @property
    def differences(self) -> list[Reconciliation]:
        return [row for row in self.rows if row.difference]


def utc_today(now: datetime | None = None) -> date:
    return (now or timezone.now()).astimezone(UTC).date()


def default_days(now: datetime | None = None) -> list[date]:
    """The last three complete UTC days, oldest first."""
    today = utc_today(now)
    return [today - timedelta(days=n) for n in range(DEFAULT_DAYS, 0, -1)]


def checked_days(days: list[date], now: datetime | None = None) -> list[date]:
    """`days` sorted without repeats; raises ReconcileInputError for a day to come or a span too long."""
    days = sorted(set(days)) or default_days(now)
    today = utc_today(now)
    if days[-1] > today:
        raise ReconcileInputError(
            f"{days[-1]:%Y-%m-%d} is in the future (today is {today:%Y-%m-%d} UTC): Anthropic has no usage for it yet."
        )
    if (days[-1] - days[0]).days >= MAX_DAYS:
        raise ReconcileInputError(
            f"Reconcile at most {MAX_DAYS} days at a time ({days[0]:%Y-%m-%d} to {days[-1]:%Y-%m-%d} is "
            f"{(days[-1] - days[0]).days + 1} days): run it again for the rest."
        )
    return days


def _utc_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def ledger_sums(first: date, last: date) -> Report:
    """The ledger's side for the UTC days first..last: tokens per (day, model), cost per day (pUSD).

    One GROUP BY model per day over that day's created_at range (the index): no per-row date function,
    which on SQLite is a Python call per row and cost 4 s over a million rows."""
    tokens: dict[tuple[date, str], TokenCounts] = {}
    cost: dict[date, int] = {}
    sums = {f"{kind}_sum": Coalesce(Sum(column), 0) for kind, column in KIND_COLUMNS.items()}
    day = first
    while day <= last:
        grouped = (
            UsageRecord.objects.filter(
                created_at__gte=_utc_start(day), created_at__lt=_utc_start(day + timedelta(days=1))
            )
            .order_by()
            .values("model")
            .annotate(cost_sum=Coalesce(Sum("cost"), 0), **sums)
        )
        for row in grouped:
            tokens[(day, row["model"])] = TokenCounts(*(int(row[f"{kind}_sum"]) for kind in KIND_COLUMNS))
            cost[day] = cost.get(day, 0) + int(row["cost_sum"])
        day += timedelta(days=1)
    return Report(tokens=tokens, cost=cost)


def compare(days: list[date], ours: Report, theirs: Report) -> dict[tuple[date, str, str], tuple[int, int]]:
    """(ours, theirs) per (day, model, kind) for `days`, with (day, "", "cost") per day."""
    wanted = set(days)
    out: dict[tuple[date, str, str], tuple[int, int]] = {}
    for day, model in set(ours.tokens) | set(theirs.tokens):
        if day not in wanted:
            continue
        mine = ours.tokens.get((day, model), TokenCounts()).as_tuple()
        reported = theirs.tokens.get((day, model), TokenCounts()).as_tuple()
        for kind, a, b in zip(KIND_COLUMNS, mine, reported, strict=True):
            out[(day, model, kind.value)] = (a, b)
    for day in days:
        out[(day, "", ReconciliationKind.COST.value)] = (ours.cost.get(day, 0), theirs.cost.get(day, 0))
    return out


def reconcile(days: list[date], *, sleep=time.sleep, page_days: int | None = None) -> list[DayOutcome]:
    """Reconcile `days` (UTC) and store the result (calls near a midnight counted on the day Anthropic
    booked them). Raises ReconcileInputError for bad days and usage_report.ReportError when Anthropic's
    report cannot be read (then nothing is stored). `sleep` waits out a 429's retry-after."""
    days = checked_days(days)
    theirs = fetch_report(days[0], days[-1], sleep=sleep, **({"page_days": page_days} if page_days else {}))
    ours = ledger_sums(days[0], days[-1])
    moves = _midnight_moves(days, ours, theirs, sleep)
    for move in moves:
        ours = move.applied_to(ours)
    outcomes = store(days, compare(days, ours, theirs))
    usage_reconciled.send(
        sender=Reconciliation, days=days, differences=sum(len(outcome.differences) for outcome in outcomes)
    )
    return [
        replace(
            outcome,
            moved_in=sum(m.rows for m in moves if m.to_day == outcome.day),
            moved_out=sum(m.rows for m in moves if m.from_day == outcome.day),
        )
        for outcome in outcomes
    ]


@dataclass(frozen=True)
class MidnightMove:
    """Ledger rows of one model written on one side of a midnight UTC that Anthropic booked on the other."""

    model: str
    from_day: date
    to_day: date
    rows: int
    tokens: TokenCounts
    cost: int

    def applied_to(self, report: Report) -> Report:
        tokens, cost = dict(report.tokens), dict(report.cost)
        negative = TokenCounts(*(-n for n in self.tokens.as_tuple()))
        tokens[(self.from_day, self.model)] = tokens.get((self.from_day, self.model), TokenCounts()).plus(
            negative
        )
        tokens[(self.to_day, self.model)] = tokens.get((self.to_day, self.model), TokenCounts()).plus(
            self.tokens
        )
        cost[self.from_day] = cost.get(self.from_day, 0) - self.cost
        cost[self.to_day] = cost.get(self.to_day, 0) + self.cost
        return Report(tokens=tokens, cost=cost)


def _window_sums(start: datetime, end: datetime) -> dict[str, tuple[TokenCounts, int, int]]:
    """Per model, the ledger's (tokens, cost, rows) written in [start, end)."""
    grouped = (
        UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end)
        .order_by()
        .values("model")
        .annotate(
            cost_sum=Coalesce(Sum("cost"), 0),
            rows=Count("id"),
            **{f"{kind}_sum": Coalesce(Sum(column), 0) for kind, column in KIND_COLUMNS.items()},
        )
    )
    return {
        row["model"]: (
            TokenCounts(*(int(row[f"{kind}_sum"]) for kind in KIND_COLUMNS)),
            int(row["cost_sum"]),
            int(row["rows"]),
        )
        for row in grouped
    }


def _midnight_moves(days: list[date], ours: Report, theirs: Report, sleep) -> list[MidnightMove]:
    """Calls near a midnight UTC that Anthropic booked on the other day than the ledger: for each
    midnight next to a day with a difference and with ledger rows within MIDNIGHT_MARGIN of it, the
    usage per minute around it is read; when Anthropic has, per model, exactly the ledger's rows of
    the window but all on the other side of midnight, they are counted on Anthropic's day."""
    figures = compare(days, ours, theirs)
    uneven = {day for (day, _model, _kind), (a, b) in figures.items() if a != b}
    midnights = sorted({_utc_start(d) for d in uneven} | {_utc_start(d + timedelta(days=1)) for d in uneven})
    moves = []
    for midnight in midnights:
        before = _window_sums(midnight - MIDNIGHT_MARGIN, midnight)
        after = _window_sums(midnight, midnight + MIDNIGHT_MARGIN)
        if not before and not after:
            continue
        minutes = fetch_minutes(midnight - MIDNIGHT_MARGIN, midnight + MIDNIGHT_MARGIN, sleep=sleep)
        for model in set(before) | set(after):
            theirs_before = _sum_counts(n for (at, m), n in minutes.items() if m == model and at < midnight)
            theirs_after = _sum_counts(n for (at, m), n in minutes.items() if m == model and at >= midnight)
            ours_before = before.get(model, (TokenCounts(), 0, 0))
            ours_after = after.get(model, (TokenCounts(), 0, 0))
            day_before, day_after = (midnight - timedelta(days=1)).date(), midnight.date()
            if (
                ours_after[2]
                and theirs_before == ours_before[0].plus(ours_after[0])
                and theirs_after == TokenCounts()
            ):
                moves.append(
                    MidnightMove(model, day_after, day_before, ours_after[2], ours_after[0], ours_after[1])
                )
            elif (
                ours_before[2]
                and theirs_after == ours_before[0].plus(ours_after[0])
                and theirs_before == TokenCounts()
            ):
                moves.append(
                    MidnightMove(model, day_before, day_after, ours_before[2], ours_before[0], ours_before[1])
                )
    return moves


def _sum_counts(counts) -> TokenCounts:
    total = TokenCounts()
    for n in counts:
        total = total.plus(n)
    return total


def store(days: list[date], figures: dict[tuple[date, str, str], tuple[int, int]]) -> list[DayOutcome]:
    """Write the figures as Reconciliation rows, in place of what an earlier run stored for `days` (a
    row no longer seen on either side is set to 0 against 0; rows are kept for their adjustments)."""
    now = timezone.now()
    with transaction.atomic():
        existing = {
            (row.day, row.model, row.kind): row
            for row in Reconciliation.objects.select_for_update().filter(day__in=days)
        }
        changed, new = [], []
        for key in set(existing) | set(figures):
            ours, theirs = figures.get(key, (0, 0))
            row = existing.get(key)
            if row is None:
                new.append(
                    Reconciliation(
                        day=key[0],
                        model=key[1],
                        kind=key[2],
                        ours=ours,
                        theirs=theirs,
                        difference=theirs - ours,
                        checked_at=now,
                    )
                )
                continue
            row.ours, row.theirs, row.difference, row.checked_at = ours, theirs, theirs - ours, now
            changed.append(row)
        Reconciliation.objects.bulk_update(
            changed, ["ours", "theirs", "difference", "checked_at"], batch_size=500
        )
        Reconciliation.objects.bulk_create(new, batch_size=500)
    rows = sorted([*changed, *new], key=lambda r: (r.day, r.model, r.kind))
    return [DayOutcome(day, [r for r in rows if r.day == day]) for day in days]


def suspects(day: date, model: str = "", limit: int = 20) -> list[UsageRecord]:
    """The day's ledger rows most likely behind a difference: estimates (the stream died before its
    usage), rows without a request id, rows of another API key, and calls within two minutes of
    midnight UTC (Anthropic may book them on the other day)."""
    start, end = _utc_start(day), _utc_start(day + timedelta(days=1))
    rows = UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end)
    if model:
        rows = rows.filter(model=model)
    likely = (
        Q(estimated=True)
        | Q(request_id="")
        | ~Q(key_fingerprint=current_key_fingerprint())
        | Q(created_at__lt=start + MIDNIGHT_MARGIN)
        | Q(created_at__gte=end - MIDNIGHT_MARGIN)
    )
    return list(rows.filter(likely).order_by("created_at")[:limit])


def why(row: UsageRecord, day: date) -> str:
    """Why `row` is a suspect, in words."""
    reasons = []
    if row.estimated:
        reasons.append("estimated (the stream ended before its usage)")
    if not row.request_id:
        reasons.append("no request id")
    if row.key_fingerprint != current_key_fingerprint():
        reasons.append(f"another API key ({row.key_fingerprint or 'unknown'})")
    start = _utc_start(day)
    if (
        row.created_at < start + MIDNIGHT_MARGIN
        or row.created_at >= start + timedelta(days=1) - MIDNIGHT_MARGIN
    ):
        reasons.append("near midnight UTC")
    return ", ".join(reasons)


def explain(row: Reconciliation) -> str:
    """One sentence on a difference: which side has more, and the likely cause."""
    if not row.difference:
        return "Exact."
    if row.kind == ReconciliationKind.COST:
        amount = format_money(abs(row.difference))
    elif row.kind == ReconciliationKind.WEB_SEARCH:
        amount = f"{abs(row.difference):,} web search{'es' if abs(row.difference) != 1 else ''}"
    else:
        amount = f"{abs(row.difference):,} {row.get_kind_display().lower()} tokens"
    where = f" for {row.model}" if row.model else ""
    if row.difference > 0:
        sentence = f"Anthropic reports {amount} more than the ledger{where}"
        cause = "a call the ledger missed, or an estimate below the call's real count"
    else:
        sentence = f"The ledger has {amount} more than Anthropic reports{where}"
        cause = "an estimate above the call's real count, or a call Anthropic booked on another day"
    found = suspects(row.day, row.model, limit=1000)
    if found:
        return f"{sentence}; {len(found)} ledger row(s) may explain it (see below)."
    return f"{sentence}; no ledger row looks wrong: most likely {cause}."


def adjustment_book(*, reconciliation: Reconciliation, amount: int, reason: str, staff) -> Adjustment:
    """Book an organisation-level adjustment settling `reconciliation` (append-only; the ledger's rows
    stay as they are). Raises ReconcileInputError without a reason or for an exact reconciliation."""
    reason = reason.strip()
    if not reason:
        raise ReconcileInputError("Say why: an adjustment needs a reason.")
    if not reconciliation.difference:
        raise ReconcileInputError("This reconciliation is exact: there is nothing to settle.")
    return Adjustment.objects.create(
        day=reconciliation.day,
        amount=amount,
        reason=reason,
        staff=staff,
        staff_name=staff.get_username()[:150],
        reconciliation=reconciliation,
    )


def _day_label(day: date) -> str:
    return date_format(day, "j F")


def status() -> dict:
    """The staff dashboard's line: the latest open difference, else how far the ledger is reconciled;
    and this month's adjustments (UTC days), which count in the organisation's total only."""
    today = utc_today()
    adjusted = Adjustment.objects.filter(day__gte=today.replace(day=1), day__lte=today).aggregate(
        total=Sum("amount"), count=Count("id")
    )
    month = {
        "adjustments": int(adjusted["total"] or 0),
        "adjustment_count": adjusted["count"],
        "month": today,
    }
    open_rows = (
        Reconciliation.objects.exclude(difference=0).annotate(settled=Count("adjustments")).filter(settled=0)
    )
    latest_open = open_rows.order_by("-day").values_list("day", flat=True).first()
    if latest_open is not None:
        count = open_rows.filter(day=latest_open).count()
        noun = "difference" if count == 1 else "differences"
        return {
            "exact": False,
            "text": f"{count} {noun} on {_day_label(latest_open)}",
            "day": latest_open,
            **month,
        }
    through = Reconciliation.objects.order_by("-day").values_list("day", flat=True).first()
    if through is None:
        return {"exact": None, "text": "Not reconciled with Anthropic yet.", "day": None, **month}
    settled = Reconciliation.objects.exclude(difference=0).exists()
    state = "exact, differences settled by adjustments" if settled else "exact"
    text = f"Reconciled with Anthropic through {_day_label(through)}: {state}"
    return {"exact": True, "text": text, "day": through, **month}

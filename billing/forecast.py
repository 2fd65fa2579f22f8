"""When a monthly budget will run out at the current pace, or that it will not.

Two paces are read, both exact integer arithmetic on pUSD and seconds:
- by calendar days: what was spent this month over the time elapsed since the month began;
- by this month's daily spend: the last complete days of the month (up to a week), which notices a
  team that started slowly and is now spending fast.
The forecast follows the faster of the two (the earlier run-out): a budget owner would rather hear of
it early. The sentence is the one the dashboard, the team page and /usage/ show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.utils import timezone

from billing.money import format_money
from billing.periods import Period

DAY = 86_400
RECENT_DAYS = 7
#: fewer complete days than this and the recent pace says too little to be used
MIN_RECENT_DAYS = 3


@dataclass(frozen=True)
class Forecast:
    """Where a budget is heading this month (amounts in pUSD)."""

    state: str  # "unlimited", "used_up", "quiet" (nothing spent yet), "runs_out", "holds"
    day: date | None = None  # the day it runs out, with "runs_out"
    month_total: int = 0  # what the month would end at, at this pace
    basis: str = "this month's pace"

    @property
    def runs_out(self) -> bool:
        return self.state == "runs_out"

    @property
    def sentence(self) -> str:
        if self.state == "used_up":
            return "Used up for this month."
        if self.state == "quiet":
            return "Nothing spent yet this month: it will not run out at this pace."
        if self.state == "unlimited":
            return f"No budget; at this pace about {format_money(self.month_total)} this month."
        if self.state == "runs_out":
            return f"At {self.basis}, it runs out on {self.day.day} {self.day:%B}."
        return f"At {self.basis}, it will not run out this month (about {format_money(self.month_total)})."


def forecast(
    spent: int,
    limit: int | None,
    period: Period,
    now: datetime | None = None,
    daily: list[tuple[date, int]] | None = None,
) -> Forecast:
    """The forecast for a budget of `limit` (None: no budget) with `spent` so far in `period` (a month),
    given the month's spend per local day (`daily`, any order; optional)."""
    now = now or timezone.now()
    start, end = period.start, period.end  # each reads the current time zone: once
    elapsed = int((min(now, end) - start).total_seconds())
    month_seconds = int((end - start).total_seconds())
    if limit is not None and spent >= limit:
        return Forecast("used_up", month_total=spent)
    if spent <= 0 or elapsed <= 0:
        return Forecast("unlimited" if limit is None else "quiet")

    # Pace as (amount, seconds): the month's so far, and the last complete days' when there are enough.
    paces = [(spent, elapsed, "this month's pace")]
    today = timezone.localtime(now).date()
    complete = sorted(
        ((day, cost) for day, cost in (daily or []) if period.first_day <= day < today), reverse=True
    )
    window = [today - timedelta(days=back) for back in range(1, RECENT_DAYS + 1)]
    window = [day for day in window if day >= period.first_day]
    if len(window) >= MIN_RECENT_DAYS:
        by_day = dict(complete)
        recent = sum(by_day.get(day, 0) for day in window)
        paces.append((recent, len(window) * DAY, f"the last {len(window)} days' pace"))
    # The faster pace: amount/seconds compared without division.
    amount, seconds, basis = max(paces, key=lambda pace: (pace[0] * DAY // max(pace[1], 1), -pace[1]))

    left = month_seconds - elapsed
    month_total = spent + amount * left // seconds if seconds else spent
    if limit is None:
        return Forecast("unlimited", month_total=month_total, basis=basis)
    if amount <= 0:
        return Forecast("holds", month_total=spent, basis=basis)
    until = (limit - spent) * seconds // amount  # seconds from now until the budget is reached
    if until >= left:
        return Forecast("holds", month_total=month_total, basis=basis)
    day = timezone.localtime(now + timedelta(seconds=until)).date()
    return Forecast("runs_out", day=day, month_total=month_total, basis=basis)

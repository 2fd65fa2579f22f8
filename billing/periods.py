"""Calendar periods in the site's TIME_ZONE, as [start, end) pairs of aware datetimes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.utils import timezone

PRESETS = {
    "today": "Today",
    "7d": "Last 7 days",
    "month": "This month",
    "last_month": "Last month",
    "30d": "Last 30 days",
    "365d": "Last 365 days",
}


@dataclass(frozen=True)
class Period:
    """Whole local days [first_day, last_day] as the aware half-open interval [start, end)."""

    first_day: date
    last_day: date
    label: str = ""

    @property
    def start(self) -> datetime:
        return local_midnight(self.first_day)

    @property
    def end(self) -> datetime:
        return local_midnight(self.last_day + timedelta(days=1))

    @property
    def days(self) -> list[date]:
        return [self.first_day + timedelta(days=n) for n in range((self.last_day - self.first_day).days + 1)]


def local_midnight(day: date) -> datetime:
    """00:00 of `day` in the current time zone (DST-safe with zoneinfo)."""
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def local_today(now: datetime | None = None) -> date:
    return timezone.localtime(now or timezone.now()).date()


def month_of(day: date) -> Period:
    first = day.replace(day=1)
    next_first = (first + timedelta(days=32)).replace(day=1)
    return Period(first, next_first - timedelta(days=1), f"{first:%B %Y}")


def current_month(now: datetime | None = None) -> Period:
    return month_of(local_today(now))


def preset(name: str, now: datetime | None = None) -> Period:
    """A named period; unknown names fall back to this month."""
    today = local_today(now)
    if name == "today":
        return Period(today, today, PRESETS[name])
    if name == "7d":
        return Period(today - timedelta(days=6), today, PRESETS[name])
    if name == "30d":
        return Period(today - timedelta(days=29), today, PRESETS[name])
    if name == "365d":
        return Period(today - timedelta(days=364), today, PRESETS[name])
    if name == "last_month":
        return month_of(today.replace(day=1) - timedelta(days=1))
    return month_of(today)

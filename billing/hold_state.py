"""What a budget hold decides on, read along with the conversation a Send locks (one statement).

On SQLite the Send's transaction holds the database's write lock from its first statement (BEGIN
IMMEDIATE): every row it reads is as it stays until the commit, so the organisation's cap, the site's
default, the person's budget row and their recent holds can be read in the Send's first SELECT instead
of one locking read each. On PostgreSQL those rows are locked one by one, in the documented order
(organisation, team, person: billing/services.py), so nothing is read ahead there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from django.db import connection
from django.db.models import Count, DateField, OuterRef, Subquery, Sum, Value

from billing.models import OrganisationBudget, SiteBudget, SpendReservation, UsageMonthlyUser, UserBudget
from billing.periods import current_month
from billing.queries import RATE_WINDOW, STALE_AFTER


@dataclass(frozen=True)
class HoldState:
    """The rows a hold reads, as the Send's first statement read them under the write lock."""

    organisation: OrganisationBudget | None  # its row when it has a cap, else None
    site: SiteBudget | None  # the site default's row, if staff saved one
    budget: UserBudget | None  # the person's row, if they have one
    recent_holds: int  # holds they took within the rate window
    expired_holds: int  # holds of theirs old enough to delete
    month: date  # the first day of the month their standing below is of
    spent: int  # what they spent that month (pUSD, the monthly rollup)
    held: int  # what their open holds hold (pUSD)


def read_ahead() -> bool:
    """Whether this database lets a Send read the hold's rows ahead (see the module's docstring)."""
    return not connection.features.has_select_for_update


def hold_state_annotations(now: datetime, *, user: str = "owner_id") -> dict:
    """Annotations for a query whose rows name a person in the field `user` (a Conversation's owner):
    the hold's rows as `hold_state_of` reads them back; none where they are not read ahead."""
    if not read_ahead():
        return {}
    capped = OrganisationBudget.objects.filter(pk=1, monthly_limit__isnull=False)
    site = SiteBudget.objects.filter(pk=1)
    holds = SpendReservation.objects.filter(user_id=OuterRef(user)).order_by().values("user_id")
    month = UsageMonthlyUser.objects.filter(month=current_month(now).first_day, user_id=OuterRef(user))

    def count(**conditions) -> Subquery:
        return Subquery(holds.filter(**conditions).annotate(n=Count("pk")).values("n")[:1])

    return {
        "hold_month": Value(current_month(now).first_day, output_field=DateField()),
        "hold_spent": Subquery(month.order_by().values("user_id").annotate(s=Sum("cost")).values("s")[:1]),
        "hold_held": Subquery(
            holds.filter(settled_at__isnull=True, created_at__gt=now - STALE_AFTER)
            .annotate(s=Sum("amount"))
            .values("s")[:1]
        ),
        "hold_org_limit": Subquery(capped.values("monthly_limit")[:1]),
        "hold_org_warning": Subquery(capped.values("warning_percent")[:1]),
        "hold_site_policy": Subquery(site.values("policy")[:1]),
        "hold_site_limit": Subquery(site.values("monthly_limit")[:1]),
        "hold_recent": count(created_at__gt=now - RATE_WINDOW),
        "hold_expired": count(created_at__lte=now - STALE_AFTER),
    }


def hold_state_of(row, budget: UserBudget | None) -> HoldState | None:
    """The HoldState a row annotated with `hold_state_annotations` carries (None: not read ahead);
    `budget` the person's budget row read with it (select_related), or None if they have none."""
    if not hasattr(row, "hold_recent"):
        return None
    organisation = None
    if row.hold_org_limit is not None:
        organisation = OrganisationBudget(
            pk=1, monthly_limit=row.hold_org_limit, warning_percent=row.hold_org_warning
        )
    site = None
    if row.hold_site_policy is not None:
        site = SiteBudget(pk=1, policy=row.hold_site_policy, monthly_limit=row.hold_site_limit)
    return HoldState(
        organisation,
        site,
        budget,
        row.hold_recent or 0,
        row.hold_expired or 0,
        row.hold_month,
        int(row.hold_spent or 0),
        int(row.hold_held or 0),
    )

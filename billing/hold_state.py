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


def hold_state_columns(user: str) -> list[str]:
    """The hold's rows as columns of a SELECT whose rows name a person in the column `user` (such as a
    conversation's owner_id), in the order hold_state_from reads them; parameters: hold_state_params."""
    quote = connection.ops.quote_name
    holds = quote(SpendReservation._meta.db_table)
    org = quote(OrganisationBudget._meta.db_table)
    site = quote(SiteBudget._meta.db_table)
    monthly = quote(UsageMonthlyUser._meta.db_table)
    capped = f"FROM {org} WHERE id = 1 AND monthly_limit IS NOT NULL"
    return [
        f"(SELECT monthly_limit {capped})",
        f"(SELECT warning_percent {capped})",
        f"(SELECT policy FROM {site} WHERE id = 1)",
        f"(SELECT monthly_limit FROM {site} WHERE id = 1)",
        f"(SELECT COUNT(*) FROM {holds} WHERE user_id = {user} AND created_at > %s)",
        f"(SELECT COUNT(*) FROM {holds} WHERE user_id = {user} AND created_at <= %s)",
        f"(SELECT COALESCE(SUM(cost), 0) FROM {monthly} WHERE month = %s AND user_id = {user})",
        f"(SELECT COALESCE(SUM(amount), 0) FROM {holds} WHERE user_id = {user}"
        " AND settled_at IS NULL AND created_at > %s)",
    ]


def hold_state_params(now: datetime) -> list:
    """The parameters of hold_state_columns, in order, for a Send at `now`."""
    ops = connection.ops
    return [
        ops.adapt_datetimefield_value(now - RATE_WINDOW),
        ops.adapt_datetimefield_value(now - STALE_AFTER),
        ops.adapt_datefield_value(current_month(now).first_day),
        ops.adapt_datetimefield_value(now - STALE_AFTER),
    ]


def hold_state_from(values: list, budget: UserBudget | None, now: datetime) -> HoldState:
    """The HoldState from hold_state_columns' values; `budget` the person's budget row read with them
    (None if they have none)."""
    org_limit, org_warning, site_policy, site_limit, recent, expired, spent, held = values
    organisation = None
    if org_limit is not None:
        organisation = OrganisationBudget(pk=1, monthly_limit=org_limit, warning_percent=org_warning)
    site = None
    if site_policy is not None:
        site = SiteBudget(pk=1, policy=site_policy, monthly_limit=site_limit)
    return HoldState(
        organisation,
        site,
        budget,
        int(recent or 0),
        int(expired or 0),
        current_month(now).first_day,
        int(spent or 0),
        int(held or 0),
    )

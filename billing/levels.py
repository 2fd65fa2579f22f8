"""The three budget levels a call is held against: the organisation, the user's team, the user.

Each level may have a monthly limit (None: no limit at that level). A call is allowed only if every
limited level can hold its worst case; `spend_reserve` locks the limited levels' rows, outermost first
(organisation, team, user: the one order every writer takes them in), reads every level's spend and
holds in ONE statement, and writes the hold with the team on it.

Why one statement: a call's end writes its ledger row, its rollups and settles its hold in one
transaction. A statement sees all of that or none of it (one snapshot, on PostgreSQL under READ
COMMITTED too), so "spent + held" is never read between the two and never counts a call twice or not
at all. The locks then only need to serialise holds at the same level against each other.

A ledger write (`usage_record`) takes the organisation's lock first too when it has a cap
(`organisation_lock`), then the person's: the same order. It needs no lock to stay within a budget, but
its alert check must see every other write's cost at each level (billing/alerts.py), and writes under
two teams on two models share no other row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connection

from billing.models import (
    OrganisationBudget,
    SpendReservation,
    UsageMonthlyTeam,
    UsageMonthlyUser,
    UserBudget,
    policy_limit,
)
from billing.periods import Period
from billing.queries import STALE_AFTER
from teams.models import Team

ORGANISATION, TEAM, USER = "organisation", "team", "user"


@dataclass
class Level:
    """One level's monthly budget and where it stands (pUSD)."""

    scope: str
    limit: int | None
    warning_percent: int
    spent: int = 0
    held: int = 0
    name: str = ""
    team: Team | None = None
    #: user level: the limit in force is the user's own cap (lower than staff's or a manager's)
    personal: bool = False
    subject_id: int = 0

    @property
    def limited(self) -> bool:
        return self.limit is not None

    @property
    def available(self) -> int:
        """What new holds may still take (0 when none)."""
        return 0 if self.limit is None else max(0, self.limit - self.spent - self.held)

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.spent >= self.limit

    @property
    def percent(self) -> int | None:
        if self.limit is None:
            return None
        return 100 if self.limit == 0 else self.spent * 100 // self.limit

    @property
    def state(self) -> str:
        """'ok', 'warning' (at or past its warning threshold) or 'exhausted'."""
        if self.limit is None:
            return "ok"
        if self.exhausted:
            return "exhausted"
        return "warning" if self.spent * 100 >= self.limit * self.warning_percent else "ok"


@dataclass
class Levels:
    """A user's levels, outermost first; only the organisation's and the team's when they exist."""

    user: Level
    team: Level | None = None
    organisation: Level | None = None
    team_id: int | None = None
    team_name: str = ""
    all: list[Level] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.all = [level for level in (self.organisation, self.team, self.user) if level is not None]

    def limited(self) -> list[Level]:
        return [level for level in self.all if level.limited]


def user_limits(user_id: int, budget: UserBudget | None, site_default) -> tuple[int | None, bool]:
    """(the user's limit in force, whether it is their own personal cap): the lower of staff's (or a
    manager's) limit and the user's own."""
    if budget is None:
        return site_default(), False
    assigned = policy_limit(budget.policy, budget.monthly_limit, site_default)
    personal = budget.personal_limit
    if personal is not None and (assigned is None or personal < assigned):
        return personal, True
    return assigned, False


#: levels_for's defaults: the team the user is in now; the organisation's row, read here.
CURRENT_TEAM = object()
UNREAD = object()


def _capped_organisation(*, lock: bool) -> OrganisationBudget | None:
    """The organisation's budget row when it has a cap (else None: no organisation level), locked until
    the transaction ends with `lock` (PostgreSQL; SQLite serialises writers already): one statement."""
    rows = OrganisationBudget.objects.filter(pk=1, monthly_limit__isnull=False)
    return (rows.select_for_update() if lock else rows).first()


def levels_for(
    user_id: int,
    budget: UserBudget | None,
    site_default,
    *,
    lock: bool,
    team_id=CURRENT_TEAM,
    organisation=UNREAD,
    team_read=UNREAD,
) -> Levels:
    """The user's three levels with their limits (not yet their standing): the team is the one they are
    in now, or `team_id` (a call's own team; None: no team). With `lock`, the rows of the limited
    organisation and team levels are locked, in that order, until the transaction ends (the caller has
    locked, or locks next, the user's row); each is read and locked in one statement. `organisation` is
    the capped organisation row when the caller read it already (`organisation_lock`); `team_read` the
    user's current team (a Team or None) when the caller read it already in this transaction."""
    org = _capped_organisation(lock=lock) if organisation is UNREAD else organisation
    if team_id is CURRENT_TEAM:
        teams = Team.objects.filter(memberships__user_id=user_id)
    else:
        teams = Team.objects.filter(pk=team_id) if team_id else Team.objects.none()
    if team_read is not UNREAD:
        # The caller read the user's team in this transaction already (their model choice): only a team
        # with a budget is read again, locked (its figures as they stand under the lock).
        team = team_read
        if lock and team is not None and team.monthly_limit is not None:
            team = Team.objects.select_for_update(of=("self",)).filter(pk=team.pk).first()
    else:
        team = None
        if lock:
            # The team's row locked only when it has a budget (only the team's own row: not the membership).
            team = teams.filter(monthly_limit__isnull=False).select_for_update(of=("self",)).first()
        if team is None:
            team = teams.first()  # no team, a team without a budget, or not locking
    limit, personal = user_limits(user_id, budget, site_default)
    warning = (budget.warning_percent if budget else None) or settings.CHAT_BUDGET_WARNING_PERCENT
    return Levels(
        user=Level(USER, limit, warning, personal=personal, subject_id=user_id),
        team=(
            Level(
                TEAM, team.monthly_limit, team.warning_percent, name=team.name, team=team, subject_id=team.pk
            )
            if team is not None
            else None
        ),
        organisation=(
            Level(ORGANISATION, org.monthly_limit, org.warning_percent, name="organisation")
            if org is not None
            else None
        ),
        team_id=team.pk if team is not None else None,
        team_name=team.name if team is not None else "",
    )


def organisation_lock() -> OrganisationBudget | None:
    """Lock the organisation's budget row until the transaction ends, when it has a cap (the first lock
    taken, before any team's or person's), and return it (None: no cap). SQLite serialises writers
    already: there it is only read."""
    return _capped_organisation(lock=True)


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def read_standing(
    levels: Levels, period: Period, now: datetime, *, with_holds: bool = True, user_known: bool = False
) -> None:
    """Fill in each level's spend this month (from the monthly rollups) and open holds, in one statement
    (none when only the user's level is limited and the caller filled it in already: `user_known`)."""
    month = connection.ops.adapt_datefield_value(period.first_day)
    fresh = connection.ops.adapt_datetimefield_value(now - STALE_AFTER)
    holds, monthly_user, monthly_team = (
        _table(SpendReservation),
        _table(UsageMonthlyUser),
        _table(UsageMonthlyTeam),
    )
    open_holds = f"SELECT COALESCE(SUM(amount), 0) FROM {holds} WHERE settled_at IS NULL AND created_at > %s"
    parts: list[tuple[Level, str, str, list, list]] = [
        (
            levels.user,
            f"SELECT COALESCE(SUM(cost), 0) FROM {monthly_user} WHERE month = %s AND user_id = %s",
            f"{open_holds} AND user_id = %s",
            [month, levels.user.subject_id],
            [fresh, levels.user.subject_id],
        )
    ]
    if user_known:
        parts.clear()
    if levels.team is not None and levels.team.limited:
        parts.append(
            (
                levels.team,
                f"SELECT COALESCE(SUM(cost), 0) FROM {monthly_team} WHERE month = %s AND team_id = %s",
                f"{open_holds} AND team_id = %s",
                [month, levels.team.subject_id],
                [fresh, levels.team.subject_id],
            )
        )
    if levels.organisation is not None:
        parts.append(
            (
                levels.organisation,
                f"SELECT COALESCE(SUM(cost), 0) FROM {monthly_team} WHERE month = %s",
                open_holds,
                [month],
                [fresh],
            )
        )
    if not parts:
        return
    columns, params = [], []
    for _level, spent_sql, held_sql, spent_params, held_params in parts:
        columns.append(f"({spent_sql})")
        params += spent_params
        if with_holds:
            columns.append(f"({held_sql})")
            params += held_params
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(columns)}", params)
        values = [int(value) for value in cursor.fetchone()]
    step = 2 if with_holds else 1
    for index, (level, *_rest) in enumerate(parts):
        level.spent = values[index * step]
        if with_holds:
            level.held = values[index * step + 1]


def team_spent(team_id: int, period: Period) -> int:
    """What was spent under the team in `period`'s month (its monthly rollup)."""
    row = UsageMonthlyTeam.objects.filter(month=period.first_day, team_id=team_id).values_list(
        "cost", flat=True
    )
    return int(row.first() or 0)

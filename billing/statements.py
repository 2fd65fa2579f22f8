"""Monthly statements (showback): each member's cost by model for a team, every team for the organisation.

A statement reads only the monthly rollups (billing/rollups.py), never the ledger: UsageMonthly for a
team's members × models, UsageMonthlyTeam for the organisation's teams. Both are exact integer sums of
the ledger rows of one local calendar month, keyed by the team recorded on each row at call time (0: no
team), so a person who left a team still appears on its statements and a deleted team is still listed
by the name its rows recorded. Totals are the sums of the lines shown, so they equal the ledger's sum
to the pico-dollar.

Title calls and other side calls are ledger rows like replies and are counted in their model's line.
The ledger records each call's purpose, but the rollups are keyed by model, not purpose, so a statement
shows lines per model: splitting them by purpose would mean scanning the ledger, which a page must not.
Managers see names and costs only: the rollups hold no conversation, so no title can reach a statement.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, fields
from datetime import date, timedelta

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.text import slugify

from billing.dashboard import spreadsheet_safe
from billing.models import Adjustment, UsageMonthly, UsageMonthlyTeam
from billing.money import pico_to_usd
from billing.periods import Period, current_month, month_of
from teams.access import may_manage
from teams.models import Membership, Team

NO_TEAM = 0  # the team id the rollups record for calls made under no team
EARLIEST_MONTH, LATEST_MONTH = date(1970, 1, 1), date(9998, 12, 1)


@dataclass(frozen=True)
class Figures:
    """Summed rollup figures (integers: tokens, calls, and cost in pUSD); `+` adds them exactly."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    thinking_tokens: int = 0
    unpriced_calls: int = 0
    estimated_calls: int = 0
    web_search_requests: int = 0
    web_fetch_requests: int = 0
    server_tool_cost: int = 0  # of `cost`: the web searches and fetches
    cost: int = 0

    @classmethod
    def of(cls, row: dict) -> Figures:
        return cls(**{f.name: int(row[f.name]) for f in fields(cls)})

    def __add__(self, other: Figures) -> Figures:
        return Figures(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @property
    def cache_write_tokens(self) -> int:
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens


FIGURES = tuple(f.name for f in fields(Figures))


def total_of(items) -> Figures:
    total = Figures()
    for item in items:
        total += item.figures
    return total


@dataclass(frozen=True)
class StatementTeam:
    """Whose statement: a team (`team` None when it was deleted) or no team at all (id 0)."""

    id: int
    name: str
    team: Team | None = None


@dataclass(frozen=True)
class ModelLine:
    model: str
    figures: Figures


@dataclass(frozen=True)
class MemberStatement:
    user_id: int
    username: str
    name: str  # the full name, else the username
    note: str  # "" for a member now; else why they are listed ("left the team", "account deleted")
    lines: tuple[ModelLine, ...]
    figures: Figures  # the member's subtotal


@dataclass(frozen=True)
class TeamStatement:
    subject: StatementTeam
    month: Period
    members: tuple[MemberStatement, ...]
    total: Figures
    budget: int | None  # the team's monthly budget now, pUSD (None: no budget)

    @property
    def budget_percent(self) -> int | None:
        if not self.budget:
            return None
        return self.total.cost * 100 // self.budget


@dataclass(frozen=True)
class TeamLine:
    team_id: int
    name: str
    note: str  # "deleted", "now <current name>" or ""
    budget: int | None
    figures: Figures


@dataclass(frozen=True)
class AdjustmentLine:
    """An organisation-level adjustment booked when reconciling with Anthropic (in no one's spending)."""

    day: date
    reason: str
    staff_name: str
    amount: int


@dataclass(frozen=True)
class OrganisationStatement:
    month: Period
    teams: tuple[TeamLine, ...]  # every team with spend in the month or existing now, by name
    no_team: TeamLine
    total: Figures
    adjustments: tuple[AdjustmentLine, ...] = ()

    @property
    def adjustments_total(self) -> int:
        return sum(line.amount for line in self.adjustments)

    @property
    def total_with_adjustments(self) -> int:
        """What the organisation owes Anthropic for the month: the ledger's total and the adjustments."""
        return self.total.cost + self.adjustments_total


def statement_month(key: str) -> Period | None:
    """The local calendar month named like '2026-12', or None when malformed or outside 1970..9998."""
    try:
        first = forms.DateField(input_formats=["%Y-%m"]).clean(key)
    except ValidationError:
        return None
    return month_of(first) if EARLIEST_MONTH <= first <= LATEST_MONTH else None


def month_key(day: date) -> str:
    return f"{day:%Y-%m}"


def statement_team(user, team_id: int) -> StatementTeam | None:
    """The team whose statements `user` may read, or None: its managers and staff for a team that
    exists; staff only for a deleted team that spent (by its recorded name) and for no team (id 0)."""
    low, high = connection.ops.integer_field_range("BigIntegerField")
    if not low <= team_id <= high:
        return None
    team = Team.objects.filter(pk=team_id).first()
    if team is not None:
        return StatementTeam(team.pk, team.name, team) if may_manage(user, team) else None
    if not user.is_staff:
        return None
    if team_id == NO_TEAM:
        return StatementTeam(NO_TEAM, "No team")
    recorded = UsageMonthlyTeam.objects.filter(team_id=team_id).order_by("-month").first()
    return StatementTeam(team_id, recorded.team_name or f"Team #{team_id}") if recorded else None


def team_statement_of(subject: StatementTeam, month: Period) -> TeamStatement:
    """Each member who spent under the team in `month` with a line per model, plus the team's members
    now who had joined by the month's end and spent nothing (listed at 0); members by name.

    A few queries, whatever the ledger's size: the month's UsageMonthly rows of the team (its unique
    key's prefix), the team's memberships, and the accounts of those who left it."""
    rows = UsageMonthly.objects.filter(month=month.first_day, team_id=subject.id).values(
        "user_id", "username", "model", *FIGURES
    )
    spent: dict[int, list[ModelLine]] = {}
    recorded_name: dict[int, str] = {}
    for row in rows:  # one row per member × model: a team's tens of members, not ledger rows
        spent.setdefault(row["user_id"], []).append(ModelLine(row["model"], Figures.of(row)))
        recorded_name[row["user_id"]] = row["username"]
    current: dict[int, object] = {}  # the team's members now (accounts), by id
    joined: set[int] = set()  # of them, those who were in by the month's end: listed even at 0
    if subject.team is not None:
        for membership in Membership.objects.filter(team=subject.team).select_related("user"):
            current[membership.user_id] = membership.user
            if membership.since < month.end:
                joined.add(membership.user_id)
    # Who left a team that still exists: their account as it is now, if it is still there. (Not for no
    # team nor a deleted team, whose people are all "former": the names their rows recorded.)
    former = set(spent) - set(current) if subject.team is not None else set()
    accounts = {user.pk: user for user in get_user_model().objects.filter(pk__in=former)} if former else {}
    members = []
    for user_id in set(spent) | joined:
        lines = tuple(sorted(spent.get(user_id, ()), key=lambda line: line.model))
        account = current.get(user_id) or accounts.get(user_id)
        if user_id in current or subject.team is None:
            note = ""
        else:
            note = "left the team" if account is not None else "account deleted"
        if account is not None:
            username = account.get_username()
            name = account.get_full_name() or username
        else:
            username = name = recorded_name[user_id]
        members.append(MemberStatement(user_id, username, name, note, lines, total_of(lines)))
    members.sort(key=lambda member: (member.name.casefold(), member.username, member.user_id))
    budget = subject.team.monthly_limit if subject.team is not None else None
    return TeamStatement(subject, month, tuple(members), total_of(members), budget)


def organisation_statement_of(month: Period) -> OrganisationStatement:
    """Every team's total for `month` (by the name its rows recorded; teams that exist now and spent
    nothing at 0), the calls made under no team, and the organisation's total."""
    teams = {pk: (name, limit) for pk, name, limit in Team.objects.values_list("pk", "name", "monthly_limit")}
    recorded = {
        row["team_id"]: row
        for row in UsageMonthlyTeam.objects.filter(month=month.first_day).values(
            "team_id", "team_name", *FIGURES
        )
    }
    no_team = recorded.pop(NO_TEAM, None)
    lines = []
    for team_id in set(recorded) | set(teams):
        row = recorded.get(team_id)
        current, budget = teams.get(team_id, (None, None))
        name = (row["team_name"] if row else "") or current or f"Team #{team_id}"
        note = "deleted" if current is None else ("" if current == name else f"now {current}")
        lines.append(TeamLine(team_id, name, note, budget, Figures.of(row) if row else Figures()))
    lines.sort(key=lambda line: (line.name.casefold(), line.team_id))
    no_team_line = TeamLine(NO_TEAM, "No team", "", None, Figures.of(no_team) if no_team else Figures())
    adjustments = tuple(
        AdjustmentLine(*row)
        for row in Adjustment.objects.filter(day__gte=month.first_day, day__lte=month.last_day)
        .order_by("day", "pk")
        .values_list("day", "reason", "staff_name", "amount")
    )
    return OrganisationStatement(
        month, tuple(lines), no_team_line, total_of([*lines, no_team_line]), adjustments
    )


# --- CSV: exact decimal USD, one row per member × model (team) or per team (organisation) ----------

FIGURE_COLUMNS = [
    ("Calls", "calls"),
    ("Input tokens", "input_tokens"),
    ("Output tokens", "output_tokens"),
    ("Cache write 5m tokens", "cache_write_5m_tokens"),
    ("Cache write 1h tokens", "cache_write_1h_tokens"),
    ("Cache read tokens", "cache_read_tokens"),
    ("Thinking tokens (in output)", "thinking_tokens"),
    ("Unpriced calls", "unpriced_calls"),
    ("Estimated calls", "estimated_calls"),
    ("Web searches", "web_search_requests"),
    ("Web fetches", "web_fetch_requests"),
]
# Exact USD columns after the counts: what the web searches and fetches cost, then the whole cost.
MONEY_COLUMNS = ["Web searches and fetches (USD)", "Cost (USD)"]


def exact_usd(pico: int) -> str:
    """pUSD as an exact plain decimal string of USD ('0.00000001', never '1E-8')."""
    return f"{pico_to_usd(pico):f}"


def _figure_cells(figures: Figures) -> list:
    counts = (getattr(figures, name) for _, name in FIGURE_COLUMNS)
    return [*counts, exact_usd(figures.server_tool_cost), exact_usd(figures.cost)]


def _csv(filename: str, header: list[str], rows: list[list]) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(header)
    writer.writerows(rows)
    return response


def team_statement_csv_response(statement: TeamStatement) -> HttpResponse:
    month = month_key(statement.month.first_day)
    subject = statement.subject
    header = ["Month", "Team id", "Team", "User id", "User", "Name", "Note", "Model"]
    header += [label for label, _ in FIGURE_COLUMNS] + MONEY_COLUMNS
    rows = []
    for member in statement.members:
        person = [
            month,
            subject.id,
            spreadsheet_safe(subject.name),
            member.user_id,
            spreadsheet_safe(member.username),
            spreadsheet_safe(member.name),
            member.note,
        ]
        for line in member.lines or (ModelLine("", Figures()),):
            rows.append([*person, spreadsheet_safe(line.model), *_figure_cells(line.figures)])
    rows.append(
        [
            month,
            subject.id,
            spreadsheet_safe(subject.name),
            "",
            "TOTAL",
            "",
            "",
            "",
            *_figure_cells(statement.total),
        ]
    )
    filename = f"statement-{slugify(subject.name)[:60] or f'team-{subject.id}'}-{month}.csv"
    return _csv(filename, header, rows)


def organisation_statement_csv_response(statement: OrganisationStatement) -> HttpResponse:
    month = month_key(statement.month.first_day)
    header = ["Month", "Team id", "Team", "Note", *(c for c, _ in FIGURE_COLUMNS), *MONEY_COLUMNS]
    rows = [
        [
            month,
            line.team_id,
            spreadsheet_safe(line.name),
            spreadsheet_safe(line.note),
            *_figure_cells(line.figures),
        ]
        for line in (*statement.teams, statement.no_team)
    ]
    rows.append([month, "", "TOTAL", "", *_figure_cells(statement.total)])
    blank = [""] * (len(FIGURE_COLUMNS) + len(MONEY_COLUMNS) - 1)  # an adjustment fills the cost only
    for line in statement.adjustments:
        note = spreadsheet_safe(f"{line.day:%Y-%m-%d}, {line.staff_name}: {line.reason}")
        rows.append([month, "", "ADJUSTMENT", note, *blank, exact_usd(line.amount)])
    if statement.adjustments:
        rows.append(
            [month, "", "TOTAL WITH ADJUSTMENTS", "", *blank, exact_usd(statement.total_with_adjustments)]
        )
    return _csv(f"statement-organisation-{month}.csv", header, rows)


# --- Views: authenticate, authorize (404 for anyone else: team ids do not leak), render ------------


def _month_or_404(key: str) -> Period:
    month = statement_month(key)
    if month is None:
        raise Http404("No such month.")
    return month


def _team_or_404(request: HttpRequest, team_id: int) -> StatementTeam:
    subject = statement_team(request.user, team_id)
    if subject is None:
        raise Http404("No such team.")
    return subject


def _org_or_404(request: HttpRequest) -> None:
    if not request.user.is_staff:
        raise Http404("No such page.")


def _navigation(month: Period, url_name: str, *args) -> dict:
    """Links to the previous and next months' statements (none before 1970 nor after the current month)."""
    previous = month.first_day - timedelta(days=1)
    following = month.last_day + timedelta(days=1)
    this_month = current_month().first_day
    return {
        "previous_url": reverse(url_name, args=[*args, month_key(previous)])
        if previous >= EARLIEST_MONTH
        else "",
        "previous_label": f"{previous:%B %Y}",
        "next_url": reverse(url_name, args=[*args, month_key(following)]) if following <= this_month else "",
        "next_label": f"{following:%B %Y}",
        "in_progress": month.first_day == this_month,
        "month_key": month_key(month.first_day),
    }


@login_required
def team_statement(request: HttpRequest, team_id: int, month: str) -> HttpResponse:
    subject, period = _team_or_404(request, team_id), _month_or_404(month)
    context = {
        "statement": team_statement_of(subject, period),
        "csv_url": reverse("teams:statement_csv", args=[team_id, month]),
        **_navigation(period, "teams:statement", team_id),
    }
    return render(request, "teams/statement.html", context)


@login_required
def team_statement_csv(request: HttpRequest, team_id: int, month: str) -> HttpResponse:
    subject, period = _team_or_404(request, team_id), _month_or_404(month)
    return team_statement_csv_response(team_statement_of(subject, period))


@login_required
def organisation_statement(request: HttpRequest, month: str) -> HttpResponse:
    _org_or_404(request)
    period = _month_or_404(month)
    context = {
        "statement": organisation_statement_of(period),
        "csv_url": reverse("teams:org_statement_csv", args=[month]),
        **_navigation(period, "teams:org_statement"),
    }
    return render(request, "teams/org_statement.html", context)


@login_required
def organisation_statement_csv(request: HttpRequest, month: str) -> HttpResponse:
    _org_or_404(request)
    return organisation_statement_csv_response(organisation_statement_of(_month_or_404(month)))

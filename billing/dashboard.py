"""The staff usage dashboard: period selection, panels, per-user detail and CSV export.

Every figure comes from one aggregate query per panel (billing/queries.py); Python only shapes the
already-grouped rows. Totals come from the smallest rollups that hold them, the tables from others: every
rollup is written in the ledger row's own transaction, so they reconcile. The per-user table reads every
user of the period only to order them; its page's 50 rows are read in full (user_page).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django import forms
from django.contrib.auth import get_user_model
from django.core.paginator import Page, Paginator
from django.db import connection
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from billing import rollups, team_panel
from billing.levels import user_limits
from billing.models import Adjustment, BudgetPolicy, UsageMonthlyUser, UsageRecord, UserBudget
from billing.money import format_money, pico_to_usd
from billing.periods import PRESETS, Period, current_month, preset
from billing.queries import ROLLUP_SUMS, current_titles
from billing.services import site_default_limit

TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
)
# The per-user table's sortable columns, in the order they are shown (the user first).
USER_SORTS = {
    "username": "User",
    "cost": "Cost",
    "budget_used": "Budget used",
    "calls": "Calls",
    "tokens": "Tokens",
    "last_activity": "Last activity",
}
USERS_PER_PAGE = 50
TEAMS_SHOWN = 20  # the teams panel's rows until "Show all teams"
MAX_SEARCH_CHARS = 150  # a username is at most 150 characters
CHART_COLOURS = 6  # distinct model colours (static/billing/dashboard.css); more models share "other"
CHART_WIDTH, CHART_HEIGHT = 600, 180
DAILY_BARS_UP_TO = 62  # days; a longer period is charted per week
MAX_CUSTOM_DAYS = 3 * 366
# A custom range stays inside what dates, time zones and both databases handle with room to spare
# (Python's calendar ends on 9999-12-31, and a period ends at the midnight after its last day).
EARLIEST_DAY, LATEST_DAY = date(1970, 1, 1), date(9998, 12, 31)


class PeriodForm(forms.Form):
    preset = forms.ChoiceField(choices=[*PRESETS.items(), ("custom", "Custom")], required=False)
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    # The team filter: a team's id, 0 for calls made under no team; empty: everyone.
    team = forms.IntegerField(required=False, min_value=0, max_value=2**62)

    def clean(self):
        data = super().clean()
        if data.get("preset") == "custom":
            start, end = data.get("start"), data.get("end")
            if not start or not end:
                raise forms.ValidationError("A custom range needs a start and an end date.")
            if end < start:
                raise forms.ValidationError("The end date is before the start date.")
            if start < EARLIEST_DAY or end > LATEST_DAY:
                raise forms.ValidationError(f"Choose dates between {EARLIEST_DAY} and {LATEST_DAY}.")
            if (end - start).days > MAX_CUSTOM_DAYS:
                raise forms.ValidationError("Choose at most three years.")
        return data

    def period(self) -> Period:
        """The chosen period in TIME_ZONE (this month when the form is empty or invalid)."""
        if not self.is_valid():
            return preset("month")
        data = self.cleaned_data
        if data.get("preset") == "custom":
            return Period(data["start"], data["end"], f"{data['start']:%Y-%m-%d} – {data['end']:%Y-%m-%d}")
        return preset(data.get("preset") or "month")

    def team_id(self) -> int | None:
        """The team filter (0: no team), None for everyone (also when the form is invalid)."""
        return self.cleaned_data.get("team") if self.is_valid() else None


def period_from(request: HttpRequest) -> tuple[PeriodForm, Period]:
    form = PeriodForm(request.GET or None)
    return form, form.period()


def period_query(form: PeriodForm) -> str:
    """The query string that selects the same period and team (for sort links)."""
    team = form.team_id()
    period = _period_only_query(form)
    return period if team is None else f"{period}&{urlencode({'team': team})}"


def _period_only_query(form: PeriodForm) -> str:
    if form.is_bound and form.is_valid() and form.cleaned_data.get("preset") == "custom":
        data = form.cleaned_data
        return urlencode(
            {"preset": "custom", "start": data["start"].isoformat(), "end": data["end"].isoformat()}
        )
    if form.is_bound and form.is_valid() and form.cleaned_data.get("preset"):
        return urlencode({"preset": form.cleaned_data["preset"]})
    return "preset=month"


def _tokens(row: dict) -> int:
    return sum(row[name] for name in TOKEN_FIELDS)


def _budget_used(user_ids: list[int]) -> dict[int, tuple[int, int | None]]:
    """user id → (spent this month, monthly limit or None): monthly rollup + budget rows, 3 queries."""
    month = current_month()
    monthly = UsageMonthlyUser.objects.filter(month=month.first_day)
    if len(user_ids) <= 50:
        monthly = monthly.filter(user_id__in=user_ids)
    spent: dict[int, int] = defaultdict(int)
    for user_id, cost in monthly.values_list("user_id", "cost"):  # a row per team the user spent under
        spent[user_id] += cost
    default = site_default_limit()
    overrides = UserBudget.objects.exclude(policy=BudgetPolicy.DEFAULT, personal_limit__isnull=True)
    if len(user_ids) <= 50:
        overrides = overrides.filter(user_id__in=user_ids)
    limits = {budget.user_id: user_limits(budget.user_id, budget, lambda: default)[0] for budget in overrides}
    return {user_id: (spent.get(user_id, 0), limits.get(user_id, default)) for user_id in user_ids}


def _fraction_key(spent: int, limit: int | None) -> tuple[int, int]:
    # Sorts exactly by spent/limit without floats: compare spent × 10^6 // limit; unlimited sorts last.
    if limit is None:
        return (0, -1)
    if limit == 0:
        return (1, 10**18)
    return (1, spent * 10**6 // limit)


def _combine(pairs: list[dict], key: str) -> dict:
    """Sum grouped (user, model) rows by `key`; also counts distinct users per group."""
    combined: dict = {}
    for pair in pairs:  # grouped rows, at most users × models
        target = combined.get(pair[key])
        if target is None:
            target = combined[pair[key]] = {
                key: pair[key],
                "last_activity": pair["last_activity"],
                "user_ids": set(),
            }
            target.update({name: 0 for name in ROLLUP_SUMS})
            if key == "user_id":
                target["username_label"] = pair["username_label"]
        for name in ROLLUP_SUMS:
            target[name] += pair[name]
        target["last_activity"] = max(target["last_activity"], pair["last_activity"])
        if "user_id" in pair:
            target["user_ids"].add(pair["user_id"])
    rows = list(combined.values())
    for row in rows:
        user_ids = row.pop("user_ids")
        row["users"] = len(user_ids) if user_ids else None
        row["tokens"] = _tokens(row)
    return rows


def totals_of(pairs: list[dict]) -> dict:
    """Period totals: the sum of the grouped rows (so totals and tables reconcile by construction)."""
    totals = {name: sum(pair[name] for pair in pairs) for name in ROLLUP_SUMS}
    totals["active_users"] = len({pair["user_id"] for pair in pairs})
    totals["tokens"] = _tokens(totals)
    return totals


# Sort keys of the per-user table; ties in user id order, ascending or descending.
_SORT_KEYS = {
    "cost": lambda r: r["cost"],
    "tokens": lambda r: r["tokens"],
    "calls": lambda r: r["calls"],
    "last_activity": lambda r: r["last_activity"],
    "budget_used": lambda r: _fraction_key(r["month_spent"], r["limit"]),
    "username": lambda r: r["username_label"].lower(),
}
# What ordering every user of the period needs to read (besides calls and, with `latest`, the name
# and last activity): the sorted column's sums only.
_SORT_SUMS = {"cost": ("cost",), "tokens": TOKEN_FIELDS}


def _sorted(rows: list[dict], sort: str, descending: bool) -> list[dict]:
    rows.sort(key=lambda r: r["user_id"])
    rows.sort(key=_SORT_KEYS.get(sort, _SORT_KEYS["cost"]), reverse=descending)
    return rows


def _with_budget(rows: list[dict]) -> list[dict]:
    budgets = _budget_used([row["user_id"] for row in rows])
    for row in rows:
        row["month_spent"], row["limit"] = budgets[row["user_id"]]
        row["budget_percent"] = (
            None
            if row["limit"] is None
            else (100 if row["limit"] == 0 else row["month_spent"] * 100 // row["limit"])
        )
    return rows


def user_rows(pairs: list[dict], sort: str = "cost", descending: bool = True) -> list[dict]:
    """Per-user rows for the period, each with tokens and this month's budget use; sorted."""
    return _sorted(_with_budget(_combine(pairs, "user_id")), sort, descending)


def _matching(rows: list[dict], search: str) -> list[dict]:
    needle = search.casefold()
    return [row for row in rows if needle in row["username_label"].casefold()] if search else rows


def all_user_rows(
    period: Period, team_id: int | None, sort: str, descending: bool, search: str
) -> list[dict]:
    """Every row of the per-user table (matching `search`), sorted: what the CSV export writes."""
    return _matching(user_rows(rollups.period_by_user(period, team_id), sort, descending), search)


def user_page(
    period: Period, team_id: int | None, sort: str, descending: bool, search: str, number
) -> tuple[Page, int]:
    """The per-user table's page `number` (its rows as user_rows makes them) and how many users made
    calls in the period, whatever the search.

    Ordering every user of the period reads only what the sort and the search need (calls, the sorted
    column's sums, names and last activity only to sort or search by them); the full figures and budgets
    are then read for the page's users alone. Sorting by budget used reads this month's spend and limit
    of every user of the period (the slower path: limits follow each user's budget policy, in Python).
    Both reads sort in Python with the same keys, so the order is the one user_rows gives."""
    latest = search != "" or sort in ("username", "last_activity")
    keys = rollups.period_user_keys(period, team_id, sums=_SORT_SUMS.get(sort, ()), latest=latest)
    active_users = len(keys)
    keys = _matching(keys, search)
    if sort == "tokens":
        for row in keys:
            row["tokens"] = _tokens(row)
    if sort == "budget_used":
        _with_budget(keys)
    page = Paginator([row["user_id"] for row in _sorted(keys, sort, descending)], USERS_PER_PAGE).get_page(
        number
    )
    shown = {
        row["user_id"]: row for row in user_rows(rollups.period_by_user(period, team_id, user_ids=list(page)))
    }
    page.object_list = [shown[user_id] for user_id in page.object_list if user_id in shown]
    return page, active_users


def model_rows(pairs: list[dict]) -> list[dict]:
    """Per-model rows (with distinct users), dearest first."""
    return sorted(_combine(pairs, "model"), key=lambda r: (-r["cost"], r["model"]))


def _per_day(pairs: list[dict]) -> list[dict]:
    """Sum grouped (day, model) rows per day: the rows period_by_day gives."""
    days: dict = {}
    for pair in pairs:  # grouped rows, at most days × models
        target = days.get(pair["day"])
        if target is None:
            days[pair["day"]] = {name: pair[name] for name in ("day", *ROLLUP_SUMS, "last_activity")}
            continue
        for name in ROLLUP_SUMS:
            target[name] += pair[name]
        target["last_activity"] = max(target["last_activity"], pair["last_activity"])
    return list(days.values())


def day_rows(found_rows: list[dict], period: Period) -> list[dict]:
    """One row per day of the period (zero rows filled in), oldest first."""
    found = {row["day"]: row for row in found_rows}
    rows = []
    for day in period.days:
        row = dict(found.get(day) or {name: 0 for name in ROLLUP_SUMS}, day=day)
        row["tokens"] = _tokens(row)
        rows.append(row)
    return rows


def _nice_step(top: int) -> int:
    """A round step (1, 2 or 5 × 10^k pUSD) that splits 0..top into at most four intervals."""
    wanted = -(-top // 4)
    power = 1
    while True:
        for factor in (1, 2, 5):
            if power * factor >= wanted:
                return power * factor
        power *= 10


def _buckets(period: Period) -> tuple[str, list[tuple[date, date]]]:
    """('day' | 'week', [(first day, last day)]): one bar per day up to two months, else per week."""
    days = period.days
    size = 1 if len(days) <= DAILY_BARS_UP_TO else 7
    return ("day" if size == 1 else "week"), [
        (days[i], days[min(i + size, len(days)) - 1]) for i in range(0, len(days), size)
    ]


def _day_label(first: date, last: date) -> str:
    return f"{first:%Y-%m-%d}" if first == last else f"{first:%Y-%m-%d} – {last:%Y-%m-%d}"


def chart(day_model_rows: list[dict], period: Period, models: list[dict]) -> dict:
    """A stacked bar chart of cost per day (or week) split by model, as integer SVG geometry.

    `models` (dearest first) fixes the colours: the first CHART_COLOURS - 1 models get their own,
    the rest share "other models" when there are more than CHART_COLOURS. The y axis has round ticks
    from $0; the x axis is labelled at the first, middle and last bar. With no cost in the period the
    chart says so instead of drawing an empty box.
    """
    unit, buckets = _buckets(period)
    names = [row["model"] for row in models]
    own = names if len(names) <= CHART_COLOURS else names[: CHART_COLOURS - 1]
    colour_of = {name: index for index, name in enumerate(own)}
    other = len(own)
    legend = [
        {"model": name, "colour": colour_of[name], "cost": row["cost"]}
        for name, row in zip(names, models, strict=True)
        if name in colour_of
    ]
    if len(own) < len(names):
        legend.append(
            {
                "model": f"{len(names) - len(own)} other models",
                "colour": other,
                "cost": sum(row["cost"] for row in models[len(own) :]),
            }
        )
    index_of_day = {}
    for index, (first, last) in enumerate(buckets):
        for offset in range((last - first).days + 1):
            index_of_day[first + timedelta(days=offset)] = index
    costs = [[0] * (other + 1) for _ in buckets]
    calls = 0
    for row in day_model_rows:
        index = index_of_day.get(row["day"])
        if index is not None:
            costs[index][colour_of.get(row["model"], other)] += row["cost"]
            calls += row["calls"]
    totals = [sum(parts) for parts in costs]
    top = max(totals, default=0)
    base = {
        "unit": unit,
        "first": period.first_day,
        "last": period.last_day,
        "legend": legend,
        "calls": calls,
        "total": sum(totals),
    }
    if top == 0:
        return {**base, "empty": True}
    step = _nice_step(top)
    scale = -(-top // step) * step
    height = CHART_HEIGHT
    slot = max(2, CHART_WIDTH // len(buckets))
    gap = 1 if slot > 3 else 0

    def y(value: int) -> int:
        return height - value * height // scale

    bars = []
    for index, ((first, last), parts) in enumerate(zip(buckets, costs, strict=True)):
        segments, below = [], 0
        for colour, cost in enumerate(parts):
            if cost:
                top_y, bottom_y = y(below + cost), y(below)
                if bottom_y > top_y:
                    # Strings: the template prints them as they are (no number localisation per attribute).
                    segments.append({"y": str(top_y), "height": str(bottom_y - top_y), "colour": str(colour)})
                below += cost
        bars.append(
            {
                "x": str(index * slot),
                "width": str(slot - gap),
                "segments": segments,
                "label": _day_label(first, last),
                "cost": totals[index],
            }
        )
    peak = max(range(len(buckets)), key=lambda i: totals[i])
    middle = buckets[len(buckets) // 2][0]
    return {
        **base,
        "empty": False,
        "width": slot * len(buckets),
        "height": height,
        "bars": bars,
        "ticks": [{"y": str(y(value)), "label": format_money(value)} for value in range(scale, -1, -step)],
        "x_labels": [buckets[0][0], middle, buckets[-1][1]]
        if len(buckets) > 2
        else sorted({buckets[0][0], buckets[-1][1]}),
        "summary": (
            f"Cost per {unit} from {period.first_day:%Y-%m-%d} to {period.last_day:%Y-%m-%d}, split by model: "
            f"total {format_money(sum(totals))}; highest {bars[peak]['label']} at {format_money(top)}."
        ),
    }


def _query(**params) -> str:
    return urlencode({key: value for key, value in params.items() if value not in (None, "")})


def _teams_shown(rows: list[dict], every: bool) -> dict:
    """The teams panel's rows: the first TEAMS_SHOWN (those needing attention, then the dearest), or
    every team when asked; and how many there are."""
    return {"teams": rows if every else rows[:TEAMS_SHOWN], "teams_count": len(rows), "teams_all": every}


def period_adjustments(period: Period) -> dict | None:
    """The adjustments booked on the days of `period` (their UTC days) and the period's cost with them;
    None when there are none."""
    found = Adjustment.objects.filter(day__gte=period.first_day, day__lte=period.last_day).aggregate(
        amount=Sum("amount"), count=Count("id")
    )
    return {"amount": int(found["amount"]), "count": found["count"]} if found["count"] else None


def dashboard_context(request: HttpRequest) -> dict:
    form, period = period_from(request)
    sort = request.GET.get("sort", "cost")
    if sort not in USER_SORTS:
        sort = "cost"
    descending = request.GET.get("dir", "desc") != "asc"
    search = request.GET.get("q", "").strip()[:MAX_SEARCH_CHARS]
    team_id = form.team_id()
    now = timezone.now()
    page, active_users = user_page(period, team_id, sort, descending, search, request.GET.get("page"))
    totals = rollups.period_totals(period, team_id)
    totals.update(active_users=active_users, tokens=_tokens(totals))
    # Organisation-level adjustments (reconciling with Anthropic) are in no team's or person's figures.
    adjustments = period_adjustments(period) if team_id is None else None
    # One read of the period's days per model draws the chart and the per-day table, and site-wide the
    # per-model table (a team's counts its users, so it reads per user and model).
    by_day_model = rollups.period_by_day_model(period, team_id=team_id)
    if team_id is None:
        models = model_rows(by_day_model)
    else:
        models = model_rows(rollups.period_by_user_model(period, team_id=team_id))
    days = day_rows(_per_day(by_day_model), period)
    period_part = period_query(form)
    table_query = "&".join(
        filter(None, [period_part, _query(sort=sort, dir="desc" if descending else "asc", q=search)])
    )
    return {
        "form": form,
        "period": period,
        "presets": PRESETS,
        "sort": sort,
        "descending": descending,
        "user_sorts": USER_SORTS,
        "search": search,
        "totals": totals,
        "adjustments": adjustments,
        "users": page.object_list,  # the page's rows (the CSV writes every row: all_user_rows)
        "user_page": page,
        "models": models,
        "days": days,
        "chart": chart(by_day_model, period, models),
        "team_id": team_id,
        "team_choices": team_panel.team_choices(),
        **_teams_shown(team_panel.team_rows(period, now), request.GET.get("teams") == "all"),
        "organisation": team_panel.organisation_row(now),
        "alerts": team_panel.alert_rows(now),
        "organisation_month": f"{current_month(now).first_day:%Y-%m}",
        "query": request.GET.urlencode(),
        "period_query": period_part,
        "preset_team_query": "" if team_id is None else f"&{urlencode({'team': team_id})}",
        "search_query": "&".join(filter(None, [period_part, _query(q=search)])),
        "table_query": table_query,
        "subject_id": None,
        "timezone": timezone.get_current_timezone_name(),
    }


def user_is_known(user_id: int) -> bool:
    """True when `user_id` is an account's id or has ledger rows (an id beyond the column's range is not)."""
    low, high = connection.ops.integer_field_range("BigIntegerField")
    if not low <= user_id <= high:
        return False
    return (
        get_user_model().objects.filter(pk=user_id).exists() or UsageRecord.objects.for_user(user_id).exists()
    )


def user_detail_context(request: HttpRequest, user_id: int) -> dict:
    form, period = period_from(request)
    qs = UsageRecord.objects.for_user(user_id).for_period(period.start, period.end)
    pairs = rollups.period_by_user_model(period, user_id=user_id)
    models = model_rows(pairs)
    by_day_model = rollups.period_by_day_model(period, user_id=user_id)
    days = day_rows(_per_day(by_day_model), period)
    latest = UsageRecord.objects.for_user(user_id).order_by("-created_at").values("username").first()
    budget = _budget_used([user_id])[user_id]
    conversations = qs.by_conversation(limit=20)
    titles = current_titles([row["conversation_id"] for row in conversations])
    for row in conversations:
        row["title"] = titles.get(row["conversation_id"], row["title"])
    return {
        "form": form,
        "period": period,
        "presets": PRESETS,
        "subject_id": user_id,
        "subject_name": latest["username"] if latest else f"user #{user_id}",
        # One person's page: no "Active users" figure (the template shows it only when not None).
        "totals": {**totals_of(pairs), "active_users": None},
        "models": models,
        "days": days,
        "chart": chart(by_day_model, period, models),
        "conversations": conversations,
        "recent": qs.order_by("-created_at", "-id")[:50],
        "month_spent": budget[0],
        "limit": budget[1],
        "query": request.GET.urlencode(),
        "period_query": period_query(form),
        "timezone": timezone.get_current_timezone_name(),
    }


# --- CSV: the same rows and columns the tables show -------------------------------------------------

SUM_COLUMNS = [
    ("Cost (USD)", lambda r: pico_to_usd(r["cost"])),
    ("Calls", lambda r: r["calls"]),
    ("Tokens", lambda r: r["tokens"]),
    ("Input", lambda r: r["input_tokens"]),
    ("Output", lambda r: r["output_tokens"]),
    ("Cache write 5m", lambda r: r["cache_write_5m_tokens"]),
    ("Cache write 1h", lambda r: r["cache_write_1h_tokens"]),
    ("Cache read", lambda r: r["cache_read_tokens"]),
    ("Thinking (in output)", lambda r: r["thinking_tokens"]),
    ("Cache savings (USD)", lambda r: pico_to_usd(r["cache_savings"])),
    ("Web searches", lambda r: r["web_search_requests"]),
    ("Web fetches", lambda r: r["web_fetch_requests"]),
    ("Web searches and fetches (USD)", lambda r: pico_to_usd(r["server_tool_cost"])),
    ("Unpriced calls", lambda r: r["unpriced_calls"]),
    ("Estimated calls", lambda r: r["estimated_calls"]),
]


def _local(value) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M") if value else ""


TABLES = {
    "users": [
        ("User id", lambda r: r["user_id"]),
        ("User", lambda r: r["username_label"]),
        *SUM_COLUMNS,
        ("Last activity", lambda r: _local(r["last_activity"])),
        ("Spent this month (USD)", lambda r: pico_to_usd(r["month_spent"])),
        ("Monthly budget (USD)", lambda r: "unlimited" if r["limit"] is None else pico_to_usd(r["limit"])),
        ("Budget used (%)", lambda r: "" if r["budget_percent"] is None else r["budget_percent"]),
    ],
    "models": [("Model", lambda r: r["model"]), *SUM_COLUMNS],
    "days": [("Day", lambda r: r["day"].isoformat()), *SUM_COLUMNS],
}


def table_rows(context: dict, table: str) -> tuple[list[str], list[list]]:
    """Header and rows of one dashboard table, plus a final TOTAL row (what the page shows)."""
    columns = TABLES[table]
    if table == "users":
        source = all_user_rows(
            context["period"], context["team_id"], context["sort"], context["descending"], context["search"]
        )
    else:
        source = context[table]
    header = [label for label, _ in columns]
    rows = [[cell(row) for _, cell in columns] for row in source]
    totals = context["totals"]
    total_row = ["TOTAL"] + [""] * (len(columns) - 1)
    offset = header.index("Cost (USD)")
    for index, (_label, cell) in enumerate(SUM_COLUMNS):
        total_row[offset + index] = cell(totals)
    rows.append(total_row)
    adjustments = context.get("adjustments")
    if adjustments:  # organisation-level: cost only, in no row above
        for label, amount in (
            ("ADJUSTMENTS", adjustments["amount"]),
            ("TOTAL WITH ADJUSTMENTS", totals["cost"] + adjustments["amount"]),
        ):
            row = [label] + [""] * (len(columns) - 1)
            row[offset] = pico_to_usd(amount)
            rows.append(row)
    return header, rows


def csv_response(context: dict, table: str) -> HttpResponse:
    table = table if table in TABLES else "users"
    header, rows = table_rows(context, table)
    period: Period = context["period"]
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    filename = f"usage-{table}-{period.first_day:%Y%m%d}-{period.last_day:%Y%m%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(header)
    writer.writerows([spreadsheet_safe(cell) for cell in row] for row in rows)
    return response


# A spreadsheet reads a cell starting with one of these as a formula (tab and carriage return can
# hide such a start): usernames and model names are typed by people.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell):
    """`cell`, with a text that a spreadsheet would run as a formula prefixed by a quote, shown as text;
    an exact amount always in positional notation (str() writes a tiny Decimal as 1E-8)."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    if isinstance(cell, Decimal):
        return format(cell, "f")
    return cell

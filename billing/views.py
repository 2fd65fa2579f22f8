"""The user's own usage page and per-message receipts (thin: authorize, query, render)."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from billing import rollups
from billing.forecast import forecast
from billing.forms import PersonalCapForm, below_spent_note
from billing.levels import TEAM, USER
from billing.models import UsageRecord, UserBudget
from billing.money import format_money, pico_to_usd
from billing.periods import preset
from billing.queries import current_titles
from billing.services import budget_status

PERIODS = {"month": "This month", "last_month": "Last month"}


def open_conversation_ids(user, conversation_ids: list[int]) -> set[int]:
    """Which of `conversation_ids` still exist and are `user`'s own (those rows link to the conversation)."""
    return set(current_titles(conversation_ids, owner_id=user.pk))


def level_forecasts(status) -> list[dict]:
    """Each limited level's standing and forecast this month, outermost first (the user's own last)."""
    month = status.period
    rows = []
    for level in status.levels.all:
        if not level.limited:
            continue
        if level.scope == USER:
            days = rollups.period_by_day(month, user_id=level.subject_id)
            label = "Your own cap" if level.personal else "Your budget"
        elif level.scope == TEAM:
            days = rollups.period_by_day(month, team_id=level.subject_id)
            label = f"Your team's budget ({level.name})"
        else:
            days = rollups.period_by_day(month)
            label = "The organisation's budget"
        daily = [(row["day"], row["cost"]) for row in days]
        rows.append(
            {
                "label": label,
                "level": level,
                "forecast": forecast(level.spent, level.limit, month, None, daily),
            }
        )
    return rows


def my_usage_context(user, period_key: str, cap_form: PersonalCapForm | None = None) -> dict:
    """Everything the user's usage page shows (aggregate queries on the user's own ledger rows)."""
    if period_key not in PERIODS:
        period_key = "month"
    period = preset(period_key)
    mine = UsageRecord.objects.for_user(user.pk).for_period(period.start, period.end)
    conversations = list(mine.by_conversation(limit=100))
    titles = current_titles([row["conversation_id"] for row in conversations], owner_id=user.pk)
    for row in conversations:
        row["open"] = row["conversation_id"] in titles
        row["title"] = titles.get(row["conversation_id"], row["title"])
    status = budget_status(user)
    own_cap = UserBudget.objects.filter(user_id=user.pk).values_list("personal_limit", flat=True).first()
    return {
        "period": period,
        "period_key": period_key,
        "periods": PERIODS,
        "status": status,
        "forecasts": level_forecasts(status),
        "cap_form": cap_form or PersonalCapForm(initial={"personal_limit_usd": pico_to_usd(own_cap)}),
        "totals": mine.totals(),
        "models": mine.by_model(),
        "conversations": conversations,
    }


@login_required
def my_usage(request: HttpRequest) -> HttpResponse:
    """The signed-in user's spend this (or last) month, per conversation and per model, and budget."""
    return render(
        request, "billing/my_usage.html", my_usage_context(request.user, request.GET.get("period", "month"))
    )


@login_required
@require_POST
def personal_cap(request: HttpRequest) -> HttpResponse:
    """The user sets (or removes) their own monthly cap, below whatever staff or a manager set."""
    form = PersonalCapForm(request.POST)
    if not form.is_valid():
        context = my_usage_context(request.user, "month", cap_form=form)
        return render(request, "billing/my_usage.html", context, status=400)
    budget = form.save(request.user)
    if budget.personal_limit is None:
        messages.success(request, "Your own cap is removed.")
    else:
        status = budget_status(request.user)
        note = below_spent_note(budget.personal_limit, status.spent, "You have")
        messages.success(
            request, note or f"Your own cap is now {format_money(budget.personal_limit)} a month."
        )
    return redirect("billing:my_usage")


#: Where a receipt finds the estimate shown before its message was sent (pUSD, or None): sources the
#: chat app registers (billing imports nothing from it), each given the message id and its owner's id.
_estimate_sources: list[Callable[[int, int], int | None]] = []


def estimates_from(source: Callable[[int, int], int | None]) -> None:
    """Let receipts show the estimate `source(message_pk, user_id)` gives beside the real cost."""
    if source not in _estimate_sources:
        _estimate_sources.append(source)


def _estimate_for(message_pk: int, user_id: int) -> int | None:
    for source in _estimate_sources:
        found = source(message_pk, user_id)
        if found is not None:
            return found
    return None


@login_required
def receipt(request: HttpRequest, message_pk: int) -> HttpResponse:
    """Tokens × rate = cost for each API call of one of the user's own assistant messages.

    Authorised by the ledger itself: only rows billed to the requesting user are shown, so another
    user's message (or one with no recorded call yet) is a 404, and a receipt outlives its conversation.
    """
    records = list(UsageRecord.objects.for_message(message_pk).filter(user_id=request.user.pk))
    if not records:
        raise Http404("No such message.")
    # The conversation's title now, or, once it is deleted, the last one a call was made under.
    labelled = next((record for record in reversed(records) if record.conversation_id is not None), None)
    title = labelled.conversation_title if labelled else ""
    if labelled is not None:
        title = current_titles([labelled.conversation_id], owner_id=request.user.pk).get(
            labelled.conversation_id, title
        )
    context = {
        "message_pk": message_pk,
        "conversation_id": labelled.conversation_id if labelled else None,
        "conversation_title": title or "New conversation",
        "records": records,
        "total": sum(record.cost for record in records),  # a handful of rows for one message
        "savings": sum(record.cache_savings for record in records),
        "web": {
            "searches": sum(record.web_search_requests for record in records),
            "fetches": sum(record.web_fetch_requests for record in records),
            "cost": sum(record.server_tool_cost for record in records),
        },
        "any_unpriced": any(not record.priced for record in records),
        "estimate": _estimate_for(message_pk, request.user.pk),
    }
    template = "billing/receipt.html#receipt" if request.htmx else "billing/receipt.html"
    return render(request, template, context)

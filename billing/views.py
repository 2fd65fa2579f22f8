"""The user's own usage page and per-message receipts (thin: authorize, query, render)."""

from __future__ import annotations

from django.apps import apps
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from billing.models import UsageRecord
from billing.periods import preset
from billing.services import budget_status

PERIODS = {"month": "This month", "last_month": "Last month"}


def open_conversation_ids(user, conversation_ids: list[int]) -> set[int]:
    """Which of `conversation_ids` still exist and are `user`'s own (those rows link to the conversation).

    The ledger keeps a deleted conversation's id and title; billing imports nothing from the chat app,
    so the model is looked up by its label (one query, at most the page's rows).
    """
    ids = [pk for pk in conversation_ids if pk is not None]
    if not ids or not apps.is_installed("conversations"):
        return set()
    conversation = apps.get_model("conversations", "Conversation")
    return set(conversation.objects.filter(pk__in=ids, owner_id=user.pk).values_list("pk", flat=True))


def my_usage_context(user, period_key: str) -> dict:
    """Everything the user's usage page shows (aggregate queries on the user's own ledger rows)."""
    if period_key not in PERIODS:
        period_key = "month"
    period = preset(period_key)
    mine = UsageRecord.objects.for_user(user.pk).for_period(period.start, period.end)
    conversations = list(mine.by_conversation(limit=100))
    linked = open_conversation_ids(user, [row["conversation_id"] for row in conversations])
    for row in conversations:
        row["open"] = row["conversation_id"] in linked
    return {
        "period": period,
        "period_key": period_key,
        "periods": PERIODS,
        "status": budget_status(user),
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
def receipt(request: HttpRequest, message_pk: int) -> HttpResponse:
    """Tokens × rate = cost for each API call of one of the user's own assistant messages.

    Authorised by the ledger itself: only rows billed to the requesting user are shown, so another
    user's message (or one with no recorded call yet) is a 404, and a receipt outlives its conversation.
    """
    records = list(UsageRecord.objects.for_message(message_pk).filter(user_id=request.user.pk))
    if not records:
        raise Http404("No such message.")
    # The newest row carries the conversation's latest title.
    labelled = next((record for record in reversed(records) if record.conversation_id is not None), None)
    context = {
        "message_pk": message_pk,
        "conversation_id": labelled.conversation_id if labelled else None,
        "conversation_title": labelled.conversation_title if labelled else "",
        "records": records,
        "total": sum(record.cost for record in records),  # a handful of rows for one message
        "savings": sum(record.cache_savings for record in records),
        "any_unpriced": any(not record.priced for record in records),
    }
    template = "billing/receipt.html#receipt" if request.htmx else "billing/receipt.html"
    return render(request, template, context)

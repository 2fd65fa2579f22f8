"""Admin: reconciliations with Anthropic (read-only, each with the ledger rows most likely behind a
difference), "Reconcile now", and append-only adjustments that settle a difference."""

from __future__ import annotations

import time

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from billing.models import Adjustment, Reconciliation, ReconciliationKind
from billing.money import InexactAmount, format_money, usd_to_pico
from billing.reconcile import ReconcileInputError, adjustment_book, explain, reconcile, suspects, why
from billing.usage_report import ReportError


def _figure(row: Reconciliation, value: int) -> str:
    return format_money(value) if row.kind == ReconciliationKind.COST else f"{value:,}"


# A page waits this long at most for a rate-limited report; the daily run (and the command) wait longer.
BUTTON_MAX_WAIT_SECONDS = 5.0


def _wait_briefly(seconds: float) -> None:
    if seconds > BUTTON_MAX_WAIT_SECONDS:
        raise ReportError(
            f"Anthropic's Admin API asks to wait {seconds:g} s: nothing was stored. Try again then, or let "
            "the daily run (or manage.py reconcile_usage) do it."
        )
    time.sleep(seconds)


@admin.register(Reconciliation)
class ReconciliationAdmin(admin.ModelAdmin):
    list_display = ("day", "model_label", "kind", "ours_shown", "theirs_shown", "difference_shown", "state")
    list_filter = ("day", "kind")
    readonly_fields = (
        "day",
        "model",
        "kind",
        "ours",
        "theirs",
        "difference",
        "checked_at",
        "explanation",
        "rows",
    )
    ordering = ("-day", "model", "kind")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="Model")
    def model_label(self, obj: Reconciliation) -> str:
        return obj.model or "all models"

    @admin.display(description="Ours")
    def ours_shown(self, obj: Reconciliation) -> str:
        return _figure(obj, obj.ours)

    @admin.display(description="Anthropic")
    def theirs_shown(self, obj: Reconciliation) -> str:
        return _figure(obj, obj.theirs)

    @admin.display(description="Difference")
    def difference_shown(self, obj: Reconciliation) -> str:
        return ("+" if obj.difference > 0 else "") + _figure(obj, obj.difference) if obj.difference else "0"

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).annotate(adjustment_count=Count("adjustments"))

    @admin.display(description="State")
    def state(self, obj: Reconciliation) -> str:
        if obj.exact:
            return "exact"
        return "settled" if obj.adjustment_count else "difference"

    @admin.display(description="Explanation")
    def explanation(self, obj: Reconciliation) -> str:
        return explain(obj)

    @admin.display(description="Ledger rows most likely responsible")
    def rows(self, obj: Reconciliation) -> str:
        if obj.exact:
            return "—"
        found = suspects(obj.day, obj.model)
        if not found:
            return "None: most likely a call the ledger never saw."
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                '<li><a href="{}">Row {}</a> at {} UTC, request {}: {}</li>',
                (
                    (
                        reverse("admin:billing_usagerecord_change", args=[r.pk]),
                        r.pk,
                        f"{r.created_at:%H:%M:%S}",
                        r.request_id or "—",
                        why(r, obj.day),
                    )
                    for r in found
                ),
            ),
        )

    def get_urls(self):
        return [
            path(
                "reconcile-now/",
                self.admin_site.admin_view(self.reconcile_now_view),
                name="billing_reconcile_now",
            ),
            *super().get_urls(),
        ]

    def reconcile_now_view(self, request: HttpRequest) -> HttpResponse:
        return require_POST(self._reconcile_now)(request)

    def _reconcile_now(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("billing.view_reconciliation"):
            return HttpResponse(status=403)
        try:
            outcomes = reconcile([], sleep=_wait_briefly)
        except (ReconcileInputError, ReportError) as exc:
            messages.error(request, str(exc))
        else:
            found = sum(len(o.differences) for o in outcomes)
            first, last = outcomes[0].day, outcomes[-1].day
            if found:
                messages.warning(request, f"Reconciled {first} to {last}: {found} difference(s) to settle.")
            else:
                messages.success(request, f"Reconciled {first} to {last} with Anthropic: exact.")
        return HttpResponseRedirect(reverse("admin:billing_dashboard"))


class AdjustmentForm(forms.ModelForm):
    amount_usd = forms.DecimalField(
        label="Amount (USD)",
        max_digits=20,
        decimal_places=12,
        help_text="Positive when Anthropic billed more than the ledger.",
    )

    class Meta:
        model = Adjustment
        fields = ("reconciliation", "reason")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reconciliation"].queryset = Reconciliation.objects.exclude(difference=0)

    def clean(self):
        cleaned = super().clean()
        reconciliation = cleaned.get("reconciliation")
        if reconciliation is not None and not reconciliation.difference:
            raise forms.ValidationError("This reconciliation is exact: there is nothing to settle.")
        if not (cleaned.get("reason") or "").strip():
            self.add_error("reason", "Say why: an adjustment needs a reason.")
        return cleaned

    def clean_amount_usd(self) -> int:
        try:
            return usd_to_pico(self.cleaned_data["amount_usd"])
        except InexactAmount as exc:
            raise forms.ValidationError("Give the amount to at most 12 decimal places.") from exc


@admin.register(Adjustment)
class AdjustmentAdmin(admin.ModelAdmin):
    """Adjustments are booked (append-only) and then only read."""

    form = AdjustmentForm
    list_display = ("created_at", "day", "amount_shown", "staff_name", "reason", "reconciliation")
    readonly_fields = ("created_at", "day", "amount_shown", "staff_name", "reason", "reconciliation")

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return self.readonly_fields if obj is not None else ()

    def get_fields(self, request: HttpRequest, obj=None):
        return self.readonly_fields if obj is not None else ("reconciliation", "amount_usd", "reason")

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="Amount")
    def amount_shown(self, obj: Adjustment) -> str:
        return format_money(obj.amount)

    def save_model(self, request: HttpRequest, obj: Adjustment, form, change: bool) -> None:
        # The form checked what adjustment_book refuses, so it books (the ledger itself is not touched).
        booked = adjustment_book(
            reconciliation=form.cleaned_data["reconciliation"],
            amount=form.cleaned_data["amount_usd"],
            reason=form.cleaned_data["reason"],
            staff=request.user,
        )
        obj.pk = booked.pk
        obj._state.adding = False

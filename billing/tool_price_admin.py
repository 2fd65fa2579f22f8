"""Admin for the server tools' prices (web search, web fetch): typed in USD per 1,000 uses, as Anthropic
quotes them, stored as exact pUSD per use. Like a model's price, a version that priced recorded calls is
read only: a new price is a new version with a later date. billing/admin.py registers it."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin
from django.db.models import Q
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from billing.models import UsageRecord
from billing.money import format_money_exact, rate_from_usd_per_thousand, rate_to_usd_per_thousand
from billing.tool_prices import ServerToolPrice


class ServerToolPriceForm(forms.ModelForm):
    per_thousand_usd = forms.DecimalField(
        label="Price (USD per 1,000 uses)",
        min_value=Decimal(0),
        max_digits=18,
        decimal_places=9,
        help_text="Web search: 10 ($10 per 1,000 searches). Web fetch: 0 (its content is billed as tokens).",
    )

    class Meta:
        model = ServerToolPrice
        fields = ["tool", "effective_from", "note"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["per_thousand_usd"] = rate_to_usd_per_thousand(self.instance.rate)

    def save(self, commit: bool = True):
        price = super().save(commit=False)
        price.rate = rate_from_usd_per_thousand(self.cleaned_data["per_thousand_usd"])
        if commit:
            price.save()
        return price


@admin.register(ServerToolPrice)
class ServerToolPriceAdmin(admin.ModelAdmin):
    form = ServerToolPriceForm
    list_display = ["tool", "effective_from", "per_thousand", "per_use", "note"]
    list_filter = ["tool"]
    ordering = ["tool", "-effective_from"]
    fields = ["tool", "effective_from", "per_thousand_usd", "note"]
    locked_fields = ["tool", "effective_from", "note", "per_thousand", "per_use", "new_version"]

    def _in_use(self, obj) -> bool:
        if obj is None or obj.pk is None:
            return False
        return UsageRecord.objects.filter(
            Q(web_search_price_id=obj.pk) | Q(web_fetch_price_id=obj.pk)
        ).exists()

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # A version that priced calls is history: add a new version with a later date instead.
        return super().has_change_permission(request, obj) and not self._in_use(obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and not self._in_use(obj)

    def get_fields(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            return self.locked_fields
        return self.fields

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            return self.locked_fields
        return []

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        """`?from_version=<id>` prefills the add form with that version's tool and price, from now."""
        initial = super().get_changeform_initial_data(request)
        source_id = initial.pop("from_version", "")
        source = ServerToolPrice.objects.filter(pk=source_id).first() if str(source_id).isdigit() else None
        if source is not None:
            initial["tool"] = source.tool
            initial["effective_from"] = timezone.localtime().replace(second=0, microsecond=0)
            initial["per_thousand_usd"] = rate_to_usd_per_thousand(source.rate)
        return initial

    @admin.display(description="USD per 1,000 uses")
    def per_thousand(self, obj: ServerToolPrice) -> str:
        return f"${rate_to_usd_per_thousand(obj.rate)}"

    @admin.display(description="Per use")
    def per_use(self, obj: ServerToolPrice) -> str:
        return format_money_exact(obj.rate)

    @admin.display(description="Change the price")
    def new_version(self, obj: ServerToolPrice) -> str:
        url = reverse("admin:billing_servertoolprice_add") + f"?from_version={obj.pk}"
        return format_html(
            '<a class="button" href="{}">Add a new version of this price</a> '
            "(in use by recorded calls; the form starts with this price, in force from now)",
            url,
        )

"""Admin: prices (entered in USD per million tokens; server tools' per 1,000 uses: tool_price_admin), the
read-only ledger with its dashboard, budgets."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.html import format_html

from billing import (  # noqa: F401 - they register their admin
    dashboard,
    reconcile,
    reconcile_admin,
    team_admin,
    tool_price_admin,
)
from billing.forms import below_spent_note, monthly_usd_field, to_pico
from billing.models import (
    RATE_FIELDS,
    BudgetAlert,
    BudgetPolicy,
    ModelPrice,
    OrganisationBudget,
    SiteBudget,
    SpendReservation,
    UsageRecord,
    UserBudget,
    policy_limit,
)
from billing.money import (
    format_money,
    format_money_exact,
    pico_to_usd,
    rate_from_usd_per_mtok,
    rate_to_usd_per_mtok,
    usd_to_pico,
)
from billing.periods import current_month
from billing.rollups import organisation_spent as month_spent
from billing.services import configured_default_limit, site_default_limit
from billing.usage_report import NO_ADMIN_KEY

RATE_LABELS = {
    "input": "Input",
    "output": "Output",
    "cache_write_5m": "Cache write 5m",
    "cache_write_1h": "Cache write 1h",
    "cache_read": "Cache read",
}


def _limit_text(limit: int | None) -> str:
    return "unlimited" if limit is None else format_money(limit)


def _money_fields(model, money: dict[str, list[str]]) -> list[str]:
    """A read-only page's fields in the model's order, each amount of pUSD replaced by the admin's
    display methods for it (`money`: field → their names), so no page shows raw pico-dollars."""
    return [name for field in model._meta.fields for name in money.get(field.name, [field.name])]


def _usd_per_mtok_field(label: str, required: bool) -> forms.DecimalField:
    return forms.DecimalField(
        label=f"{label} (USD/MTok)", required=required, min_value=Decimal(0), max_digits=18, decimal_places=6
    )


class ModelPriceForm(forms.ModelForm):
    """Rates are typed in USD per million tokens and stored as exact integer pUSD per token."""

    input_usd = _usd_per_mtok_field("Input", True)
    output_usd = _usd_per_mtok_field("Output", True)
    cache_write_5m_usd = _usd_per_mtok_field("Cache write 5m", True)
    cache_write_1h_usd = _usd_per_mtok_field("Cache write 1h", True)
    cache_read_usd = _usd_per_mtok_field("Cache read", True)
    band_input_usd = _usd_per_mtok_field("Band input", False)
    band_output_usd = _usd_per_mtok_field("Band output", False)
    band_cache_write_5m_usd = _usd_per_mtok_field("Band cache write 5m", False)
    band_cache_write_1h_usd = _usd_per_mtok_field("Band cache write 1h", False)
    band_cache_read_usd = _usd_per_mtok_field("Band cache read", False)

    class Meta:
        model = ModelPrice
        fields = ["model", "effective_from", "band_threshold_tokens", "note"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in RATE_FIELDS:
            if self.instance.pk:
                self.initial[f"{name}_usd"] = rate_to_usd_per_mtok(getattr(self.instance, f"{name}_rate"))
                self.initial[f"band_{name}_usd"] = rate_to_usd_per_mtok(
                    getattr(self.instance, f"band_{name}_rate")
                )

    def clean(self):
        data = super().clean()
        has_band = data.get("band_threshold_tokens") is not None
        for name in RATE_FIELDS:
            band_value = data.get(f"band_{name}_usd")
            if has_band and band_value is None:
                self.add_error(f"band_{name}_usd", "Required when a band threshold is set.")
            if not has_band and band_value is not None:
                self.add_error("band_threshold_tokens", "Band rates need a threshold.")
        return data

    def save(self, commit: bool = True):
        price = super().save(commit=False)
        has_band = self.cleaned_data.get("band_threshold_tokens") is not None
        for name in RATE_FIELDS:
            setattr(price, f"{name}_rate", rate_from_usd_per_mtok(self.cleaned_data[f"{name}_usd"]))
            band_value = self.cleaned_data.get(f"band_{name}_usd")
            setattr(price, f"band_{name}_rate", rate_from_usd_per_mtok(band_value) if has_band else None)
        if commit:
            price.save()
        return price


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    form = ModelPriceForm
    list_display = [
        "model",
        "effective_from",
        "input",
        "output",
        "write_5m",
        "write_1h",
        "read",
        "band",
        "note",
    ]
    list_filter = ["model"]
    search_fields = ["model", "note"]
    ordering = ["model", "-effective_from"]
    fieldsets = [
        (None, {"fields": ["model", "effective_from", "note"]}),
        ("Rates (USD per million tokens)", {"fields": [f"{name}_usd" for name in RATE_FIELDS]}),
        (
            "Price band: prompts above the threshold are billed wholly at these rates",
            {"fields": ["band_threshold_tokens", *[f"band_{name}_usd" for name in RATE_FIELDS]]},
        ),
    ]

    def _in_use(self, obj) -> bool:
        return obj is not None and obj.pk is not None and UsageRecord.objects.filter(price_id=obj.pk).exists()

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # A version that priced calls is history: add a new version with a later date instead.
        return super().has_change_permission(request, obj) and not self._in_use(obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and not self._in_use(obj)

    def get_fieldsets(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            return [
                (
                    "In use by recorded calls — read only; add a new version to change the price",
                    {"fields": ["model", "effective_from", "note", "rates_summary", "new_version"]},
                )
            ]
        return super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            return ["model", "effective_from", "note", "rates_summary", "new_version"]
        return []

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        """`?from_version=<id>` prefills the add form with that version's model, rates and band, from now."""
        initial = super().get_changeform_initial_data(request)
        source_id = initial.pop("from_version", "")
        source = ModelPrice.objects.filter(pk=source_id).first() if str(source_id).isdigit() else None
        if source is not None:
            initial["model"] = source.model
            initial["effective_from"] = timezone.localtime().replace(second=0, microsecond=0)
            initial["band_threshold_tokens"] = source.band_threshold_tokens
            for name in RATE_FIELDS:
                initial[f"{name}_usd"] = rate_to_usd_per_mtok(getattr(source, f"{name}_rate"))
                initial[f"band_{name}_usd"] = rate_to_usd_per_mtok(getattr(source, f"band_{name}_rate"))
        return initial

    @admin.display(description="Change the price")
    def new_version(self, obj: ModelPrice) -> str:
        url = reverse("admin:billing_modelprice_add") + f"?from_version={obj.pk}"
        return format_html(
            '<a class="button" href="{}">Add a new version of this price</a> '
            "(the form starts with these rates, in force from now; change what differs and the date)",
            url,
        )

    @admin.display(description="Rates (USD/MTok)")
    def rates_summary(self, obj: ModelPrice) -> str:
        text = ", ".join(
            f"{RATE_LABELS[n]} {rate_to_usd_per_mtok(getattr(obj, f'{n}_rate'))}" for n in RATE_FIELDS
        )
        if obj.band_threshold_tokens is not None:
            band = ", ".join(
                f"{RATE_LABELS[n]} {rate_to_usd_per_mtok(getattr(obj, f'band_{n}_rate'))}"
                for n in RATE_FIELDS
            )
            text += f"; above {obj.band_threshold_tokens:,} prompt tokens: {band}"
        return text

    @admin.display(description="Input")
    def input(self, obj):
        return rate_to_usd_per_mtok(obj.input_rate)

    @admin.display(description="Output")
    def output(self, obj):
        return rate_to_usd_per_mtok(obj.output_rate)

    @admin.display(description="Write 5m")
    def write_5m(self, obj):
        return rate_to_usd_per_mtok(obj.cache_write_5m_rate)

    @admin.display(description="Write 1h")
    def write_1h(self, obj):
        return rate_to_usd_per_mtok(obj.cache_write_1h_rate)

    @admin.display(description="Read")
    def read(self, obj):
        return rate_to_usd_per_mtok(obj.cache_read_rate)

    @admin.display(description="Band")
    def band(self, obj):
        return f"> {obj.band_threshold_tokens:,} tokens" if obj.band_threshold_tokens is not None else "—"


def _cost_text(shown: str, row: UsageRecord) -> str:
    """A row's cost as shown: 'unpriced' for a model without a price (its searches, if any, still cost)."""
    if row.priced:
        return shown
    return f"{shown} (tokens unpriced)" if row.cost else "unpriced"


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    """The ledger: view only. Its changelist links to the dashboard."""

    list_display = [
        "created_at",
        "username",
        "model",
        "purpose",
        "input_tokens",
        "output_tokens",
        "cache_write_5m_tokens",
        "cache_write_1h_tokens",
        "cache_read_tokens",
        "web_search_requests",
        "cost_usd",
        "priced",
        "estimated",
    ]
    list_filter = ["purpose", "priced", "estimated", "model"]
    search_fields = ["username", "request_id", "conversation_title", "model"]
    show_full_result_count = False
    list_per_page = 100
    change_list_template = "admin/billing/usagerecord/change_list.html"

    def get_fields(self, request, obj=None):
        money = {
            "cost": ["cost_usd", "cost_exact"],
            "cache_savings": ["cache_savings_usd"],
            "server_tool_cost": ["server_tool_cost_usd"],
        }
        return _money_fields(self.model, money)

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="Cost", ordering="cost")
    def cost_usd(self, obj: UsageRecord) -> str:
        return _cost_text(format_money(obj.cost), obj)

    @admin.display(description="Cost (exact)")
    def cost_exact(self, obj: UsageRecord) -> str:
        return _cost_text(format_money_exact(obj.cost), obj)

    @admin.display(description="Cache savings")
    def cache_savings_usd(self, obj: UsageRecord) -> str:
        return format_money(obj.cache_savings)

    @admin.display(description="Of the cost: web searches and fetches")
    def server_tool_cost_usd(self, obj: UsageRecord) -> str:
        return format_money_exact(obj.server_tool_cost)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("dashboard/", view(self.dashboard_view), name="billing_dashboard"),
            path("dashboard/export.csv", view(self.dashboard_csv_view), name="billing_dashboard_csv"),
            path("dashboard/user/<int:user_id>/", view(self.user_detail_view), name="billing_dashboard_user"),
            *super().get_urls(),
        ]

    def _staff_context(self, request: HttpRequest, title: str) -> dict:
        return {**self.admin_site.each_context(request), "title": title, "opts": self.model._meta}

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        context = dashboard.dashboard_context(request)
        template = "admin/billing/dashboard.html"
        if request.htmx and not request.htmx.history_restore_request:
            # A period, sort, search or page switch: only the dashboard's block (which needs none of
            # the admin's page context: its app list costs a permission check per model).
            template += "#dashboard"
        else:
            context = {
                **self._staff_context(request, "Usage and cost"),
                **context,
                "reconciliation": reconcile.status(),
                "reconcile_configured": bool(settings.ANTHROPIC_ADMIN_KEY),
                "no_admin_key": NO_ADMIN_KEY,
            }
        response = TemplateResponse(request, template, context, status=_status(context))
        patch_vary_headers(response, ["HX-Request"])
        return response

    def dashboard_csv_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        context = dashboard.dashboard_context(request)
        if context["form"].errors:
            errors = " ".join(context["form"].non_field_errors() or ["The period could not be read."])
            return HttpResponseBadRequest(errors, content_type="text/plain; charset=utf-8")
        return dashboard.csv_response(context, request.GET.get("table", "users"))

    def user_detail_view(self, request: HttpRequest, user_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        if not dashboard.user_is_known(user_id):
            raise Http404("No such user.")
        detail = dashboard.user_detail_context(request, user_id)
        context = {**self._staff_context(request, f"Usage of {detail['subject_name']}"), **detail}
        return TemplateResponse(request, "admin/billing/user_detail.html", context, status=_status(context))


def _status(context: dict) -> int:
    # The page shows the period form's errors (and this month); the request itself was bad.
    return 400 if context["form"].errors else 200


class BudgetForm(forms.ModelForm):
    """The monthly limit is typed in USD and stored as exact pUSD."""

    monthly_limit_usd = monthly_usd_field("Monthly limit (USD)")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.monthly_limit is not None:
            self.initial["monthly_limit_usd"] = pico_to_usd(self.instance.monthly_limit)

    def clean(self):
        data = super().clean()
        if data.get("policy") == BudgetPolicy.LIMIT and data.get("monthly_limit_usd") is None:
            self.add_error("monthly_limit_usd", "Set the limit, or choose another policy.")
        return data

    def save(self, commit: bool = True):
        budget = super().save(commit=False)
        value = self.cleaned_data.get("monthly_limit_usd")
        budget.monthly_limit = usd_to_pico(value) if value is not None else None
        if commit:
            budget.save()
        return budget


class UserBudgetForm(BudgetForm):
    """Every user who has chatted already has a row (the budget lock creates it with the site default
    policy), so "Add user budget" for them sets that row instead of failing as a duplicate."""

    class Meta:
        model = UserBudget
        fields = ["user", "policy"]

    def clean(self):
        data = super().clean()
        user = data.get("user")
        self.replaces_existing = bool(
            self.instance._state.adding and user is not None and UserBudget.objects.filter(user=user).exists()
        )
        if self.replaces_existing:
            # The row exists: validate and save as a change of it (its primary key is the user).
            self.instance._state.adding = False
        return data


def _default_choice_label() -> str:
    return f"From the CHAT_DEFAULT_MONTHLY_BUDGET_USD setting (now {_limit_text(configured_default_limit())})"


class SiteBudgetForm(BudgetForm):
    class Meta:
        model = SiteBudget
        fields = ["policy"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # For the site row, "Site default" means the environment's setting: say which figure that is.
        self.fields["policy"].choices = [
            (value, _default_choice_label() if value == BudgetPolicy.DEFAULT else label)
            for value, label in BudgetPolicy.choices
        ]


@admin.register(UserBudget)
class UserBudgetAdmin(admin.ModelAdmin):
    form = UserBudgetForm
    list_display = ["user", "policy", "limit", "personal_cap"]
    list_filter = ["policy"]
    search_fields = ["user__username"]
    list_select_related = ["user"]
    autocomplete_fields = ["user"]

    @admin.display(description="Monthly limit")
    def limit(self, obj: UserBudget) -> str:
        if obj.policy == BudgetPolicy.DEFAULT:
            return "site default"  # named rather than looked up for every row of the list
        return _limit_text(policy_limit(obj.policy, obj.monthly_limit, site_default_limit))

    @admin.display(description="Own cap")
    def personal_cap(self, obj: UserBudget) -> str:
        return "—" if obj.personal_limit is None else format_money(obj.personal_limit)

    def changelist_view(self, request: HttpRequest, extra_context=None):
        extra = {
            "subtitle": f"Site default: {_limit_text(site_default_limit())} a month",
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra)

    def response_add(self, request: HttpRequest, obj: UserBudget, post_url_continue=None):
        form = getattr(request, "_budget_form", None)
        if form is not None and form.replaces_existing:
            self.message_user(request, f"{obj.user} already had a budget row: it now says {self.limit(obj)}.")
        return super().response_add(request, obj, post_url_continue)

    def save_form(self, request: HttpRequest, form, change: bool):
        request._budget_form = form
        return super().save_form(request, form, change)


@admin.register(SiteBudget)
class SiteBudgetAdmin(admin.ModelAdmin):
    """Policy 'Site default' here means: use the CHAT_DEFAULT_MONTHLY_BUDGET_USD setting (environment)."""

    form = SiteBudgetForm
    list_display = ["__str__", "policy", "limit"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not SiteBudget.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        obj.pk = 1
        super().save_model(request, obj, form, change)

    @admin.display(description="Monthly limit")
    def limit(self, obj: SiteBudget) -> str:
        return _limit_text(policy_limit(obj.policy, obj.monthly_limit, configured_default_limit))

    @admin.display(description="Monthly limit in force")
    def effective_limit(self, obj: SiteBudget) -> str:
        text = self.limit(obj)
        if obj.policy == BudgetPolicy.DEFAULT:
            return f"{text}, from the CHAT_DEFAULT_MONTHLY_BUDGET_USD setting (the environment)"
        return f"{text}, set here (the CHAT_DEFAULT_MONTHLY_BUDGET_USD setting is not used)"

    readonly_fields = ["effective_limit"]

    def changelist_view(self, request: HttpRequest, extra_context=None):
        # One row that always applies: without a row the setting is in force, which an empty list
        # ("0 site default budget") hid. Open the row itself, made from the setting when missing.
        site = SiteBudget.load()
        return HttpResponseRedirect(reverse("admin:billing_sitebudget_change", args=[site.pk]))


class OrganisationBudgetForm(forms.ModelForm):
    monthly_limit_usd = monthly_usd_field(
        "Monthly cap (USD)", help_text="Everyone's spend together this month; empty: no organisation cap."
    )
    warning_percent = forms.IntegerField(
        min_value=1,
        max_value=99,
        initial=80,
        help_text="Staff are alerted (e-mail and the dashboard) when the month's spend crosses this share.",
    )

    class Meta:
        model = OrganisationBudget
        fields = ["warning_percent"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.monthly_limit is not None:
            self.initial["monthly_limit_usd"] = pico_to_usd(self.instance.monthly_limit)

    def save(self, commit: bool = True):
        budget = super().save(commit=False)
        budget.monthly_limit = to_pico(self.cleaned_data.get("monthly_limit_usd"))
        if commit:
            budget.save()
        return budget


@admin.register(OrganisationBudget)
class OrganisationBudgetAdmin(admin.ModelAdmin):
    """The organisation's cap on everyone's spend together (one row; no cap until a figure is set)."""

    form = OrganisationBudgetForm
    readonly_fields = ["spent_this_month"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="Spent this month")
    def spent_this_month(self, obj: OrganisationBudget) -> str:
        return format_money(month_spent(current_month()))

    def save_model(self, request, obj, form, change) -> None:
        obj.pk = 1
        super().save_model(request, obj, form, change)
        note = below_spent_note(obj.monthly_limit, month_spent(current_month()), "Everyone together")
        if note:
            self.message_user(request, note)

    def changelist_view(self, request: HttpRequest, extra_context=None):
        budget = OrganisationBudget.load()
        return HttpResponseRedirect(reverse("admin:billing_organisationbudget_change", args=[budget.pk]))


@admin.register(BudgetAlert)
class BudgetAlertAdmin(admin.ModelAdmin):
    """Budget alerts as stored (each once per budget, month and threshold): read only."""

    list_display = ["created_at", "scope", "subject_name", "month", "percent", "spent_usd", "notified_at"]
    list_filter = ["scope", "month"]
    search_fields = ["subject_name"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_fields(self, request, obj=None):
        return _money_fields(self.model, {"limit": ["limit_usd"], "spent": ["spent_usd"]})

    @admin.display(description="Spent")
    def spent_usd(self, obj: BudgetAlert) -> str:
        return format_money(obj.spent)

    @admin.display(description="Budget")
    def limit_usd(self, obj: BudgetAlert) -> str:
        return format_money(obj.limit)


@admin.register(SpendReservation)
class SpendReservationAdmin(admin.ModelAdmin):
    """In-flight worst-case holds (read only; settled ones are kept an hour for the rate limit)."""

    list_display = ["created_at", "user", "message_id", "model", "amount_usd", "settled_at"]
    list_select_related = ["user"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_fields(self, request, obj=None):
        return _money_fields(self.model, {"amount": ["amount_usd"]})

    @admin.display(description="Held")
    def amount_usd(self, obj: SpendReservation) -> str:
        return format_money(obj.amount)

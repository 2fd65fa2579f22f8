"""Admin for teams: staff create teams, set their budget and models, name managers and move people.

It lives in billing, with the budgets it sets, and billing/admin.py registers it: the teams app holds
only the data (teams/models.py) and who may use what (teams/access.py), below billing."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin
from django.db.models import Count
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from billing.forms import below_spent_note, monthly_usd_field, to_pico
from billing.levels import team_spent
from billing.money import format_money, pico_to_usd
from billing.periods import current_month
from teams.models import Membership, Team


class TeamForm(forms.ModelForm):
    """The budget is typed in USD (exact pUSD stored); the models are chosen among those the site offers."""

    monthly_limit_usd = monthly_usd_field(
        help_text="Empty: no team budget (members' own budgets still apply)."
    )
    allowed_models = forms.MultipleChoiceField(
        choices=(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every model the site offers.",
    )
    default_model = forms.ChoiceField(choices=(), required=False)

    class Meta:
        model = Team
        fields = ["name", "managers", "warning_percent", "allowed_models", "default_model", "web"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        offered = [(model, model) for model in settings.CHAT_MODELS]
        self.fields["allowed_models"].choices = offered
        self.fields["default_model"].choices = [("", f"The site's default ({settings.CHAT_DEFAULT_MODEL})")]
        self.fields["default_model"].choices += offered
        if self.instance.pk and self.instance.monthly_limit is not None:
            self.initial["monthly_limit_usd"] = pico_to_usd(self.instance.monthly_limit)

    def clean(self):
        data = super().clean()
        allowed, default = data.get("allowed_models") or [], data.get("default_model") or ""
        if allowed and default and default not in allowed:
            self.add_error("default_model", "The default model must be one of the team's models.")
        if allowed and not default and settings.CHAT_DEFAULT_MODEL not in allowed:
            self.add_error(
                "default_model",
                f"The site's default ({settings.CHAT_DEFAULT_MODEL}) is not among the team's models: choose one.",
            )
        return data

    def save(self, commit: bool = True):
        team = super().save(commit=False)
        team.monthly_limit = to_pico(self.cleaned_data.get("monthly_limit_usd"))
        if commit:
            team.save()
            self.save_m2m()
        return team


class MembershipInlineForm(forms.ModelForm):
    """Adding someone who is in another team moves them here (a user is in one team at a time)."""

    class Meta:
        model = Membership
        fields = ["user"]

    def clean(self):
        data = super().clean()
        user = data.get("user")
        self.moved_from = None
        if self.instance._state.adding and user is not None:
            current = Membership.objects.select_related("team").filter(user=user).first()
            if current is not None:
                self.moved_from = current.team
                # Validate and save as a change of the existing row (its primary key is the user).
                self.instance = current
                self.instance._state.adding = False
                self.instance.since = timezone.now()
        return data


class MembershipInline(admin.TabularInline):
    model = Membership
    form = MembershipInlineForm
    extra = 1
    autocomplete_fields = ["user"]
    readonly_fields = ["since"]
    verbose_name = "member"
    verbose_name_plural = "members (adding someone from another team moves them here)"


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    form = TeamForm
    inlines = [MembershipInline]
    list_display = ["name", "member_count", "manager_list", "budget", "spent_this_month", "models", "page"]
    search_fields = ["name"]
    filter_horizontal = ["managers"]
    fieldsets = [
        (None, {"fields": ["name", "managers"]}),
        ("Budget", {"fields": ["monthly_limit_usd", "warning_percent"]}),
        ("Models", {"fields": ["allowed_models", "default_model"]}),
        ("Web search", {"fields": ["web"]}),
    ]

    def get_queryset(self, request: HttpRequest):
        return (
            super().get_queryset(request).annotate(members=Count("memberships")).prefetch_related("managers")
        )

    @admin.display(description="Members", ordering="members")
    def member_count(self, obj: Team) -> int:
        return obj.members

    @admin.display(description="Managers")
    def manager_list(self, obj: Team) -> str:
        return ", ".join(sorted(m.get_username() for m in obj.managers.all())) or "—"

    @admin.display(description="Monthly budget")
    def budget(self, obj: Team) -> str:
        return "none" if obj.monthly_limit is None else format_money(obj.monthly_limit)

    @admin.display(description="Spent this month")
    def spent_this_month(self, obj: Team) -> str:
        return format_money(team_spent(obj.pk, current_month()))

    @admin.display(description="Models")
    def models(self, obj: Team) -> str:
        return ", ".join(obj.allowed_models) or "all the site offers"

    @admin.display(description="Team page")
    def page(self, obj: Team) -> str:
        return format_html('<a href="{}">Open</a>', reverse("teams:detail", args=[obj.pk]))

    def save_model(self, request: HttpRequest, obj: Team, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        note = below_spent_note(obj.monthly_limit, team_spent(obj.pk, current_month()), f"Team {obj.name}")
        if note:
            self.message_user(request, note)

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        moved = [
            (inline.cleaned_data["user"], inline.moved_from)
            for inline in formset.forms
            if getattr(inline, "moved_from", None) is not None and inline.moved_from.pk != form.instance.pk
        ]
        super().save_formset(request, form, formset, change)
        for user, old_team in moved:
            self.message_user(
                request,
                f"{user} moved from {old_team} to {form.instance}: their past spending stays with {old_team}.",
            )


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """Who is in which team; changing a row's team moves the person (past spending stays put)."""

    list_display = ["user", "team", "since"]
    list_filter = ["team"]
    list_select_related = ["user", "team"]
    search_fields = ["user__username", "team__name"]
    autocomplete_fields = ["user", "team"]

"""Retention policy, team overrides, legal holds and erasures for staff.

The policy's page shows how many conversations the next run would delete, before it is enabled.
An erasure is made by adding one here: pick the person, confirm, save.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponseRedirect

from .erasure import ErasureRefused, erasure_refusal, user_erase
from .models import Erasure, LegalHold, RetentionPolicy, TeamRetention
from .retention import RetentionRefused, expired_conversations


def _expected_text() -> str:
    try:
        count = expired_conversations().count()
    except RetentionRefused as exc:
        return str(exc)
    return f"{count:,} conversation{'s' if count != 1 else ''}"


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(admin.ModelAdmin):
    list_display = ["__str__", "enabled", "days", "pinned_exempt", "next_run"]
    fields = ["enabled", "days", "pinned_exempt", "next_run"]
    readonly_fields = ["next_run"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not RetentionPolicy.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="The next run would delete (as saved)")
    def next_run(self, obj: RetentionPolicy) -> str:
        text = _expected_text()
        return text if obj.enabled else f"{text} — once enabled; nothing is deleted while it is off"

    def changelist_view(self, request: HttpRequest, extra_context=None):
        RetentionPolicy.load()
        return super().changelist_view(request, extra_context)


@admin.register(TeamRetention)
class TeamRetentionAdmin(admin.ModelAdmin):
    list_display = ["team", "days", "pinned_exempt"]
    list_select_related = ["team"]


@admin.register(LegalHold)
class LegalHoldAdmin(admin.ModelAdmin):
    fields = ["user", "conversation", "reason"]
    list_display = ["__str__", "reason", "created_at"]
    raw_id_fields = ["user", "conversation"]


class ErasureForm(forms.ModelForm):
    confirm = forms.BooleanField(
        label="I understand: their conversations, files and personal data are deleted for good; their "
        "spending stays in the ledger under a pseudonym; the account is deactivated.",
    )

    class Meta:
        model = Erasure
        fields = ["user"]

    def __init__(self, *args, request: HttpRequest | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.request = request
        self.fields["user"].queryset = (
            get_user_model().objects.filter(erasure__isnull=True).order_by("username")
        )
        self.fields["user"].help_text = "The person to erase."

    def clean(self):
        data = super().clean()
        user = data.get("user")
        if user is not None:
            refusal = erasure_refusal(user, by=self.request.user if self.request else None)
            if refusal:
                raise forms.ValidationError(refusal)
        return data


@admin.register(Erasure)
class ErasureAdmin(admin.ModelAdmin):
    form = ErasureForm
    list_display = ["__str__", "erased_at", "conversations_deleted", "ledger_rows_relabelled"]

    def get_form(self, request: HttpRequest, obj=None, change: bool = False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)

        class WithRequest(form):
            def __init__(self, *args, **kw) -> None:
                super().__init__(*args, request=request, **kw)

        return WithRequest

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def log_addition(self, request: HttpRequest, obj, message):
        if obj.pk is not None:  # None: refused in save_model (a hold placed since the form was checked)
            return super().log_addition(request, obj, message)
        return None

    def response_add(self, request: HttpRequest, obj: Erasure, post_url_continue=None):
        if obj.pk is None:
            return HttpResponseRedirect(request.path)
        return super().response_add(request, obj, post_url_continue)

    def save_model(self, request: HttpRequest, obj: Erasure, form, change: bool) -> None:
        try:
            erasure = user_erase(user=form.cleaned_data["user"], by=request.user)
        except ErasureRefused as exc:  # a hold placed since the form was checked
            self.message_user(request, str(exc), messages.ERROR)
            return
        obj.pk = erasure.pk
        obj.erased_at = erasure.erased_at
        obj._state.adding = False
        self.message_user(
            request,
            f"Erased: {erasure.conversations_deleted} conversation(s) deleted, "
            f"{erasure.ledger_rows_relabelled} ledger row(s) kept as {erasure.user}.",
        )

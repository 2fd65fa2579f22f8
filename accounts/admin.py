"""Invite links for staff (sign-up mode `invite`); the current mode is shown on the list and the admin index."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from .models import Invite


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    list_display = ["__str__", "email", "uses_text", "expires_at", "state", "created_by", "created_at"]
    fields = ["note", "email", "max_uses", "expires_at", "uses", "accounts", "created_by", "created_at"]
    readonly_fields = ["uses", "accounts", "created_by", "created_at"]
    search_fields = ["note", "email"]
    list_select_related = ["created_by"]

    @admin.display(description="Uses")
    def uses_text(self, invite: Invite) -> str:
        return f"{invite.uses} of {invite.max_uses}"

    @admin.display(description="State")
    def state(self, invite: Invite) -> str:
        refusal = invite.refusal(timezone.now())
        if refusal is None:
            return "usable"
        return "used up" if invite.uses >= invite.max_uses else "expired"

    def save_model(self, request: HttpRequest, obj: Invite, form, change: bool) -> None:
        token = None
        if not change:
            token = obj.assign_new_token()
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        if token:
            link = request.build_absolute_uri(reverse("signup_invite", args=[token]))
            self.message_user(
                request,
                format_html(
                    'Invite link: <a href="{}">{}</a> — copy it now: only its hash is stored, so it '
                    "cannot be shown again.",
                    link,
                    link,
                ),
                messages.WARNING,
            )

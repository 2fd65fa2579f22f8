from __future__ import annotations

from django.conf import settings
from django.contrib import admin

from audit.services import audit_record

from .models import GroupTeam, SsoIdentity


@admin.register(GroupTeam)
class GroupTeamAdmin(admin.ModelAdmin):
    list_display = ["group", "team"]
    list_select_related = ["team"]
    search_fields = ["group", "team__name"]


@admin.register(SsoIdentity)
class SsoIdentityAdmin(admin.ModelAdmin):
    """Identities are made by logging in, except a staff account's: a superuser links it here (the
    provider's `sub` for the person, shown in the provider's console), as no staff account is linked
    automatically. Deleting one lets the person be linked afresh. Otherwise read-only."""

    list_display = ["user", "issuer", "subject", "created_at", "last_login"]
    list_select_related = ["user"]
    search_fields = ["user__username", "subject"]
    fields = ["user", "issuer", "subject", "created_at", "last_login"]
    raw_id_fields = ["user"]

    def get_readonly_fields(self, request, obj=None):
        return self.fields if obj is not None else ["created_at", "last_login"]

    def get_changeform_initial_data(self, request):
        return {"issuer": settings.CHAT_SSO_ISSUER, **super().get_changeform_initial_data(request)}

    def has_add_permission(self, request) -> bool:
        return request.user.is_superuser

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            audit_record(
                action="sso.identity_linked",
                obj=obj,
                object_label=obj.user.get_username(),
                after={
                    "user": f"{obj.user.get_username()} (#{obj.user_id})",
                    "issuer": obj.issuer,
                    "by": "staff",
                },
            )

    def has_change_permission(self, request, obj=None) -> bool:
        return False

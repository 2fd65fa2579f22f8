from __future__ import annotations

from django.contrib import admin

from .models import GroupTeam, SsoIdentity


@admin.register(GroupTeam)
class GroupTeamAdmin(admin.ModelAdmin):
    list_display = ["group", "team"]
    list_select_related = ["team"]
    search_fields = ["group", "team__name"]


@admin.register(SsoIdentity)
class SsoIdentityAdmin(admin.ModelAdmin):
    """Read-only: identities are made by logging in; deleting one lets the person be linked afresh."""

    list_display = ["user", "issuer", "subject", "created_at", "last_login"]
    list_select_related = ["user"]
    search_fields = ["user__username", "subject"]
    readonly_fields = ["user", "issuer", "subject", "created_at", "last_login"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

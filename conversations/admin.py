"""Staff publish site-wide system-prompt presets here (a preset without an owner) and may revoke share links."""

from __future__ import annotations

from django.contrib import admin

from .models import Preset, ShareLink


class SiteWideFilter(admin.SimpleListFilter):
    title = "kind"
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        return [("site", "Site-wide"), ("personal", "A person's own")]

    def queryset(self, request, queryset):
        if self.value() == "site":
            return queryset.filter(owner__isnull=True)
        if self.value() == "personal":
            return queryset.filter(owner__isnull=False)
        return queryset


@admin.register(Preset)
class PresetAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "published", "updated_at"]
    list_filter = [SiteWideFilter, "published"]
    search_fields = ["name", "system_prompt", "owner__username"]
    raw_id_fields = ["owner"]
    fields = ["name", "system_prompt", "owner", "published"]

    def get_changeform_initial_data(self, request):
        # A preset made here is site-wide unless staff choose an owner.
        return {"published": True}


@admin.register(ShareLink)
class ShareLinkAdmin(admin.ModelAdmin):
    """Staff see which conversations are shared and may revoke a link (delete it); the token itself is
    never stored, so a link cannot be read or made here."""

    list_display = ["conversation", "owner", "created_at"]
    list_select_related = ["conversation__owner"]
    readonly_fields = ["conversation", "created_at"]
    exclude = ["token_hash"]

    @admin.display(ordering="conversation__owner__username")
    def owner(self, link: ShareLink):
        return link.conversation.owner

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

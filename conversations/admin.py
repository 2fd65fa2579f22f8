"""Staff publish site-wide system-prompt presets here (a preset without an owner), may revoke share links,
and set web search and fetch for the whole site."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse

from .models import WEB_MAX_USES, Preset, ShareLink, WebSettings, web_domain_errors


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


class DomainsField(forms.CharField):
    """Host names, one a line (or separated by commas or spaces), as a list; each checked."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value) -> list[str]:
        text = super().to_python(value) or ""
        domains = list(dict.fromkeys(d.strip().lower().rstrip(".") for d in text.replace(",", " ").split()))
        errors = web_domain_errors([d for d in domains if d])
        if errors:
            raise forms.ValidationError(errors)
        return [d for d in domains if d]


class WebSettingsForm(forms.ModelForm):
    allowed_domains = DomainsField(
        required=False,
        help_text="Claude's results only from these host names (and their subdomains), one a line. "
        "Empty: from anywhere but the blocked ones.",
    )
    blocked_domains = DomainsField(
        required=False,
        help_text="Claude's results never from these host names (and their subdomains), one a line.",
    )
    max_searches = forms.IntegerField(min_value=1, max_value=WEB_MAX_USES, label="Most searches per reply")
    max_fetches = forms.IntegerField(min_value=1, max_value=WEB_MAX_USES, label="Most pages read per reply")

    class Meta:
        model = WebSettings
        fields = ["offered", "max_searches", "max_fetches", "allowed_domains", "blocked_domains"]


@admin.register(WebSettings)
class WebSettingsAdmin(admin.ModelAdmin):
    """One row that always applies: first made from the CHAT_WEB… settings, edited here from then on."""

    form = WebSettingsForm
    fieldsets = [
        (
            None,
            {"fields": ["offered"], "description": "Teams can turn the web off for their members (Teams)."},
        ),
        (
            "Per reply",
            {
                "fields": ["max_searches", "max_fetches"],
                "description": "A reply's budget hold covers every search it may make, at the search price.",
            },
        ),
        (
            "Domains (one list or neither)",
            {
                "fields": ["allowed_domains", "blocked_domains"],
                "description": "Host names without http:// or a path. A conversation that already used the "
                "web keeps the limits it started with (Claude's earlier reasoning is bound to them); new "
                "ones apply where the Web is turned on after the change.",
            },
        ),
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the row is made from the settings when first read

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context=None):
        site = WebSettings.load()
        return HttpResponseRedirect(reverse("admin:conversations_websettings_change", args=[site.pk]))

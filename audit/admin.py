"""The audit log for staff: read, filter, export as CSV. Nobody adds, changes or deletes an entry here."""

from __future__ import annotations

import csv
import json
from datetime import datetime

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from .models import AuditEntry

CSV_COLUMNS = [
    "seq",
    "created_at",
    "actor_id",
    "actor_label",
    "action",
    "object_type",
    "object_id",
    "object_label",
    "before",
    "after",
    "prev_hash",
    "hash",
]


class _Csv:
    """A file-like object csv.writer writes one row into, for streaming."""

    def write(self, value: str) -> str:
        return value


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["seq", "created_at", "actor_label", "action", "object_type", "object_label"]
    list_filter = ["action", "actor_label", "created_at", "object_type"]
    search_fields = ["object_label", "actor_label", "action"]
    date_hierarchy = "created_at"
    readonly_fields = CSV_COLUMNS
    fields = CSV_COLUMNS
    actions = ["export_csv"]
    list_per_page = 100

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff

    @admin.action(description="Export the selected entries as CSV")
    def export_csv(self, request: HttpRequest, queryset) -> HttpResponse:
        writer = csv.writer(_Csv())
        rows = [CSV_COLUMNS]
        for entry in queryset.order_by("seq"):
            rows.append([_cell(getattr(entry, name)) for name in CSV_COLUMNS])
        response = HttpResponse("".join(writer.writerow(row) for row in rows), content_type="text/csv")
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
        response["Content-Disposition"] = f'attachment; filename="audit-log-{stamp}.csv"'
        return response


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)

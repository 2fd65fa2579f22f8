"""manage.py rebuild_usage_rollups — recompute the daily/monthly rollups from the ledger.

Run after changing TIME_ZONE (rollup days are local days), or to repair. The ledger is never touched.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from billing.rollups import rollup_rebuild


class Command(BaseCommand):
    help = "Recompute the usage rollup tables from the immutable ledger (in the current TIME_ZONE)."

    def handle(self, *args, **options) -> None:
        written = rollup_rebuild()
        self.stdout.write(self.style.SUCCESS(f"Rebuilt usage rollups: {written} daily rows."))

"""manage.py reconcile_usage [--day YYYY-MM-DD ...] — compare the ledger with Anthropic's usage report.

Default: the last 3 complete UTC days. Exit status 0 when every figure matches, 1 when any differs
(for cron and monitoring), 2 when the report could not be read or the days are wrong (nothing stored).
"""

from __future__ import annotations

from datetime import date

from django.core.management.base import BaseCommand, CommandError

from billing.models import ReconciliationKind
from billing.money import format_money
from billing.reconcile import ReconcileInputError, explain, reconcile, suspects, why
from billing.usage_report import ReportError


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"--day {value!r}: write a day as YYYY-MM-DD, e.g. 2026-12-04.") from exc


class Command(BaseCommand):
    help = "Reconcile the usage ledger with Anthropic's Usage & Cost API for some UTC days."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--day",
            action="append",
            default=[],
            metavar="YYYY-MM-DD",
            help="A UTC day to reconcile (repeat for several). Default: the last 3 complete days.",
        )

    def handle(self, *args, **options) -> None:
        days = [_day(value) for value in options["day"]]
        try:
            outcomes = reconcile(days)
        except (ReconcileInputError, ReportError) as exc:
            self.stderr.write(self.style.ERROR(str(exc)))
            raise SystemExit(2) from exc
        differences = 0
        for outcome in outcomes:
            if outcome.moved_out or outcome.moved_in:
                self.stdout.write(
                    f"{outcome.day}: {outcome.moved_in} ledger row(s) written after midnight UTC and "
                    f"{outcome.moved_out} written before it counted on the day Anthropic booked them."
                )
            found = outcome.differences
            differences += len(found)
            if not found:
                models = {r.model for r in outcome.rows if r.model}
                tokens = sum(r.ours for r in outcome.rows if r.kind != ReconciliationKind.COST)
                cost = next(r.ours for r in outcome.rows if r.kind == ReconciliationKind.COST)
                self.stdout.write(
                    self.style.SUCCESS(
                        f"{outcome.day}: exact ({len(models)} model{'s' if len(models) != 1 else ''}, "
                        f"{tokens:,} tokens, {format_money(cost)})."
                    )
                )
                continue
            self.stdout.write(self.style.ERROR(f"{outcome.day}: {len(found)} difference(s)."))
            for row in found:
                ours, theirs = (
                    (format_money(row.ours), format_money(row.theirs))
                    if row.kind == ReconciliationKind.COST
                    else (f"{row.ours:,}", f"{row.theirs:,}")
                )
                label = f"{row.model or 'all models'} {row.get_kind_display().lower()}"
                self.stdout.write(f"  {label}: ours {ours}, Anthropic {theirs}. {explain(row)}")
                for record in suspects(row.day, row.model, limit=5):
                    self.stdout.write(
                        f"    ledger row {record.pk} at {record.created_at:%H:%M:%S} UTC "
                        f"(request {record.request_id or '—'}): {why(record, row.day)}"
                    )
        if differences:
            self.stdout.write("Settle each difference with an adjustment in the admin (Reconciliations).")
            raise SystemExit(1)

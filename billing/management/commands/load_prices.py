"""manage.py load_prices FILE.json|FILE.csv [--dry-run] — load a newer price list (see docs/billing.md)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from billing.price_list import PriceListError, parse_price_file, price_list_load


class Command(BaseCommand):
    help = (
        "Load model prices (USD per million tokens, effective-dated) from a JSON or CSV file. "
        "Validated as a whole, loaded atomically, idempotent. Format: docs/billing.md."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", help="a .json or .csv price list")
        parser.add_argument("--dry-run", action="store_true", help="validate and report without saving")

    def handle(self, *args, path: str, dry_run: bool, **options) -> None:
        try:
            outcome = price_list_load(rows=parse_price_file(path), dry_run=dry_run)
        except PriceListError as exc:
            raise CommandError(f"Price list refused, nothing loaded:\n{exc}") from exc
        for kind in ("created", "updated"):
            for label in outcome[kind]:
                self.stdout.write(f"{kind}: {label}")
        summary = ", ".join(f"{len(outcome[kind])} {kind}" for kind in ("created", "updated", "unchanged"))
        self.stdout.write(self.style.SUCCESS(f"{'Dry run: ' if dry_run else ''}{summary}."))

"""Check the audit log's hash chain; exit 1 with the first broken link."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from audit.services import audit_verify


class Command(BaseCommand):
    help = "Verify the audit log's hash chain and report the first broken link (exit status 1)."

    def handle(self, *args, **options) -> None:
        checked, broken = audit_verify()
        if broken is not None:
            raise CommandError(
                f"Audit log broken at entry #{broken.seq}: {broken.reason} "
                f"({checked} entries before it are intact)."
            )
        self.stdout.write(f"Audit log intact: {checked} entries.")

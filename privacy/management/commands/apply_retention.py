"""Delete conversations past the retention policy (run daily by deploy/systemd/teamchat-retention.timer)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from privacy.retention import RetentionRefused, retention_apply


class Command(BaseCommand):
    help = "Delete conversations whose last activity is older than the retention policy allows."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Only count what would be deleted.")

    def handle(self, *args, dry_run: bool = False, **options) -> None:
        try:
            run = retention_apply(dry_run=dry_run)
        except RetentionRefused as exc:
            raise CommandError(str(exc)) from None
        if run.dry_run:
            state = "" if run.enabled else " (the policy is not enabled: nothing is deleted until it is)"
            self.stdout.write(f"{run.deleted} conversation(s) would be deleted now{state}.")
        else:
            self.stdout.write(
                f"Deleted {run.deleted} conversation(s); {run.ledger_rows_detached} ledger row(s) kept, "
                "unlinked from them."
            )

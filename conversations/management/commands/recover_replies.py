"""Mark replies left `streaming` by a process that died as interrupted (partial text kept, usage estimated)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from conversations.services import replies_interrupt_orphans


class Command(BaseCommand):
    help = (
        "Run at start-up, before any server process starts generating: marks replies a dead process left "
        "streaming as interrupted, keeping their partial text and recording their estimated usage."
    )

    def handle(self, *args, **options) -> None:
        count = replies_interrupt_orphans()
        self.stdout.write(f"{count} interrupted repl{'y' if count == 1 else 'ies'} recovered.")

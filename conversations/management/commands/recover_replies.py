"""End replies whose worker died (their lease expired) as interrupted: partial text kept, usage estimated."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from conversations.attachments import unsent_delete
from conversations.replies.store import replies_end_expired


class Command(BaseCommand):
    help = (
        "End every streaming reply whose lease has expired (its worker died) as interrupted, keeping its "
        "partial text and recording its estimated usage. Safe at any time: live replies are never touched, "
        "and every worker also does this on its own every few seconds. Also deletes files uploaded more than "
        "a day ago and never sent."
    )

    def handle(self, *args, **options) -> None:
        count = len(replies_end_expired())
        self.stdout.write(f"{count} interrupted repl{'y' if count == 1 else 'ies'} recovered.")
        files = unsent_delete()
        self.stdout.write(f"{files} file{'' if files == 1 else 's'} never sent deleted.")

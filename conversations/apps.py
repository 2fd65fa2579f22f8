from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ConversationsConfig(AppConfig):
    name = "conversations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from billing.views import estimates_from

        from . import (  # noqa: F401  (registers the system checks, the file cleanup)
            attachments,
            budget_push,
            checks,
        )
        from .replies.price import shown_estimate
        from .replies.shutdown import install_under_daphne

        install_under_daphne()
        estimates_from(shown_estimate)
        budget_push.connect_signals()
        post_migrate.connect(_search_index_repair, sender=self)


def _search_index_repair(sender, using: str = "default", **kwargs) -> None:
    """After `migrate`: SQLite drops a table's triggers when Django rebuilds the table for a schema
    change, which would leave the search index behind; put them back (and refill the index)."""
    from django.db import connections

    from .search import index_repair

    index_repair(connections[using])

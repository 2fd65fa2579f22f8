from __future__ import annotations

from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import attachments, checks  # noqa: F401  (registers the system checks, the file cleanup)
        from .shutdown import install_under_daphne

        install_under_daphne()

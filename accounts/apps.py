from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and sign-up"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import revocation

        revocation.connect_signals()

from __future__ import annotations

from django.conf import settings

from .discovery import down_message, provider_down


def sso(request) -> dict:
    """Whether the login page offers single sign-on and passwords. `sso_provider_down` is a callable, so
    the provider is asked only by a page that shows it (the login page)."""
    return {
        "sso_enabled": settings.CHAT_SSO_ENABLED,
        "sso_name": settings.CHAT_SSO_NAME,
        "password_login": settings.CHAT_PASSWORD_LOGIN,
        "sso_provider_down": provider_down,
        "sso_down_message": down_message,
    }

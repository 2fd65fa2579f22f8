from __future__ import annotations

from django.conf import settings

from .modes import signup_mode


def signup(request) -> dict:
    """The sign-up mode, so the login page and the top bar link to sign-up only when it is possible (never
    while passwords are off: sign-up makes a password account; single sign-on makes its own)."""
    mode = signup_mode()
    return {"signup_mode": mode, "signup_link_shown": mode.has_public_form and settings.CHAT_PASSWORD_LOGIN}

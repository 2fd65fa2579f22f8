"""Who may create an account on this server: the operator's CHAT_SIGNUP mode (see README)."""

from __future__ import annotations

from enum import StrEnum

from django.conf import settings


class SignupMode(StrEnum):
    OPEN = "open"  # anyone who can reach the server (the embedded default, for one person trying the app)
    INVITE = "invite"  # someone holding an invite link that staff created in the admin
    DOMAINS = "domains"  # an e-mail address at one of CHAT_SIGNUP_DOMAINS, confirmed by a link sent to it
    CLOSED = "closed"  # nobody: staff create accounts in the admin

    @property
    def summary(self) -> str:
        """One sentence for staff, shown in the admin."""
        return {
            SignupMode.OPEN: "anyone who can reach this server can create an account.",
            SignupMode.INVITE: "people sign up with an invite link that staff create here.",
            SignupMode.DOMAINS: (
                "people sign up with an e-mail address at "
                + ", ".join(settings.CHAT_SIGNUP_DOMAINS)
                + ", confirmed by a link sent to it."
            ),
            SignupMode.CLOSED: "nobody can sign up; staff create accounts under Users.",
        }[self]

    @property
    def has_public_form(self) -> bool:
        """Whether someone without an invite can start signing up (so the login page links to it)."""
        return self in (SignupMode.OPEN, SignupMode.DOMAINS)


def signup_mode() -> SignupMode:
    return SignupMode(settings.CHAT_SIGNUP)


def email_domain_allowed(email: str) -> bool:
    """Whether `email`'s domain is one of CHAT_SIGNUP_DOMAINS (exactly: subdomains are not included)."""
    _, _, domain = email.rpartition("@")
    return domain.lower() in settings.CHAT_SIGNUP_DOMAINS

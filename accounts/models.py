"""Invite links that staff create in the admin (sign-up mode `invite`)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.formats import date_format

INVITE_DAYS = 7


def token_digest(token: str) -> str:
    """What is stored of an invite token: its SHA-256. Tokens carry 256 random bits, so a plain hash is
    enough, and looking one up by its hash reveals nothing about other tokens."""
    return hashlib.sha256(token.encode()).hexdigest()


def default_expiry() -> datetime:
    return timezone.now() + timedelta(days=INVITE_DAYS)


class InviteQuerySet(models.QuerySet):
    def for_token(self, token: str) -> Invite | None:
        """The invite whose link carries `token`, or None."""
        if not token or len(token) > 100:
            return None
        return self.filter(token_hash=token_digest(token)).first()


class Invite(models.Model):
    note = models.CharField(max_length=200, blank=True, help_text="Who it is for. Only staff see this.")
    email = models.EmailField(
        blank=True, help_text="Optional: the account created with this link gets this e-mail address."
    )
    max_uses = models.PositiveIntegerField(
        default=1, validators=[MinValueValidator(1)], help_text="How many accounts the link may create."
    )
    uses = models.PositiveIntegerField(default=0, editable=False)
    expires_at = models.DateTimeField(default=default_expiry)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, editable=False, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    accounts = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, editable=False, related_name="invited_by"
    )

    objects = InviteQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.note or self.email or f"Invite #{self.pk}"

    def assign_new_token(self) -> str:
        """Give the invite a fresh random token; returns the token (only its digest is stored)."""
        token = secrets.token_urlsafe(32)
        self.token_hash = token_digest(token)
        return token

    def refusal(self, now: datetime) -> str | None:
        """Why the link cannot create an account at `now`, in words for the person holding it; or None."""
        if self.uses >= self.max_uses:
            return "This invite link has already been used. Ask whoever invited you for a new one."
        if self.expires_at <= now:
            when = date_format(timezone.localtime(self.expires_at), "DATETIME_FORMAT")
            return f"This invite link expired on {when}. Ask whoever invited you for a new one."
        return None


class SignupMail(models.Model):
    """A confirmation mail sent in `domains` sign-up mode: the log that limits how often an address, and a
    client address, can have one sent (accounts.services.account_request)."""

    email = models.EmailField()
    client = models.CharField(max_length=64, blank=True)
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["email", "sent_at"], name="signupmail_email_sent"),
            models.Index(fields=["client", "sent_at"], name="signupmail_client_sent"),
        ]

    def __str__(self) -> str:
        return f"{self.email} at {self.sent_at:%Y-%m-%d %H:%M}"

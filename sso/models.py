"""Single sign-on: who a provider's person is here, and which of its groups place people in which team."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class SsoIdentity(models.Model):
    """A person at an OpenID Connect provider (issuer + subject, the provider's stable id for them) and
    the account they log in to here. Kept when the account is erased, so that the same person cannot
    come back through single sign-on as someone new (see privacy/erasure.py)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identities"
    )
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)
    last_login = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "single sign-on identity"
        verbose_name_plural = "single sign-on identities"
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="sso_identity_unique")]

    def __str__(self) -> str:
        return f"{self.user} at {self.issuer}"


class GroupTeam(models.Model):
    """A group named in the provider's groups claim, and the team its people are placed in when they log
    in through single sign-on. Set by staff in the admin."""

    group = models.CharField(
        max_length=255, unique=True, help_text="The group's name exactly as the provider sends it."
    )
    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="sso_groups")

    class Meta:
        ordering = ["group"]
        verbose_name = "group → team mapping"
        verbose_name_plural = "group → team mappings"

    def __str__(self) -> str:
        return f"{self.group} → {self.team}"

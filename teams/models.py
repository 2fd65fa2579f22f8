"""Teams: a cost centre with members, managers, a monthly budget, the models it may use and whether
its members may let Claude search the web.

A user belongs to at most one team at a time (their Membership); a user without one is under the
organisation only. Billing reads a user's team at call time and writes it on the hold and the ledger
row, so moving a person later never moves what they already spent.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

DEFAULT_WARNING_PERCENT = 80


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    managers = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="managed_teams",
        help_text="Managers see the team page: members' spend, budgets, forecasts and statements "
        "(never conversations). They need not be members, nor staff.",
    )
    monthly_limit = models.BigIntegerField(
        null=True, blank=True, help_text="The team's monthly budget in pUSD; empty: no team budget."
    )
    warning_percent = models.PositiveSmallIntegerField(
        default=DEFAULT_WARNING_PERCENT,
        validators=[MinValueValidator(1), MaxValueValidator(99)],
        help_text="Managers are alerted when the team's spend this month crosses this share of its budget.",
    )
    allowed_models = models.JSONField(
        default=list,
        blank=True,
        help_text="Models the team's members may use; empty: every model the site offers.",
    )
    default_model = models.CharField(
        max_length=100, blank=True, help_text="New conversations start on it; empty: the site's default."
    )
    web = models.BooleanField(
        "web search",
        default=True,
        help_text="Members may turn the Web on in their conversations (where the site offers web search).",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def manager_names(self) -> list[str]:
        """The managers' names as a member would call them (full name, else username)."""
        return [m.get_full_name() or m.get_username() for m in self.managers.order_by("username")]


class Membership(models.Model):
    """The one team a user is in now (their cost centre)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="membership"
    )
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    since = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["team"], name="membership_team")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team}"

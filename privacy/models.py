"""Retention (how long conversations are kept), legal holds that stop deletion, and erasures of people.

The usage ledger is never deleted by either: see privacy.retention and privacy.erasure.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

DAYS_REFUSAL = (
    "Keep conversations for at least 1 day: 0 or a negative number of days would delete them at once."
)


HOLD_ON_ERASED = "This person has been erased: nothing of theirs is left to hold."


def _positive_days(value: int | None) -> None:
    if value is not None and value < 1:
        raise ValidationError(DAYS_REFUSAL, code="min_value")


class RetentionPolicy(models.Model):
    """The organisation-wide policy (a single row, pk=1). Nothing is deleted until it is enabled."""

    enabled = models.BooleanField(
        default=False, help_text="Delete conversations on the daily run (see the expected count below first)."
    )
    days = models.IntegerField(
        default=365,
        validators=[_positive_days],
        help_text="Delete conversations whose last activity is older than this many days.",
    )
    pinned_exempt = models.BooleanField(default=True, help_text="Pinned conversations are kept.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "retention policy"
        verbose_name_plural = "retention policy"
        constraints = [
            models.CheckConstraint(condition=models.Q(days__gte=1), name="retentionpolicy_days_positive")
        ]

    def __str__(self) -> str:
        return "Retention policy"

    @classmethod
    def load(cls) -> RetentionPolicy:
        return cls.objects.get_or_create(pk=1)[0]


class TeamRetention(models.Model):
    """A team's override of the organisation's days and pinned exemption (for its members' conversations)."""

    team = models.OneToOneField(
        "teams.Team", on_delete=models.CASCADE, primary_key=True, related_name="retention"
    )
    days = models.IntegerField(validators=[_positive_days], help_text="Days of inactivity kept.")
    pinned_exempt = models.BooleanField(default=True, help_text="Pinned conversations are kept.")

    class Meta:
        verbose_name = "team retention override"
        constraints = [
            models.CheckConstraint(condition=models.Q(days__gte=1), name="teamretention_days_positive")
        ]

    def __str__(self) -> str:
        return f"Retention of {self.team}: {self.days} days"


class LegalHold(models.Model):
    """Stops retention from deleting a person's conversations, or one conversation."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    conversation = models.ForeignKey(
        "conversations.Conversation", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    reason = models.CharField(max_length=200, help_text="Why (a case, a request): shown to staff only.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(user__isnull=False, conversation__isnull=True)
                | models.Q(user__isnull=True, conversation__isnull=False),
                name="legalhold_user_or_conversation",
            )
        ]

    def __str__(self) -> str:
        what = f"user {self.user}" if self.user_id else f"conversation #{self.conversation_id}"
        return f"Legal hold on {what}"

    def clean(self) -> None:
        if (self.user_id is None) == (self.conversation_id is None):
            raise ValidationError("Choose a person or a conversation to hold (one of the two).")
        owner_id = self.user_id or self.conversation.owner_id
        if Erasure.objects.filter(user_id=owner_id).exists():
            raise ValidationError(HOLD_ON_ERASED)


class Erasure(models.Model):
    """A person erased (right to be forgotten): their account is kept as "erased user #<id>"."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="erasure"
    )
    erased_at = models.DateTimeField(default=timezone.now)
    conversations_deleted = models.PositiveIntegerField(default=0)
    ledger_rows_relabelled = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"Erasure of user #{self.user_id}"


def pseudonym(user_id: int) -> str:
    return f"erased user #{user_id}"

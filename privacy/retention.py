"""Retention: delete conversations whose last activity is older than the policy's days.

A conversation goes with its messages (their search index entries follow by trigger on SQLite and with
the row on PostgreSQL), attachments and their files, and share link. The usage ledger stays: its rows
lose only the link to the conversation and message and the conversation's title. Legal holds (on the
owner or on the conversation), the pinned exemption and a reply still being written keep a conversation.
A team's override replaces the organisation's days and pinned exemption for its members' conversations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from audit.hooks import audit_muted
from audit.services import SYSTEM, Actor, audit_record
from billing.models import UsageRecord
from conversations.models import Conversation, Message

from .models import DAYS_REFUSAL, LegalHold, RetentionPolicy, TeamRetention

BATCH = 200


class RetentionRefused(Exception):
    """The policy cannot be applied; str(exc) says why. Nothing was deleted."""


@dataclass(frozen=True)
class RetentionRun:
    enabled: bool
    deleted: int
    ledger_rows_detached: int
    dry_run: bool


def expired_conversations(now: datetime | None = None) -> QuerySet[Conversation]:
    """The conversations the policy deletes at `now`, whether or not it is enabled (for the preview)."""
    now = now or timezone.now()
    policy = RetentionPolicy.load()
    overrides = list(TeamRetention.objects.all())
    for days in [policy.days, *(o.days for o in overrides)]:
        if days < 1:
            raise RetentionRefused(DAYS_REFUSAL)
    rule = Q(updated_at__lt=now - timedelta(days=policy.days))
    if policy.pinned_exempt:
        rule &= Q(pinned=False)
    if overrides:
        rule &= ~Q(owner__membership__team_id__in=[o.team_id for o in overrides])
    for override in overrides:
        team_rule = Q(owner__membership__team_id=override.team_id) & Q(
            updated_at__lt=now - timedelta(days=override.days)
        )
        if override.pinned_exempt:
            team_rule &= Q(pinned=False)
        rule |= team_rule
    held_users = LegalHold.objects.filter(user__isnull=False).values("user_id")
    held_conversations = LegalHold.objects.filter(conversation__isnull=False).values("conversation_id")
    return (
        Conversation.objects.filter(rule)
        .exclude(owner_id__in=held_users)
        .exclude(pk__in=held_conversations)
        .exclude(messages__status=Message.Status.STREAMING)
    )


def conversations_delete(conversation_ids: list[int]) -> int:
    """Delete these conversations and everything hanging off them, detaching (never deleting) their
    ledger rows, in the caller's transaction; per-object audit entries are not written (the caller
    records one). Returns the ledger rows detached."""
    messages = Message.objects.filter(conversation_id__in=conversation_ids).values("pk")
    detached = UsageRecord.objects.detach_from_conversations(conversation_ids, messages)
    with audit_muted():
        Conversation.objects.filter(pk__in=conversation_ids).delete()
    return detached


def retention_apply(*, dry_run: bool = False, now: datetime | None = None) -> RetentionRun:
    """Apply the policy (in batches, each its own transaction); one audit entry says what the run did.
    With `dry_run`, or while the policy is not enabled, nothing is deleted and the count is the
    expected one."""
    now = now or timezone.now()
    policy = RetentionPolicy.load()
    expired = expired_conversations(now)
    if dry_run or not policy.enabled:
        return RetentionRun(policy.enabled, expired.count(), 0, True)
    deleted = detached = 0
    while True:
        with transaction.atomic():
            ids = list(expired_conversations(now).order_by("pk").values_list("pk", flat=True)[:BATCH])
            if not ids:
                break
            detached += conversations_delete(ids)
            deleted += len(ids)
    audit_record(
        action="retention.run",
        object_type="retention",
        object_label="Retention policy",
        after={
            "deleted": deleted,
            "ledger_rows_detached": detached,
            "days": policy.days,
            "pinned_exempt": policy.pinned_exempt,
            "team_overrides": {str(o.team_id): o.days for o in TeamRetention.objects.all()},
        },
        actor=Actor(None, SYSTEM),
    )
    return RetentionRun(True, deleted, detached, False)

"""The audit log: one append-only, hash-chained entry per administrative action.

Each entry holds the SHA-256 of a canonical JSON of its own fields plus the hash of the entry before it
(`prev_hash`), so changing, removing or reordering a stored entry breaks the chain at that entry:
`manage.py verify_audit_log` finds it. Writers take the single `AuditChainHead` row FOR UPDATE (on SQLite
the IMMEDIATE transaction holds the database), so two concurrent actions can never both chain to the
same predecessor.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC

from django.db import models
from django.utils import timezone

GENESIS = "0" * 64


class AuditImmutable(Exception):
    """Audit entries are never changed or deleted by the application."""


class AuditEntryQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AuditImmutable("Audit entries are append-only.")

    def delete(self):
        raise AuditImmutable("Audit entries cannot be deleted.")

    def in_chain_order(self) -> AuditEntryQuerySet:
        """Every entry, oldest first (the order the chain links them)."""
        return self.order_by("seq")


class AuditChainHead(models.Model):
    """The single lock row (pk=1): the last entry's sequence number and hash."""

    seq = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default=GENESIS)

    def __str__(self) -> str:
        return f"Audit chain at #{self.seq}"


class AuditEntry(models.Model):
    seq = models.BigIntegerField(unique=True, help_text="Position in the chain, from 1.")
    created_at = models.DateTimeField(default=timezone.now)
    actor_id = models.BigIntegerField(null=True, blank=True, help_text="Empty: the system.")
    actor_label = models.CharField(max_length=150, help_text="The username at the time, or 'system'.")
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_label = models.CharField(max_length=200, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["action", "created_at"], name="audit_action_created"),
            models.Index(fields=["actor_label", "created_at"], name="audit_actor_created"),
            models.Index(fields=["created_at"], name="audit_created"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} by {self.actor_label}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise AuditImmutable("Audit entries are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditImmutable("Audit entries cannot be deleted.")

    def canonical(self) -> str:
        """The text hashed: every field but `hash`, as compact JSON with sorted keys."""
        return json.dumps(
            {
                "seq": self.seq,
                "created_at": self.created_at.astimezone(UTC).isoformat(),
                "actor_id": self.actor_id,
                "actor_label": self.actor_label,
                "action": self.action,
                "object_type": self.object_type,
                "object_id": self.object_id,
                "object_label": self.object_label,
                "before": self.before,
                "after": self.after,
                "prev_hash": self.prev_hash,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )

    def compute_hash(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()

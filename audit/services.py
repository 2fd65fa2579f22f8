"""Writing the audit log: `audit_record` appends one entry, in the caller's transaction.

Who acted is whoever the current request is authenticated as (`AuditActorMiddleware` remembers the
request for the code it runs), or the system (management commands, timers), unless `actor` is given.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from .models import GENESIS, AuditChainHead, AuditEntry

SYSTEM = "system"

_request: ContextVar = ContextVar("audit_request", default=None)


@dataclass(frozen=True)
class Actor:
    """Who did it: a user's id and username at the time, or the system (id None)."""

    id: int | None
    label: str

    @classmethod
    def of(cls, user) -> Actor:
        if user is None or not getattr(user, "is_authenticated", False):
            return cls(None, SYSTEM)
        return cls(user.pk, user.get_username())


@contextmanager
def acting_request(request) -> Iterator[None]:
    """Entries recorded inside name `request`'s user as the actor."""
    token = _request.set(request)
    try:
        yield
    finally:
        _request.reset(token)


def current_actor() -> Actor:
    request = _request.get()
    return Actor.of(getattr(request, "user", None) if request is not None else None)


def jsonable(value: object) -> object:
    """`value` as the JSON it is stored as (dates and decimals as text), so what is hashed is what is
    read back."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def audit_record(
    *,
    action: str,
    obj: object = None,
    object_type: str = "",
    object_id: object = "",
    object_label: str = "",
    before: object = None,
    after: object = None,
    actor: Actor | None = None,
) -> AuditEntry:
    """Append one entry to the chain (in the caller's transaction, if any: it commits or not with the
    action). `obj`, a model instance, fills the object's type, id and label unless they are given."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or obj.pk
        object_label = object_label or str(obj)
    actor = actor or current_actor()
    with transaction.atomic():
        head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
        if head is None:
            AuditChainHead.objects.get_or_create(pk=1, defaults={"seq": 0, "last_hash": GENESIS})
            head = AuditChainHead.objects.select_for_update().get(pk=1)
        entry = AuditEntry(
            seq=head.seq + 1,
            created_at=timezone.now(),
            actor_id=actor.id,
            actor_label=actor.label[:150],
            action=action,
            object_type=object_type[:64],
            object_id=str(object_id if object_id is not None else "")[:64],
            object_label=str(object_label)[:200],
            before=jsonable(before),
            after=jsonable(after),
            prev_hash=head.last_hash,
        )
        entry.hash = entry.compute_hash()
        entry.save()
        head.seq, head.last_hash = entry.seq, entry.hash
        head.save(update_fields=["seq", "last_hash"])
    return entry


@dataclass(frozen=True)
class Break:
    """The first entry whose link does not hold, and why."""

    seq: int
    reason: str


def audit_verify() -> tuple[int, Break | None]:
    """Walk the chain oldest first: the number of entries checked, and the first broken link (or None)."""
    expected_prev, expected_seq, checked = GENESIS, 1, 0
    for entry in AuditEntry.objects.in_chain_order().iterator(chunk_size=2000):
        if entry.seq != expected_seq:
            return checked, Break(entry.seq, f"expected entry #{expected_seq} here: an entry is missing")
        if entry.prev_hash != expected_prev:
            return checked, Break(entry.seq, "its prev_hash is not the hash of the entry before it")
        if entry.compute_hash() != entry.hash:
            return checked, Break(entry.seq, "its content does not match its hash: it was changed")
        expected_prev, expected_seq, checked = entry.hash, expected_seq + 1, checked + 1
    head = AuditChainHead.objects.filter(pk=1).first()
    if head is not None and head.seq != checked:
        return checked, Break(
            checked + 1, f"the chain should have {head.seq} entries: the last ones are missing"
        )
    return checked, None

"""Read side of billing: queryset methods used by services, the dashboard, the user page and the bench.

Every report is an aggregate query (GROUP BY in the database); nothing loops over ledger rows in Python.
Sums are of integer columns (tokens, pico-dollars), so they are exact on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.apps import apps
from django.db import models
from django.db.models import Count, Max, Q, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from billing.errors import LedgerImmutable

#: Column → label of every summed figure, in display order (also the CSV columns).
SUM_FIELDS = {
    "cost": "Cost",
    "input_tokens": "Input",
    "output_tokens": "Output",
    "cache_write_5m_tokens": "Cache write 5m",
    "cache_write_1h_tokens": "Cache write 1h",
    "cache_read_tokens": "Cache read",
    "thinking_tokens": "Thinking (in output)",
    "cache_savings": "Cache savings",
    "web_search_requests": "Web searches",
    "web_fetch_requests": "Web fetches",
    "server_tool_cost": "Web searches and fetches cost",
}


def _sums() -> dict:
    fields = {name: Coalesce(Sum(name), 0) for name in SUM_FIELDS}
    fields["calls"] = Count("id")
    fields["unpriced_calls"] = Count("id", filter=Q(priced=False))
    fields["estimated_calls"] = Count("id", filter=Q(estimated=True))
    return fields


def _as_ints(row: dict) -> dict:
    # PostgreSQL returns SUM(bigint) as numeric → Decimal; keep money and tokens as exact ints.
    for name in (*SUM_FIELDS, "calls", "unpriced_calls", "estimated_calls", "active_users"):
        if name in row and row[name] is not None:
            row[name] = int(row[name])
    return row


class UsageRecordQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise LedgerImmutable("Usage ledger rows are immutable.")

    def delete(self):
        raise LedgerImmutable("Usage ledger rows cannot be deleted.")

    def replace_estimate(self, pk: int, **columns) -> int:
        """The one change a ledger row may see, once: an estimate not yet replaced takes the call's own
        count (see billing.services.usage_replace_estimate). Returns the rows changed (0 or 1)."""
        rows = self.filter(pk=pk, estimated=True, replaced_at__isnull=True)
        return super(UsageRecordQuerySet, rows).update(**columns)

    def detach_from_conversations(self, conversation_ids, message_ids) -> int:
        """Retention and erasure delete conversations, never the ledger: their rows lose only the link to
        the conversation and message and the conversation's title (tokens, costs, model, user and team
        stay). `message_ids` may be a subquery. Returns the rows changed."""
        rows = self.filter(Q(conversation_id__in=conversation_ids) | Q(message_id__in=message_ids))
        return super(UsageRecordQuerySet, rows).update(
            conversation_id=None, message_id=None, conversation_title=""
        )

    def relabel_user(self, user_id: int, username: str) -> int:
        """Erasure: the user's rows carry `username` (a pseudonym) as their label; nothing else changes.
        Returns the rows changed."""
        rows = self.filter(user_id=user_id)
        return super(UsageRecordQuerySet, rows).update(username=username)

    def for_period(self, start: datetime, end: datetime) -> UsageRecordQuerySet:
        """Calls made in [start, end) (aware datetimes)."""
        return self.filter(created_at__gte=start, created_at__lt=end)

    def for_user(self, user_id: int) -> UsageRecordQuerySet:
        """Calls billed to the user with this id (works after the user was deleted)."""
        return self.filter(user_id=user_id)

    def for_conversation(self, conversation_id: int) -> UsageRecordQuerySet:
        """Every API call made in this conversation (its rows outlive it)."""
        return self.filter(conversation_id=conversation_id)

    def for_message(self, message_id: int) -> UsageRecordQuerySet:
        """Every API call made for this assistant message, oldest first."""
        return self.filter(message_id=message_id).order_by("created_at", "id")

    def total_cost(self) -> int:
        """Sum of cost in pico-dollars (0 when empty)."""
        return self.sums("cost")["cost"]

    def sums(self, *names: str) -> dict:
        """Only the sums of the columns `names` (ints, 0 when empty), such as `cost` and `cache_savings`
        for a conversation's header: `totals` builds every sum, which costs more to compile than to run."""
        return _as_ints(self.order_by().aggregate(**{name: Coalesce(Sum(name), 0) for name in names}))

    def totals(self) -> dict:
        """One dict: every summed figure (ints), calls, unpriced/estimated calls, active users."""
        return _as_ints(self.order_by().aggregate(**_sums(), active_users=Count("user_id", distinct=True)))

    def _grouped(self, *keys: str, **extra) -> list[dict]:
        rows = self.order_by().values(*keys).annotate(**_sums(), **extra)
        return [_as_ints(row) for row in rows]

    def by_user(self) -> list[dict]:
        """Per user id: sums, calls, last activity, latest username; dearest first."""
        rows = self._grouped("user_id", username_label=Max("username"), last_activity=Max("created_at"))
        return sorted(rows, key=lambda r: (-r["cost"], r["user_id"]))

    def by_model(self) -> list[dict]:
        """Per model: sums and calls; dearest first."""
        rows = self._grouped("model", users=Count("user_id", distinct=True))
        return sorted(rows, key=lambda r: (-r["cost"], r["model"]))

    def by_day(self, tz: ZoneInfo | None = None) -> list[dict]:
        """Per calendar day in `tz` (default: the current time zone): sums and calls, oldest first."""
        tz = tz or timezone.get_current_timezone()
        rows = self._grouped_by_expr(day=TruncDate("created_at", tzinfo=tz))
        return sorted(rows, key=lambda r: r["day"])

    def _grouped_by_expr(self, **expr) -> list[dict]:
        rows = self.order_by().annotate(**expr).values(*expr).annotate(**_sums())
        return [_as_ints(row) for row in rows]

    def by_conversation(self, limit: int | None = None) -> list[dict]:
        """Per conversation id (with a title it was billed under: show current_titles' where the
        conversation still exists): sums, calls, last activity; dearest first."""
        qs = (
            self.order_by()
            .values("conversation_id")
            .annotate(**_sums(), title=Max("conversation_title"), last_activity=Max("created_at"))
            .order_by("-cost", "conversation_id")
        )
        if limit:
            qs = qs[:limit]
        return [_as_ints(row) for row in qs]


class ModelPriceQuerySet(models.QuerySet):
    def in_effect(self, model: str, at: datetime):
        """The price version of `model` in force at `at` (latest effective_from <= at), or None."""
        return self.filter(model=model, effective_from__lte=at).order_by("-effective_from").first()


class ServerToolPriceQuerySet(models.QuerySet):
    def in_effect(self, tool: str, at: datetime):
        """The price version of server tool `tool` ("web_search", "web_fetch") in force at `at` (latest
        effective_from <= at), or None."""
        return self.filter(tool=tool, effective_from__lte=at).order_by("-effective_from").first()


#: Reservations older than this are stale: their process died before settling them.
STALE_AFTER = timedelta(hours=1)
#: The window of the rate limit on calls per person (spend_reserve).
RATE_WINDOW = timedelta(minutes=1)


class ReservationQuerySet(models.QuerySet):
    def open(self, now: datetime) -> ReservationQuerySet:
        """Unsettled and not stale reservations."""
        return self.filter(settled_at__isnull=True, created_at__gt=now - STALE_AFTER)

    def held(self, now: datetime) -> int:
        """Sum of open reservation amounts in pUSD."""
        return int(self.open(now).aggregate(total=Coalesce(Sum("amount"), 0))["total"])

    def expired(self, now: datetime) -> ReservationQuerySet:
        """Rows to delete: older than an hour (stale if open; past the rate-limit window if settled)."""
        return self.filter(expired_reservations(now))


def expired_reservations(now: datetime) -> Q:
    """The condition of ReservationQuerySet.expired, for a filtered aggregate."""
    return Q(created_at__lte=now - STALE_AFTER)


ROLLUP_SUMS = (*SUM_FIELDS, "calls", "unpriced_calls", "estimated_calls")


class RollupQuerySet(models.QuerySet):
    """Reads of the daily/monthly rollup tables (exact integer sums of the ledger)."""

    def for_days(self, first: date, last: date) -> RollupQuerySet:
        """Rows of days first..last inclusive (UsageDaily, UsageDayModel)."""
        return self.filter(day__gte=first, day__lte=last)

    def grouped(self, *keys: str, sums: tuple[str, ...] = ROLLUP_SUMS, latest: bool = True) -> list[dict]:
        """Sums (`sums`, default all) per `keys`, plus, with `latest`, last activity and (where the
        table has it) the latest username."""
        extra = {"last_activity": Max("last_activity")} if latest else {}
        if latest and "user_id" in keys:
            extra["username_label"] = Max("username")
        rows = self.order_by().values(*keys).annotate(**{n: Sum(n) for n in sums}, **extra)
        return [_as_ints(row) for row in rows]


def current_titles(conversation_ids, owner_id: int | None = None) -> dict[int, str]:
    """{id: title now} of those of `conversation_ids` that still exist (only `owner_id`'s when given).

    The ledger keeps the title a call was made under (and a deleted conversation's); pages show a
    conversation's current one. Billing imports nothing from the chat app, so the model is looked up
    by its label: one query, at most the page's rows.
    """
    ids = {pk for pk in conversation_ids if pk is not None}
    if not ids or not apps.is_installed("conversations"):
        return {}
    conversations = apps.get_model("conversations", "Conversation").objects.filter(pk__in=ids)
    if owner_id is not None:
        conversations = conversations.filter(owner_id=owner_id)
    return dict(conversations.values_list("pk", "title"))

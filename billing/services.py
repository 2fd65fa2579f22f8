"""Write side of billing: reserve spend before a call, record every call, report budget status.

How a reply is billed:
1. `spend_reserve()` — inside the chat's reply_start transaction, with the user's UserBudget row locked
   (SELECT … FOR UPDATE on PostgreSQL; SQLite serialises writers with BEGIN IMMEDIATE) — checks the rate
   limit and that spent this month + open reservations + this call's worst case <= the monthly limit,
   then holds the worst case as an open reservation. The worst case over-estimates safely: prompt tokens
   <= the prompt's UTF-8 byte count, billed at the dearest prompt rate (cache write 1h) of the band the
   prompt could fall in, plus max_tokens at that band's output rate.
2. `usage_record()` — one immutable ledger row with the tokens the API reported, priced with the version
   in force now, and settles the reservation in the same transaction.
Because the real cost of a call never exceeds what was held for it, the monthly spend of a user whose
calls all go through spend_reserve never exceeds the limit: the overshoot bound is zero.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from billing import conf
from billing.models import BudgetPolicy, ModelPrice, SiteBudget, SpendReservation, UsageRecord, UserBudget
from billing.money import format_usd, pico_to_usd
from billing.periods import Period, current_month
from billing.rollups import rollup_add

logger = logging.getLogger(__name__)

RATE_WINDOW = timedelta(minutes=1)


class SpendRefused(Exception):
    """A call was refused before it was made; str(exc) is the message shown to the user."""


class BudgetExceeded(SpendRefused):
    pass


class RateLimited(SpendRefused):
    pass


@dataclass(frozen=True)
class BudgetStatus:
    """A user's spend this month (pUSD) against their limit (None = unlimited)."""

    spent: int
    limit: int | None
    held: int
    period: Period

    @property
    def fraction(self) -> Decimal | None:
        if self.limit is None:
            return None
        if self.limit == 0:
            return Decimal(1)
        return Decimal(self.spent) / Decimal(self.limit)

    @property
    def percent(self) -> int | None:
        fraction = self.fraction
        return None if fraction is None else int(fraction * 100)

    @property
    def level(self) -> str:
        """'ok', 'warning' (>= 80 %) or 'exhausted' (>= 100 %)."""
        if self.limit is None:
            return "ok"
        if self.spent >= self.limit:
            return "exhausted"
        if self.spent * 100 >= self.limit * conf.WARNING_FRACTION_PERCENT:
            return "warning"
        return "ok"

    @property
    def unlimited(self) -> bool:
        return self.limit is None

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.spent - self.held)

    @property
    def spent_usd(self) -> Decimal:
        return pico_to_usd(self.spent)

    @property
    def limit_usd(self) -> Decimal | None:
        return pico_to_usd(self.limit)

    @property
    def resets_on(self):
        return self.period.last_day + timedelta(days=1)


def monthly_limit_for(user_id: int, budget: UserBudget | None = None) -> int | None:
    """The user's monthly limit in pUSD (None = unlimited): their override, else the site default."""
    if budget is None:
        budget = UserBudget.objects.filter(user_id=user_id).first()
    if budget is not None and budget.policy == BudgetPolicy.LIMIT:
        return budget.monthly_limit or 0
    if budget is not None and budget.policy == BudgetPolicy.UNLIMITED:
        return None
    return site_default_limit()


def site_default_limit() -> int | None:
    """The site default monthly limit in pUSD (admin-editable row; 'default' policy = env var)."""
    site = SiteBudget.objects.filter(pk=1).first()
    if site is not None and site.policy == BudgetPolicy.LIMIT:
        return site.monthly_limit or 0
    if site is not None and site.policy == BudgetPolicy.UNLIMITED:
        return None
    return conf.env_default_monthly_budget()


def worst_case_cost(*, model: str, prompt_bytes: int, max_tokens: int, at: datetime) -> int:
    """Upper bound in pUSD of what one call can cost (0 for an unpriced model)."""
    price = ModelPrice.objects.in_effect(model, at)
    if price is None:
        return 0
    rates, _banded = price.rates_for(prompt_bytes)  # bytes >= tokens, so this is the highest band reachable
    return max(0, prompt_bytes) * rates.max_prompt_rate + max(0, max_tokens) * rates.output


def _lock_budget_row(user_id: int) -> UserBudget:
    """Create if needed, then lock, the user's budget row (held until the caller's transaction ends)."""
    UserBudget.objects.get_or_create(user_id=user_id)
    return UserBudget.objects.select_for_update().get(user_id=user_id)


def _spent(user_id: int, period: Period) -> int:
    return UsageRecord.objects.for_user(user_id).for_period(period.start, period.end).total_cost()


def spend_reserve(*, user, model: str, prompt_bytes: int, max_tokens: int, message_id: int) -> None:
    """Check rate limit and budget, then hold this call's worst-case cost for `message_id`.

    Call inside the caller's transaction.atomic(). Raises RateLimited / BudgetExceeded, writing
    nothing the caller's rollback would keep.
    """
    now = timezone.now()
    with transaction.atomic():
        budget = _lock_budget_row(user.pk)
        SpendReservation.objects.filter(user_id=user.pk).expired(now).delete()

        per_minute = conf.rate_limit_per_minute()
        if per_minute:
            recent = SpendReservation.objects.filter(
                user_id=user.pk, created_at__gt=now - RATE_WINDOW
            ).count()
            if recent >= per_minute:
                raise RateLimited(
                    f"You're sending messages too fast: the limit is {per_minute} per minute. "
                    "Please wait a moment and try again."
                )

        worst = worst_case_cost(model=model, prompt_bytes=prompt_bytes, max_tokens=max_tokens, at=now)
        limit = monthly_limit_for(user.pk, budget)
        if limit is not None:
            period = current_month(now)
            spent = _spent(user.pk, period)
            held = SpendReservation.objects.filter(user_id=user.pk).held(now)
            if spent >= limit:
                raise BudgetExceeded(
                    f"You've reached your monthly budget of {format_usd(limit)} "
                    f"({format_usd(spent)} spent). It resets on {period.last_day + timedelta(days=1):%B %-d}; "
                    "ask an administrator if you need more."
                )
            if spent + held + worst > limit:
                available = max(0, limit - spent - held)
                raise BudgetExceeded(
                    f"This message could cost up to {format_usd(worst)}, but only {format_usd(available)} "
                    f"of your {format_usd(limit)} monthly budget is left"
                    + (" (other replies in progress hold part of it)" if held else "")
                    + ". Try a shorter conversation, or ask an administrator for a higher budget."
                )

        SpendReservation.objects.create(
            user_id=user.pk, message_id=message_id, model=model, amount=worst, created_at=now
        )


def _normalise_usage(usage: dict) -> dict:
    def count(key: str) -> int:
        value = usage.get(key) or 0
        return max(0, int(value))

    cache_total = count("cache_creation_input_tokens")
    write_5m = count("cache_creation_5m_input_tokens")
    write_1h = count("cache_creation_1h_input_tokens")
    if write_5m + write_1h < cache_total:
        # No (or an incomplete) TTL split: the unexplained remainder is billed as 5-minute writes.
        write_5m += cache_total - (write_5m + write_1h)
    return {
        "input_tokens": count("input_tokens"),
        "output_tokens": count("output_tokens"),
        "cache_write_5m_tokens": write_5m,
        "cache_write_1h_tokens": write_1h,
        "cache_read_tokens": count("cache_read_input_tokens"),
        "thinking_tokens": count("thinking_tokens"),
        "service_tier": str(usage.get("service_tier") or "")[:32],
        "inference_geo": str(usage.get("inference_geo") or "")[:32],
        "speed": str(usage.get("speed") or "")[:32],
    }


def usage_record(
    *,
    user_id: int,
    username: str,
    conversation_id: int | None,
    conversation_title: str,
    message_id: int | None,
    model: str,
    request_id: str,
    usage: dict,
    estimated: bool,
    purpose: str = "reply",
) -> UsageRecord:
    """Write one immutable ledger row for one API call and settle the message's open reservation.

    Priced with the version in force now (unpriced models get cost 0 and priced=False). Call inside the
    transaction that finalises the message. A call that failed before any tokens is recorded with zeros.
    """
    now = timezone.now()
    counts = _normalise_usage(usage)
    with transaction.atomic():
        # Serialise with spend_reserve for this user, so a reserve never sees the reservation
        # released without the ledger row that replaces it.
        UserBudget.objects.select_for_update().filter(user_id=user_id).first()

        price = ModelPrice.objects.in_effect(model, now)
        pricing: dict = {"priced": False}
        if price is not None:
            prompt_tokens = (
                counts["input_tokens"]
                + counts["cache_write_5m_tokens"]
                + counts["cache_write_1h_tokens"]
                + counts["cache_read_tokens"]
            )
            rates, banded = price.rates_for(prompt_tokens)
            pricing = {
                "priced": True,
                "price": price,
                "banded": banded,
                "rate_input": rates.input,
                "rate_output": rates.output,
                "rate_cache_write_5m": rates.cache_write_5m,
                "rate_cache_write_1h": rates.cache_write_1h,
                "rate_cache_read": rates.cache_read,
                "cost": rates.cost(
                    input=counts["input_tokens"],
                    output=counts["output_tokens"],
                    cache_write_5m=counts["cache_write_5m_tokens"],
                    cache_write_1h=counts["cache_write_1h_tokens"],
                    cache_read=counts["cache_read_tokens"],
                ),
                "cache_savings": counts["cache_read_tokens"] * max(0, rates.input - rates.cache_read),
            }
        else:
            logger.warning("No price for model %s: call recorded unpriced (request %s)", model, request_id)

        record = UsageRecord.objects.create(
            created_at=now,
            user_id=user_id,
            username=username[:150],
            conversation_id=conversation_id,
            conversation_title=(conversation_title or "")[:200],
            message_id=message_id,
            model=model,
            purpose=purpose[:32],
            request_id=(request_id or "")[:128],
            estimated=estimated,
            **counts,
            **pricing,
        )
        rollup_add(record)
        if message_id is not None:
            SpendReservation.objects.filter(message_id=message_id, settled_at__isnull=True).update(
                settled_at=now
            )
    return record


def reservation_release(*, message_id: int) -> None:
    """Drop the open reservation of `message_id` without a ledger row (no API call was made).

    The row is kept as settled so it still counts towards the rate limit.
    """
    SpendReservation.objects.filter(message_id=message_id, settled_at__isnull=True).update(
        settled_at=timezone.now()
    )


def budget_status(user) -> BudgetStatus:
    """This month's spend (in TIME_ZONE), limit (None = unlimited), open reservations, level."""
    now = timezone.now()
    period = current_month(now)
    return BudgetStatus(
        spent=_spent(user.pk, period),
        limit=monthly_limit_for(user.pk),
        held=SpendReservation.objects.filter(user_id=user.pk).held(now),
        period=period,
    )

"""Write side of billing: reserve spend before a call, record every call, report budget status.

How a reply is billed:
1. `spend_reserve()` — inside the chat's reply_start transaction, with the rows of the organisation and
   the user's team (those with a limit) and the user's UserBudget row locked in that order (SELECT … FOR
   UPDATE on PostgreSQL; SQLite serialises writers with BEGIN IMMEDIATE) — checks the rate limit and,
   at every level (billing/levels.py), that spent this month + open reservations + this call's worst
   case <= its monthly limit, then holds the worst case as an open reservation under the user's team.
   The worst case is an upper bound: the caller's bound of the prompt's tokens (the previous call's
   reported prompt plus what was added since, see conversations.services.prompt_tokens_bound) billed at
   the dearest prompt rate (cache write 1h) of the band it could fall in, plus `max_tokens` at that
   band's output rate. When what is left at the shortest level cannot cover the reply's full
   `max_tokens` but can cover at least MIN_REPLY_TOKENS, the call is granted a smaller `max_tokens` (the
   API enforces it, so the bound still holds) instead of being refused.
2. `hold_prompt_known()` — when the API's message_start reports the prompt's real counts (before any
   output is generated), the hold shrinks to the prompt's exact cost plus `max_tokens` at the output
   rate, so a cached prompt no longer holds budget at the cache-write rate while the reply streams.
3. `usage_record()` — one immutable ledger row with the tokens the API reported, priced with the version
   in force now, and settles the reservation in the same transaction. It locks in spend_reserve's order
   (the organisation's row when it has a cap, then the person's), so the write that passes a budget's
   alert threshold sees every other write's cost (billing/alerts.py).
Because the real cost of a call never exceeds what was held for it at any moment, the monthly spend of a
user, a team or the organisation whose calls all go through spend_reserve never exceeds its limit: the
overshoot bound is zero at every level.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import BigIntegerField, Count, ExpressionWrapper, F, Q, Subquery, Value
from django.db.models.functions import Cast, Least
from django.utils import timezone

from billing.alerts import note_crossings
from billing.keys import current_key_fingerprint
from billing.levels import (
    ORGANISATION,
    TEAM,
    UNREAD,
    USER,
    Level,
    Levels,
    levels_for,
    organisation_lock,
    read_standing,
    user_limits,
)
from billing.models import ModelPrice, SiteBudget, SpendReservation, UsageRecord, UserBudget, policy_limit
from billing.money import InexactAmount, format_money_together, usd_to_pico
from billing.periods import Period, current_month
from billing.queries import expired_reservations
from billing.rollups import rollup_add, rollup_replace
from billing.usage import NO_SERVER_TOOLS, LedgerLabels, ServerToolCaps, Usage
from teams.access import allowed_models, team_of
from teams.models import Membership

logger = logging.getLogger(__name__)

RATE_WINDOW = timedelta(minutes=1)
UNLIMITED_WORDS = {"", "unlimited", "none", "off"}


class SpendRefused(Exception):
    """A call was refused before it was made; str(exc) is the message shown to the user."""


class BudgetExceeded(SpendRefused):
    """A budget level cannot hold the call; `level` is the one that refused (for its alert)."""

    def __init__(self, message: str, level: Level | None = None) -> None:
        super().__init__(message)
        self.level = level


class RateLimited(SpendRefused):
    pass


@dataclass(frozen=True)
class BudgetStatus:
    """A user's spend this month (pUSD) against their limit (None = unlimited), and where their team's
    and the organisation's budgets stand (`levels`)."""

    spent: int
    limit: int | None
    held: int
    period: Period
    levels: Levels | None = None
    warning_percent: int = 80

    @property
    def personal(self) -> bool:
        """The limit in force is the user's own cap."""
        return bool(self.levels and self.levels.user.personal)

    @property
    def binding(self) -> Level | None:
        """The level the banner speaks of: the first used up, else the first past its warning (outermost
        first), else None."""
        if self.levels is None:
            return None
        for state in ("exhausted", "warning"):
            for level in self.levels.all:
                if level.state == state:
                    return level
        return None

    @property
    def state(self) -> str:
        """The worst level's state: 'ok', 'warning' or 'exhausted' (nothing can be sent)."""
        binding = self.binding
        return binding.state if binding is not None else self.level

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
        """'ok', 'warning' (>= CHAT_BUDGET_WARNING_PERCENT, default 80 %) or 'exhausted' (>= 100 %)."""
        if self.limit is None:
            return "ok"
        if self.spent >= self.limit:
            return "exhausted"
        if self.spent * 100 >= self.limit * self.warning_percent:
            return "warning"
        return "ok"

    @property
    def unlimited(self) -> bool:
        return self.limit is None

    @property
    def resets_on(self):
        return self.period.last_day + timedelta(days=1)


def parse_budget_usd(value: str | None) -> int | None:
    """'20' → pUSD; '' / 'unlimited' → None (no limit). Raises InexactAmount on garbage."""
    if value is None or value.strip().lower() in UNLIMITED_WORDS:
        return None
    pico = usd_to_pico(value)
    if pico < 0:
        raise InexactAmount(f"budget {value!r} is negative")
    return pico


def configured_default_limit() -> int | None:
    """settings.CHAT_DEFAULT_MONTHLY_BUDGET_USD in pUSD (None = unlimited)."""
    return parse_budget_usd(settings.CHAT_DEFAULT_MONTHLY_BUDGET_USD)


def site_default_limit() -> int | None:
    """The site default monthly limit in pUSD (None = unlimited): the SiteBudget row, else the setting."""
    site = SiteBudget.objects.filter(pk=1).first()
    if site is None:
        return configured_default_limit()
    return policy_limit(site.policy, site.monthly_limit, configured_default_limit)


def monthly_limit_for(user_id: int, budget: UserBudget | None = None) -> int | None:
    """The user's monthly limit in pUSD (None = unlimited): their override (or their own lower cap), else
    the site default."""
    if budget is None:
        budget = UserBudget.objects.filter(user_id=user_id).first()
    return user_limits(user_id, budget, site_default_limit)[0]


#: The smallest `max_tokens` a reply is granted when the budget left cannot cover the model's full one.
MIN_REPLY_TOKENS = 2_048


def worst_case_cost(
    *, model: str, prompt_tokens: int, max_tokens: int, at: datetime, cache_ttl: str = "1h"
) -> int:
    """Upper bound in pUSD of what one call can cost (0 for an unpriced model), given an upper bound
    of its prompt tokens and the cache lifetime it writes (its prompt tokens cost at most that write)."""
    price = ModelPrice.objects.in_effect(model, at)
    if price is None:
        return 0
    rates, _banded = price.rates_for(prompt_tokens)  # the highest band the prompt can reach
    return max(0, prompt_tokens) * rates.prompt_rate(cache_ttl) + max(0, max_tokens) * rates.output


def _affordable_max_tokens(
    *, model: str, prompt_tokens: int, max_tokens: int, at: datetime, available: int, cache_ttl: str = "1h"
) -> int:
    """The largest `max_tokens` <= `max_tokens` whose worst case fits in `available` pUSD (0 if none)."""
    price = ModelPrice.objects.in_effect(model, at)
    if price is None:
        return max_tokens
    rates, _banded = price.rates_for(prompt_tokens)
    left = available - max(0, prompt_tokens) * rates.prompt_rate(cache_ttl)
    if left < 0:
        return 0
    return max_tokens if rates.output == 0 else min(max_tokens, left // rates.output)


def _once(read):
    """`read`, called at most once however often the result is asked for (within one decision)."""
    cache = []

    def once():
        if not cache:
            cache.append(read())
        return cache[0]

    return once


def _lock_budget_row(user_id: int) -> UserBudget:
    """Create if needed, then lock, the user's budget row (held until the caller's transaction ends)."""
    budget = UserBudget.objects.select_for_update().filter(user_id=user_id).first()
    if budget is not None:
        return budget
    # A person's first call: make the row (another worker may make it at the same moment) and lock it.
    UserBudget.objects.bulk_create([UserBudget(user_id=user_id)], ignore_conflicts=True)
    return UserBudget.objects.select_for_update().get(user_id=user_id)


def _month_name(period: Period) -> str:
    return f"{period.first_day:%B}"


def _who_to_ask(level: Level) -> str:
    if level.scope == ORGANISATION:
        return "ask an administrator"
    if level.scope == TEAM:
        names = level.team.manager_names() if level.team is not None else []
        return f"ask {_joined(names)}" if names else "ask an administrator"
    if level.personal:
        return "you can raise your own limit on your usage page"
    return "ask an administrator if you need more"


def _joined(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _whose(level: Level) -> str:
    if level.scope == ORGANISATION:
        return "the organisation's"
    if level.scope == TEAM:
        return "your team's"
    return "your own" if level.personal else "your"


def used_up_message(level: Level, period: Period) -> str:
    """Why nothing more can be sent this month, naming the level and whom to ask."""
    shown_limit, shown_spent = format_money_together(level.limit, level.spent)
    resets = f"{period.last_day + timedelta(days=1):%B %-d}"
    if level.scope == USER and not level.personal:
        return (
            f"You've reached your monthly budget of {shown_limit} ({shown_spent} spent). "
            f"It resets on {resets}; ask an administrator if you need more."
        )
    if level.scope == USER:
        return (
            f"You've reached the monthly limit you set yourself ({shown_limit}, {shown_spent} spent). "
            f"It resets on {resets}; you can raise it on your usage page."
        )
    owner = "Your team's" if level.scope == TEAM else "The organisation's"
    return (
        f"{owner} budget for {_month_name(period)} is used up ({shown_spent} of {shown_limit}): "
        f"{_who_to_ask(level)}. It resets on {resets}."
    )


def too_dear_message(level: Level, smallest: int, period: Period, cheaper: str = "") -> str:
    """Why this message cannot be afforded although the level is not used up; `cheaper`: a model the
    user may choose whose smallest reply would fit, named as the first thing to try."""
    shown = format_money_together(smallest, level.available, level.limit)
    held = " (other replies in progress hold part of it)" if level.held else ""
    try_first = (
        f"It would fit on {cheaper}: choose it in this conversation's settings, or try" if cheaper else "Try"
    )
    if level.scope == USER and not level.personal:
        return (
            f"This message could cost up to {shown[0]}, but only {shown[1]} of your {shown[2]} monthly "
            f"budget is left{held}. {try_first} a shorter conversation, or ask an administrator for a "
            "higher budget."
        )
    return (
        f"This message could cost up to {shown[0]}, but only {shown[1]} of {_whose(level)} {shown[2]} "
        f"budget for {_month_name(period)} is left{held}. {try_first} a shorter conversation, or "
        f"{_who_to_ask(level)}."
    )


def cheaper_model_that_fits(
    *, user_id: int, model: str, prompt_tokens: int, tokens: int, available: int, at: datetime, cache_ttl: str
) -> str:
    """Among the models the user may use (their team's choice), other than `model`: the one whose worst
    case for `tokens` of reply is the largest that still fits in `available` pUSD ("" if none does).
    Priced models only: an unpriced one is never suggested to get round a budget."""
    best, best_cost = "", -1
    for candidate in allowed_models(team_of(user_id)):
        if candidate == model or ModelPrice.objects.in_effect(candidate, at) is None:
            continue
        cost = worst_case_cost(
            model=candidate, prompt_tokens=prompt_tokens, max_tokens=tokens, at=at, cache_ttl=cache_ttl
        )
        if best_cost < cost <= available:
            best, best_cost = candidate, cost
    return best


def spend_reserve(
    *,
    user,
    model: str,
    prompt_tokens: int,
    max_tokens: int,
    message_id: int,
    cache_ttl: str = "1h",
    tool_caps: ServerToolCaps = NO_SERVER_TOOLS,
    team=UNREAD,
    savepoint: bool = True,
) -> int:
    """Check rate limit and every budget level, then hold this call's worst-case cost for `message_id`.

    `prompt_tokens` is an upper bound of the prompt's tokens. Returns the `max_tokens` granted: the
    requested one, or less (at least MIN_REPLY_TOKENS, or the request if smaller) when what is left at
    the shortest level (organisation, team or user) cannot cover it; the call must be made with it.
    Call inside the caller's transaction.atomic(). Raises RateLimited / BudgetExceeded (naming the level
    that refused), writing nothing the caller's rollback would keep. `team`: the user's current team
    when the caller read it in this transaction (their model choice). `savepoint=False` when the caller
    rolls back its whole transaction on a refusal (a Send): two statements fewer.
    """
    now = timezone.now()
    site_default = _once(site_default_limit)  # the user's limit and their level may both need it
    with transaction.atomic(savepoint=savepoint):
        # Lock order: organisation, team, user (levels_for takes the first two).
        levels = levels_for(user.pk, None, site_default, lock=True, team_read=team)
        budget = _lock_budget_row(user.pk)
        levels.user.limit, levels.user.personal = user_limits(user.pk, budget, site_default)
        per_minute = max(0, settings.CHAT_RATE_LIMIT_PER_MINUTE)  # 0 disables the limit
        # One look at the person's holds: how many they took within the rate window, and whether any
        # expired (abandoned by a worker that died before settling them): those are deleted then.
        mine = SpendReservation.objects.filter(user_id=user.pk)
        seen = mine.aggregate(
            recent=Count("pk", filter=Q(created_at__gt=now - RATE_WINDOW)),
            expired=Count("pk", filter=expired_reservations(now)),
        )
        if seen["expired"]:
            mine.expired(now).delete()

        if per_minute:
            recent = mine.filter(created_at__gt=now - RATE_WINDOW)
            if seen["recent"] >= per_minute:
                oldest = recent.order_by("created_at").values_list("created_at", flat=True).first()
                wait = max(1, int((oldest + RATE_WINDOW - now).total_seconds() + 0.999))
                raise RateLimited(
                    f"You're sending messages too fast: the limit is {per_minute} per minute. "
                    f"Please wait {wait} s and try again."
                )

        limited = levels.limited()
        period = current_month(now)
        if limited:
            read_standing(levels, period, now)
        decision = hold_decide(
            limited,
            period,
            model=model,
            prompt_tokens=prompt_tokens,
            max_tokens=max_tokens,
            at=now,
            cache_ttl=cache_ttl,
            user_id=user.pk,
            tool_caps=tool_caps,
        )
        if decision.refusal:
            raise BudgetExceeded(decision.refusal, level=decision.level)
        worst, granted = decision.hold, decision.max_tokens

        SpendReservation.objects.create(
            user_id=user.pk,
            team_id=levels.team_id,
            team_name=levels.team_name[:100],
            message_id=message_id,
            model=model,
            amount=worst,
            max_tokens=granted,
            created_at=now,
        )
    return granted


def granted_max_tokens(message_id: int) -> int | None:
    """The `max_tokens` granted to the open reservation of `message_id` (None if it has none)."""
    return (
        SpendReservation.objects.filter(message_id=message_id, settled_at__isnull=True)
        .order_by("-created_at")
        .values_list("max_tokens", flat=True)
        .first()
    )


def hold_prompt_known(*, message_id: int, model: str, usage: Usage) -> None:
    """Shrink the open hold of `message_id` once the API reported the prompt's counts (message_start):
    to the prompt's exact cost plus the granted `max_tokens` at the output rate. Only ever lowers it,
    so it needs no lock: a smaller hold can only let other calls of the user through sooner."""
    price = ModelPrice.objects.in_effect(model, timezone.now())
    if price is None:
        return
    rates, _banded = price.rates_for(usage.prompt_tokens)
    prompt = rates.cost(
        input=usage.input_tokens,
        output=0,
        cache_write_5m=usage.cache_write_5m_tokens,
        cache_write_1h=usage.cache_write_1h_tokens,
        cache_read=usage.cache_read_tokens,
    )
    # One statement: the latest open hold, priced with its own granted max_tokens in SQL.
    latest = (
        SpendReservation.objects.filter(message_id=message_id, settled_at__isnull=True)
        .order_by("-created_at")
        .values("pk")[:1]
    )
    # max_tokens is an integer column: widen it before the product, which overflows 32 bits on
    # PostgreSQL (a 16,000-token grant at 10,000,000 pico-dollars a token is 1.6e11).
    wide = BigIntegerField()
    known = ExpressionWrapper(
        Value(prompt, output_field=wide) + Cast("max_tokens", wide) * Value(rates.output, output_field=wide),
        output_field=wide,
    )
    SpendReservation.objects.filter(pk=Subquery(latest), settled_at__isnull=True).update(
        amount=Least(F("amount"), known)
    )


def _pricing(price: ModelPrice | None, usage: Usage) -> dict:
    """The ledger columns pricing `usage` at `price` (an unpriced model: cost 0, priced=False)."""
    if price is None:
        return {"priced": False}
    rates, banded = price.rates_for(usage.prompt_tokens)
    return {
        "priced": True,
        "price": price,
        "banded": banded,
        "rate_input": rates.input,
        "rate_output": rates.output,
        "rate_cache_write_5m": rates.cache_write_5m,
        "rate_cache_write_1h": rates.cache_write_1h,
        "rate_cache_read": rates.cache_read,
        "cost": rates.cost(
            input=usage.input_tokens,
            output=usage.output_tokens,
            cache_write_5m=usage.cache_write_5m_tokens,
            cache_write_1h=usage.cache_write_1h_tokens,
            cache_read=usage.cache_read_tokens,
        ),
        "cache_savings": usage.cache_read_tokens * max(0, rates.input - rates.cache_read),
    }


def usage_record(
    *,
    labels: LedgerLabels,
    message_id: int | None,
    request_id: str,
    usage: Usage,
    estimated: bool,
    attempt_id: uuid.UUID | None = None,
    purpose: str = "reply",
    hold_id: int | None = None,
    cache_note: str = "",
) -> UsageRecord:
    """Write one immutable ledger row for one API call and settle the message's open reservation.

    Priced with the version of `labels.model` in force now (unpriced models get cost 0 and
    priced=False). Call inside the transaction that finalises the message. A call that failed before
    any tokens is recorded with a zero Usage(). A call is recorded once: if `attempt_id` already has
    its row, that row is returned and nothing is written (the database's unique key backs this up).
    `hold_id` names the reservation to settle when it was held under another id than `message_id`
    (a call about a conversation rather than one message, such as its title).
    """
    now = timezone.now()
    # No savepoint: nothing here is meant to fail and be carried on from, inside or outside the
    # caller's transaction (one that calls it has it all or nothing).
    with transaction.atomic(savepoint=False):
        # Lock order: the organisation, then the person (spend_reserve's). The organisation's lock (when
        # it has a cap) serialises every ledger write under it, so the one whose cost passes one of its
        # alert thresholds sees every other's: calls of two teams on two models share no other row.
        organisation = organisation_lock()
        # Serialise with spend_reserve for this user, so a reserve never sees the reservation
        # released without the ledger row that replaces it (and two ends of one call see each other).
        budget = UserBudget.objects.select_for_update().filter(user_id=labels.user_id).first()
        if attempt_id is not None:
            existing = UsageRecord.objects.filter(attempt_id=attempt_id).first()
            if existing is not None:
                return existing

        price = ModelPrice.objects.in_effect(labels.model, now)
        pricing = _pricing(price, usage)
        if price is None:
            logger.warning(
                "No price for model %s: call recorded unpriced (request %s)", labels.model, request_id
            )

        settles = hold_id if hold_id is not None else message_id
        team_id, team_name = _call_team(settles, labels.user_id)
        # Labels are truncated to their column sizes (PostgreSQL would refuse a longer value).
        record = UsageRecord.objects.create(
            created_at=now,
            user_id=labels.user_id,
            username=labels.username[:150],
            team_id=team_id,
            team_name=team_name[:100],
            conversation_id=labels.conversation_id,
            conversation_title=(labels.conversation_title or "")[:200],
            message_id=message_id,
            model=labels.model,
            purpose=purpose[:32],
            request_id=(request_id or "")[:128],
            key_fingerprint=current_key_fingerprint(),
            attempt_id=attempt_id,
            estimated=estimated,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_write_5m_tokens=usage.cache_write_5m_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            thinking_tokens=usage.thinking_tokens,
            service_tier=usage.service_tier[:32],
            inference_geo=usage.inference_geo[:32],
            speed=usage.speed[:32],
            cache_note=cache_note[:200],
            **pricing,
        )
        rollup_add(record)
        note_crossings(record, budget, site_default_limit, organisation=organisation)
        if settles is not None:
            SpendReservation.objects.filter(message_id=settles, settled_at__isnull=True).update(
                settled_at=now
            )
    return record


def _call_team(hold_message_id: int | None, user_id: int) -> tuple[int | None, str]:
    """The team a call was made under: its hold's (taken when the call started, so a person moved or a
    team deleted meanwhile changes nothing), else the user's team now (a call that held nothing)."""
    if hold_message_id is not None:
        hold = (
            SpendReservation.objects.filter(message_id=hold_message_id, user_id=user_id)
            .order_by("-created_at")  # the latest hold of the message: this call's
            .values_list("team_id", "team_name")
            .first()
        )
        if hold is not None:
            return hold
    membership = Membership.objects.filter(user_id=user_id).select_related("team").first()
    return (membership.team_id, membership.team.name) if membership else (None, "")


def usage_replace_estimate(
    *, attempt_id: uuid.UUID, request_id: str, usage: Usage, estimated: bool
) -> UsageRecord | None:
    """Replace the estimated ledger row of call `attempt_id` by the call's own count, once.

    A sweep writes an estimate for a reply whose worker stopped renewing its lease. When that worker was
    only slow, it finishes the call later knowing more than the sweep did: the whole text it received,
    and the API's reported usage if the stream got that far. That count takes the estimate's place in
    the same row (priced at the row's price version), the rollups move by the difference, and
    `replaced_at`/`replaced_cost` keep the trace. Never below the estimate while it is still one (an
    estimate only ever rounds up). Returns the row, or None when there is nothing to replace (no row,
    or a row that is already the API's own count). Call inside the transaction that ends the message.
    """
    with transaction.atomic(savepoint=False):
        owner = UsageRecord.objects.filter(attempt_id=attempt_id).values_list("user_id", flat=True).first()
        if owner is None:
            return None
        # The person's budget row first, then the ledger row: the order usage_record and spend_reserve lock in.
        UserBudget.objects.select_for_update().filter(user_id=owner).first()
        row = UsageRecord.objects.select_for_update().filter(attempt_id=attempt_id, estimated=True).first()
        if row is None or row.replaced_at is not None:
            return None
        if estimated:
            usage = replace(usage, output_tokens=max(usage.output_tokens, row.output_tokens))
        columns = {
            "request_id": (request_id or row.request_id)[:128],
            "estimated": estimated,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_write_5m_tokens": usage.cache_write_5m_tokens,
            "cache_write_1h_tokens": usage.cache_write_1h_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "thinking_tokens": usage.thinking_tokens,
            "replaced_at": timezone.now(),
            "replaced_cost": row.cost,
        }
        if row.priced:
            columns.update(_pricing(row.price, usage))
        UsageRecord.objects.replace_estimate(row.pk, **columns)
        new = UsageRecord.objects.get(pk=row.pk)
        rollup_replace(row, new)
    return new


def budget_status(user) -> BudgetStatus:
    """This month's spend (in TIME_ZONE), limit (None = unlimited), open reservations and state, at the
    user's level and (in `levels`) at their team's and the organisation's."""
    now = timezone.now()
    period = current_month(now)
    budget = UserBudget.objects.filter(user_id=user.pk).first()
    levels = levels_for(user.pk, budget, site_default_limit, lock=False)
    read_standing(levels, period, now)
    mine = levels.user
    return BudgetStatus(
        spent=mine.spent,
        limit=mine.limit,
        held=mine.held,
        period=period,
        levels=levels,
        warning_percent=mine.warning_percent,
    )


@dataclass(frozen=True)
class HoldPreview:
    """What a call's budget hold would be now, without holding anything: `refusal` is the sentence a
    Send would be refused with ("" if it would go through); `hold` the most the call may cost (pUSD);
    `max_tokens` what it would be granted; `level` the level with the least left (None: no budget)."""

    hold: int
    max_tokens: int
    level: Level | None
    refusal: str = ""


def hold_preview(
    *,
    status: BudgetStatus,
    model: str,
    prompt_tokens: int,
    max_tokens: int,
    cache_ttl: str,
    tool_caps: ServerToolCaps = NO_SERVER_TOOLS,
) -> HoldPreview:
    """The hold `spend_reserve` would take for a call (the same decision, nothing locked or written),
    against the standing in `status` (budget_status: holds of replies in progress included)."""
    limited = status.levels.limited() if status.levels is not None else []
    return hold_decide(
        limited,
        status.period,
        model=model,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        at=timezone.now(),
        cache_ttl=cache_ttl,
        tool_caps=tool_caps,
    )


def hold_decide(
    limited: list[Level],
    period: Period,
    *,
    model: str,
    prompt_tokens: int,
    max_tokens: int,
    at,
    cache_ttl: str,
    user_id: int | None = None,
    tool_caps: ServerToolCaps = NO_SERVER_TOOLS,
) -> HoldPreview:
    """The one decision behind a hold and its preview, given the levels with a budget (their standing
    read): refused (a level used up, or not even the smallest reply fits at the shortest level: the
    refusal names a cheaper model that would, for `user_id`), or the hold and the `max_tokens` granted
    (the request's, or less when the shortest level cannot cover its worst case)."""
    worst = worst_case_cost(
        model=model, prompt_tokens=prompt_tokens, max_tokens=max_tokens, at=at, cache_ttl=cache_ttl
    )
    if not limited:
        return HoldPreview(worst, max_tokens, None)
    for level in limited:
        if level.exhausted:
            return HoldPreview(0, 0, level, used_up_message(level, period))
    shortest = min(limited, key=lambda level: level.available)
    if worst <= shortest.available:
        return HoldPreview(worst, max_tokens, shortest)
    granted = _affordable_max_tokens(
        model=model,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        at=at,
        available=shortest.available,
        cache_ttl=cache_ttl,
    )
    least = min(max_tokens, MIN_REPLY_TOKENS)
    if granted < least:
        smallest = worst_case_cost(
            model=model, prompt_tokens=prompt_tokens, max_tokens=least, at=at, cache_ttl=cache_ttl
        )
        cheaper = ""
        if user_id is not None:
            cheaper = cheaper_model_that_fits(
                user_id=user_id,
                model=model,
                prompt_tokens=prompt_tokens,
                tokens=least,
                available=shortest.available,
                at=at,
                cache_ttl=cache_ttl,
            )
        return HoldPreview(0, 0, shortest, too_dear_message(shortest, smallest, period, cheaper))
    held = worst_case_cost(
        model=model, prompt_tokens=prompt_tokens, max_tokens=granted, at=at, cache_ttl=cache_ttl
    )
    return HoldPreview(held, granted, shortest)

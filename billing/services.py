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
   band's output rate, plus the server tools it may use (`max_uses` web searches and fetches) at their
   per-use prices. When what is left at the shortest level cannot cover the reply's full `max_tokens`
   but can cover at least MIN_REPLY_TOKENS, the call is granted a smaller `max_tokens` (the API enforces
   it, so the bound still holds) instead of being refused (the decision: billing/holds.py).
2. `hold_prompt_known()` — when the API's message_start reports the prompt's real counts (before any
   output is generated), the hold shrinks to the prompt's exact cost plus `max_tokens` at the output
   rate, so a cached prompt no longer holds budget at the cache-write rate while the reply streams (a
   hold with server tools stays whole: their results add input tokens later).
3. `usage_record()` — one immutable ledger row with the tokens and server-tool uses the API reported,
   priced with the versions in force now, and settles the reservation in the same transaction. It locks
   in spend_reserve's order (the organisation's row when it has a cap, then the person's), so the write
   that passes a budget's alert threshold sees every other write's cost (billing/alerts.py).
Because the real cost of a call never exceeds what was held for it at any moment, the monthly spend of a
user, a team or the organisation whose calls all go through spend_reserve never exceeds its limit: the
overshoot bound is zero at every level.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import BigIntegerField, Count, ExpressionWrapper, F, Q, Subquery, Value
from django.db.models.functions import Cast, Least
from django.utils import timezone

from billing.alerts import note_crossings
from billing.hold_state import HoldState
from billing.holds import HoldPreview, hold_decide, tool_prices, tool_rates
from billing.keys import current_key_fingerprint
from billing.levels import UNREAD, Level, Levels, levels_for, organisation_lock, read_standing, user_limits
from billing.models import ModelPrice, SiteBudget, SpendReservation, UsageRecord, UserBudget, policy_limit
from billing.money import InexactAmount, usd_to_pico
from billing.periods import Period, current_month
from billing.queries import RATE_WINDOW, expired_reservations
from billing.rollups import rollup_add, rollup_replace
from billing.tool_prices import ServerTool, ServerToolPrice
from billing.usage import NO_SERVER_TOOLS, LedgerLabels, ServerToolCaps, Usage
from teams.models import Membership

logger = logging.getLogger(__name__)

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


def site_default_limit(site=UNREAD) -> int | None:
    """The site default monthly limit in pUSD (None = unlimited): the SiteBudget row (`site`: as the
    caller read it, None if there is none), else the setting."""
    site = SiteBudget.objects.filter(pk=1).first() if site is UNREAD else site
    if site is None:
        return configured_default_limit()
    return policy_limit(site.policy, site.monthly_limit, configured_default_limit)


def monthly_limit_for(user_id: int, budget: UserBudget | None = None) -> int | None:
    """The user's monthly limit in pUSD (None = unlimited): their override (or their own lower cap), else
    the site default."""
    if budget is None:
        budget = UserBudget.objects.filter(user_id=user_id).first()
    return user_limits(user_id, budget, site_default_limit)[0]


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
    state: HoldState | None = None,
) -> int:
    """Check rate limit and every budget level, then hold this call's worst-case cost for `message_id`.

    `prompt_tokens` is an upper bound of the prompt's tokens. Returns the `max_tokens` granted: the
    requested one, or less (at least MIN_REPLY_TOKENS, or the request if smaller) when what is left at
    the shortest level (organisation, team or user) cannot cover it; the call must be made with it.
    Call inside the caller's transaction.atomic(). Raises RateLimited / BudgetExceeded (naming the level
    that refused), writing nothing the caller's rollback would keep. `team`: the user's current team
    when the caller read it in this transaction (their model choice). `savepoint=False` when the caller
    rolls back its whole transaction on a refusal (a Send): two statements fewer. `state`: the rows the
    hold decides on as the caller read them under SQLite's write lock (billing/hold_state.py).
    """
    now = timezone.now()
    mine = SpendReservation.objects.filter(user_id=user.pk)
    with transaction.atomic(savepoint=savepoint):
        if state is not None:  # read ahead, under the write lock the whole transaction holds
            site_default = partial(site_default_limit, state.site)
            levels = levels_for(
                user.pk, None, site_default, lock=False, team_read=team, organisation=state.organisation
            )
            budget = state.budget
            seen = {"recent": state.recent_holds, "expired": state.expired_holds}
        else:
            site_default = _once(site_default_limit)  # the user's limit and their level may both need it
            # Lock order: organisation, team, user (levels_for takes the first two).
            levels = levels_for(user.pk, None, site_default, lock=True, team_read=team)
            budget = _lock_budget_row(user.pk)
            # One look at the person's holds: how many they took within the rate window, and whether
            # any expired (abandoned by a worker that died before settling them): deleted then.
            seen = mine.aggregate(
                recent=Count("pk", filter=Q(created_at__gt=now - RATE_WINDOW)),
                expired=Count("pk", filter=expired_reservations(now)),
            )
        levels.user.limit, levels.user.personal = user_limits(user.pk, budget, site_default)
        per_minute = max(0, settings.CHAT_RATE_LIMIT_PER_MINUTE)  # 0 disables the limit
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
            # The user's standing as the Send read it ahead, when of this same month.
            user_known = state is not None and state.month == period.first_day
            if user_known:
                levels.user.spent, levels.user.held = state.spent, state.held
            read_standing(levels, period, now, user_known=user_known)
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
            tools_held=decision.tools_held,
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
    so it needs no lock: a smaller hold can only let other calls of the user through sooner. A hold
    with server tools is left whole: their results add input tokens to the call after message_start,
    at rates (the band) that the prompt's counts alone do not decide."""
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
    SpendReservation.objects.filter(pk=Subquery(latest), settled_at__isnull=True, tools_held=0).update(
        amount=Least(F("amount"), known)
    )


def _pricing(price: ModelPrice | None, usage: Usage, tools: tuple[ServerToolPrice | None, ...]) -> dict:
    """The ledger columns pricing `usage` at `price` and its server-tool uses at `tools` (the web search
    and web fetch versions, see billing.holds.tool_prices). An unpriced model: priced=False, its tokens
    cost 0 (its searches are still priced: their price is the same on every model)."""
    search, fetch = tools
    rates_of_tools = tool_rates(search, fetch)
    tool_cost = rates_of_tools.cost(
        web_searches=usage.web_search_requests, web_fetches=usage.web_fetch_requests
    )
    uses = {
        "web_search_requests": usage.web_search_requests,
        "web_fetch_requests": usage.web_fetch_requests,
        "web_search_price": search,
        "web_fetch_price": fetch,
        "rate_web_search": rates_of_tools.web_search,
        "rate_web_fetch": rates_of_tools.web_fetch,
        "server_tool_cost": tool_cost,
    }
    if price is None:
        return {**uses, "priced": False, "cost": tool_cost}
    rates, banded = price.rates_for(usage.prompt_tokens)
    return {
        **uses,
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
        )
        + tool_cost,
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
        tools = tool_prices(usage.web_search_requests, usage.web_fetch_requests, now)
        pricing = _pricing(price, usage, tools)
        if price is None:
            logger.warning(
                "No price for model %s: call recorded unpriced (request %s)", labels.model, request_id
            )
        for tool, uses, tool_price in zip(
            ServerTool, (usage.web_search_requests, usage.web_fetch_requests), tools, strict=False
        ):
            if uses and tool_price is None:
                logger.warning(
                    "No price for %s: %d uses recorded at 0 (request %s)", tool.label, uses, request_id
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
            usage = replace(
                usage,
                output_tokens=max(usage.output_tokens, row.output_tokens),
                web_search_requests=max(usage.web_search_requests, row.web_search_requests),
                web_fetch_requests=max(usage.web_fetch_requests, row.web_fetch_requests),
            )
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
        # Priced at the row's versions: its model price, and the tool prices it recorded or, for a tool the
        # estimate did not count, the version in force when the call was made.
        tools = (
            row.web_search_price or tool_prices(usage.web_search_requests, 0, row.created_at)[0],
            row.web_fetch_price or tool_prices(0, usage.web_fetch_requests, row.created_at)[1],
        )
        if row.priced or usage.web_search_requests or usage.web_fetch_requests:
            columns.update(_pricing(row.price if row.priced else None, usage, tools))
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

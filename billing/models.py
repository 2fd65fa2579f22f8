"""Prices, the immutable usage ledger, budgets and spend reservations.

All money is integer pico-dollars (see billing/money.py): rates are pUSD per token (= USD/MTok × 10^6),
or pUSD per use for server tools (= USD per 1,000 uses × 10^9), costs are pUSD. Convert to Decimal only
for display.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.db import models
from django.utils import timezone

from billing.errors import LedgerImmutable
from billing.money import format_money, rate_to_usd_per_mtok, rate_to_usd_per_thousand
from billing.queries import ModelPriceQuerySet, ReservationQuerySet, RollupQuerySet, UsageRecordQuerySet
from billing.rates import RATE_FIELDS, Rates, ToolRates
from billing.tool_prices import ServerToolPrice
from billing.usage import Usage


class ModelPrice(models.Model):
    """One price version of one model, in force from `effective_from` until the next version's date.

    Rates are pUSD per token (USD per million tokens × 1,000,000). Where `band_threshold_tokens` is set,
    a request whose prompt (input + cache writes + cache reads) has MORE tokens than that is billed
    wholly at the band rates.
    """

    model = models.CharField(max_length=100)
    effective_from = models.DateTimeField(help_text="This price applies to calls made from this moment on.")
    input_rate = models.BigIntegerField()
    output_rate = models.BigIntegerField()
    cache_write_5m_rate = models.BigIntegerField()
    cache_write_1h_rate = models.BigIntegerField()
    cache_read_rate = models.BigIntegerField()
    band_threshold_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Prompts above this many tokens are billed wholly at the band rates."
    )
    band_input_rate = models.BigIntegerField(null=True, blank=True)
    band_output_rate = models.BigIntegerField(null=True, blank=True)
    band_cache_write_5m_rate = models.BigIntegerField(null=True, blank=True)
    band_cache_write_1h_rate = models.BigIntegerField(null=True, blank=True)
    band_cache_read_rate = models.BigIntegerField(null=True, blank=True)
    note = models.CharField(max_length=300, blank=True, help_text="Source, caveats (e.g. 3rd-party figures).")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ModelPriceQuerySet.as_manager()

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["model", "effective_from"], name="modelprice_one_per_instant"),
        ]

    def __str__(self) -> str:
        return f"{self.model} from {timezone.localtime(self.effective_from):%Y-%m-%d %H:%M}"

    @property
    def base_rates(self) -> Rates:
        return Rates(*(getattr(self, f"{name}_rate") for name in RATE_FIELDS))

    @property
    def band_rates(self) -> Rates | None:
        if self.band_threshold_tokens is None:
            return None
        return Rates(*(getattr(self, f"band_{name}_rate") for name in RATE_FIELDS))

    def rates_for(self, prompt_tokens: int) -> tuple[Rates, bool]:
        """The rates a request with `prompt_tokens` prompt tokens is billed at, and whether banded."""
        band = self.band_rates
        if band is not None and prompt_tokens > self.band_threshold_tokens:
            return band, True
        return self.base_rates, False


class UsageRecord(models.Model):
    """One immutable ledger row per API call to Anthropic (reply, retry, title, anything).

    Immutable with one exception, made once and traced in `replaced_at`/`replaced_cost`: the estimated
    row a sweep wrote for a reply whose worker looked dead is replaced by that call's own count when the
    worker, only slow, finishes it (one row per call stays; the estimate is never added to).

    People and conversations are kept as plain ids plus labels, not foreign keys, so deleting a
    conversation, its messages or a user never removes or alters spend history. The rates used are
    snapshotted next to the price version, so editing prices never changes a recorded cost.
    """

    created_at = models.DateTimeField(default=timezone.now)
    user_id = models.BigIntegerField()
    username = models.CharField(max_length=150)
    # The team (cost centre) the call was made under, from its hold: set at call time, never rewritten.
    team_id = models.BigIntegerField(null=True, blank=True)
    team_name = models.CharField(max_length=100, blank=True)
    conversation_id = models.BigIntegerField(null=True, blank=True)
    conversation_title = models.CharField(max_length=200, blank=True)
    message_id = models.BigIntegerField(null=True, blank=True)
    model = models.CharField(max_length=100)
    purpose = models.CharField(max_length=32, default="reply")
    # Which prompt-cache lifetime the call wrote and why (the app chooses it per conversation), for the receipt.
    cache_note = models.CharField(max_length=200, blank=True, default="")
    request_id = models.CharField(max_length=128, blank=True)
    # Which API key made the call, as a stable fingerprint (billing.keys), never the key itself.
    key_fingerprint = models.CharField(max_length=16, blank=True, default="")
    attempt_id = models.UUIDField(
        null=True,
        blank=True,
        unique=True,
        help_text="The API call this row bills: one row per call, by this key.",
    )

    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0, help_text="Billed output, thinking included.")
    cache_write_5m_tokens = models.BigIntegerField(default=0)
    cache_write_1h_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    thinking_tokens = models.BigIntegerField(default=0, help_text="Informational: already inside output.")

    service_tier = models.CharField(max_length=32, blank=True)
    inference_geo = models.CharField(max_length=32, blank=True)
    speed = models.CharField(max_length=32, blank=True)
    estimated = models.BooleanField(
        default=False, help_text="The stream died before final usage: output counted from text received."
    )
    # The one change a row may ever see: a sweep's estimate replaced by the call's own count, when the
    # worker it took for dead turns out to have been only slow (see billing.services.usage_replace_estimate).
    replaced_at = models.DateTimeField(
        null=True, blank=True, help_text="When a sweep's estimate was replaced by the call's own count."
    )
    replaced_cost = models.BigIntegerField(
        null=True, blank=True, help_text="What the replaced estimate had billed, pUSD."
    )

    priced = models.BooleanField(
        default=True, help_text="False: no price existed for the model at call time."
    )
    price = models.ForeignKey(ModelPrice, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    banded = models.BooleanField(default=False, help_text="Billed at the price's long-prompt band rates.")
    rate_input = models.BigIntegerField(default=0)
    rate_output = models.BigIntegerField(default=0)
    rate_cache_write_5m = models.BigIntegerField(default=0)
    rate_cache_write_1h = models.BigIntegerField(default=0)
    rate_cache_read = models.BigIntegerField(default=0)
    cost = models.BigIntegerField(default=0, help_text="Exact cost in pico-dollars (10^-12 USD).")
    cache_savings = models.BigIntegerField(
        default=0, help_text="cache_read_tokens × (input rate − cache read rate), pUSD."
    )
    # Server tools that ran on Anthropic's side (usage.server_tool_use), priced per use at the versions in
    # force at call time (rate 0 and no version for a tool the call did not use); their cost is in `cost`.
    web_search_requests = models.BigIntegerField(default=0, db_default=0)
    web_fetch_requests = models.BigIntegerField(default=0, db_default=0)
    web_search_price = models.ForeignKey(
        ServerToolPrice, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    web_fetch_price = models.ForeignKey(
        ServerToolPrice, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    rate_web_search = models.BigIntegerField(default=0, db_default=0, help_text="pUSD per web search.")
    rate_web_fetch = models.BigIntegerField(default=0, db_default=0, help_text="pUSD per web fetch.")
    server_tool_cost = models.BigIntegerField(
        default=0, db_default=0, help_text="Of the cost: web searches and fetches × their rates, pUSD."
    )

    objects = UsageRecordQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["created_at"], name="usage_created"),
            models.Index(fields=["user_id", "created_at"], name="usage_user_created"),
            models.Index(fields=["model", "created_at"], name="usage_model_created"),
            models.Index(fields=["message_id"], name="usage_message"),
            models.Index(fields=["conversation_id"], name="usage_conversation"),
            models.Index(fields=["team_id", "created_at"], name="usage_team_created"),
        ]

    def __str__(self) -> str:
        return f"{self.username} {self.model} {format_money(self.cost)} ({self.purpose})"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise LedgerImmutable("Usage ledger rows are immutable once recorded.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise LedgerImmutable("Usage ledger rows cannot be deleted.")

    @property
    def rates(self) -> Rates:
        return Rates(*(getattr(self, f"rate_{name}") for name in RATE_FIELDS))

    @property
    def tool_rates(self) -> ToolRates:
        return ToolRates(web_search=self.rate_web_search, web_fetch=self.rate_web_fetch)

    def usage(self) -> Usage:
        """The token counts and server-tool uses this row bills."""
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_write_5m_tokens=self.cache_write_5m_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens,
            cache_read_tokens=self.cache_read_tokens,
            thinking_tokens=self.thinking_tokens,
            service_tier=self.service_tier,
            inference_geo=self.inference_geo,
            speed=self.speed,
            web_search_requests=self.web_search_requests,
            web_fetch_requests=self.web_fetch_requests,
        )

    @property
    def prompt_tokens(self) -> int:
        return (
            self.input_tokens
            + self.cache_write_5m_tokens
            + self.cache_write_1h_tokens
            + self.cache_read_tokens
        )

    def receipt_lines(self) -> list[dict]:
        """Tokens × rate = cost per category, for the receipt."""
        labels = {
            "input": ("Input", self.input_tokens),
            "cache_write_5m": ("Cache write (5 min)", self.cache_write_5m_tokens),
            "cache_write_1h": ("Cache write (1 hour)", self.cache_write_1h_tokens),
            "cache_read": ("Cache read", self.cache_read_tokens),
            "output": ("Output", self.output_tokens),
        }
        lines = []
        for name in ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output"):
            label, tokens = labels[name]
            rate = getattr(self, f"rate_{name}")
            lines.append(
                {
                    "label": label,
                    "tokens": tokens,
                    "rate_per_mtok": rate_to_usd_per_mtok(rate),
                    "cost": tokens * rate,
                }
            )
        return lines

    def tool_lines(self) -> list[dict]:
        """Uses × rate per use = cost for each server tool the call used, for the receipt."""
        used = (
            ("Web searches", self.web_search_requests, self.rate_web_search),
            ("Web fetches", self.web_fetch_requests, self.rate_web_fetch),
        )
        return [
            {
                "label": label,
                "uses": uses,
                "per_thousand": rate_to_usd_per_thousand(rate),
                "cost": uses * rate,
            }
            for label, uses, rate in used
            if uses
        ]


class BudgetPolicy(models.TextChoices):
    DEFAULT = "default", "Site default"
    LIMIT = "limit", "Monthly limit"
    UNLIMITED = "unlimited", "Unlimited"


def policy_limit(policy: str, monthly_limit: int | None, default: Callable[[], int | None]) -> int | None:
    """The monthly limit in pUSD a budget row sets (None = unlimited), for UserBudget and SiteBudget alike.

    LIMIT: its monthly_limit (a missing figure counts as 0: nothing may be spent); UNLIMITED: None;
    DEFAULT: whatever `default()` says (called only then, so a row with its own policy costs no look-up).
    """
    if policy == BudgetPolicy.LIMIT:
        return monthly_limit or 0
    if policy == BudgetPolicy.UNLIMITED:
        return None
    return default()


class SiteBudget(models.Model):
    """The site-wide default monthly budget (a single row, pk=1).

    Policy "default" means: use the CHAT_DEFAULT_MONTHLY_BUDGET_USD setting (from the environment).
    """

    policy = models.CharField(max_length=16, choices=BudgetPolicy.choices, default=BudgetPolicy.DEFAULT)
    monthly_limit = models.BigIntegerField(null=True, blank=True, help_text="pUSD, with policy 'limit'.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "site default budget"
        verbose_name_plural = "site default budget"

    def __str__(self) -> str:
        return "Site default budget"

    @classmethod
    def load(cls) -> SiteBudget:
        return cls.objects.get_or_create(pk=1)[0]


class UserBudget(models.Model):
    """A user's budget override, and the per-user row locked while reserving spend."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="budget"
    )
    policy = models.CharField(max_length=16, choices=BudgetPolicy.choices, default=BudgetPolicy.DEFAULT)
    monthly_limit = models.BigIntegerField(null=True, blank=True, help_text="pUSD, with policy 'limit'.")
    personal_limit = models.BigIntegerField(
        null=True, blank=True, help_text="pUSD: the lower monthly limit the user set for themselves."
    )
    warning_percent = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Alert at this share of the limit; empty: CHAT_BUDGET_WARNING_PERCENT.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Budget of {self.user}"


class OrganisationBudget(models.Model):
    """The organisation's monthly cap on everyone's spend together (a single row, pk=1; none: no cap)."""

    monthly_limit = models.BigIntegerField(
        null=True, blank=True, help_text="pUSD; empty: the organisation has no cap."
    )
    warning_percent = models.PositiveSmallIntegerField(
        default=80, help_text="Staff are alerted when this month's spend crosses this share of the cap."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "organisation budget"
        verbose_name_plural = "organisation budget"

    def __str__(self) -> str:
        return "Organisation budget"

    @classmethod
    def load(cls) -> OrganisationBudget:
        return cls.objects.get_or_create(pk=1)[0]


class AlertScope(models.TextChoices):
    ORGANISATION = "organisation", "Organisation"
    TEAM = "team", "Team"
    USER = "user", "User"


class BudgetAlert(models.Model):
    """A budget crossed its warning threshold (or was used up) in one month: stored once, so no alert is
    sent twice, whichever worker noticed it. `notified_at` is claimed by the one that sends the e-mail."""

    scope = models.CharField(max_length=16, choices=AlertScope.choices)
    subject_id = models.BigIntegerField(help_text="The team's or user's id (0 for the organisation).")
    subject_name = models.CharField(max_length=150)
    month = models.DateField(help_text="First day of the budget's month.")
    percent = models.PositiveSmallIntegerField(help_text="The threshold crossed: the warning's, or 100.")
    limit = models.BigIntegerField(help_text="The budget at the time, pUSD.")
    spent = models.BigIntegerField(help_text="Spent this month when it was noticed, pUSD.")
    created_at = models.DateTimeField(default=timezone.now)
    notified_at = models.DateTimeField(null=True, blank=True)
    recipients = models.TextField(blank=True, help_text="Who was e-mailed.")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "subject_id", "month", "percent"], name="budgetalert_once_per_period"
            )
        ]
        indexes = [models.Index(fields=["month", "scope"], name="budgetalert_month")]

    def __str__(self) -> str:
        return f"{self.get_scope_display()} {self.subject_name}: {self.percent}% of {self.month:%B %Y}"


class SpendReservation(models.Model):
    """A worst-case cost held for an API call in flight (open until settled by its ledger row).

    Settled rows stay for an hour as the per-user rate-limit log, then are deleted. Open rows older
    than an hour are stale (their process died): ignored by the budget and deleted.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # The team the call is held under (plain id: a team deleted mid-reply still settles against it).
    team_id = models.BigIntegerField(null=True, blank=True)
    team_name = models.CharField(max_length=100, blank=True)
    message_id = models.BigIntegerField()
    model = models.CharField(max_length=100)
    amount = models.BigIntegerField(help_text="Worst-case cost held, pUSD.")
    max_tokens = models.PositiveIntegerField(
        default=0,
        help_text="max_tokens granted to the call (less than the model's when the budget was short).",
    )
    tools_held = models.BigIntegerField(
        default=0,
        db_default=0,
        help_text="Of the amount: what the call's web searches and fetches may add, pUSD.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    settled_at = models.DateTimeField(null=True, blank=True)

    objects = ReservationQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["user", "created_at"], name="reservation_user_created"),
            models.Index(fields=["message_id"], name="reservation_message"),
            models.Index(fields=["team_id", "settled_at"], name="reservation_team_open"),
            models.Index(fields=["settled_at", "created_at"], name="reservation_open"),
        ]

    def __str__(self) -> str:
        return f"Reservation {format_money(self.amount)} for message {self.message_id}"


class UsageTotals(models.Model):
    """Summed ledger figures for one rollup key (all integers: exact)."""

    cost = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cache_write_5m_tokens = models.BigIntegerField(default=0)
    cache_write_1h_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    thinking_tokens = models.BigIntegerField(default=0)
    cache_savings = models.BigIntegerField(default=0)
    web_search_requests = models.BigIntegerField(default=0, db_default=0)
    web_fetch_requests = models.BigIntegerField(default=0, db_default=0)
    server_tool_cost = models.BigIntegerField(default=0, db_default=0)
    calls = models.BigIntegerField(default=0)
    unpriced_calls = models.BigIntegerField(default=0)
    estimated_calls = models.BigIntegerField(default=0)
    last_activity = models.DateTimeField()

    class Meta:
        abstract = True


class UsageDaily(UsageTotals):
    """Ledger sums per (local day in TIME_ZONE, user, model); maintained by usage_record()."""

    day = models.DateField()
    team_id = models.BigIntegerField(default=0, help_text="The ledger rows' team; 0: no team.")
    user_id = models.BigIntegerField()
    username = models.CharField(max_length=150)
    model = models.CharField(max_length=100)

    objects = RollupQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "team_id", "user_id", "model"], name="usagedaily_team_key")
        ]
        indexes = [
            models.Index(fields=["user_id", "day"], name="usagedaily_user_day"),
            # One team's days (the dashboard's team filter, the team page's chart).
            models.Index(fields=["team_id", "day"], name="usagedaily_team_day"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.username} {self.model}"


class UsageMonthly(UsageTotals):
    """Ledger sums per (local calendar month — its first day, user, model); maintained by usage_record()."""

    month = models.DateField()
    team_id = models.BigIntegerField(default=0, help_text="The ledger rows' team; 0: no team.")
    user_id = models.BigIntegerField()
    username = models.CharField(max_length=150)
    model = models.CharField(max_length=100)

    objects = RollupQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["month", "team_id", "user_id", "model"], name="usagemonthly_team_key"
            )
        ]
        indexes = [models.Index(fields=["user_id", "month"], name="usagemonthly_user_month")]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} {self.username} {self.model}"


class UsageDayModel(UsageTotals):
    """Ledger sums per (local day, model): the cost-per-day chart over long ranges."""

    day = models.DateField()
    model = models.CharField(max_length=100)

    objects = RollupQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "model"], name="usagedaymodel_key")]

    def __str__(self) -> str:
        return f"{self.day} {self.model}"


class UsageDailyUser(UsageTotals):
    """Ledger sums per (local day, user): the dashboard's per-user table over edge days."""

    day = models.DateField()
    team_id = models.BigIntegerField(default=0, help_text="The ledger rows' team; 0: no team.")
    user_id = models.BigIntegerField()
    username = models.CharField(max_length=150)

    objects = RollupQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "team_id", "user_id"], name="usagedailyuser_team_key")
        ]
        indexes = [
            models.Index(fields=["team_id", "day"], name="usagedailyuser_team_day"),
            # Some people's days (the team page's members, the dashboard's page of users).
            models.Index(fields=["user_id", "day"], name="usagedailyuser_user_day"),
            # Cost and calls per day, team and user, read from the index alone on PostgreSQL: a period's
            # edge days for the teams panel and for ordering the per-user table, the recent days of the
            # team forecasts. Key columns, not INCLUDE: SQLite has no INCLUDE.
            models.Index(
                fields=["day", "team_id", "user_id", "cost", "calls"], name="usagedailyuser_day_cost_calls"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.username}"


class UsageDailyTeam(UsageTotals):
    """Ledger sums per (local day, team; 0: no team): the teams panel's edge days and forecasts, and a
    team's spend per day, without reading every member's day."""

    day = models.DateField()
    team_id = models.BigIntegerField()
    team_name = models.CharField(max_length=100, blank=True)

    objects = RollupQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "team_id"], name="usagedailyteam_key")]

    def __str__(self) -> str:
        return f"{self.day} {self.team_name or 'no team'}"


class UsageMonthlyUser(UsageTotals):
    """Ledger sums per (local month, user): the dashboard's per-user table over whole months."""

    month = models.DateField()
    team_id = models.BigIntegerField(default=0, help_text="The ledger rows' team; 0: no team.")
    user_id = models.BigIntegerField()
    username = models.CharField(max_length=150)

    objects = RollupQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["month", "team_id", "user_id"], name="usagemonthlyuser_team_key")
        ]
        indexes = [
            models.Index(fields=["user_id", "month"], name="usagemonthlyuser_user_month"),
            models.Index(fields=["team_id", "month"], name="usagemonthlyuser_team_month"),
        ]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} {self.username}"


class UsageMonthlyTeam(UsageTotals):
    """Ledger sums per (local month, team; 0: no team): a team's spend, and the organisation's as the sum
    of a month's few rows, read by every budget hold."""

    month = models.DateField()
    team_id = models.BigIntegerField()
    team_name = models.CharField(max_length=100, blank=True)

    objects = RollupQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["month", "team_id"], name="usagemonthlyteam_key")]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} {self.team_name or 'no team'}"


class ReconciliationKind(models.TextChoices):
    INPUT = "input", "Input (uncached)"
    CACHE_READ = "cache_read", "Cache read"
    CACHE_WRITE_5M = "cache_write_5m", "Cache write (5 min)"
    CACHE_WRITE_1H = "cache_write_1h", "Cache write (1 hour)"
    OUTPUT = "output", "Output"
    WEB_SEARCH = "web_search", "Web searches"
    COST = "cost", "Cost"


class Reconciliation(models.Model):
    """Our ledger against Anthropic's report for one UTC day, model and token kind (or its web searches,
    or the day's cost, kind "cost" with model ""): tokens, searches, or pUSD for cost. Re-running a day
    updates its rows in place."""

    day = models.DateField(help_text="The UTC day compared.")
    model = models.CharField(max_length=100, blank=True)
    kind = models.CharField(max_length=16, choices=ReconciliationKind.choices)
    ours = models.BigIntegerField(default=0)
    theirs = models.BigIntegerField(default=0)
    difference = models.BigIntegerField(default=0, help_text="theirs − ours.")
    checked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-day", "model", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["day", "model", "kind"], name="reconciliation_one_per_kind")
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.model or 'all models'} {self.get_kind_display()}: {self.difference:+}"

    @property
    def exact(self) -> bool:
        return self.difference == 0


class Adjustment(models.Model):
    """An append-only organisation-level ledger entry settling a reconciliation's difference (pUSD,
    positive: Anthropic billed more than the ledger). Never edited or deleted; counted apart from
    per-user spending."""

    created_at = models.DateTimeField(default=timezone.now)
    day = models.DateField(help_text="The UTC day the difference was found on.")
    amount = models.BigIntegerField(help_text="pUSD; positive when Anthropic billed more than the ledger.")
    reason = models.TextField()
    staff = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    staff_name = models.CharField(max_length=150)
    reconciliation = models.ForeignKey(Reconciliation, on_delete=models.PROTECT, related_name="adjustments")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["day"], name="adjustment_day")]

    def __str__(self) -> str:
        return f"Adjustment {format_money(self.amount)} on {self.day} by {self.staff_name}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise LedgerImmutable("Adjustments are append-only: book a new one instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise LedgerImmutable("Adjustments cannot be deleted.")

"""Anthropic's Usage & Cost API (Admin API), read through the `anthropic` SDK: the usage report of our
API key per UTC day and model, and the cost report per UTC day.

This is the Admin API's one boundary, as conversations/replies/claude.py is the Messages API's: every
failure becomes a ReportError whose message a person can act on. A 429 (or 529) is waited out as its
`retry-after` says, a few times; every page is fetched before anything is returned, so a caller stores
a whole report or nothing.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import anthropic
from django.conf import settings

from billing.keys import current_key_fingerprint

USAGE_PATH = "/v1/organizations/usage_report/messages"
COST_PATH = "/v1/organizations/cost_report"
# Buckets per page asked for (the API allows up to 31 one-day buckets).
PAGE_DAYS = 31
RETRIES = 3
MAX_RETRY_WAIT_SECONDS = 60.0
PICO_PER_CENT = 10**10
NO_ADMIN_KEY = (
    "Set ANTHROPIC_ADMIN_KEY to an Admin API key of your Anthropic organisation (sk-ant-admin…, "
    "made in the Console under Settings → Admin keys) to reconcile the ledger with Anthropic."
)


class ReportError(Exception):
    """The report could not be read; the message says why, for a person."""


@dataclass(frozen=True)
class TokenCounts:
    """One day and model's tokens as Anthropic reports them, and its web searches (`server_tool_use`)."""

    input: int = 0
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    output: int = 0
    web_search: int = 0

    def plus(self, other: TokenCounts) -> TokenCounts:
        return TokenCounts(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[int, int, int, int, int, int]:
        return (
            self.input,
            self.cache_read,
            self.cache_write_5m,
            self.cache_write_1h,
            self.output,
            self.web_search,
        )


@dataclass(frozen=True)
class Report:
    """Anthropic's side for some UTC days: tokens per (day, model), cost in pUSD per day."""

    tokens: dict[tuple[date, str], TokenCounts]
    cost: dict[date, int]


def api_key_id() -> str:
    """The id of our API key in Anthropic's reports: ANTHROPIC_API_KEY_ID, or the offline Claude's
    name for the key the app uses (apikey_ + the ledger's fingerprint)."""
    return settings.ANTHROPIC_API_KEY_ID or f"apikey_{current_key_fingerprint()}"


def _client() -> anthropic.Anthropic:
    if not settings.ANTHROPIC_ADMIN_KEY:
        raise ReportError(NO_ADMIN_KEY)
    base_url = settings.ANTHROPIC_BASE_URL or None
    if not settings.ANTHROPIC_API_KEY and base_url is None:
        from offline_claude import default_server  # the app talks to the offline Claude: so does this

        base_url = default_server().base_url
    return anthropic.Anthropic(
        api_key=settings.ANTHROPIC_ADMIN_KEY, base_url=base_url, max_retries=0, timeout=30.0
    )


def _retry_after(exc: anthropic.APIStatusError) -> float:
    try:
        return max(0.0, float(exc.response.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0


def _get(client: anthropic.Anthropic, path: str, params: dict, sleep) -> dict:
    """One page, a 429/529 waited out as told (a few times)."""
    for attempt in range(RETRIES + 1):
        try:
            return client.get(path, cast_to=object, options={"params": params})
        except (anthropic.RateLimitError, anthropic.InternalServerError) as exc:
            wait = _retry_after(exc)
            if attempt == RETRIES or wait > MAX_RETRY_WAIT_SECONDS:
                raise ReportError(
                    f"Anthropic's Admin API is rate-limited or busy (HTTP {exc.status_code}); "
                    f"nothing was stored: try again in a few minutes."
                ) from exc
            sleep(wait)
        except anthropic.AuthenticationError as exc:
            raise ReportError(
                "Anthropic refused ANTHROPIC_ADMIN_KEY: it must be an Admin API key (sk-ant-admin…) "
                "of the organisation whose API key the app uses."
            ) from exc
        except anthropic.PermissionDeniedError as exc:
            raise ReportError("ANTHROPIC_ADMIN_KEY may not read the organisation's usage report.") from exc
        except anthropic.BadRequestError as exc:
            message = (
                (exc.body or {}).get("error", {}).get("message", str(exc))
                if isinstance(exc.body, dict)
                else exc
            )
            raise ReportError(f"Anthropic refused the report request: {message}") from exc
        except anthropic.APIStatusError as exc:
            raise ReportError(
                f"Anthropic's Admin API answered HTTP {exc.status_code}; nothing was stored."
            ) from exc
        except anthropic.APIConnectionError as exc:
            raise ReportError("Anthropic's Admin API could not be reached; nothing was stored.") from exc
    raise AssertionError("unreachable")


def _pages(client: anthropic.Anthropic, path: str, params: dict, sleep) -> list[dict]:
    """Every bucket of a report, following next_page."""
    buckets: list[dict] = []
    page = None
    while True:
        body = _get(client, path, {**params, **({"page": page} if page else {})}, sleep)
        buckets += body.get("data") or []
        page = body.get("next_page")
        if not body.get("has_more") or not page:
            return buckets


def _day_of(bucket: dict) -> date:
    return datetime.fromisoformat(bucket["starting_at"].replace("Z", "+00:00")).astimezone(UTC).date()


def fetch_minutes(
    start: datetime, end: datetime, *, sleep=time.sleep
) -> dict[tuple[datetime, str], TokenCounts]:
    """Anthropic's usage of our key per minute and model in [start, end) (whole UTC minutes, at most a
    day): where Anthropic booked calls near midnight."""
    params = {
        "starting_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ending_at": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "bucket_width": "1m",
        "limit": max(1, min(1440, int((end - start).total_seconds() // 60))),
        "group_by": ["model"],
        "api_key_ids": [api_key_id()],
    }
    minutes: dict[tuple[datetime, str], TokenCounts] = defaultdict(TokenCounts)
    for bucket in _pages(_client(), USAGE_PATH, params, sleep):
        at = datetime.fromisoformat(bucket["starting_at"].replace("Z", "+00:00")).astimezone(UTC)
        for row in bucket.get("results") or []:
            minutes[(at, row.get("model") or "")] = minutes[(at, row.get("model") or "")].plus(_counts(row))
    return dict(minutes)


def _counts(row: dict) -> TokenCounts:
    created = row.get("cache_creation") or {}
    tools = row.get("server_tool_use") or {}
    return TokenCounts(
        input=int(row.get("uncached_input_tokens") or 0),
        cache_read=int(row.get("cache_read_input_tokens") or 0),
        cache_write_5m=int(created.get("ephemeral_5m_input_tokens") or 0),
        cache_write_1h=int(created.get("ephemeral_1h_input_tokens") or 0),
        output=int(row.get("output_tokens") or 0),
        web_search=int(tools.get("web_search_requests") or 0),
    )


def fetch_report(first: date, last: date, *, sleep=time.sleep, page_days: int = PAGE_DAYS) -> Report:
    """Anthropic's usage (our key, per model) and cost for the UTC days first..last, all pages read."""
    client = _client()
    window = {
        "starting_at": f"{first.isoformat()}T00:00:00Z",
        "ending_at": f"{(last + timedelta(days=1)).isoformat()}T00:00:00Z",
        "bucket_width": "1d",
        "limit": page_days,
    }
    usage = _pages(
        client, USAGE_PATH, {**window, "group_by": ["model"], "api_key_ids": [api_key_id()]}, sleep
    )
    costs = _pages(client, COST_PATH, {**window, "group_by": ["description"]}, sleep)
    tokens: dict[tuple[date, str], TokenCounts] = defaultdict(TokenCounts)
    for bucket in usage:
        day = _day_of(bucket)
        for row in bucket.get("results") or []:
            key = (day, row.get("model") or "")
            tokens[key] = tokens[key].plus(_counts(row))
    cost: dict[date, int] = defaultdict(int)
    for bucket in costs:
        day = _day_of(bucket)
        for row in bucket.get("results") or []:
            # Amounts are decimal strings of cents; pUSD are exact integers for any amount to 10 places.
            cost[day] += int((Decimal(row.get("amount") or "0") * PICO_PER_CENT).to_integral_value())
    return Report(tokens=dict(tokens), cost=dict(cost))

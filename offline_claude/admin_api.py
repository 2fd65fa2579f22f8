"""The Admin API's Usage & Cost reports, served from the calls this offline Claude actually answered.

``GET /v1/organizations/usage_report/messages`` and ``GET /v1/organizations/cost_report`` with the real
API's shapes (tests/offline_claude/test_offline_admin_api.py states them): time buckets of
``{starting_at, ending_at, results}``, pages of ``{data, has_more, next_page}``, errors as
``{"type": "error", "error": {...}}``. Admin keys look like ``sk-ant-admin…``; any other key is a 401.

Every answered call is booked per API key, model and UTC minute (uncached input, cache reads, cache
writes 5m/1h, output) with its cost at this server's own prices. Two controls on a Messages request
make the report differ from what the response said, so a reconciler's red path can be tested:
``report_extra_tokens=N`` books N more output tokens than the response reported, and
``report_unseen=1`` books the call a second time (a call the client never saw).
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from .validation import ApiError, bad

ADMIN_KEY_PREFIX = "sk-ant-admin"
USAGE_PATH = "/v1/organizations/usage_report/messages"
COST_PATH = "/v1/organizations/cost_report"
KINDS = (
    "uncached_input_tokens",
    "cache_read_input_tokens",
    "cache_creation_5m",
    "cache_creation_1h",
    "output",
)
# Buckets per page: (default, maximum) per bucket width, as the API documents them.
LIMITS = {"1d": (7, 31), "1h": (24, 168), "1m": (60, 1440)}
WIDTHS = {"1d": timedelta(days=1), "1h": timedelta(hours=1), "1m": timedelta(minutes=1)}
USAGE_GROUPS = {"api_key_id", "workspace_id", "model", "service_tier", "context_window", "inference_geo"}
COST_GROUPS = {"workspace_id", "description"}
WORKSPACE = "wrkspc_offline_default"

# This server's own prices, USD per million tokens: input, output, cache write 5m, 1h, cache read.
PRICES: dict[str, tuple[str, str, str, str, str]] = {
    "claude-opus-5-5": ("4", "20", "5", "8", "0.20"),
    "claude-sonnet-5-5": ("2", "10", "2.50", "4", "0.10"),
    "claude-haiku-5-5": ("0.10", "0.50", "0.125", "0.20", "0.01"),
    "claude-fable-5-1": ("10", "50", "12.50", "20", "0.25"),
    "claude-fable-5-2": ("8", "40", "10", "16", "0.20"),
    "claude-opus-5": ("5", "25", "6.25", "10", "0.50"),
    "claude-sonnet-5": ("2", "10", "2.50", "4", "0.20"),
    "claude-opus-4-8": ("5", "25", "6.25", "10", "0.50"),
    "claude-opus-4-7": ("5", "25", "6.25", "10", "0.50"),
    "claude-opus-4-6": ("5", "25", "6.25", "10", "0.50"),
    "claude-opus-4-5": ("5", "25", "6.25", "10", "0.50"),
    "claude-sonnet-4-6": ("3", "15", "3.75", "6", "0.30"),
    "claude-sonnet-4-5": ("3", "15", "3.75", "6", "0.30"),
    "claude-haiku-4-5": ("1", "5", "1.25", "2", "0.10"),
}
# Web search: $10 per 1,000 searches, the same for every model (pico-dollars per search).
WEB_SEARCH_PICO = 10**10
# Prompts above this many tokens are billed wholly at the band rates (only Haiku 5.5 here).
BANDS = {"claude-haiku-5-5": (100_000, ("0.50", "2.50", "0.625", "1.00", "0.05"))}
_TOKEN_TYPES = {
    "uncached_input_tokens": "Input",
    "output_tokens": "Output",
    "cache_creation.ephemeral_5m_input_tokens": "Cache write (5m)",
    "cache_creation.ephemeral_1h_input_tokens": "Cache write (1h)",
    "cache_read_input_tokens": "Cache read",
}


def api_key_id(key: str) -> str:
    """The id this server gives an API key in its reports: ``apikey_`` and 16 hex digits of the key's
    SHA-256 (the fingerprint the app keeps on its ledger rows)."""
    return "apikey_" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _pico_per_token(usd_per_mtok: str) -> int:
    return int(Decimal(usd_per_mtok) * 10**6)


@dataclass
class Counts:
    """Token counts of a group of calls, and their cost in pico-dollars (exact integers)."""

    tokens: list[int] = field(default_factory=lambda: [0] * len(KINDS))
    costs: list[int] = field(default_factory=lambda: [0] * len(KINDS))
    web_searches: int = 0  # priced per search, not per token (WEB_SEARCH_PICO)

    def add(self, tokens: list[int], costs: list[int], web_searches: int = 0) -> None:
        for i in range(len(KINDS)):
            self.tokens[i] += tokens[i]
            self.costs[i] += costs[i]
        self.web_searches += web_searches

    @property
    def total_cost(self) -> int:
        """Tokens and searches, pico-dollars."""
        return sum(self.costs) + self.web_searches * WEB_SEARCH_PICO


@dataclass
class AdminFault:
    """Answer the Nth report request (1-based, counted per path) with `status`, `times` times."""

    path: str
    nth: int
    status: int
    times: int = 1
    retry_after: float = 1.0


class UsageBook:
    """The calls answered, per (API key id, model, UTC minute). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._minutes: dict[tuple[str, str, datetime], Counts] = defaultdict(Counts)
        self.faults: list[AdminFault] = []
        self._requests: dict[str, int] = defaultdict(int)

    def clear(self) -> None:
        with self._lock:
            self._minutes.clear()
            self.faults.clear()
            self._requests.clear()

    def record(
        self,
        *,
        api_key: str,
        model: str,
        uncached: int,
        cache_read: int,
        write_5m: int,
        write_1h: int,
        output: int,
        web_searches: int = 0,
        at: datetime | None = None,
    ) -> None:
        """Book one answered call at `at` (now by default), priced at this server's rates."""
        at = (at or datetime.now(UTC)).astimezone(UTC).replace(second=0, microsecond=0)
        tokens = [uncached, cache_read, write_5m, write_1h, output]
        rates = PRICES.get(model)
        band = BANDS.get(model)
        if band is not None and uncached + cache_read + write_5m + write_1h > band[0]:
            rates = band[1]
        if rates is None:
            costs = [0] * len(KINDS)
        else:
            # Rate order: input, output, write 5m, write 1h, read; KINDS order differs.
            per_kind = (rates[0], rates[4], rates[2], rates[3], rates[1])
            costs = [n * _pico_per_token(rate) for n, rate in zip(tokens, per_kind, strict=True)]
        with self._lock:
            self._minutes[(api_key_id(api_key), model, at)].add(tokens, costs, web_searches)

    def take_fault(self, path: str) -> AdminFault | None:
        """Count a report request on `path`; the fault it should get, if one was injected."""
        with self._lock:
            self._requests[path] += 1
            seen = self._requests[path]
            for fault in self.faults:
                if fault.path == path and fault.times > 0 and seen >= fault.nth:
                    fault.times -= 1
                    return fault
        return None

    def grouped(
        self, start: datetime, end: datetime, width: timedelta, key: Any
    ) -> dict[datetime, dict[tuple, Counts]]:
        """Counts per bucket start and group `key(api_key_id, model)`, for minutes in [start, end)."""
        out: dict[datetime, dict[tuple, Counts]] = defaultdict(lambda: defaultdict(Counts))
        with self._lock:
            items = list(self._minutes.items())
        for (key_id, model, minute), counts in items:
            if start <= minute < end:
                bucket = start + ((minute - start) // width) * width
                out[bucket][key(key_id, model)].add(counts.tokens, counts.costs, counts.web_searches)
        return out


def book_call(book: UsageBook, api_key: str, plan: Any, controls: Any) -> None:
    """Book a call answered to its end (a ReplyPlan): a compaction inside the call counts too (its cache
    writes, which the API does not split, as 5-minute writes); the report_* controls apply here."""
    u = plan.usage_in
    it = plan.compaction_iteration or {}
    counts = {
        "api_key": api_key,
        "model": plan.model,
        "uncached": u.input_tokens + it.get("input_tokens", 0),
        "cache_read": u.cache_read + it.get("cache_read_input_tokens", 0),
        "write_5m": u.created_5m + it.get("cache_creation_input_tokens", 0),
        "write_1h": u.created_1h,
        "output": plan.output_tokens + it.get("output_tokens", 0) + controls.report_extra_tokens,
        "web_searches": plan.web.searches if plan.web is not None else 0,
    }
    for _ in range(2 if controls.report_unseen else 1):
        book.record(**counts)


def _authenticate_admin(headers: dict[str, str], admin_key: str | None) -> None:
    key = headers.get("x-api-key", "")
    auth = headers.get("authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    if not key:
        raise ApiError(401, "authentication_error", "x-api-key header is required")
    if not key.startswith(ADMIN_KEY_PREFIX):
        raise ApiError(
            401, "authentication_error", "invalid x-api-key: the Admin API needs an Admin key (sk-ant-admin…)"
        )
    if admin_key is not None and key != admin_key:
        raise ApiError(401, "authentication_error", "invalid x-api-key")
    if not headers.get("anthropic-version"):
        raise bad("anthropic-version: header is required")


def _when(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise bad(f"{name}: Input should be a valid RFC 3339 datetime") from exc
    if parsed.tzinfo is None:
        raise bad(f"{name}: Input should be a valid RFC 3339 datetime with a timezone")
    return parsed.astimezone(UTC)


def _snap(moment: datetime, width: str) -> datetime:
    if width == "1d":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if width == "1h":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(second=0, microsecond=0)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _page_token(moment: datetime) -> str:
    return "page_" + base64.urlsafe_b64encode(_iso(moment).encode()).decode()


def _from_page_token(token: str) -> datetime:
    try:
        return _when(base64.urlsafe_b64decode(token.removeprefix("page_")).decode(), "page")
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad("page: invalid page token") from exc


def _window(params: dict[str, list[str]], width: str) -> tuple[datetime, datetime, int]:
    """The first bucket, the end of the range and the page's bucket count, from the query."""
    if "starting_at" not in params:
        raise bad("starting_at: Field required")
    start = _snap(_when(params["starting_at"][-1], "starting_at"), width)
    default_limit, max_limit = LIMITS[width]
    try:
        limit = int(params.get("limit", [default_limit])[-1])
    except ValueError as exc:
        raise bad("limit: Input should be a valid integer") from exc
    if not 1 <= limit <= max_limit:
        raise bad(f"limit: must be between 1 and {max_limit} for bucket_width {width}")
    now = datetime.now(UTC)
    end = _when(params["ending_at"][-1], "ending_at") if "ending_at" in params else None
    if end is not None and end <= start:
        raise bad("ending_at: must be after starting_at")
    if start > now:
        raise bad("starting_at: must not be in the future")
    if "page" in params:
        start = _from_page_token(params["page"][-1])
    last = _snap(now, width) + WIDTHS[width]
    end = min(end or last, last)
    return start, end, limit


def _groups(params: dict[str, list[str]], allowed: set[str]) -> list[str]:
    groups = params.get("group_by[]", []) + params.get("group_by", [])
    for group in groups:
        if group not in allowed:
            raise bad(f"group_by: unknown value {group!r}; allowed: {sorted(allowed)}")
    return groups


def _page(start: datetime, end: datetime, width: str, limit: int) -> tuple[list[datetime], str | None]:
    step = WIDTHS[width]
    buckets = []
    moment = start
    while moment < end and len(buckets) < limit:
        buckets.append(moment)
        moment += step
    return buckets, (_page_token(moment) if moment < end else None)


def usage_report(book: UsageBook, query: dict[str, list[str]]) -> dict[str, Any]:
    """The body of GET /v1/organizations/usage_report/messages."""
    width = query.get("bucket_width", ["1d"])[-1]
    if width not in LIMITS:
        raise bad("bucket_width: Input should be '1d', '1h' or '1m'")
    start, end, limit = _window(query, width)
    groups = _groups(query, USAGE_GROUPS)
    keys = set(query.get("api_key_ids[]", []) + query.get("api_key_ids", []))
    models = set(query.get("models[]", []) + query.get("models", []))
    buckets, next_start = _page(start, end, width, limit)
    page_end = buckets[-1] + WIDTHS[width] if buckets else start

    def key(key_id: str, model: str) -> tuple:
        if (keys and key_id not in keys) or (models and model not in models):
            return ("skip",)
        return (key_id if "api_key_id" in groups else None, model if "model" in groups else None)

    found = book.grouped(start, page_end, WIDTHS[width], key)
    data = []
    for bucket in buckets:
        results = []
        for group, counts in sorted(found.get(bucket, {}).items(), key=lambda kv: str(kv[0])):
            if group == ("skip",):
                continue
            uncached, read, w5, w1, out = counts.tokens
            results.append(
                {
                    "uncached_input_tokens": uncached,
                    "cache_creation": {"ephemeral_1h_input_tokens": w1, "ephemeral_5m_input_tokens": w5},
                    "cache_read_input_tokens": read,
                    "output_tokens": out,
                    "server_tool_use": {"web_search_requests": counts.web_searches},
                    "api_key_id": group[0],
                    "workspace_id": WORKSPACE if "workspace_id" in groups else None,
                    "model": group[1],
                    "service_tier": "standard" if "service_tier" in groups else None,
                    "context_window": "0-200k" if "context_window" in groups else None,
                    "inference_geo": "global" if "inference_geo" in groups else None,
                }
            )
        data.append(
            {"starting_at": _iso(bucket), "ending_at": _iso(bucket + WIDTHS[width]), "results": results}
        )
    return {"data": data, "has_more": next_start is not None, "next_page": next_start}


def cost_report(book: UsageBook, query: dict[str, list[str]]) -> dict[str, Any]:
    """The body of GET /v1/organizations/cost_report (1-day buckets; amounts in cents, decimal strings)."""
    width = query.get("bucket_width", ["1d"])[-1]
    if width != "1d":
        raise bad("bucket_width: Input should be '1d'")
    start, end, limit = _window(query, "1d")
    groups = _groups(query, COST_GROUPS)
    buckets, next_start = _page(start, end, "1d", limit)
    page_end = buckets[-1] + WIDTHS["1d"] if buckets else start
    by_description = "description" in groups
    found = book.grouped(
        start, page_end, WIDTHS["1d"], lambda _key, model: (model if by_description else None,)
    )
    data = []
    for bucket in buckets:
        results = []
        for (model,), counts in sorted(found.get(bucket, {}).items(), key=lambda kv: str(kv[0])):
            if model is None:
                results.append(_cost_row(counts.total_cost, None, None, None, groups))
                continue
            for i, token_type in enumerate(_TOKEN_TYPES):
                if counts.costs[_TOKEN_INDEX[token_type]] or counts.tokens[_TOKEN_INDEX[token_type]]:
                    results.append(
                        _cost_row(counts.costs[_TOKEN_INDEX[token_type]], model, token_type, i, groups)
                    )
            if counts.web_searches:
                row = _cost_row(counts.web_searches * WEB_SEARCH_PICO, model, None, None, groups)
                results.append({**row, "description": "Web Search Usage", "cost_type": "web_search"})
        data.append(
            {"starting_at": _iso(bucket), "ending_at": _iso(bucket + WIDTHS["1d"]), "results": results}
        )
    return {"data": data, "has_more": next_start is not None, "next_page": next_start}


_TOKEN_INDEX = {
    "uncached_input_tokens": 0,
    "cache_read_input_tokens": 1,
    "cache_creation.ephemeral_5m_input_tokens": 2,
    "cache_creation.ephemeral_1h_input_tokens": 3,
    "output_tokens": 4,
}


def _cost_row(pico: int, model: str | None, token_type: str | None, _i: Any, groups: list[str]) -> dict:
    cents = Decimal(pico).scaleb(-10)  # 1 cent = 10^10 pico-dollars
    described = model is not None
    return {
        "currency": "USD",
        "amount": format(cents.normalize(), "f") if pico else "0",
        "workspace_id": WORKSPACE if "workspace_id" in groups else None,
        "description": f"{_model_name(model)} Usage - {_TOKEN_TYPES[token_type]}"
        if token_type is not None
        else None,
        "cost_type": "tokens" if described else None,
        "context_window": "0-200k" if described else None,
        "model": model,
        "service_tier": "standard" if described else None,
        "token_type": token_type,
        "inference_geo": "global" if described else None,
    }


def _model_name(model: str | None) -> str:
    """ "claude-haiku-4-5" → "Claude Haiku 4.5", as the cost report's descriptions name models."""
    words = [part for part in (model or "").removeprefix("claude-").split("-")]
    names = [w.capitalize() for w in words if not w.isdigit()]
    version = ".".join(w for w in words if w.isdigit())
    return " ".join(["Claude", *names, *([version] if version else [])])


def answer(
    book: UsageBook, path: str, method: str, headers: dict[str, str], query: dict, admin_key: str | None
):
    """The (status, body, extra headers) of an Admin API request; raises ApiError for the API's errors."""
    if method != "GET":
        raise ApiError(405, "invalid_request_error", f"{method} not allowed on {path}")
    _authenticate_admin(headers, admin_key)
    fault = book.take_fault(path)
    if fault is not None:
        kinds = {429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}
        extra = {"retry-after": f"{fault.retry_after:g}"} if fault.status in (429, 529) else {}
        raise ApiError(fault.status, kinds.get(fault.status, "api_error"), "offline fault (Admin API)", extra)
    body = usage_report(book, query) if path == USAGE_PATH else cost_report(book, query)
    return 200, body, {}

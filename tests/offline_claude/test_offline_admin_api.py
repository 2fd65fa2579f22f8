"""The offline Claude's Admin API (Usage & Cost reports), driven by the real SDK, as the real API's shapes:

GET /v1/organizations/usage_report/messages?starting_at=…&ending_at=…&bucket_width=1d|1h|1m&limit=…
    &group_by[]=api_key_id|workspace_id|model|service_tier|context_window|inference_geo
    &api_key_ids[]=…&models[]=…&page=…
  → {"data": [{"starting_at", "ending_at", "results": [{"uncached_input_tokens",
       "cache_creation": {"ephemeral_1h_input_tokens", "ephemeral_5m_input_tokens"},
       "cache_read_input_tokens", "output_tokens", "server_tool_use": {"web_search_requests"} (searches),
       "api_key_id", "workspace_id", "model", "service_tier", "context_window", "inference_geo"}]}],
     "has_more": bool, "next_page": "page_…" | null}
GET /v1/organizations/cost_report?starting_at=…&ending_at=…&group_by[]=workspace_id|description&limit=…
  → {"data": [{"starting_at", "ending_at", "results": [{"currency": "USD", "amount": "<cents, decimal
       string>", "workspace_id", "description", "cost_type", "context_window", "model", "service_tier",
       "token_type", "inference_geo"}]}], "has_more", "next_page"}; searches are a "cost_type": "web_search" row
Errors: {"type": "error", "error": {"type", "message"}, "request_id"}: 401 authentication_error for no key
or a key that is not an Admin key (sk-ant-admin…), 400 invalid_request_error for bad parameters, 429
rate_limit_error with retry-after. Buckets are UTC; 1d pages hold at most 31 buckets (default 7).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import anthropic
import pytest

from offline_claude.admin_api import COST_PATH, USAGE_PATH, AdminFault, api_key_id
from offline_claude.testing import offline_claude_server, sync_client

ADMIN = "sk-ant-admin01-conformance"
MODEL = "claude-haiku-4-5"  # does not think by default; $1/MTok in, $5/MTok out


def _today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT00:00:00Z")


def _admin(handle, key: str = ADMIN) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=handle.base_url, api_key=key, max_retries=0)


def _call(handle, text: str = "hi", model: str = MODEL):
    return sync_client(handle).messages.create(
        model=model, max_tokens=100, messages=[{"role": "user", "content": text}]
    )


def test_the_usage_report_counts_the_calls_answered_per_key_and_model(fresh_offline_claude):
    first = _call(fresh_offline_claude, "hello [[offline reply_tokens=7]]").usage
    second = _call(fresh_offline_claude, "again [[offline reply_tokens=9]]").usage
    other = _call(fresh_offline_claude, "other [[offline reply_tokens=3]]", model="claude-sonnet-4-6").usage
    params = {"starting_at": _today(), "group_by": ["model", "api_key_id"], "bucket_width": "1d"}
    body = _admin(fresh_offline_claude).get(USAGE_PATH, cast_to=object, options={"params": params})

    assert body["has_more"] is False and body["next_page"] is None
    [bucket] = body["data"]
    assert bucket["starting_at"] == _today()
    assert bucket["ending_at"] == (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")
    rows = {row["model"]: row for row in bucket["results"]}
    assert set(rows) == {MODEL, "claude-sonnet-4-6"}
    haiku = rows[MODEL]
    assert haiku["api_key_id"] == api_key_id(fresh_offline_claude.api_key)
    assert haiku["uncached_input_tokens"] == first.input_tokens + second.input_tokens
    assert haiku["output_tokens"] == first.output_tokens + second.output_tokens == 16
    assert haiku["cache_creation"] == {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0}
    assert haiku["cache_read_input_tokens"] == 0
    assert haiku["server_tool_use"] == {"web_search_requests": 0}
    assert haiku["workspace_id"] is None and haiku["service_tier"] is None  # not grouped by them
    assert rows["claude-sonnet-4-6"]["output_tokens"] == other.output_tokens == 3

    only = {**params, "models": [MODEL], "api_key_ids": ["apikey_someone_else"]}
    body = _admin(fresh_offline_claude).get(USAGE_PATH, cast_to=object, options={"params": only})
    assert body["data"][0]["results"] == []


def test_the_cost_report_prices_the_calls_in_cents_as_decimal_strings(fresh_offline_claude):
    usage = _call(fresh_offline_claude, "hello [[offline reply_tokens=11]]").usage
    params = {"starting_at": _today(), "group_by": ["description"]}
    body = _admin(fresh_offline_claude).get(COST_PATH, cast_to=object, options={"params": params})
    results = body["data"][0]["results"]
    by_type = {row["token_type"]: row for row in results}
    assert by_type["output_tokens"]["amount"] == str(Decimal(usage.output_tokens * 5) / 10**4)  # $5/MTok
    assert by_type["uncached_input_tokens"]["amount"] == str(Decimal(usage.input_tokens) / 10**4)
    assert by_type["output_tokens"]["description"] == "Claude Haiku 4.5 Usage - Output"
    assert all(row["currency"] == "USD" and row["model"] == MODEL for row in results)

    total = _admin(fresh_offline_claude).get(
        COST_PATH, cast_to=object, options={"params": {"starting_at": _today()}}
    )
    [row] = total["data"][0]["results"]
    assert Decimal(row["amount"]) == sum(Decimal(r["amount"]) for r in results)
    assert row["description"] is None


def test_pages_follow_next_page_one_bucket_at_a_time(fresh_offline_claude):
    _call(fresh_offline_claude)
    start = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT00:00:00Z")
    admin = _admin(fresh_offline_claude)
    params = {"starting_at": start, "limit": 1, "group_by": ["model"]}
    days, page = [], None
    while True:
        body = admin.get(
            USAGE_PATH, cast_to=object, options={"params": {**params, **({"page": page} if page else {})}}
        )
        days += [(b["starting_at"], len(b["results"])) for b in body["data"]]
        page = body["next_page"]
        if not body["has_more"]:
            break
        assert page.startswith("page_")
    assert [n for _day, n in days] == [0, 0, 1]  # three days, the call on the last
    assert days[-1][0] == _today()


def test_a_non_admin_key_or_another_admin_key_is_a_401():
    with offline_claude_server(admin_key=ADMIN) as handle:
        for key, fragment in [
            ("sk-ant-api03-plain-key", "needs an Admin key (sk-ant-admin…)"),
            ("sk-ant-admin01-someone-else", "invalid x-api-key"),
        ]:
            with pytest.raises(anthropic.AuthenticationError) as raised:
                _admin(handle, key).get(
                    USAGE_PATH, cast_to=object, options={"params": {"starting_at": _today()}}
                )
            assert raised.value.body["error"]["type"] == "authentication_error"
            assert fragment in raised.value.body["error"]["message"]
            assert raised.value.request_id.startswith("req_")
        assert _admin(handle).get(USAGE_PATH, cast_to=object, options={"params": {"starting_at": _today()}})


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({}, "starting_at: Field required"),
        ({"starting_at": "yesterday"}, "RFC 3339"),
        ({"starting_at": "2026-01-01T00:00:00Z", "limit": 32}, "between 1 and 31"),
        ({"starting_at": "2026-01-01T00:00:00Z", "bucket_width": "1w"}, "bucket_width"),
        ({"starting_at": "2999-01-01T00:00:00Z"}, "future"),
        ({"starting_at": "2026-01-01T00:00:00Z", "group_by": ["user"]}, "group_by"),
    ],
)
def test_bad_parameters_are_a_400(fresh_offline_claude, params, fragment):
    with pytest.raises(anthropic.BadRequestError) as raised:
        _admin(fresh_offline_claude).get(USAGE_PATH, cast_to=object, options={"params": params})
    assert raised.value.body["error"]["type"] == "invalid_request_error"
    assert fragment in raised.value.body["error"]["message"]


def test_an_injected_429_carries_retry_after_and_the_next_request_succeeds(fresh_offline_claude):
    fresh_offline_claude.server.usage_book.faults.append(
        AdminFault(path=COST_PATH, nth=1, status=429, retry_after=2)
    )
    admin = _admin(fresh_offline_claude)
    with pytest.raises(anthropic.RateLimitError) as raised:
        admin.get(COST_PATH, cast_to=object, options={"params": {"starting_at": _today()}})
    assert raised.value.response.headers["retry-after"] == "2"
    assert raised.value.body["error"]["type"] == "rate_limit_error"
    assert admin.get(COST_PATH, cast_to=object, options={"params": {"starting_at": _today()}})["data"]


def test_controls_make_the_report_differ_from_the_response(fresh_offline_claude):
    seen = _call(fresh_offline_claude, "a [[offline reply_tokens=5 report_extra_tokens=4]]").usage
    twice = _call(fresh_offline_claude, "b [[offline reply_tokens=6 report_unseen=1]]").usage
    params = {"starting_at": _today(), "group_by": ["model"]}
    [row] = _admin(fresh_offline_claude).get(USAGE_PATH, cast_to=object, options={"params": params})["data"][
        0
    ]["results"]
    assert row["output_tokens"] == seen.output_tokens + 4 + 2 * twice.output_tokens
    assert row["uncached_input_tokens"] == seen.input_tokens + 2 * twice.input_tokens


def test_a_call_that_failed_before_its_answer_is_not_in_the_report(fresh_offline_claude):
    with pytest.raises(anthropic.APIStatusError):
        _call(fresh_offline_claude, "x [[offline fault=529]]")
    body = _admin(fresh_offline_claude).get(
        USAGE_PATH, cast_to=object, options={"params": {"starting_at": _today()}}
    )
    assert body["data"][0]["results"] == []


def test_web_searches_are_counted_in_the_usage_report_and_priced_per_search(fresh_offline_claude):
    search = {"type": "web_search_20250305", "name": "web_search"}
    usage = (
        sync_client(fresh_offline_claude)
        .messages.create(
            model=MODEL,
            max_tokens=2000,
            messages=[{"role": "user", "content": "Saturn rings [[offline web_searches=2]]"}],
            tools=[search],
        )
        .usage
    )
    assert usage.server_tool_use.web_search_requests == 2
    params = {"starting_at": _today(), "group_by": ["model"]}
    body = _admin(fresh_offline_claude).get(USAGE_PATH, cast_to=object, options={"params": params})
    [row] = body["data"][0]["results"]
    assert row["server_tool_use"] == {"web_search_requests": 2}
    assert row["uncached_input_tokens"] == usage.input_tokens and row["output_tokens"] == usage.output_tokens

    by_description = {"starting_at": _today(), "group_by": ["description"]}
    body = _admin(fresh_offline_claude).get(COST_PATH, cast_to=object, options={"params": by_description})
    rows = body["data"][0]["results"]
    [searches] = [r for r in rows if r["cost_type"] == "web_search"]
    assert searches["amount"] == "2" and searches["token_type"] is None  # $10 per 1,000: 1 cent each
    total = _admin(fresh_offline_claude).get(
        COST_PATH, cast_to=object, options={"params": {"starting_at": _today()}}
    )
    assert Decimal(total["data"][0]["results"][0]["amount"]) == sum(Decimal(r["amount"]) for r in rows)

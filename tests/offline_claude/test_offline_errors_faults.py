"""Validation errors and injected faults reach the SDK as the real API's would (claude-api.md table)."""

from __future__ import annotations

import time

import anthropic
import httpx2
import pytest

from offline_claude.testing import async_client, offline_claude_server, sync_client

MODEL = "claude-sonnet-5"  # does not think by default
OK = {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


def _with(**changes):
    body = {**OK, **changes}
    return {k: v for k, v in body.items() if v is not None}


@pytest.mark.parametrize(
    ("body", "exc", "fragment"),
    [
        (_with(model="claude-nonexistent"), anthropic.NotFoundError, "model: claude-nonexistent"),
        (_with(messages=[]), anthropic.BadRequestError, "at least one message"),
        (_with(messages=[{"role": "assistant", "content": "x"}]), anthropic.BadRequestError, "first message"),
        (
            _with(messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]),
            anthropic.BadRequestError,
            "prefill",
        ),
        (_with(max_tokens=0), anthropic.BadRequestError, "max_tokens"),
        (_with(max_tokens=200_000), anthropic.BadRequestError, "maximum allowed number of output tokens"),
        (_with(messages=[{"role": "user", "content": ""}]), anthropic.BadRequestError, "non-empty"),
        (
            _with(thinking={"type": "enabled", "budget_tokens": 500}),
            anthropic.BadRequestError,
            "budget_tokens",
        ),
        (_with(stop_sequences=[" "]), anthropic.BadRequestError, "stop sequence"),
    ],
)
def test_validation_errors_map_to_sdk_exceptions(offline_claude, body, exc, fragment):
    client = sync_client(offline_claude)
    with pytest.raises(exc) as info:
        # stream=True: the SDK refuses large non-streaming max_tokens client-side before sending.
        client.messages.create(**body, stream=True)
    err = info.value
    assert fragment in err.message
    expected_type = "not_found_error" if err.status_code == 404 else "invalid_request_error"
    assert err.body["type"] == "error" and err.body["error"]["type"] == expected_type
    assert err.request_id and err.request_id.startswith("req_")


@pytest.mark.parametrize("knob", ["temperature", "top_p", "top_k"])
def test_removed_sampling_parameters_rejected(offline_claude, knob):
    client = sync_client(offline_claude)
    with pytest.raises(anthropic.BadRequestError, match=knob):
        client.messages.create(**OK, extra_body={knob: 1})


def test_missing_max_tokens_and_unknown_field(offline_claude):
    with httpx2.Client(base_url=offline_claude.base_url) as http:
        headers = {"anthropic-version": "2026-10-21", "x-api-key": "k"}
        r = http.post("/v1/messages", headers=headers, json={"model": MODEL, "messages": OK["messages"]})
        assert r.status_code == 400 and "max_tokens: Field required" in r.json()["error"]["message"]
        assert r.json()["request_id"] == r.headers["request-id"]
        r = http.post("/v1/messages", headers=headers, json={**OK, "bogus": 1})
        assert r.status_code == 400 and r.json()["type"] == "error"
        r = http.post("/v1/messages", headers={"x-api-key": "k"}, json=OK)
        assert r.status_code == 400 and "anthropic-version" in r.json()["error"]["message"]
        r = http.get("/v1/nothing", headers=headers)
        assert r.status_code == 404 and r.headers["request-id"].startswith("req_")


def test_prompt_longer_than_context_window(offline_claude):
    client = sync_client(offline_claude)
    huge = "word " * 200_010  # 200,010 tokens > Haiku 4.5's 200K window
    with pytest.raises(anthropic.BadRequestError, match="prompt is too long"):
        client.messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": huge}]
        )


def test_authentication_when_server_has_a_key():
    with offline_claude_server(api_key="sk-right") as handle:
        with pytest.raises(anthropic.AuthenticationError) as info:
            sync_client(handle, api_key="sk-wrong").messages.create(**OK)
        assert info.value.body["error"]["type"] == "authentication_error"
        assert sync_client(handle, api_key="sk-right").messages.create(**OK).content
        with httpx2.Client(base_url=handle.base_url) as http:
            ok = http.post(
                "/v1/messages", headers={"x-api-key": "sk-right", "anthropic-version": "2026-10-21"}, json=OK
            )
            assert ok.status_code == 200
            missing = http.post("/v1/messages", headers={"anthropic-version": "2026-10-21"}, json=OK)
            assert missing.status_code == 401 and missing.headers["request-id"]


def _ctl(value: str) -> dict:
    return {"x-offline-claude": value}


@pytest.mark.parametrize(
    ("fault", "exc", "status"),
    [
        ("429", anthropic.RateLimitError, 429),
        ("529", anthropic.OverloadedError, 529),
        ("500", anthropic.InternalServerError, 500),
        ("401", anthropic.AuthenticationError, 401),
    ],
)
def test_status_faults_after_retries(fresh_offline_claude, fault, exc, status):
    client = sync_client(fresh_offline_claude, max_retries=2)
    with pytest.raises(exc) as info:
        client.messages.create(**OK, extra_headers=_ctl(f"fault={fault}, retry_after_ms=5"))
    assert info.value.status_code == status
    attempts = [s for (_, p, s) in fresh_offline_claude.server.request_log if p == "/v1/messages"]
    assert attempts == [status] * (1 if status == 401 else 3)  # 401 is not retried
    if status == 529:
        assert isinstance(info.value, anthropic.InternalServerError)


async def test_fault_once_then_retry_succeeds(fresh_offline_claude):
    client = async_client(fresh_offline_claude, max_retries=2)
    msg = await client.messages.create(**OK, extra_headers=_ctl("fault=529 fault_times=1 retry_after_ms=5"))
    assert msg.stop_reason == "max_tokens" and msg.content[0].text
    assert [s for (_, _, s) in fresh_offline_claude.server.request_log] == [529, 200]


def test_retry_after_seconds_is_honoured(fresh_offline_claude):
    client = sync_client(fresh_offline_claude, max_retries=1)
    start = time.monotonic()
    msg = client.messages.create(**OK, extra_headers=_ctl("fault=429 fault_times=1 retry_after=1"))
    elapsed = time.monotonic() - start
    assert msg.content and elapsed >= 0.95


def test_mid_stream_error_event(offline_claude):
    client = sync_client(offline_claude)
    got = []
    with pytest.raises(anthropic.APIStatusError) as info:
        with client.messages.stream(**OK, extra_headers=_ctl("fault=error fault_after=3")) as stream:
            for text in stream.text_stream:
                got.append(text)
    err = info.value
    assert type(err) is anthropic.APIStatusError  # not OverloadedError, not retried
    assert err.status_code == 200 and err.type == "overloaded_error"
    assert err.body["error"]["type"] == "overloaded_error"
    assert len(got) == 3


async def test_mid_stream_error_via_magic_word(offline_claude):
    client = async_client(offline_claude)
    stream = await client.messages.create(
        model=MODEL,
        max_tokens=200,
        messages=[{"role": "user", "content": "hello [[offline ttft_ms=0 tps=0 fault=error fault_after=2]]"}],
        stream=True,
    )
    deltas = 0
    with pytest.raises(anthropic.APIStatusError) as info:
        async for ev in stream:
            deltas += ev.type == "content_block_delta"
    assert info.value.status_code == 200 and deltas == 2


def test_dropped_connection(offline_claude):
    client = sync_client(offline_claude)
    with pytest.raises(httpx2.RemoteProtocolError):
        with client.messages.stream(**OK, extra_headers=_ctl("fault=drop fault_after=5")) as stream:
            for _ in stream.text_stream:
                pass


async def test_dropped_connection_async(offline_claude):
    client = async_client(offline_claude)
    stream = await client.messages.create(**OK, stream=True, extra_headers=_ctl("fault=drop fault_after=0"))
    with pytest.raises(httpx2.RemoteProtocolError):
        async for _ in stream:
            pass


def test_stall_gives_read_timeout(offline_claude):
    client = sync_client(offline_claude, timeout=httpx2.Timeout(5, read=0.4))
    seen = []
    with pytest.raises(httpx2.ReadTimeout):
        with client.messages.stream(**OK, extra_headers=_ctl("fault=stall fault_after=2")) as stream:
            for text in stream.text_stream:
                seen.append(text)
    assert len(seen) == 2  # the deltas before the stall arrived; then the read timed out


def test_clean_early_end(offline_claude):
    client = sync_client(offline_claude)
    with client.messages.stream(**OK, extra_headers=_ctl("fault=end fault_after=4")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.stop_reason is None
    assert final.content[0].text == text and text
    assert final.usage.output_tokens == 1  # only message_start's placeholder arrived


def test_bad_control_string_is_a_400(offline_claude):
    client = sync_client(offline_claude)
    with pytest.raises(anthropic.BadRequestError, match="unknown control"):
        client.messages.create(**OK, extra_headers=_ctl("speed=11"))


def test_random_fault_rate_is_seeded():
    def run() -> list[int]:
        with offline_claude_server(fault_rate=0.5, seed=7, fault_kinds="429,500") as handle:
            client = sync_client(handle)
            for _ in range(12):
                try:
                    client.messages.create(**OK)
                except anthropic.APIStatusError:
                    pass
            return [s for (_, _, s) in handle.server.request_log]

    first = run()
    assert first == run()
    assert 200 in first and (429 in first or 500 in first)


@pytest.mark.parametrize(("fault", "deltas_before"), [("malformed fault_after=3", 3), ("malformed_start", 0)])
async def test_malformed_chunk_fails_the_stream_after_the_deltas_before_it(
    offline_claude, fault, deltas_before
):
    client = async_client(offline_claude)
    stream = await client.messages.create(**OK, stream=True, extra_headers=_ctl(f"fault={fault}"))
    seen = 0
    with pytest.raises(ValueError):  # json.JSONDecodeError: the chunk is not valid JSON
        async for event in stream:
            seen += event.type == "content_block_delta"
    assert seen == deltas_before

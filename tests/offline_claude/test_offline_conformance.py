"""Conformance of the offline Claude with the real SDK: messages, usage, stop reasons, thinking, models."""

from __future__ import annotations

import asyncio

import anthropic
import httpx2
import pytest

from offline_claude import count_tokens
from offline_claude.testing import async_client, sync_client

# A model that does not think by default, so text and its token counts are the whole output.
MODEL = "claude-sonnet-5"


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_sync_create_content_and_usage(offline_claude):
    client = sync_client(offline_claude)
    msgs = user("Explain server-sent events to a new colleague")
    msg = client.messages.create(model=MODEL, max_tokens=2000, messages=msgs)
    assert msg.type == "message" and msg.role == "assistant" and msg.model == MODEL
    assert msg.id.startswith("msg_01")
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    text = msg.content[0].text
    assert "server-sent events" in text.lower()  # quotes the user's words
    assert "\n- " in text  # a bulleted list
    assert msg.usage.output_tokens == count_tokens(text)
    counted = client.messages.count_tokens(model=MODEL, messages=msgs)
    assert msg.usage.input_tokens == counted.input_tokens == count_tokens(msgs[0]["content"])
    assert msg.usage.cache_read_input_tokens == 0 and msg.usage.cache_creation_input_tokens == 0
    assert msg._request_id and msg._request_id.startswith("req_")


async def test_async_stream_helper_matches_final_message(offline_claude):
    client = async_client(offline_claude)
    async with client.messages.stream(
        model=MODEL, max_tokens=2000, messages=user("Write python code to count words in a file")
    ) as stream:
        chunks = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    text = "".join(chunks)
    assert text == final.content[0].text
    assert "```python\n" in text  # a fenced code block with a language when asked for code
    assert final.usage.output_tokens == count_tokens(text)
    assert final.stop_reason == "end_turn"
    assert stream.request_id.startswith("req_")


async def test_async_raw_create_stream_event_order(offline_claude):
    client = async_client(offline_claude)
    stream = await client.messages.create(model=MODEL, max_tokens=500, messages=user("hello"), stream=True)
    types = [ev.type async for ev in stream]
    assert types[0] == "message_start" and types[1] == "content_block_start"
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(types[2:-3]) == {"content_block_delta"}


def test_sync_stream_and_comparison_table(offline_claude):
    client = sync_client(offline_claude)
    with client.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=3000,
        messages=user("Compare PostgreSQL vs SQLite for a small team"),
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "| Aspect | PostgreSQL | SQLite |" in text
    assert final.content[0].text == text


def test_wire_format_bytes(offline_claude):
    """The raw bytes follow the transcript: event/data lines, blank-line separated, chunked framing."""
    with httpx2.Client(base_url=offline_claude.base_url) as http:
        with http.stream(
            "POST",
            "/v1/messages",
            headers={"x-api-key": "k", "anthropic-version": "2026-10-21", "content-type": "application/json"},
            json={"model": MODEL, "max_tokens": 50, "stream": True, "messages": user("hi")},
        ) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert resp.headers["transfer-encoding"] == "chunked"
            assert resp.headers["request-id"].startswith("req_")
            body = resp.read().decode()
    assert body.startswith('event: message_start\ndata: {"type":"message_start","message":{"id":"msg_01')
    assert '"output_tokens":1,' in body.split("\n\n")[0]  # placeholder in message_start
    assert 'event: ping\ndata: {"type":"ping"}\n\n' in body
    assert body.endswith('event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert "[DONE]" not in body


def test_max_tokens_stop_reason(offline_claude):
    client = sync_client(offline_claude)
    msg = client.messages.create(model=MODEL, max_tokens=7, messages=user("Tell me about gardening"))
    assert msg.stop_reason == "max_tokens"
    assert msg.usage.output_tokens == 7 == count_tokens(msg.content[0].text)


def test_stop_sequence(offline_claude):
    client = sync_client(offline_claude)
    msgs = user("Tell me about gardening in spring")
    full = client.messages.create(model=MODEL, max_tokens=2000, messages=msgs).content[0].text
    seq = full.split("\n\n")[1][:12]  # something that occurs in the second paragraph
    msg = client.messages.create(
        model=MODEL, max_tokens=2000, messages=msgs, stop_sequences=["@@never@@", seq]
    )
    assert msg.stop_reason == "stop_sequence" and msg.stop_sequence == seq
    assert msg.content[0].text == full[: full.index(seq)]
    assert msg.usage.output_tokens == count_tokens(msg.content[0].text)


def test_reply_tokens_control_exact_length(offline_claude):
    client = sync_client(offline_claude)
    msg = client.messages.create(
        model=MODEL,
        max_tokens=5000,
        messages=user("Tell me a lot about rivers"),
        extra_headers={"x-offline-claude": "reply_tokens=1200"},
    )
    assert msg.usage.output_tokens == 1200 == count_tokens(msg.content[0].text)
    assert msg.stop_reason == "end_turn"


def test_determinism_and_distinct_replies(offline_claude):
    client = sync_client(offline_claude)
    a1 = client.messages.create(model=MODEL, max_tokens=2000, messages=user("How do tides work?"))
    a2 = client.messages.create(model=MODEL, max_tokens=2000, messages=user("How do tides work?"))
    b = client.messages.create(model=MODEL, max_tokens=2000, messages=user("How do volcanoes form?"))
    assert a1.content[0].text == a2.content[0].text
    assert a1.content[0].text != b.content[0].text
    assert "volcanoes" in b.content[0].text


def test_magic_word_is_stripped_and_does_not_change_reply(offline_claude):
    client = sync_client(offline_claude)
    plain = client.messages.create(model=MODEL, max_tokens=2000, messages=user("Why is the sky blue?"))
    magic = client.messages.create(
        model=MODEL, max_tokens=2000, messages=user("Why is the sky blue? [[offline ttft_ms=0 tps=0]]")
    )
    assert "[[offline" not in magic.content[0].text
    assert magic.content[0].text == plain.content[0].text
    # Tokens are counted on what was actually sent (magic word included): honest billing.
    assert magic.usage.input_tokens > plain.usage.input_tokens


def test_thinking_summarized(offline_claude):
    client = sync_client(offline_claude)
    with client.messages.stream(
        model=MODEL,
        max_tokens=4000,
        messages=user("Plan a weekend trip"),
        thinking={"type": "adaptive", "display": "summarized"},
    ) as stream:
        kinds = [ev.type for ev in stream]
        final = stream.get_final_message()
    assert "thinking" in kinds and "signature" in kinds
    think, text = final.content
    assert think.type == "thinking" and think.thinking and think.signature
    assert text.type == "text"
    details = final.usage.output_tokens_details
    assert details.thinking_tokens == count_tokens(think.thinking)
    assert final.usage.output_tokens == details.thinking_tokens + count_tokens(text.text)


def test_thinking_omitted_has_only_signature(offline_claude):
    client = sync_client(offline_claude)
    for thinking in ({"type": "adaptive"}, {"type": "adaptive", "display": "omitted"}):
        stream = client.messages.create(
            model=MODEL, max_tokens=4000, messages=user("Plan a weekend trip"), thinking=thinking, stream=True
        )
        events = list(stream)
        deltas = [e.delta.type for e in events if e.type == "content_block_delta" and e.index == 0]
        assert deltas == ["signature_delta"]
        final = events[-2]
        assert final.type == "message_delta" and final.usage.output_tokens_details.thinking_tokens > 0


def test_models_list_and_retrieve(offline_claude):
    client = sync_client(offline_claude)
    ids = [m.id for m in client.models.list()]
    for expected in (
        "claude-sonnet-5-5",
        "claude-opus-5-5",
        "claude-haiku-5-5",
        "claude-sonnet-4-6",
        "claude-haiku-4-5",
        "claude-opus-4-8",
    ):
        assert expected in ids
    info = client.models.retrieve("claude-sonnet-4-6")
    assert info.max_input_tokens == 1_000_000 and info.max_tokens == 64_000
    page = client.models.list(limit=3)
    assert len(page.data) == 3 and page.has_more
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-nonexistent")


def test_prefill_allowed_on_older_model(offline_claude):
    client = sync_client(offline_claude)
    msg = client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=100,
        messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Sure,"}],
    )
    assert msg.stop_reason in ("end_turn", "max_tokens")


async def test_many_concurrent_streams(offline_claude):
    client = async_client(offline_claude)

    async def one(i: int) -> int:
        stream = await client.messages.create(
            model=MODEL,
            max_tokens=500,
            messages=user(f"Question number {i}"),
            stream=True,
            extra_headers={"x-offline-claude": "tps=400, tokens_per_delta=2"},
        )
        n = 0
        async for ev in stream:
            if ev.type == "message_delta":
                n = ev.usage.output_tokens
        return n

    results = await asyncio.gather(*(one(i) for i in range(60)))
    assert all(r > 20 for r in results)


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  \n "}, *user("go on")],
        [{"role": "user", "content": [{"type": "text", "text": " \t"}]}],
        user("\n\n"),
    ],
    ids=["assistant string", "user block", "user string"],
)
def test_whitespace_only_text_is_rejected_like_the_api(offline_claude, messages):
    client = sync_client(offline_claude)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=MODEL, max_tokens=100, messages=messages)
    assert "text content blocks must contain non-whitespace text" in caught.value.message


def test_refusal_control_stops_with_refusal_and_its_details(offline_claude):
    client = sync_client(offline_claude)
    with client.messages.stream(
        model=MODEL, max_tokens=500, messages=user("Something dangerous [[offline refuse=1]]")
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.stop_reason == "refusal"
    assert final.stop_details.type == "refusal" and final.stop_details.category
    assert text == final.content[0].text and final.usage.output_tokens == count_tokens(text)


def test_reply_that_would_pass_the_context_window_stops_with_model_context_window_exceeded(offline_claude):
    client = sync_client(offline_claude)
    messages = user("Explain caching in detail [[offline context_window=60]]")
    prompt = client.messages.count_tokens(model=MODEL, messages=messages).input_tokens
    final = client.messages.create(model=MODEL, max_tokens=2000, messages=messages)
    assert final.stop_reason == "model_context_window_exceeded"
    assert final.usage.output_tokens == 60 - prompt


def test_prompt_longer_than_the_models_window_is_rejected(offline_claude):
    client = sync_client(offline_claude)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model=MODEL, max_tokens=100, messages=user("word " * 50 + "[[offline context_window=20]]")
        )
    assert "prompt is too long" in caught.value.message


def test_haiku_4_5_has_a_200k_window(offline_claude):
    client = sync_client(offline_claude)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=user("word " * 200_001))
    assert "200000 maximum" in caught.value.message


@pytest.mark.parametrize(
    "model", ["claude-sonnet-5-5", "claude-opus-5-5", "claude-haiku-5-5", "claude-fable-5-1"]
)
def test_current_models_think_by_default_and_thinking_counts_toward_max_tokens(offline_claude, model):
    client = sync_client(offline_claude)
    final = client.messages.create(model=model, max_tokens=2000, messages=user("Plan a weekend trip"))
    assert final.content[0].type == "thinking" and final.content[0].signature
    thinking = final.usage.output_tokens_details.thinking_tokens
    assert thinking > 0
    assert final.usage.output_tokens == thinking + count_tokens(final.content[1].text)
    short = client.messages.create(model=model, max_tokens=thinking + 3, messages=user("Plan a weekend trip"))
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == thinking + 3


def test_each_model_takes_only_its_own_thinking_types(offline_claude):
    """Opus 5.5 always thinks; Sonnet 5.5 takes adaptive or between_tools, never disabled; Haiku 5.5
    may be told not to think (the docs' per-model thinking settings)."""
    client = sync_client(offline_claude)
    for model, kind in (
        ("claude-opus-5-5", "disabled"),
        ("claude-sonnet-5-5", "disabled"),
        ("claude-haiku-5-5", "between_tools"),
    ):
        with pytest.raises(anthropic.BadRequestError) as caught:
            client.messages.create(model=model, max_tokens=100, messages=user("hi"), thinking={"type": kind})
        assert (
            f'"thinking.type.{kind}" is not supported' in caught.value.message
            or "cannot be disabled" in caught.value.message
        )
    quiet = client.messages.create(
        model="claude-sonnet-5-5", max_tokens=500, messages=user("hi"), thinking={"type": "between_tools"}
    )
    assert [b.type for b in quiet.content] == ["text"]
    plain = client.messages.create(
        model="claude-haiku-5-5", max_tokens=500, messages=user("hi"), thinking={"type": "disabled"}
    )
    assert [b.type for b in plain.content] == ["text"]

"""Prompt-caching arithmetic across turns, and real pacing of deltas through the SDK (in-process)."""

from __future__ import annotations

import time

from offline_claude import count_tokens
from offline_claude.cache import PromptCache, build_segments
from offline_claude.testing import async_client, sync_client

MODEL = "claude-sonnet-5"
SYSTEM_TEXT = "You are a meticulous assistant for a school. " * 60
SYSTEM = [{"type": "text", "text": SYSTEM_TEXT, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]


def test_multi_turn_caching_reads_what_the_previous_turn_wrote(fresh_offline_claude):
    client = sync_client(fresh_offline_claude)
    s = count_tokens(SYSTEM_TEXT)
    u1 = "What is photosynthesis?"
    turn1 = [{"role": "user", "content": u1}]
    r1 = client.messages.create(
        model=MODEL, max_tokens=2000, system=SYSTEM, messages=turn1, cache_control={"type": "ephemeral"}
    )
    usage = r1.usage
    # System (1h breakpoint) and the user turn (automatic 5m breakpoint) are both written.
    assert usage.cache_read_input_tokens == 0
    assert usage.cache_creation.ephemeral_1h_input_tokens == s
    assert usage.cache_creation.ephemeral_5m_input_tokens == count_tokens(u1)
    assert usage.cache_creation_input_tokens == s + count_tokens(u1)
    assert usage.input_tokens == 0

    a1 = r1.content[0].text
    u2 = "And how does it differ in cacti?"
    turn2 = [*turn1, {"role": "assistant", "content": a1}, {"role": "user", "content": u2}]
    r2 = client.messages.create(
        model=MODEL, max_tokens=2000, system=SYSTEM, messages=turn2, cache_control={"type": "ephemeral"}
    )
    usage2 = r2.usage
    assert usage2.cache_read_input_tokens == s + count_tokens(u1)  # turn 1's whole prompt
    assert usage2.cache_creation.ephemeral_5m_input_tokens == count_tokens(a1) + count_tokens(u2)
    assert usage2.cache_creation.ephemeral_1h_input_tokens == 0
    total = client.messages.count_tokens(model=MODEL, system=SYSTEM, messages=turn2).input_tokens
    assert usage2.input_tokens + usage2.cache_read_input_tokens + usage2.cache_creation_input_tokens == total

    # Only the system breakpoint this time: lookups stop at the last breakpoint, so only the system
    # prompt is read and the whole conversation is plain input.
    r3 = client.messages.create(model=MODEL, max_tokens=2000, system=SYSTEM, messages=turn2)
    assert r3.usage.cache_read_input_tokens == s
    assert r3.usage.cache_creation_input_tokens == 0
    assert r3.usage.input_tokens == total - s


async def test_streaming_usage_and_per_key_isolation(fresh_offline_claude):
    msgs = [{"role": "user", "content": "Summarise the rules"}]
    a = async_client(fresh_offline_claude, api_key="key-a")
    b = async_client(fresh_offline_claude, api_key="key-b")
    s = count_tokens(SYSTEM_TEXT)
    async with a.messages.stream(model=MODEL, max_tokens=500, system=SYSTEM, messages=msgs) as st:
        first = None
        async for ev in st:
            if ev.type == "message_start":
                first = ev.message.usage
        final = await st.get_final_message()
    assert first.cache_creation_input_tokens == s and first.output_tokens == 1
    assert final.usage.cache_creation_input_tokens == s and final.usage.output_tokens > 1
    again = await a.messages.create(model=MODEL, max_tokens=500, system=SYSTEM, messages=msgs)
    assert again.usage.cache_read_input_tokens == s
    other = await b.messages.create(model=MODEL, max_tokens=500, system=SYSTEM, messages=msgs)
    assert other.usage.cache_read_input_tokens == 0 and other.usage.cache_creation_input_tokens == s


def test_cache_ttl_expiry_unit():
    now = [1000.0]
    cache = PromptCache(clock=lambda: now[0])
    body = {
        "model": MODEL,
        "system": [
            {"type": "text", "text": "long system one", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            {"type": "text", "text": "shorter part two", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [{"role": "user", "content": "hi"}],
    }
    segs = build_segments(body)
    first = cache.apply("k", MODEL, segs)
    assert (first.created_1h, first.created_5m, first.input_tokens) == (3, 3, 1)
    now[0] += 301  # the 5m entry expired, the 1h one lives on
    second = cache.apply("k", MODEL, segs)
    assert (second.cache_read, second.created_5m, second.created_1h) == (3, 3, 0)
    now[0] += 3601
    third = cache.apply("k", MODEL, segs)
    assert third.cache_read == 0 and third.cache_creation == 6


async def test_deltas_are_spread_over_time_async(offline_claude):
    client = async_client(offline_claude)
    start = time.monotonic()
    stream = await client.messages.create(
        model=MODEL,
        max_tokens=1000,
        messages=[{"role": "user", "content": "Pace me"}],
        stream=True,
        extra_headers={"x-offline-claude": "ttft_ms=300, tps=50, tokens_per_delta=1, reply_tokens=30"},
    )
    arrivals = []
    async for ev in stream:
        if ev.type == "content_block_delta":
            arrivals.append(time.monotonic() - start)
    assert len(arrivals) == 30
    # Lower bounds from the request's start only: the server never writes a delta before it is due
    # (under load it may write several due ones together, so gaps between arrivals prove nothing).
    assert arrivals[0] >= 0.28  # time to first token
    assert arrivals[-1] >= 0.3 + 29 / 50 * 0.95  # paced at 50 tokens/s, not all at once


def test_deltas_are_spread_over_time_sync_helper(offline_claude):
    client = sync_client(offline_claude)
    start = time.monotonic()
    stamps = []
    with client.messages.stream(
        model=MODEL,
        max_tokens=1000,
        messages=[
            {
                "role": "user",
                "content": "Pace me too [[offline ttft_ms=100 tps=100 tokens_per_delta=2 reply_tokens=40]]",
            }
        ],
    ) as stream:
        for _ in stream.text_stream:
            stamps.append(time.monotonic() - start)
    assert len(stamps) == 20
    assert stamps[0] >= 0.09  # time to first token
    assert stamps[-1] >= 0.1 + 39 / 100 * 0.95  # 40 tokens paced at 100 tokens/s


async def test_stamp_marks_each_text_delta_with_its_send_time(offline_claude):
    client = async_client(offline_claude)
    before = time.time()
    stream = await client.messages.create(
        model=MODEL,
        max_tokens=1000,
        messages=[
            {"role": "user", "content": "Stamp me [[offline ttft_ms=0 tps=50 reply_tokens=12 stamp=1]]"}
        ],
        stream=True,
    )
    stamps, arrivals = [], []
    async for ev in stream:
        if ev.type == "content_block_delta":
            text, sep, rest = ev.delta.text.partition("\u27e6")
            assert sep and rest.endswith("\u27e7") and "\u27e6" not in text
            stamps.append(float(rest[:-1]))
            arrivals.append(time.time())
    assert len(stamps) == 12
    # Taken when each delta was written (paced over ~0.22 s), not when the reply was planned.
    assert before <= stamps[0] and stamps[-1] - before >= 11 / 50 * 0.95
    assert all(s <= a for s, a in zip(stamps, arrivals, strict=True))  # stamped before it arrived
    plain = await client.messages.create(
        model=MODEL, max_tokens=1000, messages=[{"role": "user", "content": "Stamp me"}], stream=True
    )
    texts = [ev.delta.text async for ev in plain if ev.type == "content_block_delta"]
    assert texts and not any("\u27e6" in t for t in texts)

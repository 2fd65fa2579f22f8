"""What prompt caching saves on a long conversation, measured against the offline Claude's cache simulation.

A 20-turn conversation (2,000-token system prompt, 300-token user turns, 300-token replies) is sent
turn by turn with the app's own request builder (`conversations.replies.claude.build_params`), with no
caching, with the app's rolling 5-minute breakpoint and with a 1-hour one, for several gaps between
turns (the offline Claude's cache clock is advanced instead of waiting). It prints, per case, the
input side's cost as a share of its uncached price (input + cache writes + cache reads, each at its
own Sonnet 5.5 rate from the shipped price list, over all prompt tokens at the input rate).

    .venv/bin/python bench/prompt_caching.py
"""

from __future__ import annotations

import json
import os
import sys
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

import django  # noqa: E402

django.setup()

import anthropic  # noqa: E402

from conversations.replies.caching import choose_cache_ttl  # noqa: E402
from conversations.replies.claude import ReplyRequest, build_params  # noqa: E402
from offline_claude import start_in_background  # noqa: E402
from offline_claude.tokenizer import count_tokens  # noqa: E402

MODEL = "claude-sonnet-5-5"
TURNS = 20
WORDS = ["cache", "prompt", "window", "token", "reply", "budget", "ledger", "stream", "model", "turn"]


def text_of(tokens: int, seed: int) -> str:
    words = [WORDS[(seed * 7 + i * 3) % len(WORDS)] + str(seed % 10) for i in range(tokens)]
    text = " ".join(words)
    assert count_tokens(text) == tokens
    return text


def rates() -> dict[str, Decimal]:
    data = json.loads((ROOT / "billing/prices/anthropic-2026-11.json").read_text(), parse_float=Decimal)
    [row] = [p for p in data["prices"] if p["model"] == MODEL]
    return {k: Decimal(str(row[k])) for k in ("input", "cache_write_5m", "cache_write_1h", "cache_read")}


def run(handle, ttl: str, gap_s: float | list[float]) -> tuple[Decimal, int]:
    handle.reset()
    clock = [0.0]
    handle.server.cache._clock = lambda: clock[0]
    client = anthropic.Anthropic(base_url=handle.base_url, api_key=handle.api_key, max_retries=0)
    price = rates()
    system = text_of(2_000, 999)
    messages: list[dict] = []
    paid = uncached = Decimal(0)
    gaps = gap_s if isinstance(gap_s, list) else [gap_s]
    pauses: list[float] = []
    for turn in range(TURNS):
        messages.append({"role": "user", "content": text_of(300, turn)})
        # "auto": the app's choice from this person's pauses so far (the one before this turn included).
        chosen = choose_cache_ttl("auto", pauses).ttl if ttl == "auto" else ttl
        params = build_params(
            ReplyRequest(model=MODEL, messages=messages, max_tokens=16_000, system=system, cache_ttl=chosen)
        )
        reply = client.messages.create(**params, extra_headers={"x-offline-claude": "reply_tokens=300"})
        u = reply.usage
        split = u.cache_creation
        prompt = u.input_tokens + u.cache_creation_input_tokens + u.cache_read_input_tokens
        paid += (
            u.input_tokens * price["input"]
            + split.ephemeral_5m_input_tokens * price["cache_write_5m"]
            + split.ephemeral_1h_input_tokens * price["cache_write_1h"]
            + u.cache_read_input_tokens * price["cache_read"]
        )
        uncached += prompt * price["input"]
        text = "".join(b.text for b in reply.content if b.type == "text")
        messages.append({"role": "assistant", "content": text})
        clock[0] += gaps[turn % len(gaps)]
        pauses.append(gaps[turn % len(gaps)])
    return paid / uncached, prompt


def main() -> None:
    from django.conf import settings

    print(f"20-turn conversation on {MODEL}: 2,000-token system prompt, 300-token turns and replies")
    print("input-side cost as a share of its uncached price (lower is better)\n")
    gaps = [30, 120, 240, 360, 600, 1800, [60, 60, 60, 1200]]
    header = "caching           " + "".join(
        f"{f'gap {g} s' if not isinstance(g, list) else 'mixed':>12}" for g in gaps
    )
    print(header)
    with start_in_background(ttft_ms=0, tps=0) as handle:
        table = {}
        for label, ttl in (
            ("none", ""),
            ("rolling 5m", "5m"),
            ("rolling 1h", "1h"),
            ("auto (per pauses)", "auto"),
        ):
            table[ttl] = [run(handle, ttl, gap)[0] for gap in gaps]
            print(f"{label:<18}" + "".join(f"{float(s):>11.1%} " for s in table[ttl]))
        app_ttl = "" if settings.CHAT_PROMPT_CACHE_TTL == "off" else settings.CHAT_PROMPT_CACHE_TTL
        share, last_prompt = run(handle, app_ttl, [60, 60, 60, 1200])
    print("(mixed: three turns a minute apart, then a 20-minute pause, repeated)")
    better = [min(a, b) for a, b in zip(table["5m"], table["1h"], strict=True)]
    worst_gap = max(float(a - b) for a, b in zip(table["auto"], better, strict=True))
    print(
        f"\nauto: back to back (30 s) {float(table['auto'][0]):.1%} (target <= 18%), 6-minute pauses "
        f"{float(table['auto'][3]):.1%} (target <= 25%), at most {worst_gap * 100:+.1f} points from the better "
        "fixed choice at any pace (target <= +3)"
    )
    print(
        f"the app's setting (CHAT_PROMPT_CACHE_TTL={settings.CHAT_PROMPT_CACHE_TTL}), mixed pace: "
        f"{float(share):.1%} of the uncached input price; last prompt {last_prompt:,} tokens"
    )


if __name__ == "__main__":
    main()

"""Budget holds against the real cost of each call, through the app's own send path.

A 20-turn conversation on Sonnet 5.5 (2,000-token system prompt, 300-token user turns, 300-token
replies plus the thinking the offline Claude does by default) is sent turn by turn with
`conversations.replies.intents.send`, against an offline Claude, on a throwaway SQLite database with the
shipped price list. For every turn it prints:

- the hold taken when the message is sent (the prompt's token bound at the write rate of the cache
  lifetime the app chose for the call, plus max_tokens at the output rate), and the hold the earlier,
  byte-based bound at the 1-hour rate would have taken;
- the hold once message_start has reported the prompt (its exact cost plus max_tokens);
- the call's real cost from the ledger, and each hold as a multiple of it.

A second table does the same with `CHAT_MAX_TOKENS` set lower, to show how much of each hold is the
reply's max_tokens (which a hold must cover: the API bills up to it, and thinking cannot be seen
while it streams).

    .venv/bin/python bench/holds.py [--turns 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB = Path(tempfile.mkdtemp()) / "bench.sqlite3"
os.environ["DATABASE_URL"] = f"sqlite:///{DB}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
os.environ.pop("REDIS_URL", None)

from offline_claude import start_in_background  # noqa: E402
from offline_claude.tokenizer import count_tokens  # noqa: E402

OFFLINE = start_in_background(ttft_ms=0.0, tps=0.0, reply_tokens=300)
os.environ["ANTHROPIC_API_KEY"] = OFFLINE.api_key
os.environ["ANTHROPIC_BASE_URL"] = OFFLINE.base_url

import django  # noqa: E402

django.setup()

from channels.db import database_sync_to_async  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from conversations.replies import intents  # noqa: E402

MODEL = "claude-sonnet-5-5"
WORDS = ["cache", "prompt", "window", "token", "reply", "budget", "ledger", "stream", "model", "turn"]


def text_of(tokens: int, seed: int) -> str:
    words = [WORDS[(seed * 7 + i * 3) % len(WORDS)] + str(seed % 10) for i in range(tokens)]
    text = " ".join(words)
    assert count_tokens(text) == tokens
    return text


def usd(pico: int) -> str:
    return f"${pico / 1e12:.4f}"


@database_sync_to_async
def turn_figures(message_id: int) -> dict:
    from billing.holds import MIN_REPLY_TOKENS, worst_case_cost
    from billing.models import SpendReservation, UsageRecord
    from conversations.models import Message
    from conversations.replies import history

    assistant = Message.objects.select_related("conversation").get(pk=message_id)
    conversation = assistant.conversation
    reservation = SpendReservation.objects.get(message_id=message_id)
    [record] = UsageRecord.objects.filter(message_id=message_id)
    at = timezone.now()
    bound = history.prompt_tokens_bound(conversation, before=Message(pk=message_id, content=""))
    turns, size = history.reply_history(conversation, before=assistant)
    by_bytes = size + history.TURN_OVERHEAD_TOKENS * len(turns)
    return {
        "prompt": assistant.prompt_tokens,
        "output": assistant.output_tokens,
        "bound": bound,
        "bytes": by_bytes,
        # At the rate of the cache lifetime the app chose for this call (the receipt's note says which).
        "admission": worst_case_cost(
            model=MODEL,
            prompt_tokens=bound,
            max_tokens=reservation.max_tokens,
            at=at,
            cache_ttl="5m" if record.cache_note.startswith("5-minute") else "1h",
        ),
        "old": worst_case_cost(model=MODEL, prompt_tokens=by_bytes, max_tokens=reservation.max_tokens, at=at),
        "after_start": reservation.amount,
        "cost": record.cost,
        "max_tokens": reservation.max_tokens,
        # The least budget left with which this turn is still sent: a hold for the smallest reply.
        "needed": worst_case_cost(model=MODEL, prompt_tokens=bound, max_tokens=MIN_REPLY_TOKENS, at=at),
        "needed_before": worst_case_cost(
            model=MODEL, prompt_tokens=by_bytes, max_tokens=reservation.max_tokens, at=at
        ),
    }


async def conversation_run(turns: int, owner_name: str) -> list[dict]:
    from django.contrib.auth import get_user_model

    from conversations.models import Conversation
    from conversations.replies.generation import generation_wait

    user = await database_sync_to_async(get_user_model().objects.create_user)(
        owner_name, password="pw-bench-123"
    )
    conversation = await database_sync_to_async(Conversation.objects.create)(
        owner=user, model=MODEL, system_prompt=text_of(2_000, 999)
    )
    rows = []
    for turn in range(turns):
        assistant = await intents.send(conversation=conversation, text=text_of(300, turn))
        await generation_wait(assistant.pk, timeout=60)
        rows.append(await turn_figures(assistant.pk))
    return rows


def table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(
        "| turn | prompt tok | bound tok (bytes) | output tok | real cost | hold at send (x) | after message_start (x) | byte-based hold (x) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n, r in enumerate(rows, 1):
        print(
            f"| {n} | {r['prompt']:,} | {r['bound']:,} ({r['bytes']:,}) | {r['output']:,} | {usd(r['cost'])} "
            f"| {usd(r['admission'])} ({r['admission'] / r['cost']:.1f}) "
            f"| {usd(r['after_start'])} ({r['after_start'] / r['cost']:.1f}) "
            f"| {usd(r['old'])} ({r['old'] / r['cost']:.1f}) |"
        )
    ordinary = rows[1:] or rows
    for key, label in (
        ("admission", "hold at send"),
        ("after_start", "after message_start"),
        ("old", "byte-based"),
    ):
        ratio = statistics.median(r[key] / r["cost"] for r in ordinary)
        print(f"median {label} / real cost over turns 2-{len(rows)}: {ratio:.2f}x")
    last = rows[-1]
    print(
        f"budget left needed to send turn {len(rows)}: {usd(last['needed'])} "
        f"(byte-based holds without shorter grants: {usd(last['needed_before'])})"
    )
    print(
        f"calls whose real cost exceeded the hold: {sum(r['cost'] > r['after_start'] for r in rows)} of {len(rows)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    settings.CHAT_DEFAULT_MONTHLY_BUDGET_USD = "unlimited"
    settings.CHAT_TITLE_MODEL = ""  # replies only (a title call would hold against the first reply too)
    from conversations.catalog import reply_max_tokens

    full = reply_max_tokens(MODEL)
    rows = asyncio.run(conversation_run(args.turns, "bench-full"))
    table(f"{MODEL}, max_tokens {full:,} (the model's default; thinking counts toward it)", rows)
    settings.CHAT_MAX_TOKENS = 2_048
    rows = asyncio.run(conversation_run(args.turns, "bench-short"))
    table(f"{MODEL}, CHAT_MAX_TOKENS=2048", rows)
    OFFLINE.stop()


if __name__ == "__main__":
    main()

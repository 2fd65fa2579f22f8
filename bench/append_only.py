"""Append-only history, measured: every case that used to change what was sent before, through the app's
own send path, against an offline Claude that checks preserved thinking as the 5.5 models do.

Cases (Sonnet 5.5 unless said; 2,000-token system prompt, 300-token user turns, 300-token replies
plus the thinking the offline Claude does by default):

- plain: 20 turns back to back, and 20 turns with a 6-minute pause before each (the offline
  Claude's cache clock and the conversation's timestamps are moved instead of waiting);
- system prompt edited after turn 10, then 10 more turns;
- Continue: a reply cut off by max_tokens, continued, then 5 more turns;
- long: 75 turns on a 30,000-token window (compacted), and the same on Haiku 5.5, which has no
  compaction (oldest turns left out, the kept turns' thinking not sent back);
- window cut: the app believes in a larger window than the model has; replies run into it and the
  next requests are refitted.

Per case it prints the requests sent (replies, compactions, token counts), how many the prefix check
refused (the target is 0), the share of prompt tokens read from the cache, and the input side's cost
as a share of its uncached price (Sonnet 5.5's shipped rates).

    .venv/bin/python bench/append_only.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB = Path(tempfile.mkdtemp()) / "bench.sqlite3"
os.environ["DATABASE_URL"] = f"sqlite:///{DB}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
os.environ.pop("REDIS_URL", None)
os.environ["CHAT_RATE_LIMIT_PER_MINUTE"] = "0"
os.environ["CHAT_TITLE_MODEL"] = "off"

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

from conversations.replies import intents  # noqa: E402

SONNET, HAIKU = "claude-sonnet-5-5", "claude-haiku-5-5"
WORDS = ["cache", "prompt", "window", "token", "reply", "budget", "ledger", "stream", "model", "turn"]
CLOCK = [0.0]
OFFLINE.server.cache._clock = lambda: CLOCK[0]


def text_of(tokens: int, seed: int) -> str:
    words = [WORDS[(seed * 7 + i * 3) % len(WORDS)] + str(seed % 10) for i in range(tokens)]
    text = " ".join(words)
    assert count_tokens(text) == tokens
    return text


class Case:
    """One scenario's conversation, driven through intents.send / continue_reply like a person would."""

    def __init__(self, name: str, model: str = SONNET) -> None:
        self.name, self.model = name, model
        self.user = self.conversation = None
        self.failed: list[str] = []

    async def start(self) -> None:
        from django.contrib.auth import get_user_model

        from conversations.models import Conversation

        OFFLINE.reset()
        CLOCK[0] = 0.0
        username = self.name.replace(" ", "-")[:30]
        self.user = await database_sync_to_async(get_user_model().objects.create_user)(
            username, password="pw-bench-123"
        )
        self.conversation = await database_sync_to_async(Conversation.objects.create)(
            owner=self.user, model=self.model, system_prompt=text_of(2_000, 999)
        )

    async def turn(self, seed: int, *, pause: float = 5.0, controls: str = ""):
        from conversations.models import Message
        from conversations.replies.generation import generation_wait

        await self.pause(pause)
        text = text_of(300, seed) + (f" [[offline {controls}]]" if controls else "")
        assistant = await intents.send(conversation=self.conversation, text=text)
        await generation_wait(assistant.pk, timeout=120)
        reply = await database_sync_to_async(Message.objects.get)(pk=assistant.pk)
        if reply.status == Message.Status.ERROR:
            self.failed.append(reply.error)
        return reply

    async def pause(self, seconds: float) -> None:
        """Let `seconds` pass for the cache and for the conversation's timestamps."""
        from conversations.models import Message

        CLOCK[0] += seconds
        shift = timedelta(seconds=seconds)

        def move() -> None:
            for message in Message.objects.filter(conversation=self.conversation):
                Message.objects.filter(pk=message.pk).update(
                    created_at=message.created_at - shift, updated_at=message.updated_at - shift
                )

        await database_sync_to_async(move)()

    async def figures(self) -> dict:
        from billing.models import UsageRecord

        @database_sync_to_async
        def read() -> dict:
            rows = list(UsageRecord.objects.filter(conversation_id=self.conversation.pk))
            prompt = sum(
                r.input_tokens + r.cache_write_5m_tokens + r.cache_write_1h_tokens + r.cache_read_tokens
                for r in rows
            )
            rates = rows[0] if rows else None
            paid = sum(
                r.input_tokens * r.rate_input
                + r.cache_write_5m_tokens * r.rate_cache_write_5m
                + r.cache_write_1h_tokens * r.rate_cache_write_1h
                + r.cache_read_tokens * r.rate_cache_read
                for r in rows
            )
            uncached = sum(
                (r.input_tokens + r.cache_write_5m_tokens + r.cache_write_1h_tokens + r.cache_read_tokens)
                * r.rate_input
                for r in rows
            )
            return {
                "replies": sum(r.purpose == "reply" for r in rows),
                "compactions": sum(r.purpose == "compaction" for r in rows),
                "read_share": sum(r.cache_read_tokens for r in rows) / prompt if prompt else 0.0,
                "cost_share": Decimal(paid) / Decimal(uncached) if rates and uncached else Decimal(0),
            }

        figures = await read()
        stats = OFFLINE.server.stats
        figures["requests"] = stats["/v1/messages 200"] + stats["/v1/messages 400"]
        figures["counts"] = stats["/v1/messages/count_tokens 200"]
        figures["refused"] = stats["prefix check failed"]
        figures["errors"] = len(self.failed)
        return figures


async def plain(pause: float) -> Case:
    case = Case(f"plain {pause:.0f}s")
    await case.start()
    for turn in range(20):
        await case.turn(turn, pause=pause)
    return case


async def system_edit() -> Case:
    from conversations import services

    case = Case("system edit")
    await case.start()
    for turn in range(20):
        if turn == 10:
            await database_sync_to_async(services.conversation_update_settings)(
                conversation=case.conversation, model=SONNET, system_prompt=text_of(500, 777)
            )
            await database_sync_to_async(case.conversation.refresh_from_db)()
        await case.turn(turn)
    return case


async def continued() -> Case:
    from conversations.models import Message
    from conversations.replies.generation import generation_wait

    case = Case("continue")
    await case.start()
    for turn in range(5):
        await case.turn(turn)
    settings.CHAT_MAX_TOKENS = 200
    cut = await case.turn(5, controls="reply_tokens=600")
    assert cut.status == Message.Status.CUT_OFF, cut.status
    await case.pause(5)
    await intents.continue_reply(user=case.user, message_id=cut.pk)
    await generation_wait(cut.pk, timeout=60)
    settings.CHAT_MAX_TOKENS = 0
    for turn in range(6, 11):
        await case.turn(turn)
    return case


async def long(model: str) -> Case:
    case = Case(f"long {model}", model)
    await case.start()
    settings.CHAT_CONTEXT_WINDOW = 30_000
    OFFLINE.set_defaults(context_window=30_000)
    for turn in range(75):
        await case.turn(turn)
    settings.CHAT_CONTEXT_WINDOW = 0
    OFFLINE.set_defaults(context_window=None)
    return case


async def window_cut() -> Case:
    case = Case("window cut")
    await case.start()
    settings.CHAT_CONTEXT_WINDOW = 100_000  # the app believes in more than the model has
    OFFLINE.set_defaults(context_window=9_000)
    cuts = 0
    for turn in range(25):
        reply = await case.turn(turn)
        cuts += reply.stop_reason == "model_context_window_exceeded"
    settings.CHAT_CONTEXT_WINDOW = 0
    OFFLINE.set_defaults(context_window=None)
    case.name = f"window cut ({cuts} cut)"
    return case


async def main() -> None:
    await database_sync_to_async(call_command)("migrate", verbosity=0)
    settings.CHAT_MAX_TOKENS = 0
    results = []
    for run in (
        lambda: plain(5),
        lambda: plain(360),
        system_edit,
        continued,
        lambda: long(SONNET),
        lambda: long(HAIKU),
        window_cut,
    ):
        case = await run()
        results.append((case, await case.figures()))  # before the next case resets the server's counts
    print(
        "| case | replies | compactions | messages requests | count_tokens | refused by the prefix check | replies failed | cache read share | input cost / uncached |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for case, f in results:
        print(
            f"| {case.name} | {f['replies']} | {f['compactions']} | {f['requests']} | {f['counts']} | {f['refused']} "
            f"| {f['errors']} | {f['read_share']:.1%} | {float(f['cost_share']):.1%} |"
        )
        for error in case.failed[:3]:
            print(f"  failed: {error}")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    finally:
        OFFLINE.stop()

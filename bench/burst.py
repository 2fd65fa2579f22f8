"""A burst of Sends: N replies sent at once to one worker while another worker sweeps expired leases.

Runs real daphne workers (tests/servers.py) on one database and, with two workers, the Redis channel
layer (REDIS_URL, default redis://127.0.0.1:6379/7; PostgreSQL when DATABASE_URL points at one, else
a fresh SQLite file). Every tab opens on the first worker and sends at the same moment; each reply
streams 300 tokens at 30 tokens/s from the in-process offline Claude. Then, per N, it prints: replies
completed, replies swept as interrupted (taken for dead), characters a tab saw that the stored reply
lacks, estimated ledger rows, API calls without exactly one ledger row, open holds, and p50/p99 time
from Send to the first delta.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/burst.py [--replies 100 200 300] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from websockets.exceptions import ConnectionClosed  # noqa: E402

from bench.restarts import lost_chars, wait_until_nothing_streams  # noqa: E402
from tests.servers import DELTA, Account, Chat, ServerDatabase, Worker, migrate, server_env  # noqa: E402

# A reply that ended (any state) without a delta reaching the tab.
ENDED = re.compile(r'class="message assistant status-(?:interrupted|error|stopped)')


async def run(workdir: Path, replies: int, workers: int) -> dict:
    db = ServerDatabase(workdir, f"burst_{replies}_{workers}")
    extra = {"REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/7")} if workers > 1 else {}
    # One account sends them all: no rate limit, and a budget that holds every reply's worst case.
    env = server_env(
        db.url,
        CHAT_RATE_LIMIT_PER_MINUTE="0",
        CHAT_MAX_SOCKETS_PER_USER="0",
        CHAT_MAX_FRAMES_PER_SECOND="0",
        CHAT_DEFAULT_MONTHLY_BUDGET_USD="10000",
        **extra,
    )
    started: list[Worker] = []
    try:
        migrate(env)
        for n in range(workers):
            started.append(await asyncio.to_thread(Worker(env, workdir / f"burst-{replies}-{n}.log").start))
        front = started[0]
        account = await asyncio.to_thread(Account, front)
        conversations = [await asyncio.to_thread(account.new_conversation, front) for _ in range(replies)]
        chats = [await Chat.open(front, account, c) for c in conversations]
        t0 = time.monotonic()
        await asyncio.gather(
            *(chat.send(message="A story please [[offline tps=30 reply_tokens=300]]") for chat in chats)
        )

        async def first_delta(chat: Chat) -> float | None:
            """Seconds from the Send to the reply's first delta (None: it ended without one, e.g. swept)."""
            try:
                frame = await chat.until(lambda f: DELTA.search(f) or ENDED.search(f), timeout=600)
            except (ConnectionClosed, TimeoutError):  # its socket closed, or nothing came in ten minutes
                return None
            return time.monotonic() - t0 if DELTA.search(frame) else None

        firsts = await asyncio.gather(*(first_delta(chat) for chat in chats))
        ttft = [t for t in firsts if t is not None]
        await asyncio.to_thread(wait_until_nothing_streams, db)
        await asyncio.sleep(1)  # the last frames
        ids = [max(chat.replies_started(), default=None) for chat in chats]
        streamed = [(chat, reply) for chat, reply in zip(chats, ids, strict=True) if reply is not None]
        statuses = dict(
            db.query(
                "SELECT status, count(*) FROM conversations_message WHERE role = 'assistant' GROUP BY status"
            )
        )
        estimated = db.query("SELECT count(*) FROM billing_usagerecord WHERE estimated")[0][0]
        per_call = db.query(
            "SELECT count(*) FROM conversations_message m WHERE m.role = 'assistant' AND "
            "(SELECT count(*) FROM billing_usagerecord r WHERE r.attempt_id = m.attempt_id) <> 1"
        )[0][0]
        holds = db.query("SELECT count(*) FROM billing_spendreservation WHERE settled_at IS NULL")[0][0]
        lost = lost_chars(db, [c for c, _ in streamed], [r for _, r in streamed])
        for chat in chats:
            await chat.close()
        ttft.sort()
        return {
            "completed": statuses.get("complete", 0),
            "swept": statuses.get("interrupted", 0),
            "other": {k: v for k, v in statuses.items() if k not in ("complete", "interrupted")},
            "lost": sum(lost),
            "estimated": estimated,
            "not_once": per_call,
            "holds": holds,
            "p50": statistics.median(ttft) if ttft else float("nan"),
            "p99": ttft[min(len(ttft) - 1, int(len(ttft) * 0.99))] if ttft else float("nan"),
            "no_delta": len(firsts) - len(ttft),
        }
    finally:
        for worker in started:
            worker.stop()
        db.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, nargs="+", default=[100, 200, 300])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print(
        "| replies at once | workers | completed | swept | other ends | chars lost | estimated rows | calls without one row | open holds | first delta p50 / p99 | ended without a delta |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            for replies in args.replies:
                r = asyncio.run(run(Path(tmp), replies, workers))
                print(
                    f"| {replies} | {workers} | {r['completed']} | {r['swept']} | {r['other'] or '-'} | {r['lost']:,} "
                    f"| {r['estimated']} | {r['not_once']} | {r['holds']} | {r['p50']:.1f} s / {r['p99']:.1f} s | {r['no_delta']} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()

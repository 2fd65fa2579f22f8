"""What a worker's death costs a reply: text lost, time until recovered, ledger rows per API call.

Runs real daphne workers (tests/servers.py: each its own process on a free port, a fresh SQLite file,
or a fresh PostgreSQL database when DATABASE_URL points at one) against the in-process offline Claude,
with N websocket clients each streaming one long reply (30 tokens/s). Then, per scenario:

* sigterm: SIGTERM mid-reply with a 1 s grace (so replies are cut): text lost = characters the client
  had received that the stored reply lacks; the worker's exit time after the signal.
* sigkill: SIGKILL mid-reply, a new worker started on the same database at once: text lost as above,
  and the time from the kill until every orphaned reply is ended (lease CHAT_LEASE_SECONDS, default
  here 10 s as in production).
* both: ledger rows against API calls (one each), open spend holds left.

    .venv/bin/python bench/restarts.py [--replies 5]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers import Account, Chat, ServerDatabase, Worker, migrate, server_env  # noqa: E402


async def start_replies(worker: Worker, n: int) -> tuple[list[Chat], list[int]]:
    account = await asyncio.to_thread(Account, worker)
    chats = []
    for _ in range(n):
        conversation = await asyncio.to_thread(account.new_conversation, worker)
        chat = await Chat.open(worker, account, conversation)
        await chat.send(message="A long story please [[offline tps=30 reply_tokens=3000]]")
        chats.append(chat)
    for chat in chats:
        await chat.until_streaming()
    await asyncio.sleep(2.5)  # let every reply stream and checkpoint for a while
    return chats, [max(chat.replies_started()) for chat in chats]


def lost_chars(db: ServerDatabase, chats: list[Chat], replies: list[int]) -> list[int]:
    lost = []
    for chat, reply in zip(chats, replies, strict=True):
        [(saved,)] = db.query("SELECT content FROM conversations_message WHERE id = %s", (reply,))
        received = chat.text_of(reply)
        common = (
            len(received)
            if saved.startswith(received)
            else next(
                (i for i, (a, b) in enumerate(zip(saved, received, strict=False)) if a != b),
                min(len(saved), len(received)),
            )
        )
        lost.append(len(received) - common)
    return lost


def ledger(db: ServerDatabase, replies: list[int]) -> tuple[int, int]:
    rows = sum(
        db.query("SELECT count(*) FROM billing_usagerecord WHERE message_id = %s", (r,))[0][0]
        for r in replies
    )
    holds = db.query("SELECT count(*) FROM billing_spendreservation WHERE settled_at IS NULL")[0][0]
    return rows, holds


def wait_until_nothing_streams(db: ServerDatabase) -> None:
    while db.query("SELECT count(*) FROM conversations_message WHERE status = 'streaming'")[0][0]:
        time.sleep(0.1)


async def drain_all(chats: list[Chat]) -> None:
    await asyncio.gather(*(chat.until_closed(timeout=60) for chat in chats))


async def scenario_sigterm(workdir: Path, n: int) -> dict:
    db = ServerDatabase(workdir, "bench_sigterm")
    try:
        env = server_env(db.url, CHAT_SHUTDOWN_GRACE_SECONDS="1", CHAT_RATE_LIMIT_PER_MINUTE="0")
        migrate(env)
        worker = await asyncio.to_thread(Worker(env, workdir / "sigterm.log").start)
        chats, replies = await start_replies(worker, n)
        t0 = time.monotonic()
        worker.signal(signal.SIGTERM)
        await asyncio.to_thread(worker.wait, 60)
        exit_s = time.monotonic() - t0
        await drain_all(chats)
        rows, holds = ledger(db, replies)
        statuses = db.query(
            "SELECT status, count(*) FROM conversations_message WHERE role = 'assistant' GROUP BY status"
        )
        return {
            "lost": lost_chars(db, chats, replies),
            "exit_s": exit_s,
            "rows": rows,
            "calls": n,
            "holds": holds,
            "statuses": dict(statuses),
        }
    finally:
        db.drop()


async def scenario_sigkill(workdir: Path, n: int) -> dict:
    db = ServerDatabase(workdir, "bench_sigkill")
    try:
        env = server_env(db.url, CHAT_RATE_LIMIT_PER_MINUTE="0")
        migrate(env)
        worker = await asyncio.to_thread(Worker(env, workdir / "sigkill.log").start)
        chats, replies = await start_replies(worker, n)
        worker.signal(signal.SIGKILL)
        t0 = time.monotonic()
        await asyncio.to_thread(worker.wait, 30)
        await drain_all(chats)
        successor = await asyncio.to_thread(Worker(env, workdir / "sigkill-2.log").start)
        try:
            await asyncio.to_thread(wait_until_nothing_streams, db)
            recovered_s = time.monotonic() - t0
        finally:
            successor.stop()
        rows, holds = ledger(db, replies)
        statuses = db.query(
            "SELECT status, count(*) FROM conversations_message WHERE role = 'assistant' GROUP BY status"
        )
        return {
            "lost": lost_chars(db, chats, replies),
            "recovered_s": recovered_s,
            "rows": rows,
            "calls": n,
            "holds": holds,
            "statuses": dict(statuses),
        }
    finally:
        db.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        term = asyncio.run(scenario_sigterm(Path(tmp), args.replies))
        kill = asyncio.run(scenario_sigkill(Path(tmp), args.replies))
    print(f"{args.replies} replies streaming at 30 tokens/s on one worker\n")
    print(
        "| scenario | text lost per reply (chars: max, mean) | time | ledger rows / API calls | open holds | end states |"
    )
    print("|---|---|---|---|---|---|")
    for name, r, time_label in (
        ("SIGTERM (grace 1 s)", term, f"exit {term['exit_s']:.1f} s after the signal"),
        ("SIGKILL + new worker", kill, f"recovered {kill['recovered_s']:.1f} s after the kill"),
    ):
        lost = r["lost"]
        print(
            f"| {name} | {max(lost)}, {sum(lost) / len(lost):.0f} | {time_label} | {r['rows']} / {r['calls']} "
            f"| {r['holds']} | {r['statuses']} |"
        )


if __name__ == "__main__":
    main()

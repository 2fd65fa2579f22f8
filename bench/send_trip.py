"""What one reply costs the database thread: the trips of its Send (`intents._send_in_database`, a
first turn), its end (`store.reply_finish`) and the header read after it (`generation._after_reply`).

In a daphne process all database work runs in one thread, so under a burst of messages each reply
starts only after the Send trips queued before it (the "start" column of bench/relay_latency.py).
This script times that trip alone, in this process, on a throwaway SQLite database (or
``--database-url``): ``--sends`` first turns, each in a new conversation of a new user (as the relay
bench sends them), after a warm-up, ``--repeat`` times. It prints, per Send, the medians of:

- statements run (BEGIN/COMMIT and savepoints included) and wall and CPU milliseconds, per trip;
- the milliseconds spent inside the database driver's ``execute`` (the rest is Python: the ORM
  building statements and models, and the app's own work) and its share of the wall time.

    .venv/bin/python bench/send_trip.py [--sends 200] [--repeat 3] [--debug 0]
    .venv/bin/python bench/send_trip.py --database-url postgres://postgres@127.0.0.1:5432/send_trip

Nothing is sent to Claude: the trip ends with what the call would need, as Send's does.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = "claude-sonnet-5-5"
TEXT = "How do I read a stream of server-sent events without losing the last one?"


def configure(args: argparse.Namespace) -> None:
    database_url = args.database_url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.sqlite3'}"
    os.environ.update(
        DJANGO_SETTINGS_MODULE="chatsite.settings",
        DATABASE_URL=database_url,
        DJANGO_DEBUG=args.debug,
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_SECURE_SSL_REDIRECT="0",
        DJANGO_HSTS_SECONDS="0",
        ANTHROPIC_API_KEY="bench",
        CHAT_DEFAULT_MONTHLY_BUDGET_USD=os.environ.get("CHAT_DEFAULT_MONTHLY_BUDGET_USD", "unlimited"),
        CHAT_RATE_LIMIT_PER_MINUTE="100000",
        CHAT_LOG_LEVEL="WARNING",
    )
    os.environ.pop("REDIS_URL", None)
    if args.database_url.startswith("postgres"):
        sys.path.insert(0, str(ROOT / "bench"))
        from relay_latency import ensure_postgres_database

        ensure_postgres_database(args.database_url)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, check=True)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def conversations(n: int, prefix: str) -> list:
    """n new conversations, each of a new user (unusable passwords: no hashing cost)."""
    from django.contrib.auth import get_user_model

    from conversations.models import Conversation

    users = get_user_model().objects.bulk_create(
        [get_user_model()(username=f"{prefix}-{i}", password="!") for i in range(n)]
    )
    made = Conversation.objects.bulk_create([Conversation(owner=user, model=MODEL) for user in users])
    return list(Conversation.objects.filter(pk__in=[c.pk for c in made]).order_by("pk"))


def one_round(sends: int, label: str) -> dict[str, dict]:
    """The Sends of `sends` first turns, then each reply's end (its final row and ledger row, as
    `Generation._finish` writes them) and the header and budget banner read after it."""
    from django.db import connection

    from billing.usage import Usage
    from conversations.replies import generation, intents, store
    from conversations.sources import WebDisplay

    trip = intents._send_in_database.func  # the functions channels runs in its database thread
    after = generation._after_reply.func

    def end(sent) -> None:
        context = sent.context
        store.reply_finish(
            message_id=context.message_id,
            attempt_id=context.attempt_id,
            end=store.ReplyEnd(
                content=REPLY,
                status="complete",
                stop_reason="end_turn",
                request_id=f"req_{context.message_id}",
                usage=Usage(input_tokens=40, output_tokens=250),
                usage_estimated=False,
                thinking=store.ReplyThinking(),
                web=WebDisplay(),
            ),
            labels=context.labels,
        )

    for conversation in conversations(10, f"{label}-warm"):
        end(trip(conversation, TEXT, (), None))
        after(conversation.pk)
    targets = conversations(sends, label)
    in_execute = [0.0, 0]

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            in_execute[0] += time.perf_counter() - started
            in_execute[1] += 1

    def phase(work, items) -> tuple[dict, list]:
        in_execute[:] = [0.0, 0]
        with connection.execute_wrapper(timed):
            wall, cpu = time.perf_counter(), time.process_time()
            done = [work(item) for item in items]
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        figures = {
            "statements": in_execute[1] / len(items),
            "wall": wall / len(items) * 1000,
            "cpu": cpu / len(items) * 1000,
            "execute": in_execute[0] / len(items) * 1000,
            "share": in_execute[0] / wall,
        }
        return figures, done

    send, sent = phase(lambda c: trip(c, TEXT, (), None), targets)
    ended, _ = phase(end, sent)
    header, _ = phase(lambda c: after(c.pk), targets)
    return {"Send": send, "reply's end": ended, "header after it": header}


REPLY = "Read each event up to its blank line, and flush the last one when the stream closes. " * 12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--debug", default="0", help="DJANGO_DEBUG (1 keeps every query's SQL in memory)")
    parser.add_argument("--database-url", default="", help="a PostgreSQL database instead of SQLite")
    args = parser.parse_args()
    configure(args)
    rounds = [one_round(args.sends, f"send-{i}") for i in range(args.repeat)]
    backend = "PostgreSQL" if args.database_url.startswith("postgres") else "SQLite"
    print(
        f"One reply's database trips, a first turn ({backend}, DEBUG={args.debug}, medians of "
        f"{args.repeat} x {args.sends})"
    )
    print()
    print("| trip | statements | wall ms | CPU ms | ms in execute | share in execute |")
    print("|---|---|---|---|---|---|")
    for trip in rounds[0]:
        runs = [r[trip] for r in rounds]
        median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        spread = {key: (min(r[key] for r in runs), max(r[key] for r in runs)) for key in ("wall", "cpu")}
        print(
            f"| {trip} | {median['statements']:.0f} "
            f"| {median['wall']:.1f} ({spread['wall'][0]:.1f}-{spread['wall'][1]:.1f}) "
            f"| {median['cpu']:.1f} ({spread['cpu'][0]:.1f}-{spread['cpu'][1]:.1f}) "
            f"| {median['execute']:.2f} | {median['share']:.0%} |"
        )


if __name__ == "__main__":
    main()

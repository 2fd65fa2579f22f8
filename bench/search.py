"""Benchmark search over one person's 100,000 messages (2,000 conversations) on SQLite and PostgreSQL.

    .venv/bin/python bench/search.py                               # SQLite and PostgreSQL
    .venv/bin/python bench/search.py --backend sqlite --messages 20000 --reseed

Uses separate databases, never the dev db: /tmp/bench_search.sqlite3 and the PostgreSQL database at
BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/bench_search), created if missing. A seeded
database with the requested size is reused. Besides the searcher, another person has a fifth as many
messages (search must skip them). Messages are written through the ORM, so the index is built by the
same triggers / generated column that keep it in step in production. Each figure times
`conversations.search.search()` as the search page calls it (query, snippets, highlighting; template
rendering excluded): the median of --repeat runs, in milliseconds. Also timed: one checkpoint write
of a streaming reply's text (it grows and is re-indexed), next to a write that leaves the text alone.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SQLITE_PATH = "/tmp/bench_search.sqlite3"
PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/bench_search")
PER_CONVERSATION = 50
BATCH = 5_000


def setup_django(backend: str) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{SQLITE_PATH}" if backend == "sqlite" else PG_URL
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    sys.path.insert(0, str(ROOT))
    if backend == "postgres":
        import psycopg

        base, name = PG_URL.rsplit("/", 1)
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def vocabulary(rng: random.Random, size: int = 6000) -> list[str]:
    syllables = [
        "ka",
        "lo",
        "mi",
        "ne",
        "ru",
        "sa",
        "ti",
        "vo",
        "ze",
        "pa",
        "qu",
        "do",
        "fe",
        "gi",
        "ha",
        "jo",
    ]
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def seed(messages: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from conversations.models import Conversation, Message

    User = get_user_model()
    if User.objects.filter(username="bench_searcher").exists():
        searcher = User.objects.get(username="bench_searcher")
        if Message.objects.filter(conversation__owner=searcher).count() == messages:
            print(f"   reusing the seeded database ({messages:,} messages)", flush=True)
            return
    Conversation.objects.filter(owner__username__in=["bench_searcher", "bench_other"]).delete()
    User.objects.filter(username__in=["bench_searcher", "bench_other"]).delete()
    rng = random.Random(42)
    words = vocabulary(rng)
    weights = [1 / (rank**1.05) for rank in range(1, len(words) + 1)]  # Zipf-like: a few words are everywhere
    started = time.perf_counter()
    for username, count in (("bench_searcher", messages), ("bench_other", messages // 5)):
        owner = User.objects.create_user(username=username, password=None)
        for first in range(0, count, BATCH):
            size = min(BATCH, count - first)
            with transaction.atomic():
                conversations = Conversation.objects.bulk_create(
                    [
                        Conversation(
                            owner=owner,
                            model="claude-sonnet-5-5",
                            title=" ".join(rng.choices(words[:2000], k=3)),
                        )
                        for _ in range(size // PER_CONVERSATION)
                    ]
                )
                batch = []
                for index in range(size):
                    conversation = conversations[index // PER_CONVERSATION]
                    assistant = index % 2 == 1
                    length = rng.randint(60, 220) if assistant else rng.randint(8, 40)
                    text = " ".join(rng.choices(words, weights=weights, k=length))
                    if rng.random() < 0.001:
                        text += " quasar"  # a rare word: about one message in a thousand
                    batch.append(
                        Message(
                            conversation=conversation, role="assistant" if assistant else "user", content=text
                        )
                    )
                Message.objects.bulk_create(batch, batch_size=1000)
        print(
            f"   seeded {count:,} messages for {username} in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # what autovacuum would do soon after such a load


def median_ms(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def run_backend(backend: str, messages: int, reseed: bool, repeat: int) -> None:
    setup_django(backend)
    from django.contrib.auth import get_user_model
    from django.db import connection

    from conversations import search
    from conversations.models import Message

    if reseed:
        get_user_model().objects.filter(username__in=["bench_searcher", "bench_other"]).delete()
    print(f"\n== {backend} ({connection.vendor}): {messages:,} messages of one person ==", flush=True)
    seed(messages)
    user = get_user_model().objects.get(username="bench_searcher")
    words = vocabulary(random.Random(42))
    queries = [
        ("rare word (1 in 1,000 messages)", "quasar"),
        ("common word", words[0]),
        ("two words", f"{words[0]} {words[40]}"),
        ("prefix while typing", words[300][:3]),
        ("no match", "zzzzzz"),
    ]
    print(f"   {'query':<34} {'hits':>6} {'median ms':>10}", flush=True)
    for label, query in queries:
        result = search.search(user=user, query=query)
        ms = median_ms(lambda q=query: search.search(user=user, query=q), repeat)
        print(f"   {label:<34} {len(result.messages):>6} {ms:>10.1f}", flush=True)
    message = Message.objects.filter(conversation__owner=user, role="assistant").order_by("-id").first()
    grown = [message.content]

    def checkpoint():
        # The statement replies_checkpoint() writes a streaming reply's text with (the lease renewal
        # it also makes is not part of the index's cost).
        grown[0] += " more streamed text"
        Message.objects.filter(pk=message.pk).update(content=grown[0])

    ms = median_ms(checkpoint, repeat * 4)
    print(f"   {'checkpoint text write (re-indexed)':<34} {'':>6} {ms:>10.1f}", flush=True)
    ms = median_ms(lambda: Message.objects.filter(pk=message.pk).update(worker=""), repeat * 4)
    print(f"   {'same row, text unchanged (baseline)':<34} {'':>6} {ms:>10.1f}", flush=True)
    found = search.search(user=user, query="streamed")
    assert found.messages and found.messages[0].message_id == message.pk, "the checkpoint was not indexed"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--reseed", action="store_true", help="delete and regenerate the messages")
    args = parser.parse_args()
    if args.backend == "both":
        # One process per backend: settings read DATABASE_URL once at import.
        for backend in ("sqlite", "postgres"):
            command = [sys.executable, __file__, "--backend", backend, "--messages", str(args.messages)]
            command += ["--repeat", str(args.repeat)] + (["--reseed"] if args.reseed else [])
            subprocess.run(command, check=True)
        return
    run_backend(args.backend, args.messages, args.reseed, args.repeat)


if __name__ == "__main__":
    main()

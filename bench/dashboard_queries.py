"""Benchmark the usage dashboard's queries on a year of history for 1,000 users (1,000,000 ledger rows).

    .venv/bin/python bench/dashboard_queries.py                  # SQLite and PostgreSQL
    .venv/bin/python bench/dashboard_queries.py --backend sqlite --rows 200000 --reseed

Uses separate databases, never the dev db: BENCH_SQLITE_PATH (default /tmp/bench_billing.sqlite3) and
the PostgreSQL database on BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/bench_chat), created
if missing. A seeded database with the requested row count is reused. Timings call the same functions
the dashboard views call (billing.dashboard.*_context → the UsageRecord queryset methods); template
rendering is excluded. Each figure is the median of --repeat runs, in milliseconds.

Then, per preset, the whole server response of the dashboard page as a staff browser gets it (Django's
test client through the full middleware stack, the template rendered): median milliseconds and bytes.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SQLITE_PATH = os.environ.get("BENCH_SQLITE_PATH", "/tmp/bench_billing.sqlite3")
PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/bench_chat")
USERS = 1000
BATCH = 50_000

COLUMNS = [
    "created_at",
    "user_id",
    "username",
    "conversation_id",
    "conversation_title",
    "message_id",
    "model",
    "purpose",
    "request_id",
    "input_tokens",
    "output_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
    "thinking_tokens",
    "service_tier",
    "inference_geo",
    "speed",
    "estimated",
    "priced",
    "price_id",
    "banded",
    "rate_input",
    "rate_output",
    "rate_cache_write_5m",
    "rate_cache_write_1h",
    "rate_cache_read",
    "cost",
    "cache_savings",
]


def setup_django(backend: str) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{SQLITE_PATH}" if backend == "sqlite" else PG_URL
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    sys.path.insert(0, str(ROOT))
    if backend == "postgres":
        ensure_pg_database()
    import django

    django.setup()


def ensure_pg_database() -> None:
    import psycopg

    base, name = PG_URL.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def generate_rows(count: int, prices: dict, now):
    """Deterministic synthetic calls: heavy-tailed users, a few models, a year back from now."""
    rng = random.Random(42)
    models = list(prices)
    model_weights = [5, 3, 2, 1, 1][: len(models)] + [1] * max(0, len(models) - 5)
    user_weights = [1 / (rank**0.8) for rank in range(1, USERS + 1)]
    users = rng.choices(range(1, USERS + 1), weights=user_weights, k=count)
    picks = rng.choices(models, weights=model_weights, k=count)
    year = 365 * 24 * 3600
    for index in range(count):
        user_id = users[index]
        model = picks[index]
        price_id, rates = prices[model]
        input_tokens = rng.randint(50, 20_000)
        output_tokens = rng.randint(10, 3_000)
        cache_read = rng.choice((0, 0, 0, rng.randint(1_000, 50_000)))
        cache_5m = rng.choice((0, 0, 0, 0, rng.randint(500, 5_000)))
        cost = (
            input_tokens * rates.input
            + output_tokens * rates.output
            + cache_5m * rates.cache_write_5m
            + cache_read * rates.cache_read
        )
        conversation_id = user_id * 1000 + rng.randint(0, 40)
        yield (
            now - timedelta(seconds=rng.randrange(year)),
            user_id,
            f"user{user_id}",
            conversation_id,
            f"Conversation {conversation_id}",
            index + 1,
            model,
            "reply",
            f"req_{index}",
            input_tokens,
            output_tokens,
            cache_5m,
            0,
            cache_read,
            0,
            "standard",
            "",
            "",
            False,
            True,
            price_id,
            False,
            rates.input,
            rates.output,
            rates.cache_write_5m,
            rates.cache_write_1h,
            rates.cache_read,
            cost,
            cache_read * (rates.input - rates.cache_read),
        )


def seed(count: int, reseed: bool) -> float:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from billing.models import ModelPrice, UsageDaily, UsageDayModel, UsageMonthly, UsageRecord
    from billing.rollups import rollup_rebuild

    call_command("migrate", verbosity=0)
    existing = UsageRecord.objects.count()
    if existing == count and UsageDaily.objects.exists() and not reseed:
        return 0.0
    started = time.perf_counter()
    table = UsageRecord._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table}")
    User = get_user_model()
    if User.objects.count() < USERS:
        User.objects.bulk_create(
            [User(username=f"user{n}", password="!") for n in range(1, USERS + 1)], ignore_conflicts=True
        )
    chosen = [
        "claude-sonnet-5-5",
        "claude-haiku-5-5",
        "claude-opus-5-5",
        "claude-sonnet-4-6",
        "claude-haiku-4-5",
    ]
    prices = {}
    for name in chosen:
        price = ModelPrice.objects.in_effect(name, timezone.now())
        prices[name] = (price.pk, price.base_rates)
    rows = generate_rows(count, prices, timezone.now())
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.connection.cursor().copy(f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            sql = f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
            batch = []
            for row in rows:
                batch.append(row)
                if len(batch) >= BATCH:
                    cursor.executemany(sql, batch)
                    batch.clear()
            if batch:
                cursor.executemany(sql, batch)
    rollup_rebuild()  # the rollups usage_record() maintains row by row, built here in one pass
    with connection.cursor() as cursor:
        for model in (UsageRecord, UsageDaily, UsageMonthly, UsageDayModel):
            cursor.execute(f"ANALYZE {model._meta.db_table}")
    return time.perf_counter() - started


def timed(fn, repeat: int) -> float:
    fn()  # warm the cache: the figures are steady-state server time
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def _evaluate(context: dict) -> dict:
    context["recent"] = list(context["recent"])  # the template would evaluate this queryset
    return context


def measure(repeat: int) -> list[tuple[str, str, float]]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import AnonymousUser
    from django.test import RequestFactory

    from billing import dashboard, rollups
    from billing.models import UsageRecord
    from billing.periods import preset
    from billing.views import my_usage_context

    factory = RequestFactory()
    heavy = get_user_model().objects.get(username="user1")
    results = []
    for key in ("30d", "365d"):
        period = preset(key)
        request = factory.get("/admin/billing/usagerecord/dashboard/", {"preset": key})
        request.user = AnonymousUser()
        per_user = rollups.period_by_user(period)
        checks = {
            "per-user sums (rollups)": lambda period=period: rollups.period_by_user(period),
            "user table + budget column": lambda per_user=per_user: dashboard.user_rows(per_user),
            "totals (sum of user rows)": lambda per_user=per_user: dashboard.totals_of(per_user),
            "model table (rollup)": lambda period=period: dashboard.model_rows(
                rollups.period_by_model(period)
            ),
            "cost per day (rollup)": lambda period=period: dashboard.day_rows(
                rollups.period_by_day(period), period
            ),
            "DASHBOARD (all panels)": lambda request=request: dashboard.dashboard_context(request),
            "user detail (heaviest user)": lambda request=request: _evaluate(
                dashboard.user_detail_context(request, heavy.pk)
            ),
            "user's /usage/ page (heaviest)": lambda: my_usage_context(heavy, "month"),
            "ledger scan, for contrast": lambda period=period: UsageRecord.objects.for_period(
                period.start, period.end
            ).totals(),
        }
        for label, fn in checks.items():
            results.append((key, label, timed(fn, repeat)))
    return results


def measure_responses(repeat: int) -> list[tuple[str, float, int, float, int]]:
    """Per preset: median ms and bytes of the whole dashboard page (middleware, view, template), then of
    the response a preset link gets when htmx asks (HX-Request; the same page where that is ignored)."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    from billing.periods import PRESETS

    User = get_user_model()
    staff, _ = User.objects.get_or_create(username="bench-staff", defaults={"is_staff": True})
    staff.is_staff = staff.is_superuser = True
    staff.save()
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(staff)
    url = reverse("admin:billing_dashboard")
    results = []
    for key in PRESETS:
        figures = []
        for headers in ({}, {"HX-Request": "true"}):
            sizes = []

            def fetch(key=key, sizes=sizes, headers=headers) -> None:
                response = client.get(url, {"preset": key}, headers=headers)
                assert response.status_code == 200, response.status_code
                sizes.append(len(response.content))

            figures += [timed(fetch, repeat), sizes[-1]]
        results.append((key, *figures))
    return results


def run_backend(backend: str, rows: int, reseed: bool, repeat: int) -> None:
    setup_django(backend)
    from django.db import connection

    seeded = seed(rows, reseed)
    from billing.models import UsageRecord

    total = UsageRecord.objects.count()
    print(f"\n== {backend} ({connection.settings_dict['NAME']}): {total:,} ledger rows", flush=True)
    print(f"   seeding: {'reused existing data' if not seeded else f'{seeded:.1f} s'}")
    print(f"   {'range':<6} {'query':<32} {'median ms':>10}")
    for key, label, ms in measure(repeat):
        flag = "" if ms < 300 or label.startswith("ledger") else "  (over 300 ms target)"
        print(f"   {key:<6} {label:<32} {ms:>10.1f}{flag}", flush=True)
    print(f"   whole dashboard response per preset (server side, rendered, median of {repeat}):")
    print(f"   {'preset':<11} {'page ms':>9} {'page bytes':>11} {'htmx ms':>9} {'htmx bytes':>11}")
    for key, ms, size, hx_ms, hx_size in measure_responses(repeat):
        print(f"   {key:<11} {ms:>9.1f} {size:>11,} {hx_ms:>9.1f} {hx_size:>11,}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--reseed", action="store_true", help="drop and regenerate the ledger rows")
    args = parser.parse_args()
    if args.backend == "both":
        # One process per backend: settings read DATABASE_URL once at import.
        for backend in ("sqlite", "postgres"):
            command = [sys.executable, __file__, "--backend", backend, "--rows", str(args.rows)]
            command += ["--repeat", str(args.repeat)] + (["--reseed"] if args.reseed else [])
            subprocess.run(command, check=True)
        return
    run_backend(args.backend, args.rows, args.reseed, args.repeat)


if __name__ == "__main__":
    main()

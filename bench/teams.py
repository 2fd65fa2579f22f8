"""Teams at scale: the staff dashboard, team pages and statements over 10,000,000 ledger rows on
PostgreSQL, and what holding a Send at three budget levels costs over the per-user hold alone.

    .venv/bin/python bench/teams.py                     # full size; builds the data once (long)
    .venv/bin/python bench/teams.py --rows 1000000      # a quicker, smaller run (its own data)
    .venv/bin/python bench/teams.py --rebuild           # regenerate the data first
    .venv/bin/python bench/teams.py --part pages        # one part: data, pages, holds (--backend …)
    .venv/bin/python bench/teams.py --part data --time-app-rebuild   # also time rollup_rebuild()

Data (bench/teams_data.py): 200 teams of 50 members and 500 people in no team, managers, budgets at
every level, --rows ledger rows over 13 months and their rollups, on the PostgreSQL database of
BENCH_TEAMS_PG_URL (default postgres://postgres@127.0.0.1:5432/teams_bench), created and migrated if
missing, reused while it holds data of the requested size. Never `chat`, never db.sqlite3.

Pages: the rollup tables are vacuumed and analysed first (as autovacuum would have), then one daphne
worker (python -m chatsite.serve, as `make run` starts it) with DEBUG off and the
production static files storage (collected into a temporary STATIC_ROOT), on a port the OS picked. Each
page is fetched over HTTP with a logged-in session cookie, as a browser on a kept-alive connection: a
warm-up, then --requests timed requests (milliseconds until the whole body arrived; median and p95).
Then the same page once more in-process (Django's test client, the same settings and database) under
CaptureQueriesContext: its statements, their database time, and every statement that reads the ledger
table (billing_usagerecord) is EXPLAINed: "SCAN" when it reads the ledger sequentially or more than
10,000 rows, else the index read's estimated rows. A page answering 404 is "not built yet". For a page
whose p95 is over its target, the statements of 10 ms or more are run again under EXPLAIN (ANALYZE,
BUFFERS) and one request is run under cProfile; both are printed under the table.

Holds: the hold a Send takes (spend_reserve, in its own transaction as reply_start does) and its
settling when the call ends (usage_record: the ledger row, its rollups, the levels' alerts, the hold
settled, in one transaction), for (a) a user with only a per-user budget (no team, no organisation
budget) and (b) a team member whose team and organisation both have budgets, interleaved, on a
temporary SQLite file and on the bench PostgreSQL database (whose data is left as it was found: the
bench's users, team, rows and holds are removed and the month's rollups rebuilt from the ledger).
--iterations of each (after 20 of each to warm up); the extra is the difference of the medians, and
in parentheses the median of the per-iteration differences (less moved by the machine's other load).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
# This file is bench/teams.py: the project root goes first, so `import teams` is the app, not this script;
# the bench directory goes last, for teams_data.
sys.path[:] = (
    [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"] + [str(ROOT / "bench")]
)

from teams_data import MANAGER, STAFF, Shape  # noqa: E402

PG_URL = os.environ.get("BENCH_TEAMS_PG_URL", "postgres://postgres@127.0.0.1:5432/teams_bench")
FULL_ROWS = 10_000_000
TARGET_PAGE_MS = 300
TARGET_EXTRA_MS = 2.0
SCAN_ROWS = 10_000  # a ledger read estimated above this many rows counts as a scan
BLOCKING_NODES = {"Sort", "Aggregate", "Hash", "Materialize", "WindowAgg", "SetOp"}
MODEL = "claude-sonnet-5-5"
SECRET_KEY = "teams-bench-" + secrets.token_urlsafe(40)
SETTINGS_MODULE = "teams_bench_settings"
SHARED_DATABASES = ("chat", "test_chat", "postgres")
SAVEPOINT_NAME = re.compile(r"s\d+_x\d+")


# ------------------------------------------------------------------------------------------ helpers
def load_note() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile (the p95 of 10 samples is the largest)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, int(fraction * len(ordered) + 0.999999) - 1))]


def pg_url(rows: int) -> str:
    """The bench database for `rows` ledger rows: a smaller run has its own, so it never replaces the
    full-size data."""
    return PG_URL if rows == FULL_ROWS else f"{PG_URL}_{rows}"


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def refuse_shared(url: str) -> None:
    """Stop before touching a database others use (the dev SQLite file, the tests' PostgreSQL ones)."""
    if url.endswith("db.sqlite3") or database_name(url) in SHARED_DATABASES:
        raise SystemExit(f"refusing to use {url}: the bench has a database of its own")


def ensure_pg_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as conn:
        name = database_name(url)
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def child_env(database_url: str, settings_dir: Path | None = None) -> dict[str, str]:
    """The environment of a part's process (and of its daphne): production-like settings, DEBUG off."""
    env = dict(os.environ)
    for name in ("REDIS_URL", "DJANGO_SETTINGS_MODULE", "PYTEST_CURRENT_TEST"):
        env.pop(name, None)
    env.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="chatsite.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=SECRET_KEY,
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SECURE_SSL_REDIRECT="0",
        DJANGO_HSTS_SECONDS="0",
        ANTHROPIC_API_KEY="bench-never-used",
        ANTHROPIC_BASE_URL="http://127.0.0.1:9",
        CHAT_RATE_LIMIT_PER_MINUTE="0",
        CHAT_TITLE_MODEL="off",
        CHAT_LOG_LEVEL="WARNING",
        CHAT_MEDIA_ROOT=tempfile.mkdtemp(prefix="teams-bench-media-"),
        PYTHONUNBUFFERED="1",
    )
    if settings_dir is not None:
        # The shipped settings, with STATIC_ROOT in a temporary directory: DEBUG off serves the
        # collected, hashed static files (collectstatic), which must not land in the project.
        (settings_dir / f"{SETTINGS_MODULE}.py").write_text(
            "from chatsite.settings import *  # noqa: F403\n\n"
            f"STATIC_ROOT = {str(settings_dir / 'static')!r}\n"
        )
        env["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
        env["PYTHONPATH"] = os.pathsep.join([str(settings_dir), str(ROOT), env.get("PYTHONPATH", "")])
    return env


def run_part(part: str, env: dict[str, str], args: argparse.Namespace) -> dict:
    """Run one part in a process of its own (settings read DATABASE_URL once); returns its figures."""
    out = Path(tempfile.mkstemp(prefix=f"teams-bench-{part}-", suffix=".json")[1])
    command = [sys.executable, __file__, "--part", part, "--rows", str(args.rows), "--out", str(out)]
    command += ["--requests", str(args.requests), "--iterations", str(args.iterations)]
    if args.rebuild and part == "data":
        command.append("--rebuild")
    if args.time_app_rebuild and part == "data":
        command.append("--time-app-rebuild")
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    figures = json.loads(out.read_text())
    out.unlink()
    return figures


def django_setup() -> None:
    import django

    django.setup()


# --------------------------------------------------------------------------------------------- data
def data_part(args: argparse.Namespace) -> dict:
    from teams_data import data_build, data_present, sizes

    django_setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    shape = Shape(rows=args.rows)
    with connection.cursor() as cursor:
        present = data_present(cursor, shape)
    figures: dict = {"reused": present and not args.rebuild, "shape": shape.__dict__ | {"users": shape.users}}
    if figures["reused"]:
        print(
            f"   data: reusing {shape.rows:,} ledger rows in {connection.settings_dict['NAME']}", flush=True
        )
    else:
        print(
            f"   data: building {shape.rows:,} ledger rows in {connection.settings_dict['NAME']}", flush=True
        )
        figures["timings"] = data_build(connection, shape, timezone.get_current_timezone_name())
    if args.time_app_rebuild:
        from teams_data import rollups_check

        from billing.rollups import rollup_rebuild

        started = time.perf_counter()
        rollup_rebuild()
        figures["app_rebuild_s"] = time.perf_counter() - started
        with connection.cursor() as cursor:
            rollups_check(cursor)
        print(
            f"   billing.rollups.rollup_rebuild(): {figures['app_rebuild_s']:.1f} s (reconciles)", flush=True
        )
    with connection.cursor() as cursor:
        figures["sizes"] = sizes(cursor)
    return figures


# -------------------------------------------------------------------------------------------- pages
def page_list() -> list[dict]:
    """The pages to time: (label, viewer, URL name, kwargs, query); those not routed yet are skipped."""
    from django.urls import NoReverseMatch, reverse

    from billing.periods import PRESETS, local_today

    last_month = (local_today().replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    pages = []
    for key in PRESETS:
        for team in (None, 1):
            pages.append(
                {
                    "label": f"dashboard {key}" + (" team 1" if team else ""),
                    "viewer": STAFF,
                    "name": "admin:billing_dashboard",
                    "kwargs": {},
                    "query": f"?preset={key}" + (f"&team={team}" if team else ""),
                }
            )
    pages += [
        {"label": "team page (manager)", "viewer": MANAGER, "name": "teams:detail", "kwargs": {"team_id": 1}},
        {"label": "team page (staff)", "viewer": STAFF, "name": "teams:detail", "kwargs": {"team_id": 1}},
        {
            "label": f"team statement {last_month} (manager)",
            "viewer": MANAGER,
            "name": "teams:statement",
            "kwargs": {"team_id": 1, "month": last_month},
        },
        {
            "label": f"org statement {last_month} (staff)",
            "viewer": STAFF,
            "name": "teams:org_statement",
            "kwargs": {"month": last_month},
        },
    ]
    for page in pages:
        page.setdefault("query", "")
        try:
            page["path"] = reverse(page["name"], kwargs=page["kwargs"]) + page["query"]
        except NoReverseMatch:
            page["path"] = None
    return pages


def session_cookie(username: str) -> str:
    """A logged-in session for `username`, as the login form would leave it."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model

    user = get_user_model().objects.get(username=username)
    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


def http_times(port: int, path: str, cookie: str, requests: int) -> dict:
    """Median and p95 ms of GET `path` over a kept-alive connection (after two warm-ups), bytes, status."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {
        "Cookie": cookie,
        "Accept": "text/html,application/xhtml+xml",
        "User-Agent": "teams-bench",
        "Connection": "keep-alive",
    }
    samples, size, status = [], 0, 0
    for n in range(requests + 2):
        started = time.perf_counter()
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        status, size = response.status, len(body)
        if status != 200:
            break
        if n >= 2:
            samples.append(elapsed)
    connection.close()
    if not samples:
        return {"status": status}
    return {
        "status": status,
        "median": statistics.median(samples),
        "p95": percentile(samples, 0.95),
        "bytes": size,
    }


def ledger_reads(captured: list[dict]) -> list[dict]:
    """Each statement that names the ledger table, with how its plan reads it (EXPLAIN, not run)."""
    from django.db import connection

    reads = []
    for query in captured:
        if "billing_usagerecord" not in query["sql"]:
            continue
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT JSON) " + query["sql"])
            plan = cursor.fetchone()[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        # A node under a LIMIT stops after the limit's rows (unless a sort or an aggregate comes between).
        nodes, stack = [], [(plan[0]["Plan"], None)]
        while stack:
            node, cap = stack.pop()
            rows = int(node.get("Plan Rows", 0))
            if node["Node Type"] == "Limit":
                cap = rows if cap is None else min(cap, rows)
            if node.get("Relation Name") == "billing_usagerecord" or "usage_" in node.get("Index Name", ""):
                nodes.append((node["Node Type"], rows if cap is None else min(rows, cap)))
            if node["Node Type"] in BLOCKING_NODES:
                cap = None  # it reads all its input before the limit applies
            stack += [(child, cap) for child in node.get("Plans", [])]
        rows = max((r for _t, r in nodes), default=0)
        scan = any(t == "Seq Scan" for t, _r in nodes) or rows > SCAN_ROWS
        reads.append({"sql": query["sql"][:160], "nodes": nodes, "rows": rows, "scan": scan})
    return reads


def profile_sql(captured: list[dict], at_least_ms: float = 10.0, top: int = 3) -> list[dict]:
    """The page's slowest statements (of at least `at_least_ms`) under EXPLAIN (ANALYZE, BUFFERS)."""
    from django.db import connection

    slowest = sorted(captured, key=lambda q: -float(q["time"]))[:top]
    plans = []
    for query in slowest:
        ms = float(query["time"]) * 1000
        if ms < at_least_ms or not query["sql"].lstrip().upper().startswith("SELECT"):
            continue
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query["sql"])
            lines = [row[0] for row in cursor.fetchall()]
        plans.append({"ms": ms, "sql": query["sql"], "plan": lines})
    return plans


def profile_python(page: dict, top: int = 14) -> list[str]:
    """cProfile of one in-process request: the project's functions by cumulative time, then the
    hottest functions anywhere by their own time."""
    import cProfile
    import io
    import pstats

    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(get_user_model().objects.get(username=page["viewer"]))
    client.get(page["path"])
    profiler = cProfile.Profile()
    profiler.enable()
    client.get(page["path"])
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    out.write("by cumulative time, the project's code:\n")
    stats.sort_stats("cumulative").print_stats(
        re.escape(str(ROOT)) + r"/(billing|teams|conversations|accounts|chatsite)/", top
    )
    out.write("by own time, anywhere:\n")
    stats.sort_stats("tottime").print_stats(top)
    keep = []
    for line in out.getvalue().splitlines():
        if line.strip() and not line.lstrip().startswith(("Ordered by", "List reduced", "function calls")):
            keep.append(line.rstrip().replace(str(ROOT) + "/", "").replace(sys.prefix + "/", ""))
    return keep


def in_process(page: dict, requests: int) -> dict:
    """The page through Django's test client: statements, database ms, ledger reads, median ms."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(get_user_model().objects.get(username=page["viewer"]))
    client.get(page["path"])  # warm
    with CaptureQueriesContext(connection) as captured:
        response = client.get(page["path"])
    queries = captured.captured_queries
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        client.get(page["path"])
        samples.append((time.perf_counter() - started) * 1000)
    return {
        "status": response.status_code,
        "queries": len(queries),
        "db_ms": sum(float(q["time"]) for q in queries) * 1000,
        "slowest_ms": max((float(q["time"]) * 1000 for q in queries), default=0.0),
        "ledger": ledger_reads(queries),
        "client_ms": statistics.median(samples) if samples else None,
        "captured": queries,
    }


def pages_part(args: argparse.Namespace) -> dict:
    django_setup()
    from django.core.management import call_command
    from django.db import connection
    from teams_data import ROLLUP_TABLES

    from tests.servers import Worker

    call_command("collectstatic", interactive=False, verbosity=0)
    # Pages read the rollups from their indexes alone only where the visibility map says so: what a
    # server with autovacuum on has soon after a load (here it may be off, or have missed the build).
    autovacuum = vacuum_if_postgres(connection, ROLLUP_TABLES)
    print(f"   rollup tables vacuumed and analysed first (autovacuum here: {autovacuum})", flush=True)
    pages = page_list()
    cookies = {viewer: session_cookie(viewer) for viewer in (STAFF, MANAGER)}
    connection.close()
    log = Path(tempfile.mkdtemp(prefix="teams-bench-daphne-")) / "daphne.log"
    worker = Worker(dict(os.environ), log).start()
    print(f"   daphne on :{worker.port} (DEBUG off, pid {worker.process.pid}); {load_note()}", flush=True)
    try:
        for page in pages:
            if page["path"] is None:
                page["http"] = {"status": "no route"}
                continue
            page["http"] = http_times(worker.port, page["path"], cookies[page["viewer"]], args.requests)
            shown = f"{page['http']['median']:.0f} ms" if "median" in page["http"] else page["http"]["status"]
            print(f"   {page['label']:<42} {shown}", flush=True)
    finally:
        worker.stop()
    errors = [line for line in log.read_text().splitlines() if "Error" in line or "Traceback" in line]
    for page in pages:
        if page["http"].get("status") == 200:
            page["process"] = in_process(page, max(3, args.requests // 3))
            if page["http"]["p95"] > TARGET_PAGE_MS:
                page["profile"] = profile_sql(page["process"]["captured"])
                page["python"] = profile_python(page)
            del page["process"]["captured"]
    return {"pages": pages, "daphne_errors": errors[:20], "load": load_note()}


# -------------------------------------------------------------------------------------------- holds
HOLD_TABLES = ("billing_spendreservation", "billing_organisationbudget", "teams_team", "billing_userbudget")


def vacuum_if_postgres(connection, tables) -> str:
    """VACUUM (ANALYZE) `tables` on PostgreSQL, as autovacuum would have by now (it may be off on a bench
    server: each settled hold leaves a dead entry in the open-holds index until a vacuum); returns the
    server's autovacuum setting."""
    if connection.vendor != "postgresql":
        return "n/a"
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        cursor.execute("SHOW autovacuum")
        return cursor.fetchone()[0]


def holds_part(args: argparse.Namespace) -> dict:
    django_setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from billing.models import BudgetAlert, OrganisationBudget, UserBudget
    from billing.periods import current_month
    from billing.services import spend_reserve, usage_record
    from billing.usage import LedgerLabels, Usage
    from teams.models import Membership, Team

    call_command("migrate", verbosity=0)
    tag = uuid.uuid4().hex[:8]
    User = get_user_model()
    solo = User.objects.create(username=f"hold-solo-{tag}", password="!")
    member = User.objects.create(username=f"hold-member-{tag}", password="!")
    big = 10**6 * 10**12  # $1,000,000 a month: never the binding level here
    team = Team.objects.create(name=f"Hold bench {tag}", monthly_limit=big)
    Membership.objects.create(user=member, team=team)
    for user in (solo, member):
        UserBudget.objects.create(user=user, policy="limit", monthly_limit=big)
    org = OrganisationBudget.load()
    autovacuum = vacuum_if_postgres(connection, HOLD_TABLES)
    org_limit_before = org.monthly_limit
    org_limit = org.monthly_limit or big
    statements, driver = [0], [0.0]
    timings: dict[str, list[float]] = {}  # "case|statement" → ms of each run (after the warm-up)

    def count(execute, sql, params, many, context):
        statements[0] += 1
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            ms = (time.perf_counter() - started) * 1000
            driver[0] += ms
            timings.setdefault(f"{current[0]}|{SAVEPOINT_NAME.sub('savepoint', sql)}", []).append(ms)

    cases = {"per-user": solo, "three-level": member}
    results: dict = {
        name: {"hold": [], "settle": [], "driver": [], "hold_sql": 0, "settle_sql": 0} for name in cases
    }
    message_id = 2_000_000_000 + int(tag, 16) % 1_000_000 * 1000
    try:
        for n in range(args.iterations + 20):  # the first 20 of each: warm-up
            order = list(cases) if n % 2 == 0 else list(reversed(cases))
            for name in order:
                current = [name if n >= 20 else "warm-up"]
                user = cases[name]
                OrganisationBudget.objects.filter(pk=1).update(
                    monthly_limit=None if name == "per-user" else org_limit
                )
                message_id += 1
                labels = LedgerLabels(user.pk, user.username, None, "", MODEL)
                with connection.execute_wrapper(count):
                    statements[0], driver[0] = 0, 0.0
                    started = time.perf_counter()
                    with transaction.atomic():
                        spend_reserve(
                            user=user,
                            model=MODEL,
                            prompt_tokens=3_000,
                            max_tokens=16_000,
                            message_id=message_id,
                            cache_ttl="5m",
                        )
                    held = time.perf_counter()
                    hold_sql = statements[0]
                    with transaction.atomic():
                        usage_record(
                            labels=labels,
                            message_id=message_id,
                            request_id=f"req_hold_{message_id}",
                            usage=Usage(input_tokens=3_000, output_tokens=600, cache_read_tokens=2_000),
                            estimated=False,
                            attempt_id=uuid.uuid4(),
                        )
                    settled = time.perf_counter()
                if n >= 20:
                    figures = results[name]
                    figures["hold"].append((held - started) * 1000)
                    figures["settle"].append((settled - held) * 1000)
                    figures["driver"].append(driver[0])
                    figures["hold_sql"], figures["settle_sql"] = hold_sql, statements[0] - hold_sql
    finally:
        OrganisationBudget.objects.filter(pk=1).update(monthly_limit=org_limit_before)
        ids = [solo.pk, member.pk]
        with connection.cursor() as cursor:
            # The ledger is immutable to the app; this bench removes its own rows from its own database.
            cursor.execute("DELETE FROM billing_usagerecord WHERE user_id IN (%s, %s)", ids)
        BudgetAlert.objects.filter(scope="user", subject_id__in=ids).delete()
        BudgetAlert.objects.filter(scope="team", subject_id=team.pk).delete()
        User.objects.filter(pk__in=ids).delete()  # their budgets, membership and holds go with them
        team.delete()
        if connection.vendor == "postgresql":
            from teams_data import ROLLUP_TABLES, rollups_build, rollups_check

            with connection.cursor() as cursor:
                rollups_build(cursor, timezone.get_current_timezone_name(), since=current_month().first_day)
                rollups_check(cursor)
            vacuum_if_postgres(connection, (*HOLD_TABLES, "billing_usagerecord", *ROLLUP_TABLES))
    summary = {}
    for name, figures in results.items():
        total = [h + s for h, s in zip(figures["hold"], figures["settle"], strict=True)]
        summary[name] = {
            "hold": statistics.median(figures["hold"]),
            "settle": statistics.median(figures["settle"]),
            "total": statistics.median(total),
            "total_p90": percentile(total, 0.9),
            "hold_p90": percentile(figures["hold"], 0.9),
            "driver": statistics.median(figures["driver"]),
            "hold_sql": figures["hold_sql"],
            "settle_sql": figures["settle_sql"],
            "n": len(total),
        }
    by_statement: dict[str, dict[str, float]] = {}
    for key, samples in timings.items():
        name, sql = key.split("|", 1)
        if name != "warm-up":
            per_send = len(samples) / args.iterations
            by_statement.setdefault(sql, {})[name] = (statistics.median(samples), per_send)
    one, three = results["per-user"], results["three-level"]
    paired = [
        (h3 + s3) - (h1 + s1)
        for h1, s1, h3, s3 in zip(one["hold"], one["settle"], three["hold"], three["settle"], strict=True)
    ]
    return {
        "vendor": connection.vendor,
        "cases": summary,
        "paired_extra": statistics.median(paired),
        "statements": by_statement,
        "autovacuum": autovacuum,
        "load": load_note(),
    }


# --------------------------------------------------------------------------------------------- main
def print_data(data: dict, url: str) -> None:
    shape = data["shape"]
    print(
        f"\nData: {shape['users']:,} users ({shape['teams']} teams of {shape['team_size']}, "
        f"{shape['teamless']} in no team), {shape['rows']:,} ledger rows over 13 months, {url}"
    )
    if data["reused"]:
        print("   reused the data already in the database")
    else:
        t = data["timings"]
        print(
            f"   built in {t['total']:.0f} s: people {t['people']:.0f} s, ledger (rows + indexes) "
            f"{t['ledger']:.0f} s, rollups {t['rollups']:.0f} s, budgets {t['budgets']:.0f} s, "
            f"VACUUM ANALYZE {t['vacuum']:.0f} s, reconciliation {t['check']:.0f} s"
        )
    if "app_rebuild_s" in data:
        print(f"   billing.rollups.rollup_rebuild() on the same ledger: {data['app_rebuild_s']:.0f} s")
    print("   rows: " + ", ".join(f"{name} {count:,}" for name, count in sorted(data["sizes"].items())))


def ledger_cell(process: dict) -> str:
    reads = process["ledger"]
    if not reads:
        return "no"
    scans = [r for r in reads if r["scan"]]
    if scans:
        worst = max(scans, key=lambda r: r["rows"])
        return f"SCAN ({len(scans)} stmt, ~{worst['rows']:,} rows)"
    return f"index only ({len(reads)} stmt, ≤{max(r['rows'] for r in reads):,} rows)"


def print_pages(figures: dict) -> None:
    print(f"\nPages over HTTP from one daphne worker, DEBUG off ({figures['load']} at the end)")
    print(
        "| page | median ms | p95 ms | queries | DB ms | ledger scan? | bytes | in-process ms | target ≤300 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    bare: dict[str, int] = {}
    for page in figures["pages"]:
        web = page["http"]
        if web.get("status") != 200:
            state = (
                "not built yet" if web.get("status") in (404, "no route") else f"error {web.get('status')}"
            )
            print(f"| {page['label']} | {state} | | | | | | | |")
            continue
        process = page["process"]
        met = (
            "yes"
            if web["p95"] <= TARGET_PAGE_MS
            else ("median only" if web["median"] <= TARGET_PAGE_MS else "NO")
        )
        note = ""
        if page["label"].startswith("dashboard"):
            key = page["label"].split()[1]
            if "team" in page["label"] and bare.get(key) == web["bytes"]:
                note = " (same page as unfiltered: filter not applied?)"
            bare.setdefault(key, web["bytes"])
        print(
            f"| {page['label']}{note} | {web['median']:.0f} | {web['p95']:.0f} | {process['queries']} "
            f"| {process['db_ms']:.0f} | {ledger_cell(process)} | {web['bytes']:,} "
            f"| {process['client_ms']:.0f} | {met} |"
        )
    for line in figures["daphne_errors"]:
        print(f"   daphne: {line}")
    for page in figures["pages"]:
        for read in page.get("process", {}).get("ledger", []):
            if read["scan"]:
                print(f"\n   ledger scan on {page['label']}: {read['nodes']}\n      {read['sql']}")
        if "python" not in page:
            continue
        process = page["process"]
        print(
            f"\n   over target: {page['label']}: {page['http']['median']:.0f} ms over HTTP, "
            f"{process['client_ms']:.0f} ms in-process, of which {process['db_ms']:.0f} ms in "
            f"{process['queries']} statements (slowest {process['slowest_ms']:.0f} ms)"
        )
        for plan in page["profile"]:
            print(f"   statement of {plan['ms']:.0f} ms: {plan['sql'][:300]}")
            for line in plan["plan"][:30]:
                print(f"      {line}")
        for line in page["python"]:
            print(f"      {line}")


def print_holds(runs: list[dict]) -> None:
    print(
        f"\nHold + settle per Send, median ms (p90), {runs[0]['cases']['per-user']['n']} of each case, interleaved;"
        " extra: difference of the medians (paired: median of the per-iteration differences)"
    )
    print(
        "| database | per-user ms | three-level ms | extra ms (paired) | target ≤2 ms | statements (hold + settle) |"
    )
    print("|---|---|---|---|---|---|")
    for run in runs:
        one, three = run["cases"]["per-user"], run["cases"]["three-level"]
        extra = three["total"] - one["total"]
        print(
            f"| {run['vendor']} | {one['total']:.2f} ({one['total_p90']:.2f}) "
            f"| {three['total']:.2f} ({three['total_p90']:.2f}) | {extra:+.2f} ({run['paired_extra']:+.2f}) "
            f"| {'yes' if extra <= TARGET_EXTRA_MS else 'NO'} "
            f"| {one['hold_sql']}+{one['settle_sql']} → {three['hold_sql']}+{three['settle_sql']} |"
        )
    print(
        "\n   split, medians: | database | case | hold (spend_reserve) ms | its p90 | settle (usage_record) ms "
        "| in statements ms | the rest (Python, COMMITs) ms |"
    )
    for run in runs:
        for name, case in run["cases"].items():
            print(
                f"   | {run['vendor']} | {name} | {case['hold']:.2f} | {case['hold_p90']:.2f} | {case['settle']:.2f} "
                f"| {case['driver']:.2f} | {case['total'] - case['driver']:.2f} |"
            )
    print(f"   ({', '.join(run['vendor'] + ': ' + run['load'] for run in runs)})")
    if any(run["autovacuum"] == "off" for run in runs):
        print(
            "   autovacuum is off on this PostgreSQL server: the bench VACUUMs the hold tables before it starts"
        )
    for run in runs:
        print(
            f"\n   {run['vendor']}: the statements that differ (median ms in the driver; xN: N a Send), "
            "per-user → three-level"
        )
        for sql, cases in run["statements"].items():
            one, three = cases.get("per-user", (None, 0)), cases.get("three-level", (None, 0))
            if (
                one[0] is not None
                and three[0] is not None
                and abs(one[0] - three[0]) < 0.05
                and one[1] == three[1]
            ):
                continue
            shown = [
                "-" if ms is None else f"{ms:.2f}" + (f" x{per_send:.0f}" if per_send > 1.01 else "")
                for ms, per_send in (one, three)
            ]
            print(f"   {shown[0]:>9} → {shown[1]:>9}  {' '.join(sql.split())[:150]}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=FULL_ROWS)
    parser.add_argument("--rebuild", action="store_true", help="regenerate the data even if present")
    parser.add_argument("--requests", type=int, default=10, help="timed requests per page")
    parser.add_argument("--iterations", type=int, default=600, help="timed holds per case and database")
    parser.add_argument("--part", choices=("all", "data", "pages", "holds"), default="all")
    parser.add_argument("--backend", choices=("both", "sqlite", "postgres"), default="both")
    parser.add_argument("--time-app-rebuild", action="store_true", help="also time rollup_rebuild()")
    parser.add_argument("--out", help=argparse.SUPPRESS)  # a part's figures, for the process that ran it
    args = parser.parse_args()
    url = pg_url(args.rows)
    refuse_shared(url)

    if args.out:  # inside a part's own process
        part = {"data": data_part, "pages": pages_part, "holds": holds_part}[args.part]
        Path(args.out).write_text(json.dumps(part(args), default=str))
        return

    print(f"teams bench: {args.rows:,} rows, {load_note()}", flush=True)
    ensure_pg_database(url)
    pg_env = child_env(url)
    if args.part in ("all", "data", "pages"):
        data = run_part("data", pg_env, args)
        print_data(data, url)
    if args.part in ("all", "pages"):
        settings_dir = Path(tempfile.mkdtemp(prefix="teams-bench-settings-"))
        print_pages(run_part("pages", child_env(url, settings_dir), args))
    if args.part in ("all", "holds"):
        runs = []
        if args.backend in ("both", "sqlite"):
            sqlite_url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='teams-bench-')) / 'holds.sqlite3'}"
            runs.append(run_part("holds", child_env(sqlite_url), args))
        if args.backend in ("both", "postgres"):
            runs.append(run_part("holds", pg_env, args))
        print_holds(runs)


if __name__ == "__main__":
    main()

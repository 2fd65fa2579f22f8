"""The data bench/teams.py measures: an organisation of teams on PostgreSQL, built with set-based SQL.

    .venv/bin/python bench/teams.py --part data [--rows 10000000] [--rebuild]   # usually via bench/teams.py

Shape (defaults): 200 teams of 50 members plus 500 people in no team (10,500 users), two managers per
team (members) and one bench manager who is not a member; budgets at every level (the organisation, 90%
of the teams, a quarter of the users); `--rows` ledger rows over the last 395 days (13 months), the
rollups built from them with one INSERT … SELECT … GROUP BY per table, the budget alerts those months'
spend crossed, and the last hour's settled holds plus a few open ones.

The ledger is skewed as real use is: a few heavy users (user rank r is drawn with density ∝ 1/√r, the
ranks scattered over the teams), more calls in recent months, office hours, fewer calls at weekends,
five models with their share of calls (Sonnet most, Opus least), prompt caching on most calls, titles
on Haiku. One person in twenty moved team 120 days ago: their older rows carry the team they were in.
Rates and costs are the seeded prices' (integer pUSD, exact), so rollups and costs reconcile exactly.

Everything runs in the database given (never `chat`, never db.sqlite3): bench/teams.py creates it,
migrates it and calls `data_build`. A second run reuses data of the same size (`data_present`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

TEAMS = 200
TEAM_SIZE = 50
TEAMLESS = 500
DAYS = 395
CHUNK = 1_000_000  # ledger rows per INSERT … SELECT (progress is printed per chunk)
MOVED_DAYS_AGO = 120
STAFF, MANAGER = "bench-staff", "bench-manager"
USER_PREFIX = "tb-user-"
# (model, share of calls in percent); titles (4% of calls) are Haiku 5.5 calls of their own.
MODEL_SHARES = (
    ("claude-sonnet-5-5", 45),
    ("claude-haiku-5-5", 22),
    ("claude-opus-5-5", 10),
    ("claude-sonnet-4-6", 15),
    ("claude-haiku-4-5", 8),
)
SUMS = (
    "cost",
    "input_tokens",
    "output_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
    "thinking_tokens",
    "cache_savings",
)
TITLE_MODEL = "claude-haiku-5-5"
ROLLUP_COUNTS = ("calls", "unpriced_calls", "estimated_calls")
# Rollup table → (its key columns, the table it is summed from, how the key is derived there).
ROLLUPS = {
    "billing_usagemonthly": (
        ("month", "team_id", "user_id", "model"),
        "billing_usagedaily",
        "date_trunc('month', day)::date, team_id, user_id, model",
    ),
    "billing_usagedaymodel": (("day", "model"), "billing_usagedaily", "day, model"),
    "billing_usagedailyuser": (("day", "team_id", "user_id"), "billing_usagedaily", "day, team_id, user_id"),
    "billing_usagemonthlyuser": (
        ("month", "team_id", "user_id"),
        "billing_usagemonthly",
        "month, team_id, user_id",
    ),
}
ROLLUP_TABLES = ("billing_usagedaily", *ROLLUPS, "billing_usagedailyteam", "billing_usagemonthlyteam")
SMALL_TABLES = (
    "auth_user",
    "teams_team",
    "teams_membership",
    "teams_team_managers",
    "billing_userbudget",
    "billing_budgetalert",
    "billing_spendreservation",
)


@dataclass(frozen=True)
class Shape:
    rows: int
    teams: int = TEAMS
    team_size: int = TEAM_SIZE
    teamless: int = TEAMLESS

    @property
    def users(self) -> int:
        return self.teams * self.team_size + self.teamless


class _Steps:
    """Prints each step's seconds as it ends and keeps them by key."""

    def __init__(self) -> None:
        self.began = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def done(self, key: str, label: str) -> None:
        now = time.perf_counter()
        self.seconds[key] = self.seconds.get(key, 0.0) + now - self.last
        print(f"   {label:<64} {now - self.last:7.1f} s", flush=True)
        self.last = now

    def total(self) -> dict[str, float]:
        return self.seconds | {"total": time.perf_counter() - self.began}


def data_present(cursor, shape: Shape) -> bool:
    """Whether the database already holds this shape's data, rollups included."""
    cursor.execute(
        "SELECT (SELECT count(*) FROM auth_user WHERE username LIKE %s),"
        " (SELECT count(*) FROM teams_team),"
        " (SELECT COALESCE(sum(calls), 0) FROM billing_usagemonthlyteam),"
        " (SELECT count(*) FROM auth_user WHERE username = %s)",
        [USER_PREFIX + "%", STAFF],
    )
    users, teams, calls, staff = cursor.fetchone()
    if (users, teams, staff) != (shape.users, shape.teams, 1) or int(calls) != shape.rows:
        return False
    cursor.execute("SELECT count(*) FROM billing_usagerecord")
    return cursor.fetchone()[0] == shape.rows


def _without_indexes(cursor, table: str) -> list[str]:
    """Drop the table's indexes and unique constraints but its primary key (a bulk load builds each once,
    after the rows are in); returns the statements that make them again."""
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND contype = 'u'",
        [table],
    )
    remake = []
    for name, definition in cursor.fetchall():
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        remake.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    cursor.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = %s AND NOT EXISTS"
        " (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
        [table],
    )
    for name, definition in cursor.fetchall():
        cursor.execute(f'DROP INDEX "{name}"')
        remake.append(definition)
    return remake


def data_build(connection, shape: Shape, tz: str) -> dict[str, float]:
    """Replace everything in the bench database with `shape`'s organisation; returns seconds per step."""
    steps = _Steps()
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SET maintenance_work_mem = '512MB'")
        cursor.execute("SET work_mem = '256MB'")
        cursor.execute("SET jit = off")  # compiling each bulk statement costs more than it saves here
        cursor.execute("SELECT setseed(0.42)")
        cursor.execute(
            "TRUNCATE auth_user, teams_team, billing_usagerecord, billing_spendreservation, "
            "billing_userbudget, billing_organisationbudget, billing_sitebudget, billing_budgetalert, "
            f"django_session, {', '.join(ROLLUP_TABLES)} RESTART IDENTITY CASCADE"
        )
        steps.done("people", "emptied the bench tables")
        _people(cursor, shape)
        steps.done("people", f"{shape.users:,} users, {shape.teams} teams, managers")
        remake = _without_indexes(cursor, "billing_usagerecord")
        _ledger(cursor, shape, tz)
        steps.done("ledger", f"{shape.rows:,} ledger rows")
        for statement in remake:
            cursor.execute(statement)
        steps.done("ledger", f"ledger indexes ({len(remake)})")
        rollups_build(cursor, tz)
        steps.done("rollups", "rollups (INSERT … SELECT … GROUP BY per table)")
        _budgets(cursor, shape)
        steps.done("budgets", "budgets, alerts, the last hour's holds")
        cursor.execute("DROP TABLE IF EXISTS tb_people, tb_models")
        for table in ("billing_usagerecord", *ROLLUP_TABLES, *SMALL_TABLES):
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        steps.done("vacuum", "VACUUM ANALYZE")
        rollups_check(cursor)
        steps.done("check", "rollups reconcile with the ledger (cost and calls, every table)")
    return steps.total()


def _people(cursor, shape: Shape) -> None:
    teamed = shape.teams * shape.team_size
    cursor.execute(
        "INSERT INTO teams_team (id, name, monthly_limit, warning_percent, allowed_models, default_model,"
        " created_at) SELECT t, 'Team ' || lpad(t::text, 3, '0'), NULL, 80,"
        " CASE WHEN mod(t, 10) = 0 THEN '[\"claude-haiku-5-5\", \"claude-sonnet-5-5\"]'::jsonb ELSE '[]' END,"
        " '', now() - interval '400 days' FROM generate_series(1, %s) t",
        [shape.teams],
    )
    cursor.execute(
        "INSERT INTO auth_user (id, password, is_superuser, username, first_name, last_name, email,"
        " is_staff, is_active, date_joined) SELECT n, '!', false, %s || lpad(n::text, 5, '0'),"
        " 'Person', lpad(n::text, 5, '0'), 'user' || n || '@bench.invalid', false, true,"
        " now() - interval '400 days' FROM generate_series(1, %s) n",
        [USER_PREFIX, shape.users],
    )
    cursor.execute(
        "INSERT INTO auth_user (id, password, is_superuser, username, first_name, last_name, email,"
        " is_staff, is_active, date_joined) VALUES"
        " (%s, '!', true, %s, 'Bench', 'Staff', 'staff@bench.invalid', true, true, now()),"
        " (%s, '!', false, %s, 'Bench', 'Manager', 'manager@bench.invalid', false, true, now())",
        [shape.users + 1, STAFF, shape.users + 2, MANAGER],
    )
    cursor.execute(
        "SELECT setval(pg_get_serial_sequence('auth_user', 'id'), (SELECT max(id) FROM auth_user))"
    )
    cursor.execute(
        "SELECT setval(pg_get_serial_sequence('teams_team', 'id'), (SELECT max(id) FROM teams_team))"
    )
    # Users 1..teams*team_size are members, team_size a team in id order; the rest are in no team.
    cursor.execute(
        "INSERT INTO teams_membership (user_id, team_id, since) SELECT n, (n - 1) / %s + 1,"
        " now() - CASE WHEN mod(n, 20) = 0 THEN %s ELSE 400 END * interval '1 day'"
        " FROM generate_series(1, %s) n",
        [shape.team_size, MOVED_DAYS_AGO, teamed],
    )
    cursor.execute(
        "INSERT INTO teams_team_managers (team_id, user_id) SELECT t, (t - 1) * %s + k"
        " FROM generate_series(1, %s) t, generate_series(1, 2) k",
        [shape.team_size, shape.teams],
    )
    cursor.execute("INSERT INTO teams_team_managers (team_id, user_id) VALUES (1, %s)", [shape.users + 2])
    # Who each ledger row is billed to: one person in twenty came from the next team 120 days ago.
    cursor.execute(
        "CREATE TEMPORARY TABLE tb_people AS SELECT u.id AS user_id, u.username, m.team_id,"
        " COALESCE(t.name, '') AS team_name, p.id AS prev_team_id, p.name AS prev_team_name, m.since"
        " FROM auth_user u LEFT JOIN teams_membership m ON m.user_id = u.id"
        " LEFT JOIN teams_team t ON t.id = m.team_id"
        " LEFT JOIN teams_team p ON mod(u.id, 20) = 0 AND p.id = mod(m.team_id, %s) + 1"
        " WHERE u.username LIKE %s",
        [shape.teams, USER_PREFIX + "%"],
    )
    cursor.execute("ALTER TABLE tb_people ADD PRIMARY KEY (user_id)")


def _ledger(cursor, shape: Shape, tz: str) -> None:
    models = []
    for model, share in MODEL_SHARES:
        cursor.execute(
            "SELECT id, input_rate, output_rate, cache_write_5m_rate, cache_write_1h_rate, cache_read_rate"
            " FROM billing_modelprice WHERE model = %s AND effective_from <= now()"
            " ORDER BY effective_from DESC LIMIT 1",
            [model],
        )
        price = cursor.fetchone()
        if price is None:
            raise SystemExit(f"no price for {model}: are the seeded prices migrated?")
        models.append((model, share, price))
    buckets = []  # percent bucket → the model (and price) a call in it uses
    for model, share, price in models:
        buckets += [(len(buckets) + k, model, *price) for k in range(share)]
    values = ", ".join(
        f"({b}, '{model}', {pid}, {ri}, {ro}, {r5}, {r1h}, {rr})"
        for b, model, pid, ri, ro, r5, r1h, rr in buckets
    )
    cursor.execute(
        f"CREATE TEMPORARY TABLE tb_models (bucket, model, price_id, ri, ro, r5, r1h, rr) AS VALUES {values}"
    )
    cursor.execute("ANALYZE tb_models")
    cursor.execute("ANALYZE tb_people")
    started = time.perf_counter()
    # One random draw per column, in an inner SELECT; costs are bigint products of tokens and rates.
    sql = """
        INSERT INTO billing_usagerecord (
            created_at, user_id, username, team_id, team_name, conversation_id, conversation_title,
            message_id, model, purpose, cache_note, request_id, input_tokens, output_tokens,
            cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens, thinking_tokens,
            service_tier, inference_geo, speed, estimated, priced, banded, rate_input, rate_output,
            rate_cache_write_5m, rate_cache_write_1h, rate_cache_read, cost, cache_savings, price_id)
        SELECT c.at, p.user_id, p.username,
            CASE WHEN c.at < p.since AND p.prev_team_id IS NOT NULL THEN p.prev_team_id ELSE p.team_id END,
            CASE WHEN c.at < p.since AND p.prev_team_id IS NOT NULL THEN p.prev_team_name ELSE p.team_name END,
            c.conversation, 'Conversation ' || c.conversation, c.n, m.model,
            CASE WHEN c.title THEN 'title' ELSE 'reply' END,
            CASE WHEN c.w5 > 0 THEN '5-minute cache' WHEN c.w1h > 0 THEN '1-hour cache' ELSE '' END,
            'req_bench_' || c.n, c.input, c.output, c.w5, c.w1h, c.cr, c.thinking,
            'standard', '', '', c.estimated, true, false, m.ri, m.ro, m.r5, m.r1h, m.rr,
            c.input * m.ri + c.output * m.ro + c.w5 * m.r5 + c.w1h * m.r1h + c.cr * m.rr,
            c.cr * GREATEST(0, m.ri - m.rr), m.price_id
        FROM (
            SELECT n, title, estimated,
                CASE WHEN at > now() THEN at - interval '1 day' ELSE at END AS at,
                CASE WHEN title THEN %(title_bucket)s ELSE bucket END AS bucket,
                mod(rank * 7919, %(users)s) + 1 AS user_id,
                (mod(rank * 7919, %(users)s) + 1) * 1000 + floor(r_conv * 40)::bigint AS conversation,
                CASE WHEN title THEN 40 + floor(r_in * 400)::bigint
                     ELSE 20 + floor(power(r_in, 3) * 20000)::bigint END AS input,
                CASE WHEN title THEN 8 + floor(r_out * 12)::bigint
                     ELSE 20 + floor(power(r_out, 2) * 4000)::bigint END AS output,
                CASE WHEN NOT title AND r_cache < 0.25 THEN 500 + floor(r_size * 8000)::bigint ELSE 0 END AS w5,
                CASE WHEN NOT title AND r_cache >= 0.25 AND r_cache < 0.30
                     THEN 500 + floor(r_size * 8000)::bigint ELSE 0 END AS w1h,
                CASE WHEN NOT title AND r_cache >= 0.20 AND r_cache < 0.85
                     THEN 1000 + floor(r_size * 60000)::bigint ELSE 0 END AS cr,
                CASE WHEN NOT title AND r_cache >= 0.5 THEN floor(power(r_out, 2) * 1200)::bigint ELSE 0 END
                    AS thinking
            FROM (
                -- the local day (recent ones likelier; seven weekend calls in ten moved to a weekday of
                -- the same week), at an hour of the day (office hours likelier)
                SELECT *, ((day - CASE WHEN extract(isodow FROM day) >= 6 AND weekend_draw < 0.7
                                       THEN extract(isodow FROM day)::int - 1 - floor(weekend_draw / 0.7 * 5)::int
                                       ELSE 0 END)
                           + (7 + 11 * power(hour_draw, 1.4)) * interval '1 hour') AT TIME ZONE %(tz)s AS at
                FROM (
                    SELECT n,
                        (now() AT TIME ZONE %(tz)s)::date - floor(power(random(), 1.25) * %(days)s)::int AS day,
                        random() AS weekend_draw, random() AS hour_draw,
                        floor(power(random(), 2) * %(users)s)::bigint AS rank,
                        floor(random() * 100)::int AS bucket,
                        random() < 0.04 AS title, random() < 0.001 AS estimated,
                        random() AS r_in, random() AS r_out, random() AS r_cache, random() AS r_size,
                        random() AS r_conv
                    FROM generate_series(%(first)s, %(last)s) AS n
                ) draws
            ) dated
        ) c
        JOIN tb_people p ON p.user_id = c.user_id
        JOIN tb_models m ON m.bucket = c.bucket
    """
    title = next(bucket for bucket, model, *_price in buckets if model == TITLE_MODEL)
    for first in range(1, shape.rows + 1, CHUNK):
        last = min(shape.rows, first + CHUNK - 1)
        cursor.execute(
            sql,
            {
                "users": shape.users,
                "tz": tz,
                "days": DAYS - 1,
                "first": first,
                "last": last,
                "title_bucket": title,
            },
        )
        print(f"     … {last:>12,} rows  {time.perf_counter() - started:7.1f} s", flush=True)


def _sum_columns(source_is_ledger: bool) -> tuple[str, str]:
    """(the columns written, the expressions summing them) of one rollup INSERT."""
    columns = [*SUMS, *ROLLUP_COUNTS, "last_activity"]
    if source_is_ledger:
        exprs = [f"sum({name})" for name in SUMS] + [
            "count(*)",
            "count(*) FILTER (WHERE NOT priced)",
            "count(*) FILTER (WHERE estimated)",
            "max(created_at)",
        ]
    else:
        exprs = [f"sum({name})" for name in (*SUMS, *ROLLUP_COUNTS)] + ["max(last_activity)"]
    return ", ".join(columns), ", ".join(exprs)


def rollups_build(cursor, tz: str, since=None) -> float:
    """Rebuild the rollups from the ledger with set-based SQL, wholly or from local day `since` (a date,
    the first of a month) on; returns seconds. The same sums as billing.rollups.rollup_rebuild."""
    started = time.perf_counter()
    day_after = "" if since is None else " WHERE day >= %(since)s"
    month_after = "" if since is None else " WHERE month >= %(since)s"
    ledger_after = "" if since is None else " WHERE created_at >= (%(since)s::timestamp AT TIME ZONE %(tz)s)"
    params = {"tz": tz, "since": since}
    for table in ROLLUP_TABLES:
        cursor.execute(f"DELETE FROM {table}{month_after if 'month' in table else day_after}", params)
    remake = [s for table in ROLLUP_TABLES for s in _without_indexes(cursor, table)] if since is None else []
    columns, exprs = _sum_columns(True)
    cursor.execute(
        f"INSERT INTO billing_usagedaily (day, team_id, user_id, model, username, {columns})"
        f" SELECT (created_at AT TIME ZONE %(tz)s)::date, COALESCE(team_id, 0), user_id, model,"
        f" max(username), {exprs} FROM billing_usagerecord{ledger_after} GROUP BY 1, 2, 3, 4",
        params,
    )
    columns, exprs = _sum_columns(False)
    for table, (keys, source, derived) in ROLLUPS.items():
        after = (month_after if "month" in source else day_after) if since is not None else ""
        labelled = "user_id" in keys
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(keys)}{', username' if labelled else ''}, {columns})"
            f" SELECT {derived}{', max(username)' if labelled else ''}, {exprs} FROM {source}{after}"
            f" GROUP BY {', '.join(str(i + 1) for i in range(len(keys)))}",
            params,
        )
    for table, (key, source, after) in {
        "billing_usagedailyteam": ("day", "billing_usagedailyuser", day_after),
        "billing_usagemonthlyteam": ("month", "billing_usagemonthlyuser", month_after),
    }.items():
        cursor.execute(
            f"INSERT INTO {table} ({key}, team_id, team_name, {columns})"
            f" SELECT u.{key}, u.team_id, COALESCE(max(t.name), ''), {exprs.replace('sum(', 'sum(u.')}"
            f" FROM {source} u LEFT JOIN teams_team t ON t.id = u.team_id"
            f"{after.replace(key, 'u.' + key)} GROUP BY 1, 2",
            params,
        )
    for statement in remake:
        cursor.execute(statement)
    return time.perf_counter() - started


def rollups_check(cursor) -> float:
    """Fail unless every rollup table sums to the ledger's cost and calls; returns seconds."""
    started = time.perf_counter()
    cursor.execute("SELECT sum(cost), count(*) FROM billing_usagerecord")
    ledger = tuple(int(v or 0) for v in cursor.fetchone())
    for table in ROLLUP_TABLES:
        cursor.execute(f"SELECT sum(cost), sum(calls) FROM {table}")
        sums = tuple(int(v or 0) for v in cursor.fetchone())
        if sums != ledger:
            raise SystemExit(f"{table} does not reconcile with the ledger: {sums} != {ledger}")
    return time.perf_counter() - started


def _budgets(cursor, shape: Shape) -> None:
    """Budgets from the spend the data has, so some levels run close to (and past) their limits."""
    cursor.execute("SELECT date_trunc('month', now())::date")
    this_month = cursor.fetchone()[0]
    # Complete months only: the current one has only begun.
    cursor.execute(
        "SELECT COALESCE(avg(s), 0) FROM (SELECT sum(cost) s FROM billing_usagemonthlyteam"
        " WHERE month < %s GROUP BY month) m",
        [this_month],
    )
    org_month = int(cursor.fetchone()[0])
    cursor.execute(
        "INSERT INTO billing_organisationbudget (id, monthly_limit, warning_percent, updated_at)"
        " VALUES (1, %s, 80, now())",
        [org_month * 3 // 2],
    )
    cursor.execute(
        "INSERT INTO billing_sitebudget (id, policy, monthly_limit, updated_at) VALUES (1, 'limit', %s, now())",
        [100 * 10**12],
    )
    # Nine teams in ten have a budget of 0.9x to 2x their average month; the tenth has none.
    cursor.execute(
        "UPDATE teams_team t SET monthly_limit = CASE WHEN mod(t.id, 10) = 5 THEN NULL"
        " ELSE (s.avg_month * (0.9 + mod(t.id * 37, 110) / 100.0))::bigint END"
        " FROM (SELECT team_id, avg(cost) avg_month FROM billing_usagemonthlyteam WHERE month < %s"
        " GROUP BY team_id) s WHERE s.team_id = t.id",
        [this_month],
    )
    # A quarter of the users have a budget row: limits of 1.5x their average month, some unlimited,
    # some a personal cap below it.
    cursor.execute(
        "INSERT INTO billing_userbudget (user_id, policy, monthly_limit, personal_limit, warning_percent,"
        " updated_at) SELECT s.user_id, CASE WHEN mod(s.user_id, 20) = 5 THEN 'unlimited' ELSE 'limit' END,"
        " (s.avg_month * 3 / 2)::bigint, CASE WHEN mod(s.user_id, 8) = 1 THEN (s.avg_month * 1.1)::bigint END,"
        " NULL, now() FROM (SELECT user_id, sum(cost) / 13 avg_month FROM billing_usagemonthlyuser"
        " WHERE mod(user_id, 4) = 1 GROUP BY user_id) s",
    )
    # The alerts those budgets raised in past months: team and organisation, at 80% and at 100%.
    for percent in (80, 100):
        cursor.execute(
            'INSERT INTO billing_budgetalert (scope, subject_id, subject_name, month, percent, "limit",'
            " spent, created_at, notified_at, recipients) SELECT 'team', t.id, t.name, m.month, %s,"
            " t.monthly_limit, m.cost, m.month + interval '20 days', m.month + interval '20 days', ''"
            " FROM billing_usagemonthlyteam m JOIN teams_team t ON t.id = m.team_id"
            " WHERE t.monthly_limit IS NOT NULL AND m.cost * 100 >= t.monthly_limit * %s",
            [percent, percent],
        )
        cursor.execute(
            'INSERT INTO billing_budgetalert (scope, subject_id, subject_name, month, percent, "limit",'
            " spent, created_at, notified_at, recipients) SELECT 'organisation', 0, 'organisation', month,"
            " %s, %s, s, month + interval '25 days', month + interval '25 days', '' FROM"
            " (SELECT month, sum(cost) s FROM billing_usagemonthlyteam GROUP BY month) m"
            " WHERE s * 100 >= %s * %s",
            [percent, org_month * 3 // 2, org_month * 3 // 2, percent],
        )
    # The last hour's holds: settled ones (the rate-limit log) for recent ledger rows, and a few open.
    cursor.execute(
        "INSERT INTO billing_spendreservation (user_id, team_id, team_name, message_id, model, amount,"
        " max_tokens, created_at, settled_at) SELECT user_id, team_id, team_name, message_id, model,"
        " cost * 3, 32000, created_at, created_at + interval '20 seconds' FROM billing_usagerecord"
        " WHERE created_at > now() - interval '1 hour'"
    )
    cursor.execute(
        "INSERT INTO billing_spendreservation (user_id, team_id, team_name, message_id, model, amount,"
        " max_tokens, created_at, settled_at) SELECT p.user_id, p.team_id, p.team_name, 900000000 + p.user_id,"
        " 'claude-sonnet-5-5', 400000000000, 32000, now() - interval '10 seconds', NULL"
        " FROM tb_people p WHERE mod(p.user_id, 500) = 7"
    )


def sizes(cursor) -> dict[str, int]:
    """Row counts of the tables the pages read."""
    counts = {}
    for table in ("billing_usagerecord", *ROLLUP_TABLES, *SMALL_TABLES):
        cursor.execute(f"SELECT count(*) FROM {table}")
        counts[table] = cursor.fetchone()[0]
    return counts

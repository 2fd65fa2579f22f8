from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from billing_factories import MODEL, make_conversation, make_message, make_staff, make_user, record_call
from django.utils import timezone

from billing.dashboard import TABLES, spreadsheet_safe, table_rows
from billing.periods import preset
from billing.queries import SUM_FIELDS

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/billing/usagerecord/dashboard/"


def seed_usage():
    alice, bob = make_user("alice"), make_user("bob")
    chat = make_conversation(alice, title="Alice's chat")
    record_call(alice, conversation=chat, message=make_message(chat), input_tokens=1000, output_tokens=500)
    record_call(
        alice,
        model="claude-haiku-5-5",
        conversation=chat,
        input_tokens=200_000,
        output_tokens=10,
        cache_read_tokens=5000,
        cache_write_1h_tokens=300,
        purpose="title",
    )
    record_call(bob, model="claude-opus-5", input_tokens=12, output_tokens=34, cache_read_tokens=100_000)
    record_call(bob, model="claude-unknown-1", input_tokens=5, output_tokens=5)
    return alice, bob


def test_non_staff_cannot_see_the_dashboard(client):
    client.force_login(make_user("plain"))
    response = client.get(DASHBOARD)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    assert client.get(DASHBOARD + "export.csv").status_code == 302
    client.logout()
    assert client.get(DASHBOARD).status_code == 302


def test_staff_without_ledger_view_permission_gets_403(client):
    client.force_login(make_user("clerk", is_staff=True))
    assert client.get(DASHBOARD).status_code == 403


def test_totals_equal_the_sum_of_user_rows_model_rows_and_day_rows(client):
    seed_usage()
    client.force_login(make_staff())
    response = client.get(DASHBOARD, {"preset": "month"})
    assert response.status_code == 200
    context = response.context
    totals = context["totals"]
    for table in ("users", "models", "days"):
        for field in (*SUM_FIELDS, "calls", "unpriced_calls"):
            assert sum(row[field] for row in context[table]) == totals[field], (table, field)
    assert totals["calls"] == 4
    assert totals["active_users"] == 2
    assert totals["unpriced_calls"] == 1
    assert b"unpriced" in response.content
    assert (
        b"<svg" in response.content and b"<script" not in response.content.split(b'id="billing-dashboard"')[1]
    )


def test_csv_export_equals_the_table_shown(client):
    seed_usage()
    client.force_login(make_staff())
    params = {"preset": "7d", "sort": "calls", "dir": "asc"}
    page = client.get(DASHBOARD, params)
    for table in TABLES:
        response = client.get(DASHBOARD + "export.csv", {**params, "table": table})
        assert response["Content-Type"].startswith("text/csv")
        parsed = list(csv.reader(io.StringIO(response.content.decode())))
        header, rows = table_rows(page.context, table)
        assert parsed[0] == header
        assert parsed[1:] == [[str(cell) for cell in row] for row in rows]
        assert parsed[-1][0] == "TOTAL"
    users_csv = list(
        csv.DictReader(io.StringIO(client.get(DASHBOARD + "export.csv", params).content.decode()))
    )
    body = [row for row in users_csv if row["User id"] != "TOTAL"]
    assert [row["User"] for row in body] == [row["username_label"] for row in page.context["users"]]
    assert sum(Decimal(row["Cost (USD)"]) for row in body) == Decimal(users_csv[-1]["Cost (USD)"])
    # Exact: Sonnet 5.5 1,000 in + 500 out = $0.007 is in alice's total to the pico-dollar.
    alice = next(row for row in body if row["User"] == "alice")
    # Haiku 5.5 call: 205,300 prompt tokens > 100K, so band rates: 200,000 × 0.50 + 10 × 2.50
    # + 5,000 × 0.05 + 300 × 1.00 per million.
    haiku = Decimal("0.1") + Decimal("0.000025") + Decimal("0.00025") + Decimal("0.0003")
    assert Decimal(alice["Cost (USD)"]) == Decimal("0.007") + haiku


def test_user_table_sorts_by_each_column(client):
    alice, bob = seed_usage()
    client.force_login(make_staff())
    by_cost = client.get(DASHBOARD, {"sort": "cost"}).context["users"]
    assert [row["user_id"] for row in by_cost] == [alice.pk, bob.pk]
    by_cost_asc = client.get(DASHBOARD, {"sort": "cost", "dir": "asc"}).context["users"]
    assert [row["user_id"] for row in by_cost_asc] == [bob.pk, alice.pk]
    for sort in ("tokens", "calls", "last_activity", "budget_used", "username"):
        assert client.get(DASHBOARD, {"sort": sort}).status_code == 200


def test_user_detail_shows_models_days_and_top_conversations(client):
    alice, _bob = seed_usage()
    client.force_login(make_staff())
    response = client.get(f"{DASHBOARD}user/{alice.pk}/", {"preset": "month"})
    assert response.status_code == 200
    context = response.context
    assert context["subject_name"] == "alice"
    assert {row["model"] for row in context["models"]} == {MODEL, "claude-haiku-5-5"}
    assert context["conversations"][0]["title"] == "Alice's chat"
    assert sum(row["cost"] for row in context["days"]) == context["totals"]["cost"]


def test_date_presets_are_whole_days_in_time_zone(settings):
    settings.TIME_ZONE = "America/New_York"
    zone = ZoneInfo("America/New_York")
    with timezone.override(zone):
        # 02:00 UTC on 1 March is still 28 February in New York.
        now = datetime(2026, 3, 1, 2, 0, tzinfo=ZoneInfo("UTC"))
        today = preset("today", now)
        assert today.first_day == date(2026, 2, 28)
        assert today.start == datetime(2026, 2, 28, tzinfo=zone)
        assert today.end == datetime(2026, 3, 1, tzinfo=zone)
        month = preset("month", now)
        assert (month.first_day, month.last_day) == (date(2026, 2, 1), date(2026, 2, 28))
        last = preset("last_month", now)
        assert (last.first_day, last.last_day) == (date(2026, 1, 1), date(2026, 1, 31))
        week = preset("7d", now)
        assert week.first_day == date(2026, 2, 22) and len(week.days) == 7
        # DST: 8 March 2026 has 23 hours in New York.
        march = preset("month", datetime(2026, 3, 20, tzinfo=zone))
        utc = ZoneInfo("UTC")
        assert march.end.astimezone(utc) - march.start.astimezone(utc) == timedelta(days=31) - timedelta(
            hours=1
        )


def test_a_call_late_in_the_local_evening_counts_on_the_local_day(client, settings, monkeypatch):
    settings.TIME_ZONE = "Pacific/Auckland"
    zone = ZoneInfo("Pacific/Auckland")
    user = make_user("kiwi")
    with timezone.override(zone):
        local = timezone.localtime(timezone.now())
        yesterday_late = datetime.combine(
            local.date() - timedelta(days=1), datetime.min.time(), tzinfo=zone
        ) + timedelta(hours=23, minutes=30)
        monkeypatch.setattr(timezone, "now", lambda: yesterday_late)
        record_call(user, input_tokens=1_000_000)
        monkeypatch.undo()
        client.force_login(make_staff())
        today = client.get(DASHBOARD, {"preset": "today"}).context
        week = client.get(DASHBOARD, {"preset": "7d"}).context
    assert today["totals"]["calls"] == 0
    assert week["totals"]["calls"] == 1
    day_rows = [row for row in week["days"] if row["calls"]]
    assert day_rows[0]["day"] == yesterday_late.date()


def test_custom_range_is_validated(client):
    client.force_login(make_staff())
    bad = client.get(DASHBOARD, {"preset": "custom", "start": "2026-05-02", "end": "2026-05-01"})
    assert bad.status_code == 400  # the page, showing the error
    assert b"before the start" in bad.content
    ok = client.get(DASHBOARD, {"preset": "custom", "start": "2026-05-01", "end": "2026-05-03"})
    assert [d.isoformat() for d in ok.context["period"].days] == ["2026-05-01", "2026-05-02", "2026-05-03"]


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_quoted(client):
    for username in ("+1+1", "-2+3", "@SUM", "=cmd"):
        record_call(make_user(username), input_tokens=1000, output_tokens=500)
    record_call(make_user("plain"), model="=HYPERLINK(1)", input_tokens=1)
    client.force_login(make_staff())
    users = list(csv.DictReader(io.StringIO(client.get(DASHBOARD + "export.csv").content.decode())))
    assert sorted(row["User"] for row in users[:-1]) == ["'+1+1", "'-2+3", "'=cmd", "'@SUM", "plain"]
    assert [row["Cost (USD)"] for row in users[:4]] == ["0.007"] * 4  # numbers stay numbers
    export = client.get(DASHBOARD + "export.csv", {"table": "models"}).content.decode()
    assert "'=HYPERLINK(1)" in [row[0] for row in csv.reader(io.StringIO(export))]


def test_every_formula_start_is_neutralised_and_other_cells_are_kept():
    starts = ["=1+1", "+1", "-1", "@A1", "\t=1", "\r=1"]
    assert [spreadsheet_safe(cell) for cell in starts] == ["'" + cell for cell in starts]
    kept = ["alice", "a=1", "", 42, None]
    assert [spreadsheet_safe(cell) for cell in kept] == kept
    # Exact amounts are written positionally, never in exponent notation a spreadsheet misreads.
    amounts = [Decimal("-1.5"), Decimal("1E-8"), Decimal("0.000000000001"), Decimal("1E+3")]
    assert [spreadsheet_safe(cell) for cell in amounts] == ["-1.5", "0.00000001", "0.000000000001", "1000"]


def test_a_tiny_cost_is_exported_positionally(client):
    record = record_call(make_user("tiny"), model="claude-haiku-5-5", input_tokens=1)
    assert record.cost == 10**5  # one token at $0.10 per million: a ten-millionth of a dollar
    client.force_login(make_staff())
    users = list(csv.DictReader(io.StringIO(client.get(DASHBOARD + "export.csv").content.decode())))
    assert users[0]["Cost (USD)"] == "0.0000001"


@pytest.mark.parametrize("user_id", ["99999999999999999999", "9223372036854775808", "2147483648", "987654"])
def test_a_user_id_out_of_range_or_unknown_is_404(client, user_id):
    client.force_login(make_staff())
    assert client.get(f"{DASHBOARD}user/{user_id}/").status_code == 404


def test_a_deleted_users_ledger_is_still_shown(client):
    ghost = make_user("ghost")
    record_call(ghost, input_tokens=1, output_tokens=1)
    ghost_id = ghost.pk
    ghost.delete()
    client.force_login(make_staff())
    assert client.get(f"{DASHBOARD}user/{ghost_id}/").status_code == 200


@pytest.mark.parametrize(
    "start, end",
    [
        ("9999-12-01", "9999-12-31"),
        ("9999-12-31", "9999-12-31"),
        ("1969-12-31", "1970-01-05"),
        ("99999-01-01", "99999-01-02"),
    ],
)
def test_a_custom_period_out_of_range_is_400_on_the_dashboard_the_csv_and_the_user_page(client, start, end):
    alice, _bob = seed_usage()
    client.force_login(make_staff())
    query = {"preset": "custom", "start": start, "end": end}
    for url in (DASHBOARD, DASHBOARD + "export.csv", f"{DASHBOARD}user/{alice.pk}/"):
        assert client.get(url, query).status_code == 400, url
    if not start.startswith("99999"):
        assert b"Choose dates between 1970-01-01 and 9998-12-31." in client.get(DASHBOARD, query).content
        assert (
            client.get(DASHBOARD + "export.csv", query).content
            == b"Choose dates between 1970-01-01 and 9998-12-31."
        )


def test_the_first_and_last_days_a_period_may_have_are_shown(client):
    alice, _bob = seed_usage()
    client.force_login(make_staff())
    for start, end in (("9998-12-01", "9998-12-31"), ("1970-01-01", "1970-01-31")):
        query = {"preset": "custom", "start": start, "end": end}
        for url in (DASHBOARD, DASHBOARD + "export.csv", f"{DASHBOARD}user/{alice.pk}/"):
            assert client.get(url, query).status_code == 200, (url, start)

"""Monthly statements: a team's members by model and the organisation's teams, equal to the ledger."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from teams_factories import join, make_conversation, make_team, make_user, record_call_at

from billing.models import UsageRecord
from billing.money import format_money, pico_to_usd
from billing.periods import current_month, local_midnight, month_of
from billing.statements import exact_usd

pytestmark = pytest.mark.django_db

MONTH = month_of(date(2026, 10, 1))  # a past month (prices are in force from 2026-01-01)
KEY = "2026-10"
OPUS, HAIKU = "claude-opus-5", "claude-haiku-5-5"
SECRET_TITLE = "Secret merger plan with Initech"


def at(day: int, hour: int = 12, minute: int = 0):
    return local_midnight(MONTH.first_day + timedelta(days=day - 1)) + timedelta(hours=hour, minutes=minute)


def ledger_cost(*conditions, **filters) -> int:
    """What the ledger itself says was spent in MONTH: the statement's yardstick."""
    rows = UsageRecord.objects.for_period(MONTH.start, MONTH.end).filter(*conditions, **filters)
    return rows.total_cost()


NO_TEAM_ROWS = Q(team_id__isnull=True) | Q(team_id=0)


@pytest.fixture
def org():
    """A month of calls: a member moved from Research to Sales mid-month, a team deleted after the month,
    calls under no team, title calls, a member with no calls, and calls just outside the month."""
    staff = make_user("boss", is_staff=True)
    manager = make_user("mia")
    alice, bob, carol, dave, erin, frank = (
        make_user(n) for n in ("alice", "bob", "carol", "dave", "erin", "frank")
    )
    research = make_team("Research", managers=[manager], monthly_limit=50 * 10**12)
    sales = make_team("Sales")
    doomed = make_team("Skunkworks")
    for user, team in ((alice, research), (bob, research), (carol, sales), (dave, doomed)):
        join(user, team, since=at(1) - timedelta(days=40))
    join(frank, research, since=at(3))
    join(make_user("gina"), research, since=MONTH.end + timedelta(days=2))  # joined after the month
    alice.first_name, alice.last_name = "Alice", "Ames"
    alice.save()
    henry = make_user("henry")
    join(henry, research, since=at(1) - timedelta(days=40))
    record_call_at(at(4), henry, model=HAIKU, input_tokens=77)
    henry.delete()  # his spend stays on the statement, by the name his rows recorded
    chat = make_conversation(alice, title=SECRET_TITLE)

    record_call_at(at(1, 0, 0), alice, conversation=chat, input_tokens=1234, output_tokens=567)
    record_call_at(
        at(2), alice, conversation=chat, purpose="title", model=HAIKU, input_tokens=321, output_tokens=9
    )
    record_call_at(at(5), alice, model=OPUS, input_tokens=7, cache_read_tokens=1, cache_write_1h_tokens=13)
    record_call_at(at(6), bob, input_tokens=100, output_tokens=3)
    record_call_at(at(9), bob, model=OPUS, cache_write_5m_tokens=77, output_tokens=1)
    join(bob, sales, since=at(15))  # moved mid-month: what he spent before stays with Research
    record_call_at(at(16), bob, input_tokens=555, output_tokens=44)
    record_call_at(at(17), bob, model=HAIKU, purpose="title", input_tokens=3, output_tokens=2)
    record_call_at(at(20), carol, model=OPUS, input_tokens=999, output_tokens=1)
    record_call_at(at(21), dave, input_tokens=42, output_tokens=42)
    record_call_at(at(22), erin, input_tokens=5, output_tokens=5)  # under no team
    record_call_at(MONTH.end - timedelta(microseconds=1), erin, cache_read_tokens=3)
    # Just outside the month: never on its statements.
    record_call_at(MONTH.start - timedelta(microseconds=1), alice, input_tokens=10**6)
    record_call_at(MONTH.end, carol, input_tokens=10**6)
    doomed_id = doomed.pk
    doomed.delete()
    return {
        "staff": staff,
        "manager": manager,
        "research": research,
        "sales": sales,
        "doomed_id": doomed_id,
        "users": {u.username: u for u in (alice, bob, carol, dave, erin, frank)},
    }


def statement_page(client, user, team_id: int, key: str = KEY):
    client.force_login(user)
    return client.get(reverse("teams:statement", args=[team_id, key]))


def csv_rows(response) -> list[dict]:
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_team_statements_total_the_ledger_to_the_pico_dollar_through_a_move_and_a_deletion(client, org):
    research, sales, doomed_id = org["research"].pk, org["sales"].pk, org["doomed_id"]
    for team_id in (research, sales, doomed_id):
        statement = statement_page(client, org["staff"], team_id).context["statement"]
        assert statement.total.cost == ledger_cost(team_id=team_id) > 0, team_id
        for member in statement.members:
            assert member.figures.cost == ledger_cost(team_id=team_id, user_id=member.user_id)
            for line in member.lines:
                assert line.figures.cost == ledger_cost(
                    team_id=team_id, user_id=member.user_id, model=line.model
                )
                assert (
                    line.figures.calls
                    == UsageRecord.objects.for_period(MONTH.start, MONTH.end)
                    .filter(team_id=team_id, user_id=member.user_id, model=line.model)
                    .count()
                )
    org_total = ledger_cost()
    assert (
        sum(ledger_cost(team_id=t) for t in (research, sales, doomed_id)) + ledger_cost(NO_TEAM_ROWS)
        == org_total
    )


def test_team_statement_lists_who_spent_under_the_team_then_and_members_with_nothing(client, org):
    response = statement_page(client, org["manager"], org["research"].pk)
    assert response.status_code == 200
    members = {m.username: m for m in response.context["statement"].members}
    # Bob moved to Sales mid-month: his Research calls stay here; Frank joined and spent nothing;
    # Gina joined after the month, so she is not on its statement.
    assert set(members) == {"alice", "bob", "frank", "henry"}
    assert members["henry"].note == "account deleted"
    assert members["alice"].name == "Alice Ames" and members["alice"].note == ""
    assert [line.model for line in members["alice"].lines] == sorted([OPUS, HAIKU, "claude-sonnet-5-5"])
    assert members["bob"].note == "left the team"
    assert members["frank"].lines == () and members["frank"].figures.cost == 0
    sales = statement_page(client, org["staff"], org["sales"].pk).context["statement"]
    assert {m.username for m in sales.members} == {"bob", "carol"}
    page = response.content.decode()
    assert "Subtotal of frank" in page and "No calls this month." in page
    assert "Alice Ames <span" in page and "(alice)" in page and "(left the team)" in page
    assert format_money(ledger_cost(team_id=org["research"].pk)) in page  # the project's one way
    assert "of the team's current monthly budget of $50.00" in page
    assert 'scope="rowgroup"' in page and 'scope="col"' in page


def test_staff_see_the_statement_of_calls_made_under_no_team(client, org):
    statement = statement_page(client, org["staff"], 0).context["statement"]
    assert statement.subject.name == "No team"
    assert [member.username for member in statement.members] == ["erin"]
    assert statement.total.cost == ledger_cost(NO_TEAM_ROWS) > 0


def test_deleted_team_statement_is_listed_by_its_recorded_name_for_staff(client, org):
    response = statement_page(client, org["staff"], org["doomed_id"])
    assert response.status_code == 200
    assert response.context["statement"].subject.name == "Skunkworks"
    assert "(deleted team)" in response.content.decode()


def test_organisation_statement_equals_the_ledger_and_lists_every_team_and_no_team(client, org):
    client.force_login(org["staff"])
    response = client.get(reverse("teams:org_statement", args=[KEY]))
    assert response.status_code == 200
    statement = response.context["statement"]
    assert statement.total.cost == ledger_cost() > 0
    by_name = {line.name: line for line in statement.teams}
    assert set(by_name) == {"Research", "Sales", "Skunkworks"}
    assert by_name["Skunkworks"].note == "deleted"
    for line in statement.teams:
        assert line.figures.cost == ledger_cost(team_id=line.team_id)
    assert statement.no_team.name == "No team"
    assert statement.no_team.figures.cost == ledger_cost(NO_TEAM_ROWS) > 0
    page = response.content.decode()
    assert "No team" in page and "Organisation total" in page
    assert reverse("teams:statement", args=[org["research"].pk, KEY]) in page
    assert reverse("teams:statement", args=[org["doomed_id"], KEY]) in page
    assert format_money(ledger_cost()) in page


def test_team_csv_has_a_row_per_member_and_model_and_totals_exactly_the_ledger(client, org):
    client.force_login(org["manager"])
    response = client.get(reverse("teams:statement_csv", args=[org["research"].pk, KEY]))
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="statement-research-2026-10.csv"'
    rows = csv_rows(response)
    *lines, total = rows
    assert total["User"] == "TOTAL"
    expected = pico_to_usd(ledger_cost(team_id=org["research"].pk))
    assert Decimal(total["Cost (USD)"]) == expected
    assert sum(Decimal(row["Cost (USD)"]) for row in lines) == expected
    assert {(row["User"], row["Model"]) for row in lines} == {
        ("alice", "claude-sonnet-5-5"),
        ("alice", OPUS),
        ("alice", HAIKU),
        ("bob", "claude-sonnet-5-5"),
        ("bob", OPUS),
        ("frank", ""),
        ("henry", HAIKU),
    }
    for row in lines:
        if row["Model"]:
            cost = ledger_cost(team_id=org["research"].pk, user_id=int(row["User id"]), model=row["Model"])
            assert row["Cost (USD)"] == exact_usd(cost)
    assert "E-" not in response.content.decode()  # plain decimals, never scientific notation


def test_organisation_csv_lists_teams_and_no_team_and_totals_exactly_the_ledger(client, org):
    client.force_login(org["staff"])
    response = client.get(reverse("teams:org_statement_csv", args=[KEY]))
    assert response["Content-Disposition"] == 'attachment; filename="statement-organisation-2026-10.csv"'
    *lines, total = csv_rows(response)
    assert [row["Team"] for row in lines] == ["Research", "Sales", "Skunkworks", "No team"]
    assert total["Team"] == "TOTAL"
    assert Decimal(total["Cost (USD)"]) == pico_to_usd(ledger_cost())
    assert sum(Decimal(row["Cost (USD)"]) for row in lines) == pico_to_usd(ledger_cost())
    assert Decimal(lines[-1]["Cost (USD)"]) == pico_to_usd(ledger_cost(NO_TEAM_ROWS))


def test_exact_usd_is_a_plain_decimal_however_small():
    assert exact_usd(10_000) == "0.00000001"
    assert exact_usd(1) == "0.000000000001"
    assert exact_usd(1234 * 10**12) == "1234.00"


def test_a_manager_sees_only_their_own_teams_statement_and_gets_404_elsewhere(client, org):
    other = make_team("Other")
    join(org["users"]["alice"], other)  # a member who is not a manager sees no statement either
    client.force_login(org["manager"])
    assert client.get(reverse("teams:statement", args=[org["research"].pk, KEY])).status_code == 200
    for url in (
        reverse("teams:statement", args=[org["sales"].pk, KEY]),
        reverse("teams:statement_csv", args=[org["sales"].pk, KEY]),
        reverse("teams:statement", args=[org["doomed_id"], KEY]),  # deleted: staff only
        reverse("teams:statement", args=[0, KEY]),  # no team: staff only
        reverse("teams:statement", args=[10**30, KEY]),
        reverse("teams:org_statement", args=[KEY]),
        reverse("teams:org_statement_csv", args=[KEY]),
    ):
        assert client.get(url).status_code == 404, url
    client.force_login(org["users"]["alice"])
    assert client.get(reverse("teams:statement", args=[other.pk, KEY])).status_code == 404
    client.logout()
    response = client.get(reverse("teams:statement", args=[org["research"].pk, KEY]))
    assert response.status_code == 302 and "login" in response["Location"]


def test_no_conversation_title_appears_on_any_statement(client, org):
    client.force_login(org["staff"])
    urls = [
        reverse(name, args=[org["research"].pk, KEY]) for name in ("teams:statement", "teams:statement_csv")
    ] + [reverse(name, args=[KEY]) for name in ("teams:org_statement", "teams:org_statement_csv")]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200
        assert "Secret merger" not in response.content.decode(), url
    assert UsageRecord.objects.filter(conversation_title=SECRET_TITLE).exists()  # it is in the ledger


def test_statements_read_the_monthly_rollups_never_the_ledger(client, org):
    client.force_login(org["staff"])
    with CaptureQueriesContext(connection) as queries:
        for url in (
            reverse("teams:statement", args=[org["research"].pk, KEY]),
            reverse("teams:statement_csv", args=[org["sales"].pk, KEY]),
            reverse("teams:org_statement", args=[KEY]),
            reverse("teams:org_statement_csv", args=[KEY]),
        ):
            assert client.get(url).status_code == 200
    statements = [query["sql"] for query in queries.captured_queries]
    assert any("billing_usagemonthly" in sql for sql in statements)
    assert not [sql for sql in statements if "billing_usagerecord" in sql]


def test_month_navigation_links_the_previous_and_next_months(client, org):
    response = statement_page(client, org["manager"], org["research"].pk)
    page = response.content.decode()
    assert f'href="{reverse("teams:statement", args=[org["research"].pk, "2026-09"])}"' in page
    assert f'href="{reverse("teams:statement", args=[org["research"].pk, "2026-11"])}"' in page
    assert f'href="{reverse("teams:statement_csv", args=[org["research"].pk, KEY])}"' in page
    assert "September 2026" in page and "November 2026" in page
    this_month = f"{current_month().first_day:%Y-%m}"
    latest = statement_page(client, org["manager"], org["research"].pk, this_month)
    assert latest.context["next_url"] == "" and latest.context["previous_url"]
    assert "(so far)" in latest.content.decode()
    assert "gina" in {member.username for member in latest.context["statement"].members}
    earliest = statement_page(client, org["manager"], org["research"].pk, "1970-01")
    assert earliest.context["previous_url"] == "" and earliest.context["next_url"].endswith("/1970-02/")
    client.force_login(org["staff"])
    org_page = client.get(reverse("teams:org_statement", args=[KEY])).content.decode()
    assert f'href="{reverse("teams:org_statement", args=["2026-09"])}"' in org_page
    assert f'href="{reverse("teams:org_statement", args=["2026-11"])}"' in org_page


def test_a_month_outside_1970_to_9998_or_malformed_is_not_found(client):
    team = make_team("Research")
    client.force_login(make_user("boss", is_staff=True))
    for key in ("1969-12", "0000-01", "9999-01"):
        assert client.get(reverse("teams:statement", args=[team.pk, key])).status_code == 404, key
        assert client.get(reverse("teams:org_statement_csv", args=[key])).status_code == 404, key
    for path in (f"/teams/{team.pk}/statement/2026-13/", "/teams/statement/26-1/"):
        assert client.get(path).status_code == 404, path
    for key in ("1970-01", "9998-12"):
        assert client.get(reverse("teams:statement", args=[team.pk, key])).status_code == 200, key
        assert client.get(reverse("teams:org_statement_csv", args=[key])).status_code == 200, key


def test_csv_text_cells_cannot_run_as_spreadsheet_formulas(client):
    manager = make_user("=cmd|' /C calc'!A0")
    team = make_team('=HYPERLINK("http://evil")', managers=[manager], members=[manager])
    record_call_at(local_midnight(date(2026, 10, 3)), manager, input_tokens=10)
    client.force_login(manager)
    response = client.get(reverse("teams:statement_csv", args=[team.pk, KEY]))
    *lines, _total = csv_rows(response)
    assert lines[0]["Team"].startswith("'=") and lines[0]["User"].startswith("'=")
    assert response["Content-Disposition"] == 'attachment; filename="statement-hyperlinkhttpevil-2026-10.csv"'
    page = client.get(reverse("teams:statement", args=[team.pk, KEY])).content.decode()
    assert "&quot;http://evil&quot;" in page and '"http://evil"' not in page

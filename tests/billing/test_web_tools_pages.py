"""Web searches where people see money: the receipt and the user's usage page, the staff dashboard and
its CSV, the team and organisation statements (all read from the ledger row or the rollups)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from billing_factories import make_conversation, make_message, make_staff, make_team, make_user, record_call
from django.urls import reverse
from django.utils import timezone

from billing.money import rate_from_usd_per_thousand
from billing.tool_prices import ServerToolPrice

pytestmark = pytest.mark.django_db


def price_fetches(per_thousand: str) -> None:
    """A version of the web fetch price from now (the seeded one is $0: its content is billed as tokens)."""
    ServerToolPrice.objects.create(
        tool="web_fetch",
        effective_from=timezone.now() - timedelta(seconds=1),
        rate=rate_from_usd_per_thousand(per_thousand),
    )


def test_the_receipt_shows_the_searches_the_fetch_and_what_they_cost(client):
    price_fetches("1")
    user = make_user()
    conversation = make_conversation(user)
    message = make_message(conversation)
    record_call(
        user,
        conversation=conversation,
        message=message,
        input_tokens=1000,
        output_tokens=500,
        web_search_requests=3,
        web_fetch_requests=1,
    )
    client.force_login(user)

    page = client.get(reverse("billing:receipt", args=[message.pk])).content.decode()

    assert "3 searches · 1 fetch · $0.031" in page
    assert '<td>Web searches</td><td class="num">3</td><td class="num">$10.00 per 1,000</td>' in page
    assert '<td>Web fetches</td><td class="num">1</td><td class="num">$1.00 per 1,000</td>' in page
    usage_page = client.get(reverse("billing:my_usage")).content.decode()
    assert 'web: <span id="my-web-use">3 searches · 1 fetch · $0.031</span>' in usage_page


def test_the_dashboard_and_its_csv_show_searches_and_their_share_of_the_cost(client):
    searcher, other = make_user("searcher"), make_user("quiet")
    record_call(searcher, input_tokens=1000, output_tokens=500, web_search_requests=3)  # $0.007 + $0.03
    record_call(other, input_tokens=1000)  # $0.002
    client.force_login(make_staff())

    page = client.get(reverse("admin:billing_dashboard")).content.decode()

    assert "Web searches" in page
    assert "$0.03, 76% of the cost" in page  # of $0.039
    text = client.get(reverse("admin:billing_dashboard_csv") + "?table=users").content.decode()
    header, *rows = list(csv.reader(io.StringIO(text)))
    by_user = {row[header.index("User")]: row for row in rows}
    assert by_user["searcher"][header.index("Web searches")] == "3"
    assert by_user["searcher"][header.index("Web searches and fetches (USD)")] == "0.03"
    assert by_user["quiet"][header.index("Web searches")] == "0"
    total = next(row for row in rows if row[0] == "TOTAL")
    assert total[header.index("Web searches")] == "3"


def test_statements_list_each_members_searches_and_their_cost(client):
    member = make_user("ada")
    team = make_team("Research", members=[member])
    record_call(member, input_tokens=1000, output_tokens=500, web_search_requests=2)
    client.force_login(make_staff())
    month = f"{timezone.localdate():%Y-%m}"

    text = client.get(reverse("teams:statement_csv", args=[team.pk, month])).content.decode()
    header, *rows = list(csv.reader(io.StringIO(text)))
    line = next(row for row in rows if row[header.index("User")] == "ada")
    assert line[header.index("Web searches")] == "2"
    assert line[header.index("Web searches and fetches (USD)")] == "0.02"
    assert line[header.index("Cost (USD)")] == "0.027"
    page = client.get(reverse("teams:org_statement", args=[month])).content.decode()
    assert '<th scope="col" class="num">Web searches</th>' in page

"""The dashboard's paged, searchable per-user table, its chart (axes, split by model, empty state),
the htmx partial a period switch gets, and the admin index link."""

from __future__ import annotations

import re

import pytest
from billing_factories import make_staff, make_user, record_call

from billing.dashboard import USERS_PER_PAGE

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/billing/usagerecord/dashboard/"


def many_users(names: list[str]) -> list:
    """Accounts without a password (hashing one costs half a second of CPU on purpose)."""
    from django.contrib.auth import get_user_model

    User = get_user_model()
    User.objects.bulk_create([User(username=name, password="!") for name in names])
    return list(User.objects.filter(username__in=names).order_by("username"))


def user_cells(content: bytes) -> list[str]:
    """The user names of the per-user table's body rows, in order (the row header of each row)."""
    body = content.decode().split('id="panel-users"')[1].split("<tbody>")[1].split("</tbody>")[0]
    return re.findall(r'<th scope="row"><a href="[^"]*">([^<]*)</a></th>', body)


def test_the_user_table_is_paged_and_each_page_links_to_the_next(client):
    users = many_users([f"pager{n:03d}" for n in range(USERS_PER_PAGE + 5)])
    for n, user in enumerate(users):
        record_call(user, input_tokens=1000 + n)  # a distinct cost each: pager054 costs most
    client.force_login(make_staff())
    first = client.get(DASHBOARD, {"preset": "month"})
    names = user_cells(first.content)
    assert len(names) == USERS_PER_PAGE
    assert names[0] == "pager054" and names[-1] == "pager005"
    assert b"Users 1\xe2\x80\x9350 of 55" in first.content
    assert b'rel="next"' in first.content and b'rel="prev"' not in first.content
    second = client.get(DASHBOARD, {"preset": "month", "sort": "cost", "dir": "desc", "page": "2"})
    assert user_cells(second.content) == [f"pager{n:03d}" for n in range(4, -1, -1)]
    assert b"page 2 of 2" in second.content
    # Totals still count every user, not the page.
    assert second.context["totals"]["active_users"] == USERS_PER_PAGE + 5
    # A page number past the end or not a number shows a real page, not an error.
    assert client.get(DASHBOARD, {"page": "99"}).status_code == 200
    assert client.get(DASHBOARD, {"page": "x"}).status_code == 200


def test_every_sort_pages_through_the_same_order_as_the_full_table(client):
    from billing.dashboard import USER_SORTS, all_user_rows
    from billing.models import BudgetPolicy, UserBudget
    from billing.periods import preset

    users = many_users(
        [f"Sorter{n:03d}" if n % 4 == 0 else f"sorter{n:03d}" for n in range(USERS_PER_PAGE + 12)]
    )
    for n, user in enumerate(users):
        # Equal costs, calls and tokens for many, so ties show their order too.
        for _ in range(1 + n % 3):
            record_call(user, input_tokens=1000 * (1 + n % 5), output_tokens=n % 2)
        if n % 7 == 0:
            UserBudget.objects.create(user=user, policy=BudgetPolicy.LIMIT, monthly_limit=10**9 * (1 + n % 3))
        elif n % 7 == 1:
            UserBudget.objects.create(user=user, policy=BudgetPolicy.UNLIMITED)
    client.force_login(make_staff())
    for sort in USER_SORTS:
        for direction in ("desc", "asc"):
            for search in ("", "ORTER0"):
                expected = all_user_rows(preset("month"), None, sort, direction == "desc", search)
                params = {"preset": "month", "sort": sort, "dir": direction, "q": search}
                shown = []
                for number in (1, 2):
                    page = client.get(DASHBOARD, {**params, "page": number}).context["user_page"]
                    shown += [] if number > page.paginator.num_pages else list(page)
                assert shown == expected, (sort, direction, search)


def test_search_finds_users_by_part_of_their_name_and_says_when_none_match(client):
    for name in ("alice", "malice", "bob"):
        record_call(make_user(name), input_tokens=100)
    client.force_login(make_staff())
    found = client.get(DASHBOARD, {"preset": "month", "q": "ALIC"})
    assert sorted(user_cells(found.content)) == ["alice", "malice"]
    assert "matching “ALIC”" in found.content.decode()
    assert found.context["totals"]["active_users"] == 3
    none = client.get(DASHBOARD, {"preset": "month", "q": "zed"})
    assert user_cells(none.content) == []
    assert "No user whose name contains “zed” made calls in this period." in none.content.decode()
    # The sort links keep the search, and the CSV link exports what matches.
    assert b"q=ALIC" in found.content.split(b"<thead>")[1].split(b"</thead>")[0]
    csv_text = client.get(DASHBOARD + "export.csv", {"preset": "month", "q": "alic"}).content.decode()
    assert "malice" in csv_text and "bob" not in csv_text


def test_the_user_is_the_first_column_of_the_user_table(client):
    record_call(make_user("carol"), input_tokens=100)
    client.force_login(make_staff())
    html = client.get(DASHBOARD).content.decode()
    head = html.split('id="panel-users"')[1].split("<thead>")[1].split("</thead>")[0]
    headers = re.findall(r"<th[^>]*>(?:<a[^>]*>)?([^<▼▲]+)", head)
    assert [text.strip() for text in headers[:3]] == ["User", "Cost", "Budget used"]
    assert user_cells(html.encode()) == ["carol"]


def test_the_chart_has_axes_a_bar_per_day_split_by_model_and_a_legend(client):
    user = make_user("dora")
    record_call(user, input_tokens=1_000_000)  # Sonnet 5.5: $2.00
    record_call(user, model="claude-haiku-5-5", input_tokens=1_000_000)  # Haiku 5.5: cheaper
    client.force_login(make_staff())
    response = client.get(DASHBOARD, {"preset": "7d"})
    chart = response.context["chart"]
    assert not chart["empty"] and chart["unit"] == "day"
    assert len(chart["bars"]) == 7
    today = chart["bars"][-1]
    assert [part["colour"] for part in today["segments"]] == ["0", "1"]  # stacked: one colour per model
    assert [item["model"] for item in chart["legend"]] == ["claude-sonnet-5-5", "claude-haiku-5-5"]
    assert (
        chart["ticks"][-1]["label"] == "$0.00" and chart["ticks"][0]["y"] == "0"
    )  # y axis from $0 to the top
    html = response.content.decode().split('id="panel-chart"')[1].split("</section>")[0]
    assert 'class="billing-chart-y"' in html and 'class="billing-chart-x"' in html
    assert "claude-haiku-5-5" in html and 'class="swatch c1"' in html
    assert 'role="img"' in html and "split by model" in html


def test_a_quiet_period_says_so_instead_of_an_empty_box(client):
    client.force_login(make_staff())
    response = client.get(DASHBOARD, {"preset": "last_month"})
    assert response.context["chart"]["empty"]
    html = response.content.decode()
    assert 'id="chart-empty"' in html and "no calls were made in this period" in html
    assert "<svg" not in html.split('id="panel-chart"')[1].split("</section>")[0]


def test_a_long_period_is_charted_per_week(client):
    record_call(make_user("eve"), input_tokens=10)
    client.force_login(make_staff())
    chart = client.get(DASHBOARD, {"preset": "365d"}).context["chart"]
    assert chart["unit"] == "week" and len(chart["bars"]) == 53


def test_a_period_switch_from_htmx_gets_only_the_dashboard_block(client):
    record_call(make_user("fay"), input_tokens=10)
    client.force_login(make_staff())
    full = client.get(DASHBOARD, {"preset": "7d"})
    partial = client.get(DASHBOARD, {"preset": "7d"}, headers={"HX-Request": "true"})
    assert partial.status_code == 200
    assert partial.content.lstrip().startswith(b'<div id="billing-dashboard"')
    assert b"<html" not in partial.content and b"<html" in full.content
    assert len(partial.content) < len(full.content)
    assert "HX-Request" in partial["Vary"]
    # A history restore (back button after a cache miss) needs the whole page.
    restore = client.get(
        DASHBOARD, {"preset": "7d"}, headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )
    assert b"<html" in restore.content


def test_the_admin_index_links_to_the_dashboard(client):
    client.force_login(make_staff())
    assert f'href="{DASHBOARD}"'.encode() in client.get("/admin/").content
    clerk = make_user("clerk", is_staff=True)  # staff without the ledger's view permission
    client.force_login(clerk)
    assert DASHBOARD.encode() not in client.get("/admin/").content


def test_the_dashboard_response_stays_small_with_many_users(client):
    for n, user in enumerate(many_users([f"many{n:03d}" for n in range(300)])):
        record_call(user, input_tokens=100 + n)
    client.force_login(make_staff())
    response = client.get(DASHBOARD, {"preset": "month"})
    assert len(user_cells(response.content)) == USERS_PER_PAGE
    assert len(response.content) < 100_000


def test_a_one_day_chart_has_one_date_under_its_bar(client):
    record_call(make_user("gus"), input_tokens=10)
    client.force_login(make_staff())
    chart = client.get(DASHBOARD, {"preset": "today"}).context["chart"]
    assert len(chart["bars"]) == 1 and len(chart["x_labels"]) == 1

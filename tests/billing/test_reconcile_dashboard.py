"""What staff see of the reconciliation: the dashboard's status line and "Reconcile now" (staff, POST,
CSRF), the rows behind a difference, and adjustments booked once, never edited, counted in the
organisation's statement apart from anyone's spending."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from billing_factories import make_staff, make_user, record_call
from django.test import Client
from django.urls import reverse

from billing.models import Adjustment, Reconciliation
from billing.reconcile import adjustment_book, default_days, utc_today
from billing.services import budget_status
from billing.statements import exact_usd
from offline_claude.admin_api import USAGE_PATH, AdminFault

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("offline_claude")]

DASHBOARD = "/admin/billing/usagerecord/dashboard/"
RECONCILE_NOW = "/admin/billing/reconciliation/reconcile-now/"


@pytest.fixture
def staff_client(client, settings):
    settings.ANTHROPIC_ADMIN_KEY = "sk-ant-admin01-dashboard"
    client.force_login(make_staff())
    return client


def test_without_an_admin_key_the_dashboard_says_what_to_set_instead_of_a_button(client, settings):
    settings.ANTHROPIC_ADMIN_KEY = ""
    client.force_login(make_staff())
    page = client.get(DASHBOARD).content.decode()
    assert "Not reconciled with Anthropic yet." in page
    assert "Set ANTHROPIC_ADMIN_KEY to an Admin API key" in page
    assert "Reconcile now" not in page
    response = client.post(RECONCILE_NOW, follow=True)
    assert "Set ANTHROPIC_ADMIN_KEY" in response.content.decode()
    assert not Reconciliation.objects.exists()


def test_reconcile_now_compares_the_last_three_days_and_the_dashboard_says_exact(staff_client):
    page = staff_client.get(DASHBOARD).content.decode()
    assert 'action="/admin/billing/reconciliation/reconcile-now/"' in page and "Reconcile now" in page
    response = staff_client.post(RECONCILE_NOW, follow=True)
    page = response.content.decode()
    last = default_days()[-1]
    assert f"Reconciled {default_days()[0]} to {last} with Anthropic: exact." in page
    assert f"Reconciled with Anthropic through {last.day} {last:%B}: exact" in page
    assert sorted(set(Reconciliation.objects.values_list("day", flat=True))) == default_days()


def test_a_difference_shows_red_on_the_dashboard_and_its_page_lists_the_rows_behind_it(staff_client):
    yesterday = utc_today() - timedelta(days=1)
    user = make_user()
    row = record_call(user, input_tokens=1000)
    stored = Reconciliation.objects.create(
        day=row.created_at.date(), model=row.model, kind="input", ours=1000, theirs=1200, difference=200
    )
    Reconciliation.objects.create(day=yesterday, model="", kind="cost", ours=5, theirs=5, difference=0)
    page = staff_client.get(DASHBOARD).content.decode()
    assert f"1 difference on {stored.day.day} {stored.day:%B}" in page
    detail = staff_client.get(f"/admin/billing/reconciliation/{stored.pk}/change/").content.decode()
    assert "Anthropic reports 200 input (uncached) tokens more than the ledger" in detail


def test_reconcile_now_needs_a_post_with_its_csrf_token_by_staff(settings):
    settings.ANTHROPIC_ADMIN_KEY = "sk-ant-admin01-dashboard"
    guarded = Client(enforce_csrf_checks=True)
    guarded.force_login(make_staff())
    assert guarded.post(RECONCILE_NOW).status_code == 403  # no CSRF token
    assert guarded.get(RECONCILE_NOW).status_code == 405
    member = Client()
    member.force_login(make_user())
    assert member.post(RECONCILE_NOW).status_code == 302  # to the admin's login
    assert not Reconciliation.objects.exists()


def test_an_adjustment_is_booked_from_the_admin_and_never_edited(staff_client):
    difference = Reconciliation.objects.create(
        day=utc_today(),
        model="",
        kind="cost",
        ours=10**12,
        theirs=2 * 10**12,
        difference=10**12,
    )
    blank = staff_client.post(
        "/admin/billing/adjustment/add/", {"reconciliation": difference.pk, "amount_usd": "1", "reason": "  "}
    )
    assert blank.status_code == 200 and "Say why: an adjustment needs a reason." in blank.content.decode()
    assert not Adjustment.objects.exists()
    response = staff_client.post(
        "/admin/billing/adjustment/add/",
        {"reconciliation": difference.pk, "amount_usd": "1", "reason": "A call lost in a crash"},
    )
    assert response.status_code == 302
    [booked] = Adjustment.objects.all()
    assert (booked.amount, booked.reconciliation, booked.reason) == (
        10**12,
        difference,
        "A call lost in a crash",
    )
    change = staff_client.post(f"/admin/billing/adjustment/{booked.pk}/change/", {"reason": "edited"})
    assert change.status_code == 403
    assert (
        staff_client.post(f"/admin/billing/adjustment/{booked.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    booked.refresh_from_db()
    assert booked.reason == "A call lost in a crash"
    page = staff_client.get(DASHBOARD).content.decode()
    assert "exact, differences settled by adjustments" in page
    assert f"Adjustments booked for {utc_today():%B}:" in page and "$1.00</a> (1)" in page


def test_adjustments_count_in_the_organisation_statement_and_its_csv_apart_from_anyones_spending(client):
    staff, member = make_staff(), make_user()
    row = record_call(member, input_tokens=1000)
    day = row.created_at.date()
    difference = Reconciliation.objects.create(
        day=day, model="", kind="cost", ours=row.cost, theirs=row.cost + 5 * 10**10, difference=5 * 10**10
    )
    adjustment_book(
        reconciliation=difference, amount=5 * 10**10, reason="A call the ledger missed", staff=staff
    )
    month = f"{day:%Y-%m}"
    client.force_login(staff)
    page = client.get(reverse("teams:org_statement", args=[month]))
    statement = page.context["statement"]
    assert statement.total.cost == row.cost  # the teams' and people's figures are the ledger's
    assert statement.total_with_adjustments == row.cost + 5 * 10**10
    html = page.content.decode()
    assert "A call the ledger missed" in html and "Adjustments" in html
    assert budget_status(member).spent == row.cost  # no one's spending moves

    rows = list(
        csv.reader(io.StringIO(client.get(reverse("teams:org_statement_csv", args=[month])).content.decode()))
    )
    adjustment = next(r for r in rows if r[2] == "ADJUSTMENT")
    assert adjustment[-1] == "0.05" and f"{staff.username}: A call the ledger missed" in adjustment[3]
    total = next(r for r in rows if r[2] == "TOTAL WITH ADJUSTMENTS")
    assert total[-1] == exact_usd(row.cost + 5 * 10**10)


def test_the_dashboard_totals_and_its_csv_show_the_periods_adjustments(client):
    staff, member = make_staff(), make_user()
    row = record_call(member, input_tokens=1000)
    difference = Reconciliation.objects.create(
        day=row.created_at.date(), model="", kind="cost", ours=0, theirs=7 * 10**10, difference=7 * 10**10
    )
    adjustment_book(reconciliation=difference, amount=7 * 10**10, reason="Missed call", staff=staff)
    client.force_login(staff)

    page = client.get(DASHBOARD, {"preset": "month"})
    assert page.context["totals"]["cost"] == row.cost  # the ledger's figures stay the ledger's
    note = page.content.decode().split('id="totals-adjustments"')[1].split("</p>")[0]
    assert "$0.07" in note and "in no team's or person's spending" in note
    rows = list(
        csv.reader(io.StringIO(client.get(DASHBOARD + "export.csv", {"preset": "month"}).content.decode()))
    )
    header = rows[0]
    cost = header.index("Cost (USD)")
    labels = [r[0] for r in rows[-3:]]
    assert labels == ["TOTAL", "ADJUSTMENTS", "TOTAL WITH ADJUSTMENTS"]
    assert rows[-2][cost] == "0.07" and rows[-1][cost] == exact_usd(row.cost + 7 * 10**10)
    # A period without an adjustment has none.
    last_month = client.get(DASHBOARD, {"preset": "last_month"}).content.decode()
    assert 'id="totals-adjustments"' not in last_month


def test_reconcile_now_does_not_hold_the_page_through_a_long_rate_limit(staff_client, offline_claude):
    offline_claude.server.usage_book.faults.append(
        AdminFault(path=USAGE_PATH, nth=1, status=429, retry_after=30)
    )
    page = staff_client.post(RECONCILE_NOW, follow=True).content.decode()
    assert "Anthropic&#x27;s Admin API asks to wait 30 s: nothing was stored." in page
    assert not Reconciliation.objects.exists()

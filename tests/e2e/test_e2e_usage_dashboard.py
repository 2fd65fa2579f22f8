"""The usage page, a receipt and the staff dashboard in Chromium: preset switches (timed and printed,
not asserted), no sideways scrolling at 390 px, no serious or critical axe violation in either theme.

Set E2E_SHOTS=/some/dir to also save screenshots (desktop and phone, light and dark)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

DASHBOARD = "/admin/billing/usagerecord/dashboard/"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 860}
SHOTS = os.environ.get("E2E_SHOTS", "")

# Run in the server's database by `manage.py shell`: ledger rows for 120 accounts over the last weeks
# (two models), and for the signed-up user a conversation with a billed reply. Prints that reply's id.
SEED = """
from datetime import timedelta
from unittest import mock
from django.contrib.auth import get_user_model
from django.utils import timezone
from billing.services import usage_record
from billing.usage import LedgerLabels, Usage
from conversations.models import Conversation, Message

User = get_user_model()
names = [f"seed{n:03d}" for n in range(120)]
if not User.objects.filter(username="seed000").exists():
    User.objects.bulk_create([User(username=name, password="!") for name in names])
    now = timezone.now()
    for days in (0, 3, 9):
        with mock.patch("django.utils.timezone.now", return_value=now - timedelta(days=days)):
            for n, user in enumerate(User.objects.filter(username__in=names).order_by("username")):
                model = "claude-haiku-5-5" if n % 3 else "claude-sonnet-5-5"
                usage_record(
                    labels=LedgerLabels(user_id=user.pk, username=user.username, conversation_id=None,
                                        conversation_title="", model=model),
                    message_id=None, request_id=f"seed-{n}-{days}",
                    usage=Usage(input_tokens=1000 * (n + 1), output_tokens=200 + n), estimated=False,
                )
me = User.objects.get(username=USERNAME)
chat = Conversation.objects.create(owner=me, title="A chat with a rather long title to wrap on a phone",
                                   model="claude-sonnet-5-5")
reply = Message.objects.create(conversation=chat, role="assistant", content="Hi", model="claude-sonnet-5-5")
usage_record(labels=LedgerLabels(user_id=me.pk, username=me.username, conversation_id=chat.pk,
                                 conversation_title=chat.title, model="claude-sonnet-5-5"),
             message_id=reply.pk, request_id="seed-me", usage=Usage(input_tokens=1234, output_tokens=567,
             cache_read_tokens=4000), estimated=False, purpose="reply")
print(reply.pk)
"""


@pytest.fixture
def people(new_context, sign_up, log_in_as_staff, manage):
    """(user page, staff page, receipt URL): a signed-up user with a billed reply, 120 other accounts
    with ledger rows (seeded once per server), and a staff member."""
    user_page = new_context(viewport=DESKTOP).new_page()
    username = sign_up(user_page)
    reply_id = manage("shell", "-c", SEED.replace("USERNAME", repr(username))).strip().splitlines()[-1]
    staff_page = new_context(viewport=DESKTOP).new_page()
    log_in_as_staff(staff_page)
    return user_page, staff_page, f"/usage/receipt/{int(reply_id)}/"


def no_sideways_scroll(page) -> tuple[int, int]:
    return page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")


def serious_violations(page) -> list[str]:
    results = Axe().run(page)
    return [
        f"{item['id']} ({item['impact']}): {item['help']} — {[node['target'] for node in item['nodes']][:3]}"
        for item in results.response["violations"]
        if item["impact"] in ("serious", "critical")
    ]


def shoot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def test_a_preset_switch_reloads_only_the_dashboard_and_is_timed(people):
    _user, staff, _receipt = people
    staff.goto(DASHBOARD + "?preset=month")
    expect(staff.locator("#panel-users tbody th[scope=row]").first).to_be_visible()
    staff.evaluate("window.__sameDocument = true")
    timings = {}
    for label in ("Last 7 days", "Last 365 days", "Today", "Last month", "Last 30 days", "This month"):
        link = staff.locator(".billing-presets").get_by_role("link", name=label)
        started = time.perf_counter()
        link.click()
        expect(staff.locator(".billing-presets a.active")).to_have_text(label)
        timings[label] = round((time.perf_counter() - started) * 1000)
    # The switches happened in the same document (htmx swapped the block) and the address followed.
    assert staff.evaluate("window.__sameDocument") is True
    expect(staff).to_have_url(re.compile(r"preset=month"))
    staff.go_back()
    expect(staff.locator(".billing-presets a.active")).to_have_text("Last 30 days")
    print("\npreset switch in the browser (click to new block shown), ms:", json.dumps(timings))


def test_the_dashboard_pages_and_searches_users_in_the_browser(people):
    _user, staff, _receipt = people
    staff.goto(DASHBOARD + "?preset=30d")
    rows = staff.locator("#panel-users tbody th[scope=row]")
    expect(rows).to_have_count(50)
    staff.locator(".billing-pager").get_by_role("link", name="Next ›").click()
    expect(staff.locator(".billing-pager")).to_contain_text("Users 51–100")
    staff.fill("#user-search", "seed11")
    staff.locator(".billing-search").get_by_role("button", name="Search").click()
    expect(rows).to_have_count(10)  # seed110..seed119
    expect(staff).to_have_url(re.compile(r"q=seed11"))
    expect(staff.locator("#panel-chart .billing-legend")).to_contain_text("claude-haiku-5-5")


def test_usage_receipt_and_dashboard_fit_a_390_px_phone(people, new_context):
    user, staff, receipt = people
    for page, urls in (
        (user, ["/usage/", receipt]),
        (staff, [DASHBOARD + "?preset=30d", DASHBOARD + "?preset=365d"]),
    ):
        page.set_viewport_size(PHONE)
        for url in urls:
            page.goto(url)
            scroll_width, client_width = no_sideways_scroll(page)
            assert scroll_width <= client_width, (
                f"{url}: {scroll_width} px wide on a {client_width} px screen"
            )


def test_usage_page_links_conversations(people):
    user, _staff, _receipt = people
    user.goto("/usage/")
    user.get_by_role("link", name=re.compile("A chat with a rather long title")).click()
    expect(user).to_have_url(re.compile(r"/c/\d+/$"))


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_accessibility_violation_on_the_usage_page_and_the_dashboard(people, scheme):
    user, staff, receipt = people
    found = {}
    for page, url, name in (
        (user, "/usage/", "usage"),
        (user, receipt, "receipt"),
        (staff, DASHBOARD + "?preset=30d", "dashboard"),
        (staff, DASHBOARD + "?preset=last_month", "dashboard-quiet-period"),
    ):
        page.emulate_media(color_scheme=scheme)
        for viewport, size in (("desktop", DESKTOP), ("phone", PHONE)):
            page.set_viewport_size(size)
            page.goto(url)
            shoot(page, f"{name}-{viewport}-{scheme}")
            if viewport == "desktop":
                found[url] = serious_violations(page)
    assert found == {url: [] for url in found}, json.dumps(found, indent=1)


def test_reconcile_now_shows_the_days_state_on_the_dashboard_and_explains_a_difference(people):
    """The seeded ledger rows were never sent to (the server's offline) Claude: Anthropic's report has
    none of them, so the day they fall on is red, and its reconciliation says what is missing."""
    _user, staff, _receipt = people
    staff.goto(DASHBOARD)
    panel = staff.locator("#panel-reconciliation")
    expect(panel.get_by_role("button", name="Reconcile now")).to_be_visible()
    panel.get_by_role("button", name="Reconcile now").click()
    expect(staff.locator(".messagelist")).to_contain_text("difference(s) to settle")
    three_days_ago = staff.evaluate(
        "(() => { const d = new Date(Date.now() - 3 * 86400000);"
        " return d.getUTCDate() + ' ' + d.toLocaleString('en', {month: 'long', timeZone: 'UTC'}); })()"
    )
    status = panel.get_by_role("link", name=re.compile(f"differences? on {three_days_ago}$"))
    expect(status).to_be_visible()
    assert serious_violations(staff) == []
    status.click()
    staff.locator("tr", has_text="claude-haiku-5-5").filter(has_text="Output").get_by_role("link").click()
    expect(staff.locator("body")).to_contain_text("The ledger has")
    expect(staff.locator("body")).to_contain_text("more than Anthropic reports for claude-haiku-5-5")
    assert serious_violations(staff) == []

"""The chat page's second pass in a real browser: the share link's Copy button, the settings panel
closing after Save, the conversation's actions in its header, and the budget banner and Send button
following a budget staff change in another session, without a reload."""

from __future__ import annotations

import re
import subprocess
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import PASSWORD
from tests.e2e.test_e2e_chat import COMPLETE, REPLY_TIMEOUT, last_reply
from tests.e2e.test_e2e_chat_page import DESKTOP, QUICK, serious_violations, signed_up_on
from tests.servers import PROJECT_DIR, VENV_BIN, Worker, own_worker


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A worker of this module's own, with share links on (they are off by default)."""
    with own_worker(
        tmp_path_factory.mktemp("minor-server"), "minor", CHAT_SHARING="1", CHAT_RATE_LIMIT_PER_MINUTE="0"
    ) as worker:
        yield worker


def conversation_on(page: Page, text: str) -> str:
    """A new conversation whose first reply is complete; returns its path."""
    page.goto("/")
    page.wait_for_load_state("load")
    page.locator("#composer-input").fill(text)
    page.locator("#composer-input").press("Enter")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    return re.search(r"/c/\d+/", page.url).group(0)


def staff_page(browser, server: Worker) -> Page:
    """A superuser (made with createsuperuser on the module's server) logged in to the admin."""
    username = f"staff_{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [
            str(VENV_BIN / "python"),
            "manage.py",
            "createsuperuser",
            "--noinput",
            "--username",
            username,
            "--email",
            f"{username}@example.org",
        ],
        cwd=PROJECT_DIR,
        env={**server.env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
        check=True,
        capture_output=True,
        timeout=120,
    )
    context = browser.new_context(base_url=server.url, viewport=DESKTOP)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.locator("#login-form [type=submit]").click()
    expect(page).to_have_url(re.compile(r"/admin/$"))
    return page


def test_the_share_link_has_a_copy_button_that_copies_it_and_says_copied(browser, server):
    page = signed_up_on(browser, server, viewport=DESKTOP)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    conversation_on(page, f"Something worth sharing {QUICK}")
    page.locator("#conversation-share summary").click()
    page.get_by_role("button", name="Create link").click()
    link = page.locator("#share-url")
    expect(link).to_have_value(re.compile(r"/s/[^/]+/$"))
    copy = page.locator("#conversation-share button.copy-share")
    expect(copy).to_have_text("Copy link")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == link.input_value()
    expect(copy).to_have_text("Copy link", timeout=5_000)  # the confirmation passes
    assert serious_violations(page) == [], "chat page with a share link and its Copy button"
    page.context.close()


def test_the_settings_panel_closes_after_save_and_says_saved(browser, server):
    page = signed_up_on(browser, server, viewport=DESKTOP)
    path = conversation_on(page, f"Settings please {QUICK}")
    settings = page.locator("#conversation-settings")
    settings.locator("summary").click()
    expect(settings).to_have_attribute("open", "")
    settings.get_by_label("System prompt").fill("Answer in French.")
    settings.get_by_role("button", name="Save").click()
    expect(settings.locator("summary")).to_contain_text("system prompt")
    expect(settings.get_by_role("status")).to_contain_text("Saved")
    expect(settings).not_to_have_attribute("open", "")
    expect(settings.locator("summary")).to_be_focused()
    assert serious_violations(page) == [], "chat page after saving settings"
    page.goto(path)
    page.locator("#conversation-settings summary").click()
    expect(page.locator("#conversation-settings").get_by_label("System prompt")).to_have_value(
        "Answer in French."
    )
    page.context.close()


def test_rename_pin_archive_and_delete_from_the_conversation_header(browser, server):
    page = signed_up_on(browser, server, viewport=DESKTOP)
    path = conversation_on(page, f"Header actions {QUICK}")
    pk = re.search(r"\d+", path).group(0)
    page.locator("#composer-input").fill("A draft I am still writing")
    actions = page.locator("#conversation-tools .conversation-actions")

    actions.locator("summary").click()
    actions.get_by_label("Rename").fill("Renamed from the header")
    actions.get_by_role("button", name="Save").click()
    expect(page.locator("#conversation-title")).to_have_text("Renamed from the header")
    expect(page.locator(f"#conversation-{pk}-title")).to_have_text("Renamed from the header")
    expect(page).to_have_title(re.compile("^Renamed from the header"))

    page.locator("#conversation-tools .conversation-actions summary").click()
    page.locator("#conversation-tools").get_by_role("button", name="Pin").click()
    expect(page.locator("#sidebar .group-heading").first).to_have_text("Pinned")
    expect(page.locator(f"#conversation-{pk}")).to_have_class(re.compile(r"\bpinned\b"))
    page.locator("#conversation-tools .conversation-actions summary").click()
    expect(page.locator("#conversation-tools").get_by_role("button", name="Unpin")).to_be_visible()
    assert serious_violations(page) == [], "chat page with the header's actions open"

    page.locator("#conversation-tools").get_by_role("button", name="Archive").click()
    expect(page.locator("#conversation-tools .badge")).to_have_text("Archived")
    expect(page.locator(f"#conversation-{pk}")).to_have_count(0)  # gone from the sidebar
    # Nothing typed was lost: every action answered in place, without a reload.
    expect(page.locator("#composer-input")).to_have_value("A draft I am still writing")
    page.locator("#conversation-tools").get_by_role("button", name="Unarchive").click()
    expect(page.locator(f"#conversation-{pk}")).to_have_count(1)

    page.locator("#conversation-tools .conversation-actions summary").click()
    page.locator("#conversation-tools").get_by_role("link", name="Delete…").click()
    expect(page).to_have_url(re.compile(rf"/c/{pk}/delete/$"))
    page.get_by_role("button", name=re.compile("Delete")).click()
    expect(page).to_have_url(re.compile(r"://[^/]+/$"))
    assert page.request.get(path).status == 404
    page.context.close()


def test_the_budget_banner_and_send_follow_a_budget_staff_change_without_a_reload(browser, server):
    page = signed_up_on(browser, server, viewport=DESKTOP)
    username = page.locator(".topbar .who").inner_text()
    conversation_on(page, f"Budget, live {QUICK}")
    page.locator("#composer-input").fill("My next question")
    expect(page.locator("#send-button")).to_be_enabled()
    expect(page.locator("#budget-banner")).to_have_count(0)
    page.evaluate("window.__sameDocument = true")

    staff = staff_page(browser, server)
    staff.goto(f"/admin/auth/user/?q={username}")
    staff.get_by_role("link", name=username, exact=True).click()
    budget_link = staff.locator(".object-tools").get_by_role("link", name="Budget", exact=True)
    budget_page = budget_link.get_attribute("href")
    budget_link.click()
    staff.get_by_label("Policy").select_option("limit")
    staff.get_by_label("Monthly limit (USD)").fill("0")
    staff.locator("input[name=_save]").click()
    expect(staff.locator(".messagelist")).to_be_visible()

    banner = page.locator("#budget-banner")
    expect(banner).to_contain_text("Monthly budget reached", timeout=10_000)
    expect(page.locator("#send-button")).to_be_disabled()
    expect(page.locator("#composer-input")).to_have_value("My next question")  # kept
    assert page.evaluate("window.__sameDocument") is True  # no reload

    staff.goto(budget_page)
    staff.get_by_label("Policy").select_option("unlimited")
    staff.locator("input[name=_save]").click()
    expect(page.locator("#budget-banner")).to_have_count(0, timeout=10_000)
    expect(page.locator("#send-button")).to_be_enabled()
    assert page.evaluate("window.__sameDocument") is True
    staff.context.close()
    page.context.close()

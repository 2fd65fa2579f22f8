"""The chat page as a person uses it: an app shell that scrolls only its messages, live markdown,
the keyboard, the phone drawer, renames in place and the connection state (real Chromium, real daphne)."""

from __future__ import annotations

import re
import signal
import time
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import PASSWORD
from tests.e2e.test_e2e_chat import (
    COMPLETE,
    REPLY_TIMEOUT,
    STREAMING,
    last_reply,
    start_conversation,
    wait_for_reply_text,
)
from tests.servers import ServerDatabase, Worker, migrate, server_env

DESKTOP = {"width": 1366, "height": 860}
PHONE = {"width": 390, "height": 844}
QUICK = "[[offline ttft_ms=0 tps=0 reply_tokens=40]]"
HOME_URL = re.compile(r"://[^/]+/$")

SCROLL_STATE = """() => {
  const list = document.getElementById('messages');
  return {
    top: list.scrollTop, height: list.scrollHeight, client: list.clientHeight,
    pageHeight: document.documentElement.scrollHeight, viewport: window.innerHeight,
    pageWidth: document.documentElement.scrollWidth,
  };
}"""


def at_bottom(state: dict) -> bool:
    return state["height"] - state["top"] - state["client"] < 48


def send(page: Page, text: str) -> None:
    composer = page.locator("#composer-input")
    composer.fill(text)
    composer.press("Enter")


def conversation_with_turns(page: Page, turns: int) -> str:
    """A conversation of `turns` quick exchanges (2 x turns messages); returns its path."""
    path = start_conversation(page, f"Message number 1 {QUICK}")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    for n in range(2, turns + 1):
        send(page, f"Message number {n} {QUICK}")
        expect(page.locator("#messages article.message.assistant")).to_have_count(n, timeout=REPLY_TIMEOUT)
        expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    return path


def assert_composer_in_view(page: Page) -> None:
    expect(page.locator("#composer-input")).to_be_in_viewport()
    expect(page.locator("#send-button")).to_be_in_viewport()
    state = page.evaluate(SCROLL_STATE)
    assert state["pageHeight"] <= state["viewport"], f"the page itself scrolls: {state}"


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_fifty_messages_open_at_the_newest_and_a_streaming_reply_is_followed(browser, own_worker, viewport):
    page = signed_up_on(browser, own_worker, viewport=viewport)
    path = conversation_with_turns(page, 25)
    page.goto(path)
    expect(page.locator("#messages article.message")).to_have_count(50)
    state = page.evaluate(SCROLL_STATE)
    assert state["height"] > 3 * state["client"], "the test needs a list taller than its view"
    assert at_bottom(state), f"the conversation did not open at its newest message: {state}"
    assert_composer_in_view(page)
    expect(page.locator(".topbar")).to_be_in_viewport()
    expect(page.locator("#jump-latest")).to_be_hidden()

    send(page, "Tell me about rivers [[offline tps=30 reply_tokens=400]]")
    expect(last_reply(page)).to_have_class(STREAMING)
    for _ in range(6):  # the view follows the growing reply while the reader stays at the bottom
        page.wait_for_timeout(400)
        state = page.evaluate(SCROLL_STATE)
        assert at_bottom(state), f"the view did not follow the streaming reply: {state}"
        assert_composer_in_view(page)

    # Scrolled up to read: the view stays put and offers a way back.
    page.locator("#messages").evaluate("el => el.scrollTo(0, 0)")
    expect(page.locator("#jump-latest")).to_be_visible()
    page.wait_for_timeout(800)
    assert page.evaluate(SCROLL_STATE)["top"] == 0, "the view jumped while the reader was scrolled up"
    page.locator("#jump-latest").click()
    expect(page.locator("#jump-latest")).to_be_hidden()
    assert at_bottom(page.evaluate(SCROLL_STATE))
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    assert at_bottom(page.evaluate(SCROLL_STATE))
    assert page.evaluate(SCROLL_STATE)["pageWidth"] <= viewport["width"], "the page scrolls sideways"


def test_markdown_renders_while_streaming_without_literal_markers_or_a_reflow_at_the_end(
    signed_up_page: Page,
):
    page = signed_up_page
    start_conversation(page, "Explain **websockets** briefly [[offline tps=25 reply_tokens=260]]")
    reply = last_reply(page)
    samples, saw_rendered = [], False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        classes, text, rendered = reply.evaluate(
            "el => [el.className, el.querySelector('.body').innerText,"
            " el.querySelectorAll('.body p, .body li, .body strong').length]"
        )
        if "status-streaming" not in classes:
            break
        samples.append(text)
        saw_rendered = saw_rendered or rendered > 0
        page.wait_for_timeout(60)
    assert len(samples) >= 5, "the reply should have been seen streaming"
    assert saw_rendered, "no paragraph, list or bold text while streaming: markdown is not rendered live"
    raw = [s for s in samples if "**" in s or re.search(r"(?m)^\s*- ", s)]
    assert not raw, f"raw markdown visible mid-stream: {raw[:2]}"
    expect(reply).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    # No re-flow: what streamed is what stays (the last sample is the start of the final text). Compared
    # with whitespace collapsed: innerText puts one or two line breaks between blocks depending on when
    # layout last ran, which is not a change of the text.
    final = " ".join(reply.locator(".body").inner_text().split())
    last = " ".join(samples[-1].split())
    assert final.startswith(last[: max(0, len(last) - 40)]), (last, final)


def test_focus_stays_in_the_composer_and_the_keyboard_drives_the_chat(signed_up_page: Page):
    page = signed_up_page
    # Focus moves on DOMContentLoaded: wait for it (a loaded CI machine may run the check first).
    expect(page.locator("#composer-input"), "composer not focused on load").to_be_focused()
    start_conversation(page, f"First question {QUICK}")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    expect(page.locator("#composer-input")).to_be_focused()

    # Send with the button: focus comes back to the composer, so a follow-up can be typed at once.
    page.locator("#composer-input").fill("A slow one [[offline tps=15 reply_tokens=400]]")
    page.locator("#send-button").click()
    expect(last_reply(page)).to_have_class(STREAMING)
    expect(page.locator("#composer-input")).to_be_focused()
    page.keyboard.type("typed without clicking")
    expect(page.locator("#composer-input")).to_have_value("typed without clicking")

    # Enter while the reply is written: it says why it waits and keeps the text.
    page.keyboard.press("Enter")
    expect(page.locator("#composer-hint")).to_contain_text("kept")
    expect(page.locator("#composer-input")).to_have_value("typed without clicking")
    expect(page.locator("#messages article.message.user")).to_have_count(2)

    # Esc stops the reply.
    page.keyboard.press("Escape")
    expect(last_reply(page)).to_have_class(re.compile(r"\bstatus-stopped\b"), timeout=10_000)
    expect(page.locator("#send-button")).to_be_enabled()
    page.keyboard.press("Enter")
    expect(page.locator("#messages article.message.user")).to_have_count(3)
    expect(page.locator("#composer-input")).to_have_value("")
    expect(page.locator("#composer-input")).to_be_focused()

    # The composer grows with its text.
    before = page.locator("#composer-input").bounding_box()["height"]
    page.locator("#composer-input").fill("line\n" * 8)
    assert page.locator("#composer-input").bounding_box()["height"] > before + 40

    # A shortcut opens a new conversation; skip links lead to the composer and the list.
    page.keyboard.press("Alt+Shift+N")
    # Waits for the home page's load: app.js focuses the composer on DOMContentLoaded, which must not
    # happen between the focus and the key press of the skip links below. (A bare r"/$" also matched
    # the conversation's own URL, before the navigation.)
    page.wait_for_url(HOME_URL)
    expect(page.locator(".welcome")).to_be_visible()
    # The skip links are the first stops of the page and lead where they say.
    page.locator("#conversation-list a").first.focus()
    skip_to_composer = page.get_by_role("link", name="Skip to the message box")
    skip_to_composer.focus()
    expect(skip_to_composer).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("#composer-input")).to_be_focused()
    page.get_by_role("link", name="Skip to the conversation list").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#sidebar")).to_be_focused()


def test_empty_send_on_the_home_page_explains_and_creates_nothing(signed_up_page: Page):
    page = signed_up_page
    page.wait_for_load_state("load")
    page.locator("#send-button").click()
    expect(page.locator("#composer-hint")).to_have_text("Type a message first.")
    page.locator("#composer-input").fill("   ")
    page.locator("#send-button").click()
    expect(page.locator("#composer-hint")).to_have_text("Type a message first.")
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator("#conversation-list .conversation-item")).to_have_count(0)


def test_rename_errors_inline_and_a_rename_updates_heading_tab_and_highlight(signed_up_page: Page):
    page = signed_up_page
    path = start_conversation(page, f"Plan a garden {QUICK}")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    conversation_id = re.search(r"/c/(\d+)/", path).group(1)
    item = page.locator(f"#conversation-{conversation_id}")
    title_before = page.locator("#conversation-title").inner_text()

    item.locator("summary").click()
    expect(item.locator("> a")).to_be_visible()  # the open menu does not hide the title
    item.locator("input[name=title]").fill("   ")
    item.get_by_role("button", name="Save").click()
    expect(item.locator(".error")).to_have_text("The title cannot be empty.")
    expect(page.locator("#messages article.message")).to_have_count(2)  # the page is still the page
    expect(page.locator("#conversation-title")).to_have_text(title_before)

    item.locator("input[name=title]").fill("Garden plans")
    item.get_by_role("button", name="Save").click()
    expect(page.locator(f"#conversation-{conversation_id} > a")).to_have_text("Garden plans")
    expect(page.locator("#conversation-title")).to_have_text("Garden plans")
    expect(page).to_have_title(re.compile(r"^Garden plans"))
    expect(page.locator(f"#conversation-{conversation_id}")).to_have_class(re.compile(r"\bcurrent\b"))
    expect(page.locator(f"#conversation-{conversation_id} > a")).to_have_attribute("aria-current", "page")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_phone_has_one_top_row_a_drawer_and_no_sideways_scrolling(new_context, sign_up, scheme):
    page = new_context(viewport=PHONE, has_touch=True, color_scheme=scheme).new_page()
    sign_up(page)
    path = start_conversation(page, f"Compare Python and Go with code {QUICK.replace('40', '300')}")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    topbar = page.locator(".topbar").bounding_box()
    assert topbar["height"] < 60, f"the top bar takes {topbar['height']} px: more than one row"
    sidebar = page.locator("#sidebar")
    expect(sidebar).not_to_be_in_viewport()
    assert page.evaluate(SCROLL_STATE)["pageWidth"] <= PHONE["width"]

    page.locator("[data-drawer-toggle]").tap()
    expect(sidebar).to_be_in_viewport()
    expect(page.locator("[data-drawer-toggle]")).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("Escape")
    expect(sidebar).not_to_be_in_viewport()
    page.locator("[data-drawer-toggle]").tap()
    sidebar.get_by_role("link", name="+ New conversation").tap()
    page.wait_for_url(HOME_URL)  # measure the home page once loaded, not the page being left
    assert page.evaluate(SCROLL_STATE)["pageWidth"] <= PHONE["width"]

    page.goto(path)
    receipt = last_reply(page).get_by_role("link", name="Receipt")
    page.goto(receipt.get_attribute("href"))
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], (
        "the receipt scrolls sideways"
    )


@pytest.fixture(scope="module")
def own_worker(tmp_path_factory):
    """A daphne worker of this module's own: no rate limit (the long conversations), and it can be
    stopped and restarted on the same port."""
    workdir = tmp_path_factory.mktemp("chat-page-server")
    database = ServerDatabase(workdir, "chatpage")
    # Leases outlast a kill and restart (a killed worker's reply stays "streaming" meanwhile); a
    # graceful stop ends replies after one second.
    env = server_env(
        database.url, CHAT_LEASE_SECONDS="30", CHAT_SHUTDOWN_GRACE_SECONDS="1", CHAT_RATE_LIMIT_PER_MINUTE="0"
    )
    migrate(env)
    worker = Worker(env, workdir / "daphne.log").start()
    try:
        yield worker
    finally:
        worker.stop()
        database.drop()


def signed_up_on(browser, worker: Worker, **options) -> Page:
    """A new user's page on `worker`, through the sign-up form, on the home page."""
    context = browser.new_context(base_url=worker.url, **options)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/accounts/signup/")
    page.fill("#id_username", f"u{uuid.uuid4().hex[:12]}")
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.locator("#composer-input")).to_be_visible()
    return page


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "restarted"])
def test_a_dropped_connection_is_shown_the_draft_kept_and_the_text_never_goes_backwards(
    browser, own_worker, stop
):
    """Killed: the reply's text after its last checkpoint died with the worker; the page keeps what it
    showed (the list it gets on reconnect is that older checkpoint). Restarted: the worker ends its
    replies with all their text before it goes."""
    page = signed_up_on(browser, own_worker)
    start_conversation(page, "Describe a long walk [[offline tps=20 reply_tokens=2000]]")
    reply = last_reply(page)
    expect(reply).to_have_class(STREAMING)
    wait_for_reply_text(page, min_chars=120, timeout=40)
    page.locator("#composer-input").fill("my unsent draft")

    port = own_worker.port
    own_worker.signal(stop)
    own_worker.wait(timeout=30)
    status = page.locator("#connection-status")
    expect(status).to_be_visible()
    expect(status).to_contain_text("Reconnecting")
    expect(page.locator("#composer-input")).to_have_attribute("aria-disabled", "true")
    expect(page.locator("#composer-input")).to_have_value("my unsent draft")
    expect(page.locator("#send-button")).to_be_disabled()
    expect(reply.locator("button.stop")).to_be_hidden()
    shown_while_down = last_reply(page).locator(".body").inner_text()
    assert len(shown_while_down) >= 120

    own_worker.start(port=port)
    expect(status).to_be_hidden(timeout=60_000)
    expect(page.locator("#composer-input")).to_have_value("my unsent draft")
    expect(page.locator("#composer-input")).not_to_have_attribute("aria-disabled", "true")
    if "status-streaming" not in last_reply(page).get_attribute("class"):
        expect(page.locator("#send-button")).to_be_enabled()
    # The catch-up (the list as last saved, up to a second behind) never shows less than was shown.
    after = last_reply(page).locator(".body").inner_text()
    assert len(after) >= len(shown_while_down), (shown_while_down, after)
    assert after.startswith(shown_while_down[: len(shown_while_down) - 20])
    page.context.close()


def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now (WCAG 2 A/AA rules)."""
    from axe_playwright_python.sync_playwright import Axe

    options = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
    results = Axe().run(page, options={**options, "resultTypes": ["violations"]})
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_serious_on_the_chat_page_and_a_receipt(new_context, sign_up, scheme):
    page = new_context(viewport=DESKTOP, color_scheme=scheme).new_page()
    sign_up(page)
    assert serious_violations(page) == [], "home page"
    start_conversation(
        page, f"Write a Python function to sort a list and compare Go vs Rust {QUICK.replace('40', '400')}"
    )
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    assert serious_violations(page) == [], "chat page with a reply"
    receipt_link = last_reply(page).get_by_role("link", name="Receipt")
    receipt_link.click()
    expect(last_reply(page).locator(".receipt table")).to_be_visible()
    assert serious_violations(page) == [], "chat page with a receipt open"
    page.goto(receipt_link.get_attribute("href"))
    assert serious_violations(page) == [], "receipt page"

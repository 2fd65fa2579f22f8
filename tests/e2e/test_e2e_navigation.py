"""End to end in Chromium: a search hit in another version opens that version, says so and scrolls to
the hit; Copy puts a streamed reply's markdown on the clipboard; the page is back within about a second
of a restarted server accepting again; the sidebar filters as you type; the phone drawer's backdrop
closes it."""

from __future__ import annotations

import re
import signal
import time

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_e2e_chat import COMPLETE, REPLY_TIMEOUT, last_reply, start_conversation
from tests.e2e.test_e2e_chat_page import PHONE, serious_violations, signed_up_on
from tests.servers import own_worker

QUICK = "[[offline ttft_ms=0 tps=0 reply_tokens={}]]"


def send(page: Page, text: str, messages: int) -> None:
    page.locator("#composer-input").fill(text)
    page.locator("#composer-input").press("Enter")
    expect(page.locator("#messages article.message")).to_have_count(messages, timeout=REPLY_TIMEOUT)
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)


def test_a_hit_in_another_version_opens_that_version_says_so_and_scrolls_to_it(signed_up_page: Page):
    page = signed_up_page
    start_conversation(page, f"Tell me about the zyzzyva beetle {QUICK.format(400)}")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    send(page, f"And more about its wings {QUICK.format(400)}", 4)
    # Edit the first message: the zyzzyva branch is no longer the one shown.
    first = page.locator("#messages article.message.user").first
    first.get_by_role("link", name="Edit").click()
    first.locator("textarea[name=message]").fill(f"Tell me about herons {QUICK.format(20)}")
    first.get_by_role("button", name="Send edited").click()
    expect(page.locator("#messages article.message")).to_have_count(2, timeout=REPLY_TIMEOUT)
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    expect(page.locator("#messages")).not_to_contain_text("zyzzyva")

    page.goto("/search/?q=zyzzyva")
    mine = page.locator(".message-hit", has=page.locator(".hit-role", has_text="You"))
    expect(mine.locator(".other-version")).to_be_visible()
    assert serious_violations(page) == []
    mine.get_by_role("button").click()

    expect(page).to_have_url(re.compile(r"found=\d+&q=zyzzyva&version=\d+#msg-\d+$"))
    expect(page.locator("#found-note")).to_have_text(
        "Showing version 1 of 2 of this message, where your search matched."
    )
    hit = page.locator("#messages article.message.user").first
    expect(hit.locator(".branch-position")).to_have_text("1 / 2")
    expect(hit).to_have_class(re.compile(r"\bfound\b"))
    # The socket brings the whole branch (both turns, long replies): the list is far taller than its
    # window, yet the highlighted word stays in view rather than the newest message.
    expect(page.locator("#messages article.message")).to_have_count(4)
    expect(page.locator("#messages")).to_contain_text("And more about its wings")
    page.wait_for_timeout(500)  # the socket's frames have been followed
    assert page.evaluate(
        "(() => { const l = document.getElementById('messages'); return l.scrollHeight > 2 * l.clientHeight; })()"
    )
    word = hit.locator("mark.found-word")
    expect(word).to_have_text(re.compile("^zyzzyva$", re.I))
    expect(word).to_be_in_viewport()
    assert serious_violations(page) == []


def test_a_hit_older_than_the_latest_page_stays_shown_once_the_socket_is_open(signed_up_page: Page):
    page = signed_up_page
    path = start_conversation(page, f"Tell me about the quokka {QUICK.format(6000)}")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    send(page, f"And about wombats {QUICK.format(6000)}", 4)
    page.reload()  # the latest page: the first question is no longer on it
    expect(page.locator("#show-earlier")).to_be_visible()
    expect(page.locator("#messages article.message.user").first).to_contain_text("wombats")

    page.goto("/search/?q=quokka")
    frames = []
    page.on("websocket", lambda socket: socket.on("framereceived", lambda frame: frames.append(frame)))
    page.locator(".message-hit", has=page.locator(".hit-role", has_text="You")).get_by_role("link").click()
    expect(page).to_have_url(
        re.compile(re.escape(path.rstrip("/")) + r"/\?before=\d+&found=\d+&q=quokka#msg-\d+$")
    )
    page.wait_for_function("document.getElementById('messages')")
    for _ in range(100):  # the socket's first frame: the latest page of the list, without the hit
        if frames:
            break
        page.wait_for_timeout(100)
    assert frames and 'id="messages"' in frames[0]
    page.wait_for_timeout(300)  # swapped (or not) and followed
    hit = page.locator("#messages article.message.user").first
    expect(hit).to_have_class(re.compile(r"\bfound\b"))
    expect(hit.locator("mark.found-word")).to_be_in_viewport()
    expect(page.locator("#found-note")).to_have_count(0)  # no version was switched: nothing to say


def test_copy_puts_the_streamed_replys_markdown_on_the_clipboard(new_context, sign_up):
    context = new_context(permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    sign_up(page)
    # Streamed live (no reload): bold, a code block and a table.
    start_conversation(
        page, "Write python code and compare pros and cons in a table [[offline ttft_ms=0 tps=400]]"
    )
    reply = last_reply(page)
    expect(reply).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    expect(reply.locator(".body table")).to_be_visible()
    expect(reply.locator(".body strong").first).to_be_visible()

    reply.locator(".status").get_by_role("button", name="Copy").click()
    expect(reply.locator(".status").get_by_role("button", name="Copied")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert "```python\n" in copied and "**" in copied, copied
    assert re.search(r"^\|.*\|\n\|[\s:|-]*---", copied, re.MULTILINE), copied
    assert not re.search(r"^Copy$", copied, re.MULTILINE), copied
    code = reply.locator(".body pre code").first.inner_text()
    assert code.strip() in copied

    # A code block's own Copy copies just its code.
    reply.locator(".body .code-block button.copy-code").first.click()
    assert page.evaluate("navigator.clipboard.readText()").strip() == code.strip()

    # And the same after a reload.
    page.reload()
    last_reply(page).locator(".status").get_by_role("button", name="Copy").click()
    expect(last_reply(page).locator(".status").get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == copied


@pytest.fixture(scope="module")
def restartable_worker(tmp_path_factory):
    """A daphne worker of this module's own, stopped and started again on the same port."""
    with own_worker(
        tmp_path_factory.mktemp("navigation-server"),
        "navigation",
        CHAT_SHUTDOWN_GRACE_SECONDS="1",
        CHAT_RATE_LIMIT_PER_MINUTE="0",
    ) as worker:
        yield worker


def test_after_a_restart_the_page_is_back_within_seconds_and_offers_reconnect_now(
    browser, restartable_worker
):
    page = signed_up_on(browser, restartable_worker)
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket))
    start_conversation(page, f"Hello there {QUICK.format(20)}")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    page.locator("#composer-input").fill("my draft")

    port = restartable_worker.port
    restartable_worker.signal(signal.SIGTERM)
    restartable_worker.wait(timeout=30)
    status, button = page.locator("#connection-status"), page.get_by_role("button", name="Reconnect now")
    expect(status).to_contain_text("Reconnecting")
    expect(button).to_be_visible()
    assert serious_violations(page) == []
    button.click()  # the server is still away: it tries, fails, and the notice stays
    page.wait_for_timeout(1500)
    button.click()
    # Down long enough that a doubling backoff would now wait many seconds between attempts.
    page.wait_for_timeout(8000)
    expect(status).to_be_visible()

    restartable_worker.start(port=port)
    back = time.monotonic()
    expect(status).to_be_hidden(timeout=3000)  # within ~2 s of the server answering (3 s: a busy machine)
    assert time.monotonic() - back < 3
    expect(button).to_be_hidden()
    expect(page.locator("#composer-input")).to_have_value("my draft")
    page.wait_for_timeout(1500)
    assert sum(not socket.is_closed() for socket in sockets) == 1, "one socket, never two racing"
    send(page, f"Still there? {QUICK.format(20)}", 4)
    page.context.close()


def test_the_sidebar_filters_as_you_type(signed_up_page: Page):
    page = signed_up_page
    teapots = start_conversation(page, f"Something about teapots {QUICK.format(20)}")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    start_conversation(page, f"Something about kettles {QUICK.format(20)}")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    here = page.url
    sidebar = page.locator("#conversation-list")
    expect(sidebar).to_contain_text("kettles")

    page.locator("#sidebar-search-input").press_sequentially("teap", delay=60)
    expect(sidebar.locator(f'a[href="{teapots}"]').first).to_be_visible()
    expect(sidebar).not_to_contain_text("kettles")
    expect(sidebar.locator(".snippet mark").first).to_have_text(re.compile("^teapots$", re.I))
    assert page.url == here  # no page load: the list filtered in place

    page.locator("#sidebar-search-input").fill("")
    expect(sidebar).to_contain_text("kettles")
    expect(sidebar).to_contain_text("teapots")
    expect(sidebar.locator(".conversation-item.current")).to_have_count(1)


def test_the_phone_drawers_backdrop_closes_it(new_context, sign_up):
    page = new_context(viewport=PHONE, has_touch=True, is_mobile=True).new_page()
    sign_up(page)
    start_conversation(page, f"Hello {QUICK.format(20)}")
    sidebar = page.locator("#sidebar")
    expect(sidebar).not_to_be_in_viewport()
    page.locator("[data-drawer-toggle]").tap()
    expect(sidebar).to_be_in_viewport()
    backdrop = page.locator(".drawer-backdrop")
    expect(backdrop).to_be_visible()
    assert serious_violations(page) == []
    backdrop.tap(position={"x": PHONE["width"] - 20, "y": PHONE["height"] // 2})
    expect(sidebar).not_to_be_in_viewport()
    expect(backdrop).to_be_hidden()
    expect(page.locator("[data-drawer-toggle]")).to_have_attribute("aria-expanded", "false")

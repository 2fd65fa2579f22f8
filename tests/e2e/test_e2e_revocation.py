"""End to end: logging out in one tab closes the live chat socket of the browser's other tabs."""

from __future__ import annotations

import re
import time

from playwright.sync_api import Page, expect

from tests.e2e.conftest import PASSWORD

REPLY_TIMEOUT = 20_000
CONVERSATION_URL = re.compile(r"/c/(\d+)/$")
COMPLETE = re.compile(r"\bstatus-complete\b")

# A raw socket of the browser (same cookies) on the conversation, opened from a page without a socket
# of its own, so the test can read the close code and try to send on it afterwards.
OPEN_PROBE = """(url) => new Promise((resolve, reject) => {
  const socket = new WebSocket(url);
  window.probe = {socket, frames: [], closeCode: null};
  socket.onmessage = (event) => window.probe.frames.push(event.data);
  socket.onclose = (event) => { window.probe.closeCode = event.code; };
  socket.onopen = () => resolve();
  socket.onerror = () => reject(new Error("the probe socket could not connect"));
})"""


def probe_state(page: Page, until: str, timeout: float = 15) -> dict:
    """The probe's frames and close code, polled until the JS condition `until` holds of them.

    (Not `page.wait_for_function`: it evaluates strings with eval, which the site's CSP forbids.)
    """
    deadline = time.monotonic() + timeout
    while True:
        state = page.evaluate(
            "() => ({frames: window.probe.frames.length, closeCode: window.probe.closeCode})"
        )
        if page.evaluate(f"(probe) => {until}", state):
            return state
        assert time.monotonic() < deadline, f"the probe never reached {until}: {state}"
        page.wait_for_timeout(50)


def send_and_wait_for_the_reply(page: Page, text: str, replies: int) -> None:
    composer = page.locator("#composer-input")
    composer.fill(text)
    composer.press("Enter")
    expect(page.locator("#messages article.message.assistant")).to_have_count(replies)
    expect(page.locator("#messages article.message.assistant").last).to_have_class(
        COMPLETE, timeout=REPLY_TIMEOUT
    )


def test_logging_out_in_one_tab_closes_the_other_tabs_live_socket(new_context, sign_up):
    context = new_context()
    tab_a = context.new_page()
    username = sign_up(tab_a)

    chat = context.new_page()
    chat.goto("/")
    with chat.expect_websocket(lambda ws: "/ws/chat/" in ws.url) as socket_info:
        send_and_wait_for_the_reply(chat, "Hello [[offline ttft_ms=0 tps=0]]", replies=1)
    socket = socket_info.value
    path = CONVERSATION_URL.search(chat.url).group(0)
    # The socket is live: a follow-up goes over it and is answered.
    send_and_wait_for_the_reply(chat, "And again [[offline ttft_ms=0 tps=0]]", replies=2)
    assert not socket.is_closed()

    probe = context.new_page()
    probe.goto("/usage/")
    ws_url = (
        probe.evaluate("() => location.origin.replace(/^http/, 'ws')") + f"/ws/chat{path.removeprefix('/c')}"
    )
    probe.evaluate(OPEN_PROBE, ws_url)
    probe_state(probe, "probe.frames >= 1")  # the state every socket gets first

    with socket.expect_event("close"):
        tab_a.locator(".account-menu summary").click()
        tab_a.get_by_role("button", name="Log out").click()
        expect(tab_a).to_have_url(re.compile(r"/accounts/login/"))

    # The chat tab's socket was closed as signed out (4401), so the page went to the login page.
    expect(chat).to_have_url(re.compile(r"/accounts/login/\?next=" + re.escape(path)))
    closed = probe_state(probe, "probe.closeCode !== null")
    assert closed["closeCode"] == 4401
    probe.evaluate("() => window.probe.socket.send(JSON.stringify({message: 'Bill this to me'}))")

    # Logged in again, the conversation shows only what was sent before the logout.
    chat.fill("#id_username", username)
    chat.fill("#id_password", PASSWORD)
    chat.get_by_role("button", name="Log in").click()
    expect(chat).to_have_url(re.compile(re.escape(path) + "$"))
    expect(chat.locator("#messages article.message.user")).to_have_count(2)
    expect(chat.locator("#messages")).not_to_contain_text("Bill this to me")
    assert probe_state(probe, "true")["frames"] == closed["frames"]

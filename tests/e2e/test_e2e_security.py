"""In Chromium: a page of another origin cannot open a user's socket, and no page breaks the
Content-Security-Policy while a user chats, reads their usage and staff read the dashboard."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

REPLY_TIMEOUT = 20_000
CONVERSATION_URL = re.compile(r"/c/(\d+)/$")
COMPLETE = re.compile(r"\bstatus-complete\b")

# Opens the chat socket of conversation `path` and settles on what happened: "open" (with the first frame
# the server sends a socket that is let in) or "refused".
OPEN_SOCKET = """
(url) => new Promise((settle) => {
  const socket = new WebSocket(url);
  socket.onmessage = (event) => { settle("open: " + event.data.slice(0, 80)); socket.close(); };
  socket.onclose = (event) => settle("refused: " + event.code);
})
"""


@pytest.fixture
def other_origin_site(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain web server on another port of 127.0.0.1: (its base URL, the directory it serves)."""
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def start_conversation(page: Page, text: str) -> int:
    page.goto("/")
    composer = page.locator("#composer-input")
    composer.fill(text)
    composer.press("Enter")
    page.wait_for_url(CONVERSATION_URL)
    return int(CONVERSATION_URL.search(page.url).group(1))


def test_a_page_on_another_port_cannot_open_a_logged_in_users_socket(
    new_context, sign_up, live_server_url, other_origin_site
):
    context = new_context()
    page = context.new_page()
    sign_up(page)
    conversation_id = start_conversation(page, "A secret plan [[offline ttft_ms=0 tps=0]]")
    socket_url = f"ws://{urlsplit(live_server_url).netloc}/ws/chat/{conversation_id}/"

    # The site's own page opens it (same browser, same cookies).
    assert page.evaluate(OPEN_SOCKET, socket_url).startswith("open: ")

    base_url, directory = other_origin_site
    (directory / "steal.html").write_text(
        "<!doctype html><title>Other site</title><script>\n"
        f"window.outcome = ({OPEN_SOCKET})({socket_url!r});\n"
        "</script>"
    )
    other = context.new_page()
    other.goto(f"{base_url}/steal.html")
    outcome = other.evaluate("() => window.outcome")
    assert outcome.startswith("refused: "), outcome


def watch_policy_breaches(page: Page) -> list[str]:
    """Every CSP violation event, CSP or Permissions-Policy console message and uncaught error of `page`,
    across navigations."""
    breaches: list[str] = []
    page.expose_function("reportPolicyBreach", lambda text: breaches.append(text))
    page.add_init_script(
        """document.addEventListener("securitypolicyviolation", (event) => window.reportPolicyBreach(
             `CSP ${event.effectiveDirective} blocked ${event.blockedURI} at ${event.sourceFile}:${event.lineNumber}`));"""
    )
    policy_words = ("Content Security Policy", "Content-Security-Policy", "Permissions-Policy", "Refused to")
    page.on(
        "console",
        lambda message: breaches.append(f"console {message.type}: {message.text}")
        if any(word in message.text for word in policy_words)
        else None,
    )
    page.on("pageerror", lambda error: breaches.append(f"uncaught: {error}"))
    return breaches


def visit(page: Page, url: str) -> None:
    response = page.goto(url)
    assert response.ok, url
    assert "script-src 'self' 'nonce-" in response.headers["content-security-policy"], url


def test_no_csp_violation_while_chatting_on_the_usage_page_and_on_the_dashboard(
    new_context, sign_up, log_in_as_staff
):
    page = new_context().new_page()
    breaches = watch_policy_breaches(page)
    username = sign_up(page)

    start_conversation(page, "Show me a Python function to add numbers [[offline tps=40 reply_tokens=80]]")
    reply = page.locator("#messages article.message.assistant").last
    expect(reply).to_have_class(re.compile(r"\bstatus-streaming\b"))
    expect(reply).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    composer = page.locator("#composer-input")
    composer.fill("And once more, over the socket [[offline ttft_ms=0 tps=0]]")
    composer.press("Enter")
    expect(page.locator("#messages article.message.assistant")).to_have_count(2)
    reply = page.locator("#messages article.message.assistant").last
    expect(reply).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    reply.get_by_role("link", name="Receipt").click()
    expect(reply.locator(".receipt h2")).to_contain_text("Receipt")
    reply.get_by_role("button", name="Close the receipt").click()
    expect(reply.locator(".receipt h2")).to_have_count(0)
    page.locator(".code-block button.copy-code").first.click()
    visit(page, "/usage/")
    expect(page.locator("#my-usage")).to_contain_text("Total:")

    staff = new_context().new_page()
    staff_breaches = watch_policy_breaches(staff)
    log_in_as_staff(staff)
    visit(staff, "/admin/billing/usagerecord/")
    visit(staff, "/admin/billing/usagerecord/dashboard/")
    expect(staff.locator("#panel-chart svg rect").first).to_be_attached()
    staff.locator("#panel-users").get_by_role("link", name=username).click()
    expect(staff.locator("#billing-user-detail")).to_contain_text("Top conversations")
    # Pages reached by a click: let their scripts run, so what they might breach is watched.
    staff.wait_for_load_state("load")
    visit(staff, "/admin/auth/user/")
    staff.get_by_role("link", name=username).click()
    expect(staff.locator("#user_form")).to_be_visible()
    staff.wait_for_load_state("load")

    assert breaches == []
    assert staff_breaches == []

    # The watch itself works: an inline script without the nonce is refused and reported.
    staff.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = '1'; document.head.append(s); }"
    )
    for _ in range(100):
        if any("CSP script-src" in breach for breach in staff_breaches):
            break
        staff.wait_for_timeout(50)  # let Playwright deliver the page's report
    assert any("CSP script-src" in breach for breach in staff_breaches), staff_breaches

"""End to end: a user in Chromium, a real daphne server, the offline Claude (paced by magic words)."""

from __future__ import annotations

import html
import re
import time

from playwright.sync_api import Locator, Page, expect

REPLY_TIMEOUT = 20_000
STREAMING = re.compile(r"\bstatus-streaming\b")
COMPLETE = re.compile(r"\bstatus-complete\b")
CONVERSATION_URL = re.compile(r"/c/(\d+)/$")
# Reloads and Stop happen this long into a reply, past the idle timeouts of the plumbing in between
# (an idle channel-layer receive, a websocket with nothing to say): a long reply must not outlive them.
LATE_IN_THE_REPLY_SECONDS = 6.5


def start_conversation(page: Page, text: str) -> str:
    """Type `text` in the home page's composer and press Enter; returns the new conversation's path."""
    page.goto("/")
    composer = page.locator("#composer-input")
    composer.fill(text)
    composer.press("Enter")
    page.wait_for_url(CONVERSATION_URL)
    return CONVERSATION_URL.search(page.url).group(0)


def last_reply(page: Page) -> Locator:
    return page.locator("#messages article.message.assistant").last


def reply_state(page: Page) -> tuple[str, str]:
    """(class list, body text) of the newest reply, read in one go so they belong together."""
    return tuple(last_reply(page).evaluate("el => [el.className, el.querySelector('.body').innerText]"))


def wait_for_reply_text(page: Page, min_chars: int, *, streaming_for: float = 0, timeout: float = 15) -> str:
    """Poll until the streaming reply shows at least `min_chars` characters and has been streaming for
    at least `streaming_for` seconds (counted from this call); returns the text it shows then."""
    start = time.monotonic()
    while time.monotonic() < start + timeout:
        classes, text = reply_state(page)
        assert "status-streaming" in classes, f"the reply ended before showing {min_chars} chars: {classes}"
        if len(text) >= min_chars and time.monotonic() >= start + streaming_for:
            return text
        page.wait_for_timeout(100)
    raise AssertionError(f"the reply did not reach {min_chars} characters within {timeout}s")


def streaming_samples(page: Page, count: int, timeout: float = 15) -> list[str]:
    """Body texts of the streaming reply, sampled until `count` distinct values were seen."""
    samples: list[str] = []
    deadline = time.monotonic() + timeout
    while len(samples) < count and time.monotonic() < deadline:
        classes, text = reply_state(page)
        if "status-streaming" not in classes:
            break
        if text and (not samples or text != samples[-1]):
            samples.append(text)
        page.wait_for_timeout(120)
    return samples


def words(text: str) -> str:
    """The text with its whitespace collapsed: a streaming reply is rendered markdown, and the line
    breaks innerText reports between paragraphs depend on which element holds them (blocks already
    completed, or the one still being written), not on the text."""
    return " ".join(text.split())


def assert_grows_by_appending(samples: list[str]) -> None:
    samples = [words(sample) for sample in samples]
    for earlier, later in zip(samples, samples[1:], strict=False):
        assert len(later) > len(earlier), samples
        assert later.startswith(earlier), f"streamed text was rewritten:\n{earlier!r}\n{later!r}"


def assert_prefix_consistent(a: str, b: str) -> None:
    """Two views of the same growing reply: the shorter must be exactly the start of the longer."""
    shorter, longer = sorted((words(a), words(b)), key=len)
    assert longer.startswith(shorter), f"views disagree (duplicated or missing text):\n{a!r}\n{b!r}"


def test_sign_up_send_and_watch_the_reply_stream_in_then_render_as_markdown(signed_up_page: Page):
    page = signed_up_page
    start_conversation(
        page, "Show me a Python function to reverse a string [[offline tps=30 reply_tokens=150]]"
    )

    user_turn = page.locator("#messages article.message.user").last
    expect(user_turn).to_contain_text("Show me a Python function to reverse a string")
    reply = last_reply(page)
    expect(reply).to_have_class(STREAMING)
    expect(page.locator("#send-button")).to_be_disabled()
    expect(page.locator("#composer-input")).to_have_value("")
    expect(reply.locator("button.stop")).to_be_visible()

    samples = streaming_samples(page, count=3)
    assert len(samples) >= 3, f"expected to see the reply grow at least twice while streaming: {samples}"
    assert_grows_by_appending(samples)
    expect(page.locator("#send-button")).to_be_disabled()

    expect(reply).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    body = reply.locator(".body.markdown")
    expect(body.locator(".code-block pre code").first).to_be_visible()
    expect(body.locator(".code-block pre code").first).to_contain_text("def ")
    expect(body.locator(".code-block button.copy-code").first).to_have_text("Copy")
    expect(body).not_to_contain_text("```")  # rendered, not raw markdown
    expect(reply.locator("button.stop")).to_have_count(0)
    expect(page.locator("#send-button")).to_be_enabled()

    # A follow-up goes over the websocket: the composer empties once the server stored it.
    composer = page.locator("#composer-input")
    composer.fill("Thanks, and in JavaScript? [[offline ttft_ms=0 tps=0]]")
    composer.press("Enter")
    expect(page.locator("#messages article.message.user")).to_have_count(2)
    expect(page.locator("#messages article.message.user").last).to_contain_text("Thanks, and in JavaScript?")
    expect(composer).to_have_value("")
    expect(page.locator("#messages article.message.assistant")).to_have_count(2)
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    expect(page.locator("#send-button")).to_be_enabled()


def test_reload_mid_reply_shows_the_text_so_far_and_then_finishes(new_context, sign_up):
    context = new_context()
    page = context.new_page()
    sign_up(page)
    path = start_conversation(
        page, "Explain how websockets keep a connection open [[offline tps=25 reply_tokens=320]]"
    )
    # A second tab that never reloads: it sees the same reply through the live stream alone.
    watcher = context.new_page()
    watcher.goto(path)

    # Well over a second of text, so a checkpoint was saved; late enough to catch idle timeouts.
    before_reload = wait_for_reply_text(page, min_chars=200, streaming_for=LATE_IN_THE_REPLY_SECONDS)
    response = page.reload()
    served = re.search(r'id="msg-\d+-body" class="source" hidden>(.*?)</div>', response.text(), re.S)
    assert served, "after a reload mid-reply the page should render the reply as still streaming"
    text_so_far = html.unescape(served.group(1))
    assert text_so_far.strip(), "the reloaded page should already hold the text so far"

    expect(last_reply(page)).to_have_class(STREAMING)
    after_reload = streaming_samples(page, count=3)
    assert len(after_reload) >= 2, f"the reply should keep growing after the reload: {after_reload}"
    assert_grows_by_appending(after_reload)
    assert_prefix_consistent(after_reload[0], before_reload)
    # The text itself (the page keeps it beside its rendering while the reply streams) went on from there.
    source = last_reply(page).evaluate("el => el.querySelector('.source')?.textContent")
    if source is not None:
        assert source.startswith(text_so_far)
    for _ in range(4):  # both tabs show the same text, neither duplicated nor missing a segment
        _, reloaded_text = reply_state(page)
        _, watcher_text = reply_state(watcher)
        assert_prefix_consistent(reloaded_text, watcher_text)
        assert_prefix_consistent(reloaded_text, before_reload)
        page.wait_for_timeout(300)

    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    expect(last_reply(watcher)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    final_live = last_reply(page).locator(".body").inner_text()
    assert final_live == last_reply(watcher).locator(".body").inner_text()
    page.reload()
    expect(last_reply(page)).to_have_class(COMPLETE)
    assert last_reply(page).locator(".body").inner_text() == final_live


def test_stop_button_stops_the_reply_and_keeps_the_partial_text(signed_up_page: Page):
    page = signed_up_page
    path = start_conversation(page, "Tell me about growing tomatoes [[offline tps=20 reply_tokens=600]]")
    left_with = wait_for_reply_text(page, min_chars=40)
    # Leave the page for a while: the reply belongs to the server, not to the tab, and it can still be
    # stopped when its reader comes back (nothing listened to it meanwhile).
    page.goto("/")
    page.wait_for_timeout(LATE_IN_THE_REPLY_SECONDS * 1000)
    page.goto(path)
    expect(last_reply(page)).to_have_class(STREAMING)
    wait_for_reply_text(page, min_chars=len(left_with) + 100)

    reply = last_reply(page)
    reply.locator("button.stop").click()
    expect(reply).to_have_class(re.compile(r"\bstatus-stopped\b"), timeout=10_000)
    expect(reply.locator(".status")).to_contain_text("Stopped.")
    expect(page.locator("#send-button")).to_be_enabled()
    partial = reply.locator(".body").inner_text()
    assert len(partial) >= 40
    page.wait_for_timeout(600)
    assert reply.locator(".body").inner_text() == partial, "text kept arriving after Stop"

    page.reload()
    reply = last_reply(page)
    expect(reply).to_have_class(re.compile(r"\bstatus-stopped\b"))
    expect(reply.locator(".status")).to_contain_text("Stopped.")
    assert reply.locator(".body").inner_text() == partial
    expect(reply.get_by_role("button", name="Retry")).to_be_visible()


def test_an_idle_conversation_page_keeps_its_websocket_and_still_sends(signed_up_page: Page):
    page = signed_up_page
    sockets = []
    page.on("websocket", lambda ws: sockets.append(ws))
    start_conversation(page, "Say hello [[offline ttft_ms=0 tps=0]]")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)

    # A reader pauses: nothing is said on the socket for longer than common client idle timeouts
    # (redis-py's default socket timeout is 5 s). The page must not lose its socket meanwhile.
    page.wait_for_timeout(LATE_IN_THE_REPLY_SECONDS * 1000)
    chat_sockets = [ws for ws in sockets if "/ws/chat/" in ws.url]
    assert len(chat_sockets) == 1, f"the page reconnected {len(chat_sockets) - 1} time(s) while idle"
    assert not chat_sockets[0].is_closed(), "the server closed an idle page's websocket"

    composer = page.locator("#composer-input")
    composer.fill("Still there? [[offline ttft_ms=0 tps=0]]")
    composer.press("Enter")
    expect(page.locator("#messages article.message.assistant")).to_have_count(2)
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)


def test_conversations_are_private_and_listed_in_the_sidebar(new_context, sign_up):
    alice = new_context().new_page()
    sign_up(alice)
    path = start_conversation(alice, "Plan a picnic in the park [[offline ttft_ms=0 tps=0]]")
    conversation_id = CONVERSATION_URL.search(path).group(1)
    expect(last_reply(alice)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)

    bob = new_context().new_page()
    sign_up(bob)
    response = bob.goto(path)
    assert response.status == 404
    bob.goto("/")
    expect(bob.locator(f"#conversation-{conversation_id}")).to_have_count(0)
    # ... and the websocket refuses him too, without sending a single frame of Alice's chat.
    socket_probe = """url => new Promise(resolve => {
        const frames = [];
        const ws = new WebSocket(url);
        ws.onmessage = event => { frames.push(event.data); ws.close(); };
        ws.onclose = () => resolve(frames);
        setTimeout(() => { ws.close(); resolve(frames); }, 5000);
    })"""
    ws_url = re.sub(r"^http", "ws", alice.url.split("/c/")[0]) + f"/ws/chat/{conversation_id}/"
    assert bob.evaluate(socket_probe, ws_url) == []
    alice_frames = alice.evaluate(socket_probe, ws_url)
    assert alice_frames and "Plan a picnic" in alice_frames[0]  # the probe itself works

    alice.reload()
    item = alice.locator(f"#conversation-{conversation_id}")
    expect(item).to_be_visible()
    expect(item.locator("a").first).to_have_attribute("aria-current", "page")

    item.locator("summary").click()
    title_input = item.locator("input[name=title]")
    title_input.fill("Picnic plans")
    item.get_by_role("button", name="Save").click()
    expect(alice.locator(f"#conversation-{conversation_id} > a")).to_have_text("Picnic plans")
    alice.reload()
    expect(alice.locator(f"#conversation-{conversation_id} > a")).to_have_text("Picnic plans")
    expect(alice.locator("#conversation-title")).to_have_text("Picnic plans")

    item = alice.locator(f"#conversation-{conversation_id}")
    item.locator("summary").click()
    item.get_by_role("link", name="Delete…").click()
    expect(alice.get_by_role("heading", level=1)).to_contain_text("Picnic plans")
    alice.get_by_role("button", name="Delete").click()
    expect(alice.locator(".flash")).to_contain_text("Deleted")
    expect(alice.locator(f"#conversation-{conversation_id}")).to_have_count(0)
    assert alice.goto(path).status == 404


def test_error_mid_stream_shows_inline_with_retry_and_keeps_text(signed_up_page: Page):
    page = signed_up_page
    start_conversation(
        page, "Describe the ocean at night [[offline fault=error fault_after=40 fault_times=1 tps=50]]"
    )
    reply = last_reply(page)
    expect(reply).to_have_class(re.compile(r"\bstatus-error\b"), timeout=REPLY_TIMEOUT)
    expect(reply.locator(".status .error")).to_be_visible()
    expect(reply.locator(".status .error")).to_contain_text("The text so far is kept.")
    assert reply.locator(".body").inner_text().strip(), "the partial text should be kept"
    expect(page.locator("#send-button")).to_be_enabled()

    page.reload()  # the error state survives a reload, too
    reply = last_reply(page)
    expect(reply).to_have_class(re.compile(r"\bstatus-error\b"))
    reply.get_by_role("button", name="Retry").click()
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    expect(last_reply(page).locator(".status .error")).to_have_count(0)
    expect(page.locator("#messages article.message.assistant")).to_have_count(1)
    assert last_reply(page).locator(".body").inner_text().strip()


def test_phone_sized_screen_and_dark_mode_render(new_context, sign_up):
    page = new_context(viewport={"width": 390, "height": 844}, color_scheme="dark", has_touch=True).new_page()
    sign_up(page)
    start_conversation(page, "Compare Python vs Go with a code example [[offline ttft_ms=0 tps=0]]")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)

    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    channels = [int(c) for c in re.findall(r"\d+", background)[:3]]
    assert max(channels) < 80, f"dark mode should give a dark page, got {background}"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "the page scrolls sideways"

    composer = page.locator("#composer-input")
    composer.scroll_into_view_if_needed()
    expect(composer).to_be_visible()
    expect(composer).to_be_in_viewport()
    expect(page.locator("#send-button")).to_be_in_viewport()
    composer.tap()
    composer.fill("And a short summary? [[offline ttft_ms=0 tps=0]]")
    page.locator("#send-button").tap()
    expect(page.locator("#messages article.message.assistant")).to_have_count(2)
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    expect(composer).to_have_value("")


def test_offline_badge_and_no_api_key_in_the_page(new_context, sign_up):
    page = new_context().new_page()
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(str(payload))))
    page.goto("/accounts/signup/")
    sources = [page.content()]
    sign_up(page)
    expect(page.locator(".topbar .badge.offline")).to_be_visible()
    expect(page.locator(".topbar .badge.offline")).to_contain_text("Offline Claude")
    sources.append(page.content())
    start_conversation(page, "Write a Python script to list files [[offline ttft_ms=0 tps=0]]")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    expect(page.locator(".topbar .badge.offline")).to_be_visible()
    sources.append(page.content())
    page.reload()
    sources.append(page.content())

    assert frames, "the conversation page should have received websocket frames"
    for text in [*sources, *frames]:
        assert "sk-ant" not in text.lower()
        # The badge's tooltip names the setting (ANTHROPIC_API_KEY) to tell admins what to set; nothing
        # else about the server's Anthropic configuration belongs in a page or a frame.
        without_hint = re.sub(r'(class="badge offline"[^>]*?) title="[^"]*"', r"\1", text)
        assert "anthropic" not in without_hint.lower(), "the page mentions the server's Anthropic setup"

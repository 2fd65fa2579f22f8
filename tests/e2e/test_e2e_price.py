"""The price before you send, in a real Chromium against a real daphne and the offline Claude: the line
under the box follows the draft (asked once it rests, not per keystroke), and the receipt shows the
estimate beside the real cost."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.test_e2e_chat import COMPLETE, REPLY_TIMEOUT, last_reply, start_conversation
from tests.e2e.test_e2e_chat_page import DESKTOP, QUICK, serious_violations

PRICE = re.compile(r"≈ \$0\.\d+ · \d+% from cache · Sonnet 5\.5")


def test_the_line_appears_as_one_types_and_the_receipt_shows_the_estimate_beside_the_cost(
    new_context, sign_up
):
    page = new_context(viewport=DESKTOP, color_scheme="light").new_page()
    sign_up(page)
    start_conversation(page, f"What is a prompt cache? {QUICK}")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    line = page.locator("#price-line")
    expect(line).to_be_empty()

    asked = []
    page.on("request", lambda request: asked.append(request.url) if "/price/" in request.url else None)
    box = page.locator("#composer-input")
    box.click()
    box.press_sequentially(f"And how long does it live? {QUICK}", delay=20)
    expect(line).to_contain_text(PRICE, timeout=10_000)
    assert len(asked) == 1, asked  # once the draft rested, not once per keystroke
    assert line.get_attribute("aria-live") == "polite"
    assert serious_violations(page) == [], "chat page with the price line"

    shown = re.search(r"≈ (\$0\.\d+)", line.inner_text()).group(1)
    box.press("Enter")
    expect(page.locator("#messages article.message.assistant")).to_have_count(2, timeout=REPLY_TIMEOUT)
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    expect(line).to_be_empty()  # the box was emptied: no price for nothing

    last_reply(page).get_by_role("link", name="Receipt").click()
    receipt = last_reply(page).locator(".receipt-estimate")
    expect(receipt).to_contain_text(
        re.compile(rf"Cost \$0\.\d+( \(exactly \$0\.\d+\))? · estimated ≈ {re.escape(shown)} before sending")
    )
    assert serious_violations(page) == [], "chat page with a receipt and its estimate"

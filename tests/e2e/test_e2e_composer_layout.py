"""End to end in Chromium: the message box keeps a usable width on phones, tablets and desktops, with a
preset select beside it (home page) or three file chips (conversation page): those wrap onto a row of
their own instead of squeezing the box into a sliver."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_e2e_attachments_thinking import PASTE, png
from tests.e2e.test_e2e_chat import COMPLETE, REPLY_TIMEOUT, last_reply, start_conversation

PHONE = {"width": 390, "height": 844}
TABLET = {"width": 820, "height": 1180}
DESKTOP = {"width": 1280, "height": 800}
SIZES = pytest.mark.parametrize("viewport", [PHONE, TABLET, DESKTOP], ids=["phone", "tablet", "desktop"])

MEASURE = """() => {
  const form = document.getElementById("composer"), box = document.getElementById("composer-input");
  const style = getComputedStyle(form);
  const content = form.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const rect = (el) => { const r = el.getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width, height: r.height}; };
  const others = [...form.querySelectorAll("select, .attachment-chip, .attach-button, #send-button")].map(rect);
  return {content, box: rect(box), others, overflow: form.scrollWidth - form.clientWidth, pageWidth: document.documentElement.scrollWidth};
}"""


def assert_usable(page: Page, viewport: dict) -> None:
    shown = page.evaluate(MEASURE)
    box, content = shown["box"], shown["content"]
    if viewport is PHONE:  # the whole width of the form (at least 60% was the brief's floor)
        assert box["width"] >= 0.95 * content, shown
    else:  # the row but for the Send button
        assert box["width"] >= 0.8 * content, shown
    # Nothing beside it overlaps it, and nothing makes the page scroll sideways.
    for other in shown["others"]:
        overlap_x = min(box["x"] + box["width"], other["x"] + other["width"]) - max(box["x"], other["x"])
        overlap_y = min(box["y"] + box["height"], other["y"] + other["height"]) - max(box["y"], other["y"])
        assert overlap_x <= 0 or overlap_y <= 0, (box, other)
    assert shown["overflow"] <= 0 and shown["pageWidth"] <= viewport["width"], shown


def make_preset(page: Page) -> None:
    page.goto("/presets/")
    page.fill("#preset-name", "Careful reviewer with a long name")
    page.fill("#preset-prompt", "Review what I send, carefully.")
    page.get_by_role("button", name="Save preset").click()
    expect(page.locator(".preset-list")).to_contain_text("Careful reviewer")


@SIZES
def test_with_a_preset_the_home_pages_box_keeps_its_width(new_context, sign_up, viewport):
    page = new_context(viewport=viewport).new_page()
    sign_up(page)
    make_preset(page)
    page.goto("/")
    expect(page.locator("#preset-choice")).to_be_visible()
    assert_usable(page, viewport)
    page.locator("#composer-input").fill("A first line\n" * 3)
    assert_usable(page, viewport)


@SIZES
def test_with_one_to_three_chips_the_conversation_pages_box_keeps_its_width(new_context, sign_up, viewport):
    page = new_context(viewport=viewport).new_page()
    sign_up(page)
    start_conversation(page, "Hello [[offline reply_tokens=5]]")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    for n in range(3):  # with one, two and three chips (they fit beside the box: it must not shrink for them)
        page.evaluate(PASTE, [png(320 + n, 240), f"s{n}.png"])
        expect(page.locator("#attachment-chips .attachment-chip:not(.uploading)")).to_have_count(n + 1)
        assert_usable(page, viewport)

"""Files in the composer, end to end in Chromium: a first message that carries a file, text files
attached and sent, a binary file under a text name refused, and a 40,000-character paste that is never
cut (a counter, a sentence, and "Attach as a text file"), at desktop and phone sizes."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from offline_claude.tokenizer import count_tokens
from tests.e2e.test_e2e_chat import (
    COMPLETE,
    CONVERSATION_URL,
    REPLY_TIMEOUT,
    last_reply,
    start_conversation,
)
from tests.e2e.test_e2e_chat_page import DESKTOP, PHONE, QUICK, serious_violations

NOTES = "# Herons\n\nHerons wait in the shallows, then strike.\n" * 20
SIZES = pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])


def signed_up(new_context, sign_up, viewport: dict) -> Page:
    page = new_context(viewport=viewport).new_page()
    sign_up(page)
    return page


def chips(page: Page):
    return page.locator("#attachment-chips .attachment-chip")


def attach(page: Page, name: str, content: bytes, mime: str = "text/plain") -> None:
    page.locator("#attachment-input").set_input_files(
        files=[{"name": name, "mimeType": mime, "buffer": content}]
    )


def assert_no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"the page scrolls sideways: {width}"


@SIZES
def test_a_first_message_with_a_file_gets_a_reply_that_saw_it(new_context, sign_up, viewport):
    page = signed_up(new_context, sign_up, viewport)
    attach(page, "notes.md", NOTES.encode())
    chip = chips(page)
    expect(chip).to_have_count(1)
    expect(chip).to_contain_text("notes.md")
    size = len(NOTES.encode())  # 1,040 bytes: 2 KB rounded up, about 260 tokens at four bytes a token
    expect(chip).to_contain_text(f"{-(-size // 1024)} KB · ≈ {-(-size // 4):,} tokens")
    expect(chip).to_be_in_viewport()
    expect(page.locator("#send-button")).to_be_in_viewport()
    assert_no_sideways_scroll(page)
    assert serious_violations(page) == [], "home page with a chip"
    page.locator("#composer-input").fill(f"Summarise these notes {QUICK}")
    page.locator("#composer-input").press("Enter")
    page.wait_for_url(CONVERSATION_URL)
    first = page.locator("#messages article.message.user").first
    expect(first.locator(".message-attachments")).to_contain_text("notes.md")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    expect(last_reply(page).locator(".body")).to_contain_text(
        f"I received a text document (“notes.md”, {count_tokens(NOTES):,} tokens)"
    )
    expect(chips(page)).to_have_count(0)
    page.goto("/")
    expect(chips(page)).to_have_count(0)  # sent: no longer pending on the home page


def test_a_file_alone_starts_a_conversation(signed_up_page: Page):
    page = signed_up_page
    attach(page, "plan.txt", b"Step one: look. Step two: leap.\n")
    expect(chips(page)).to_have_count(1)
    page.locator("#send-button").click()
    page.wait_for_url(CONVERSATION_URL)
    expect(page.locator("#conversation-title")).to_have_text("plan.txt")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    expect(last_reply(page).locator(".body")).to_contain_text("I received a text document (“plan.txt”")


def test_a_binary_file_named_txt_is_refused_then_a_text_file_is_sent_and_the_error_clears(
    signed_up_page: Page,
):
    page = signed_up_page
    start_conversation(page, f"Hello {QUICK}")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    page.locator("#composer-input").fill("my draft about the data")
    attach(page, "photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
    expect(page.locator("#chat-errors")).to_contain_text(
        "“photo.txt” is not a text file (it holds binary data)."
    )
    expect(chips(page)).to_have_count(0)
    expect(page.locator("#composer-input")).to_have_value("my draft about the data")
    expect(page.locator("#messages article.message.user")).to_have_count(1)  # nothing was sent
    csv = b"city,herons\nOslo,12\nBergen,30\n"
    attach(page, "herons.csv", csv)
    expect(chips(page)).to_contain_text("herons.csv")
    expect(page.locator("#chat-errors")).to_have_text("")  # the stale refusal is gone
    page.locator("#composer-input").press("Enter")
    expect(page.locator("#messages article.message.user")).to_have_count(2)
    expect(page.locator("#messages article.message.user").last).to_contain_text("herons.csv")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    expect(last_reply(page).locator(".body")).to_contain_text(
        f"I received a text document (“herons.csv”, {count_tokens(csv.decode()):,} tokens)"
    )
    page.reload()
    expect(page.locator("#messages article.message.user").last.locator(".attachment-file")).to_contain_text(
        "herons.csv"
    )


PASTE_TEXT = """(text) => {
  const transfer = new DataTransfer();
  transfer.setData("text/plain", text);
  const box = document.getElementById("composer-input");
  box.focus();
  const event = new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true });
  // A synthetic paste has no default action: insert the text the way the browser's own paste does.
  if (box.dispatchEvent(event)) document.execCommand("insertText", false, text);
}"""


@SIZES
def test_a_40000_character_paste_is_kept_whole_counted_and_attached_as_a_text_file(
    new_context, sign_up, viewport
):
    page = signed_up(new_context, sign_up, viewport)
    start_conversation(page, f"Hello {QUICK}")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    box, length = page.locator("#composer-input"), page.locator("#composer-length")
    box.fill("a" * 28_000)
    expect(length).to_be_hidden()  # under 90% of the limit: no counter
    box.fill("a" * 29_500)
    expect(length).to_have_text("29,500 / 32,000")
    box.fill("")
    expect(length).to_be_hidden()
    text = ("The heron waits in the shallows. " * 1300)[:39_999] + "!"  # no space at either end
    page.evaluate(PASTE_TEXT, text)
    assert len(box.input_value()) == 40_000  # nothing cut
    expect(length).to_contain_text("The message is 40,000 characters; the limit is 32,000. Nothing was cut")
    expect(length).to_be_in_viewport()
    assert_no_sideways_scroll(page)
    box.press("Enter")
    expect(page.locator("#composer-hint")).to_contain_text("Too long to send as a message")
    expect(page.locator("#messages article.message.user")).to_have_count(1)  # nothing was sent
    assert len(box.input_value()) == 40_000
    assert serious_violations(page) == [], "composer with a too-long message"
    length.get_by_role("button", name="Attach as a text file").click()
    chip = chips(page)
    expect(chip).to_contain_text("Pasted text.txt")
    expect(chip).to_contain_text("40 KB · ≈ 10,000 tokens")
    expect(box).to_have_value("")
    expect(length).to_be_hidden()
    expect(page.locator("#composer-hint")).to_have_text("")  # the refusal to send no longer applies
    box.fill(f"What is this about? {QUICK}")
    box.press("Enter")
    expect(page.locator("#messages article.message.user")).to_have_count(2)
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    expect(last_reply(page).locator(".body")).to_contain_text(
        f"I received a text document (“Pasted text.txt”, {count_tokens(text):,} tokens)"
    )


def test_a_long_paste_within_the_limit_is_offered_as_a_file_and_only_the_paste_moves(signed_up_page: Page):
    page = signed_up_page
    box, length = page.locator("#composer-input"), page.locator("#composer-length")
    box.fill("Please review: ")
    box.press("End")
    pasted = "row,value\n" + "".join(f"{n},{n * n}\n" for n in range(1500))  # about 15,000 characters
    page.evaluate(PASTE_TEXT, pasted)
    expect(length).to_contain_text(re.compile(r"You pasted 1\d,\d{3} characters\."))
    length.get_by_role("button", name="Attach as a text file").click()
    expect(chips(page)).to_contain_text("Pasted text.txt")
    expect(box).to_have_value("Please review: ")  # what was typed stays; only the paste became the file
    box.press("Enter")
    page.wait_for_url(CONVERSATION_URL)
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    expect(last_reply(page).locator(".body")).to_contain_text("I received a text document (“Pasted text.txt”")

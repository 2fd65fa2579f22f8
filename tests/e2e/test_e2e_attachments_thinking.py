"""End to end in Chromium: paste an image into the composer, send it, see its thumbnail (also after a
reload); watch the thinking stream in its own section, then open and close it."""

from __future__ import annotations

import base64
import io
import re

from playwright.sync_api import Page, expect

from tests.e2e.test_e2e_chat import COMPLETE, REPLY_TIMEOUT, STREAMING, last_reply, start_conversation

PASTE = """([data, name]) => {
  const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, { type: "image/png" }));
  const input = document.getElementById("composer-input");
  input.focus();
  input.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true }));
}"""


def png(width: int, height: int) -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def expect_loaded(image) -> None:
    """The image has loaded (polled: it shows at once, its file arrives later) and is not broken."""
    expect(image).to_have_js_property("complete", True)
    assert image.evaluate("img => img.naturalWidth") > 0


def test_paste_an_image_send_it_and_see_the_thumbnail_again_after_a_reload(signed_up_page: Page):
    page = signed_up_page
    start_conversation(page, "Hello")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    page.evaluate(PASTE, [png(640, 480), "image.png"])
    chip = page.locator("#attachment-chips .attachment-chip")
    expect(chip).to_have_count(1)
    expect(chip).to_contain_text("640×480")
    expect_loaded(chip.locator("img"))
    page.locator("#composer-input").fill("What is in this picture?")
    page.locator("#composer-input").press("Enter")
    thumbnail = page.locator("#messages article.message.user").last.locator(".message-attachments img")
    expect(thumbnail).to_be_visible()
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    expect(last_reply(page).locator(".body")).to_contain_text(
        "I received an image (image/png, 640×480 pixels, 410 tokens)"
    )
    expect(page.locator("#attachment-chips .attachment-chip")).to_have_count(0)
    expect_loaded(thumbnail)
    page.reload()
    thumbnail = page.locator("#messages article.message.user").last.locator(".message-attachments img")
    expect(thumbnail).to_be_visible()
    expect_loaded(thumbnail)
    expect(page.locator("#attachment-chips .attachment-chip")).to_have_count(0)


def test_a_file_that_is_not_what_its_name_says_is_refused_and_the_draft_kept(signed_up_page: Page):
    page = signed_up_page
    start_conversation(page, "Hello")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    page.locator("#composer-input").fill("my draft")
    page.locator("#attachment-input").set_input_files(
        files=[{"name": "fake.png", "mimeType": "image/png", "buffer": b"GIF89a this is not a png"}]
    )
    expect(page.locator("#chat-errors")).to_contain_text("fake.png")
    expect(page.locator("#attachment-chips .attachment-chip")).to_have_count(0)
    expect(page.locator("#composer-input")).to_have_value("my draft")


def test_thinking_streams_open_then_collapses_and_opens_and_closes(signed_up_page: Page):
    page = signed_up_page
    start_conversation(page, "Explain tides [[offline tps=25 tokens_per_delta=1]]")
    thinking = last_reply(page).locator("details.thinking")
    expect(thinking).to_be_visible(timeout=REPLY_TIMEOUT)
    expect(thinking.locator("summary")).to_contain_text("Thinking…")
    assert thinking.evaluate("el => el.open")
    # Once the answer starts, the thinking folds away while the answer goes on streaming below it.
    expect(thinking.locator("summary")).to_have_text(re.compile(r"Thought for \d+ s"), timeout=REPLY_TIMEOUT)
    expect(thinking.locator(".thinking-body")).to_be_hidden()
    expect(last_reply(page)).to_have_class(STREAMING)
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    thinking = last_reply(page).locator("details.thinking")
    expect(thinking.locator("summary")).to_have_text(re.compile(r"Thought for \d+ s"))
    body = thinking.locator(".thinking-body")
    expect(body).to_be_hidden()
    thinking.locator("summary").click()
    expect(body).to_be_visible()
    expect(body).to_contain_text("The user asks")
    thinking.locator("summary").click()
    expect(body).to_be_hidden()
    page.reload()
    thinking = last_reply(page).locator("details.thinking")
    expect(thinking.locator("summary")).to_have_text(re.compile(r"Thought for \d+ s"))
    thinking.locator("summary").click()
    expect(thinking.locator(".thinking-body")).to_contain_text("The user asks")


DROP = """([data, name]) => {
  const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, { type: "application/pdf" }));
  const target = document.getElementById("composer-input");
  for (const type of ["dragover", "drop"]) {
    target.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }
}"""


def pdf(pages: int) -> str:
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    out = io.BytesIO()
    writer.write(out)
    return base64.b64encode(out.getvalue()).decode()


def test_drop_a_pdf_on_the_composer_then_remove_its_chip(signed_up_page: Page):
    page = signed_up_page
    start_conversation(page, "Hello")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    page.evaluate(DROP, [pdf(3), "report.pdf"])
    chip = page.locator("#attachment-chips .attachment-chip")
    expect(chip).to_contain_text("report.pdf")
    expect(chip).to_contain_text("3 pages · ≈ 9,000 tokens")
    chip.locator(".remove-attachment").click()
    expect(chip).to_have_count(0)
    page.reload()
    expect(page.locator("#attachment-chips .attachment-chip")).to_have_count(0)  # gone on the server too

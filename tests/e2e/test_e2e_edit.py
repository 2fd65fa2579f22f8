"""End to end in Chromium: editing a sent message in place. Its files come along as chips (kept, removed
or added, and the reply sees exactly those), the keys work as in the message box (Enter sends,
Shift+Enter adds a line, Esc cancels), and the version arrows are easy to hit and far from Delete."""

from __future__ import annotations

import base64

from playwright.sync_api import Page, expect

from tests.e2e.test_e2e_attachments_thinking import PASTE, expect_loaded, pdf, png
from tests.e2e.test_e2e_chat import COMPLETE, REPLY_TIMEOUT, last_reply, start_conversation
from tests.e2e.test_e2e_chat_page import serious_violations

LONG_ENOUGH = "[[offline reply_tokens=40]]"  # the reply says what files it received before it ends


def last_question(page: Page):
    return page.locator("#messages article.message.user").last


def send_with_an_image(page: Page, text: str) -> None:
    """A conversation whose latest message carries image.png (640×480), its reply complete."""
    start_conversation(page, f"Hello {LONG_ENOUGH}")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    page.evaluate(PASTE, [png(640, 480), "image.png"])
    expect(page.locator("#attachment-chips .attachment-chip:not(.uploading)")).to_have_count(1)
    page.locator("#composer-input").fill(text)
    page.locator("#composer-input").press("Enter")
    expect(page.locator("#messages article.message")).to_have_count(4, timeout=REPLY_TIMEOUT)
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    expect(last_reply(page).locator(".body")).to_contain_text("I received an image (image/png, 640×480")


def open_editor(page: Page):
    last_question(page).get_by_role("link", name="Edit").click()
    editor = last_question(page).locator(".edit-form textarea[name=message]")
    expect(editor).to_be_visible()
    return editor


def test_an_edit_keeps_the_file_and_the_reply_sees_it_then_an_edit_without_it_sends_none(
    signed_up_page: Page,
):
    page = signed_up_page
    send_with_an_image(page, f"What is this? {LONG_ENOUGH}")

    editor = open_editor(page)
    expect(editor).to_be_focused()
    expect(editor).to_have_value(f"What is this? {LONG_ENOUGH}")
    chip = last_question(page).locator(".edit-form .attachment-chip")
    expect(chip).to_have_count(1)
    expect(chip).to_contain_text("image.png")
    expect_loaded(chip.locator("img"))
    # The bubble being edited makes way for its editor.
    expect(last_question(page).locator(".message-attachments")).to_be_hidden()
    expect(last_question(page).locator(".body")).to_be_hidden()

    # Shift+Enter adds a line; Enter sends, with the file kept.
    editor.press("End")
    editor.press("Shift+Enter")
    editor.type("Describe it.")
    expect(editor).to_have_value(f"What is this? {LONG_ENOUGH}\nDescribe it.")
    editor.press("Enter")
    expect(last_question(page).locator(".branch-position")).to_have_text("2 / 2", timeout=REPLY_TIMEOUT)
    expect(last_question(page).locator(".body")).to_have_text(f"What is this? {LONG_ENOUGH}\nDescribe it.")
    expect_loaded(last_question(page).locator(".message-attachments img"))
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    expect(last_reply(page).locator(".body")).to_contain_text("I received an image (image/png, 640×480")

    # Again, with the chip removed: the new version carries no file and the reply saw none.
    open_editor(page)
    last_question(page).get_by_role("button", name="Remove image.png").click()
    expect(last_question(page).locator(".edit-form .attachment-chip")).to_have_count(0)
    last_question(page).locator(".edit-form textarea").fill(f"Never mind the picture. {LONG_ENOUGH}")
    last_question(page).get_by_role("button", name="Send edited").click()
    expect(last_question(page).locator(".branch-position")).to_have_text("3 / 3", timeout=REPLY_TIMEOUT)
    expect(last_question(page).locator(".message-attachments")).to_have_count(0)
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    expect(last_reply(page).locator(".body")).not_to_contain_text("I received")

    # The versions before it keep their file: it is still there, shown and loading, on version 2.
    last_question(page).get_by_role("button", name="Previous version").click()
    expect(last_question(page).locator(".branch-position")).to_have_text("2 / 3", timeout=REPLY_TIMEOUT)
    expect_loaded(last_question(page).locator(".message-attachments img"))


def test_a_pdf_added_in_the_editor_goes_with_the_new_version(signed_up_page: Page):
    page = signed_up_page
    start_conversation(page, f"Summarise the report. {LONG_ENOUGH}")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    open_editor(page)
    last_question(page).locator(".edit-file-input").set_input_files(
        files=[{"name": "report.pdf", "mimeType": "application/pdf", "buffer": base64.b64decode(pdf(2))}]
    )
    chip = last_question(page).locator(".edit-form .attachment-chip:not(.uploading)")
    expect(chip).to_contain_text("report.pdf")
    expect(chip).to_contain_text("2 pages")
    last_question(page).locator(".edit-form textarea").press("Enter")
    expect(last_question(page).locator(".branch-position")).to_have_text("2 / 2", timeout=REPLY_TIMEOUT)
    expect(last_question(page).locator(".message-attachments")).to_contain_text("report.pdf")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    expect(last_reply(page).locator(".body")).to_contain_text("I received a PDF (2 pages")
    page.reload()  # sent, so no longer pending: the composer does not offer it again
    expect(page.locator("#attachment-chips .attachment-chip")).to_have_count(0)


def test_esc_and_cancel_close_the_editor_and_show_the_message_again(signed_up_page: Page):
    page = signed_up_page
    send_with_an_image(page, f"Keep this as it is. {LONG_ENOUGH}")
    question = last_question(page)

    editor = open_editor(page)
    expect(editor).to_be_focused()
    assert serious_violations(page) == [], "chat page with the editor open"
    editor.fill("A change I will not send")
    editor.press("Escape")
    expect(question.locator(".edit-form")).to_have_count(0)
    expect(question.locator(".body")).to_have_text(f"Keep this as it is. {LONG_ENOUGH}")
    expect(question.locator(".message-attachments img")).to_be_visible()
    edit_link = question.get_by_role("link", name="Edit")
    expect(edit_link).to_be_focused()
    expect(last_reply(page)).to_have_class(COMPLETE)  # Esc closed the editor and did nothing else

    open_editor(page)
    question.get_by_role("button", name="Remove image.png").click()
    question.locator(".edit-file-input").set_input_files(
        files=[{"name": "extra.pdf", "mimeType": "application/pdf", "buffer": base64.b64decode(pdf(1))}]
    )
    expect(question.locator(".edit-form .attachment-chip:not(.uploading)")).to_contain_text("extra.pdf")
    question.get_by_role("link", name="Cancel").click()
    expect(question.locator(".edit-form")).to_have_count(0)
    expect(question.locator(".body")).to_be_visible()
    expect(question.locator(".message-attachments img")).to_be_visible()
    page.wait_for_timeout(300)  # nothing is sent: give a wrong send the time to show
    expect(question.locator(".branches")).to_have_count(0)  # still one version
    assert page.url.endswith("/")  # stayed on the page: Cancel is not a navigation with JS

    # Opened again, the editor shows the message as sent, its file included (and only that).
    editor = open_editor(page)
    expect(editor).to_have_value(f"Keep this as it is. {LONG_ENOUGH}")
    expect(question.locator(".edit-form .attachment-chip")).to_have_count(1)
    expect(question.locator(".edit-form .attachment-chip")).to_contain_text("image.png")
    # The file uploaded in the cancelled editor was discarded: a reload does not offer it to the composer.
    page.reload()
    expect(page.locator("#composer-input")).to_be_visible()
    expect(page.locator("#attachment-chips .attachment-chip")).to_have_count(0)

    # The editor as a page of its own (the Edit link opened in a new tab, or without JavaScript).
    conversation = page.url
    page.goto(last_question(page).get_by_role("link", name="Edit").get_attribute("href"))
    expect(page.locator(".edit-form .attachment-chip")).to_contain_text("image.png")
    expect(page.locator(".edit-form textarea")).to_be_focused()
    assert serious_violations(page) == [], "the edit page"
    page.get_by_role("link", name="Cancel").click()
    expect(page.locator("#composer-input")).to_be_visible()
    assert page.url.startswith(conversation)


def _gap(a: dict, b: dict) -> float:
    """The distance between two boxes (0 when they touch or overlap)."""
    dx = max(0.0, max(a["x"], b["x"]) - min(a["x"] + a["width"], b["x"] + b["width"]))
    dy = max(0.0, max(a["y"], b["y"]) - min(a["y"] + a["height"], b["y"] + b["height"]))
    return (dx * dx + dy * dy) ** 0.5


def test_version_arrows_are_at_least_24_px_and_delete_version_is_away_from_them(new_context, sign_up):
    page = new_context(viewport={"width": 390, "height": 844}, has_touch=True).new_page()
    sign_up(page)
    start_conversation(page, f"Name a river {LONG_ENOUGH}")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    last_reply(page).get_by_role("button", name="Regenerate").click()
    expect(last_reply(page).locator(".branch-position")).to_have_text("2 / 2", timeout=REPLY_TIMEOUT)
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    open_editor(page).press("Enter")
    expect(last_question(page).locator(".branch-position")).to_have_text("2 / 2", timeout=REPLY_TIMEOUT)
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    last_reply(page).get_by_role("button", name="Regenerate").click()
    expect(last_reply(page).locator(".branch-position")).to_have_text("2 / 2", timeout=REPLY_TIMEOUT)
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)

    for message in (last_question(page), last_reply(page)):
        arrows = [
            message.get_by_role("button", name="Previous version").bounding_box(),
            message.get_by_role("button", name="Next version").bounding_box(),
        ]
        for box in arrows:
            assert box["width"] >= 24 and box["height"] >= 24, box
        delete = message.get_by_role("button", name="Delete version")
        expect(delete).to_be_visible()
        for box in arrows:
            assert _gap(box, delete.bounding_box()) >= 24, (box, delete.bounding_box())

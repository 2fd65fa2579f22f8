"""End to end: edit a sent message in Chromium, switch between the versions, reload: nothing is lost."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.e2e.test_e2e_chat import COMPLETE, REPLY_TIMEOUT, last_reply, start_conversation


def first_user_message(page: Page):
    return page.locator("#messages article.message.user").first


def test_edit_then_switch_versions_then_reload_keeps_both_branches(signed_up_page: Page):
    page = signed_up_page
    start_conversation(page, "Tell me about owls [[offline reply_tokens=15]]")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    composer = page.locator("#composer-input")
    composer.fill("And their eyes? [[offline reply_tokens=15]]")
    composer.press("Enter")
    expect(page.locator("#messages article.message")).to_have_count(4, timeout=REPLY_TIMEOUT)
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    old_reply = page.locator("#messages article.message.assistant").first.locator(".body").inner_text()

    # Edit the first message: its form opens in place (htmx), and sending it goes over the websocket.
    first_user_message(page).get_by_role("link", name="Edit").click()
    editor = first_user_message(page).locator("textarea[name=message]")
    expect(editor).to_have_value("Tell me about owls [[offline reply_tokens=15]]")
    editor.fill("Tell me about herons instead [[offline reply_tokens=15]]")
    first_user_message(page).get_by_role("button", name="Send edited").click()

    expect(first_user_message(page).locator(".body")).to_have_text(
        "Tell me about herons instead [[offline reply_tokens=15]]", timeout=REPLY_TIMEOUT
    )
    expect(page.locator("#messages article.message")).to_have_count(
        2
    )  # the later turns were on the old branch
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    expect(first_user_message(page).locator(".branch-position")).to_have_text("2 / 2")

    # Back to version 1: the old branch returns whole, both turns below it included.
    first_user_message(page).get_by_role("button", name="Previous version").click()
    expect(first_user_message(page).locator(".branch-position")).to_have_text("1 / 2", timeout=REPLY_TIMEOUT)
    expect(page.locator("#messages article.message")).to_have_count(4)
    expect(page.locator("#messages")).to_contain_text("And their eyes?")
    expect(page.locator("#messages article.message.assistant").first.locator(".body")).to_have_text(old_reply)

    # The choice is the server's: a reload shows the same branch, and the next version is one click away.
    page.reload()
    expect(first_user_message(page).locator(".branch-position")).to_have_text("1 / 2")
    expect(page.locator("#messages")).to_contain_text("And their eyes?")
    first_user_message(page).get_by_role("button", name="Next version").click()
    expect(first_user_message(page).locator(".branch-position")).to_have_text("2 / 2", timeout=REPLY_TIMEOUT)
    expect(page.locator("#messages article.message")).to_have_count(2)
    page.reload()
    expect(first_user_message(page).locator(".body")).to_have_text(
        "Tell me about herons instead [[offline reply_tokens=15]]"
    )

    # Delete version asks first: "Cancel" keeps it; "OK" removes it and shows the other version.
    delete = first_user_message(page).get_by_role("button", name="Delete version")
    page.once("dialog", lambda dialog: dialog.dismiss())
    delete.click()
    page.wait_for_timeout(500)  # nothing is sent: give a wrong send the time to show
    expect(first_user_message(page).locator(".branch-position")).to_have_text("2 / 2")
    questions = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    delete.click()
    expect(first_user_message(page).locator(".body")).to_have_text(
        "Tell me about owls [[offline reply_tokens=15]]", timeout=REPLY_TIMEOUT
    )
    assert "Delete this version" in questions[0]
    expect(page.locator("#messages")).to_contain_text("And their eyes?")

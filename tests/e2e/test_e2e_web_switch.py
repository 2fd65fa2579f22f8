"""The Web switch in a real browser: turned on from the conversation's header (htmx), it is still on
after a reload, and off again the same way; the home page offers starting a conversation with it on."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.e2e.test_e2e_chat import COMPLETE, REPLY_TIMEOUT, last_reply
from tests.e2e.test_e2e_chat_page import QUICK, send, serious_violations


def web_switch(page: Page):
    return page.locator("#web-switch").get_by_role("button", name="Web")


def test_the_web_switch_turns_on_from_the_page_and_stays_on_after_a_reload(signed_up_page: Page):
    page = signed_up_page
    expect(page.get_by_label("Search the web")).not_to_be_checked()
    send(page, f"Tell me about owls {QUICK}")
    page.wait_for_url("**/c/*/")
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)

    switch = web_switch(page)
    expect(switch).to_have_attribute("aria-pressed", "false")
    url = page.url
    switch.click()
    expect(web_switch(page)).to_have_attribute("aria-pressed", "true")
    assert page.url == url  # swapped in place, no navigation
    assert serious_violations(page) == []

    page.reload()
    expect(web_switch(page)).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#web-switch")).to_contain_text("on")

    web_switch(page).click()
    expect(web_switch(page)).to_have_attribute("aria-pressed", "false")
    page.reload()
    expect(web_switch(page)).to_have_attribute("aria-pressed", "false")

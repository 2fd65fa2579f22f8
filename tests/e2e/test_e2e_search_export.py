"""End to end in Chromium: search the sidebar's conversations as you type, export a conversation as
Markdown and JSON, import the JSON back, and the sidebar's pin and archive."""

from __future__ import annotations

import json
import re

from playwright.sync_api import Page, expect

from tests.e2e.test_e2e_chat import COMPLETE, REPLY_TIMEOUT, last_reply, start_conversation


def finished_conversation(page: Page, text: str) -> str:
    path = start_conversation(page, text)
    expect(last_reply(page)).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    return path


def test_search_finds_my_words_with_highlights_as_i_type(signed_up_page: Page, new_context, sign_up):
    page = signed_up_page
    path = finished_conversation(page, "Tell me about the axolotl <b>habitat</b>")
    finished_conversation(page, "Something about teapots")
    # Another person's words are never found.
    other = new_context().new_page()
    sign_up(other)
    finished_conversation(other, "My private axolotl notes")

    page.fill("#sidebar-search-input", "axolotl")
    page.press("#sidebar-search-input", "Enter")
    expect(page).to_have_url(re.compile(r"/search/\?q=axolotl$"))
    hits = page.locator(".message-hit")
    expect(hits.first).to_be_visible()
    # The results are in the HTML, so they show before htmx has wired the box (on DOMContentLoaded);
    # typing before then is a plain input with nothing listening yet. Wait for the page to finish.
    page.wait_for_load_state("load")
    expect(page.locator(".message-hit mark").first).to_have_text(re.compile("axolotl", re.I))
    expect(page.locator("#search-results")).not_to_contain_text("private")
    # Text that looks like HTML shows as text: no element was made from it.
    expect(page.locator("#search-results")).to_contain_text("<b>habitat</b>")
    assert page.locator("#search-results b").count() == 0

    # As you type (htmx): the results follow the box without a page load, and the URL follows.
    page.fill("#search-input", "teap")
    expect(page.locator(".message-hit mark").first).to_have_text(re.compile("^teapots$", re.I))
    expect(page).to_have_url(re.compile(r"q=teap"))
    expect(page.locator("#search-results")).not_to_contain_text("axolotl")

    page.fill("#search-input", "axolotl habitat")
    expect(page.locator(".message-hit").first).to_contain_text("habitat")
    expect(page.locator("#search-results")).not_to_contain_text("teapots")
    page.locator(".message-hit a").first.click()
    expect(page).to_have_url(
        re.compile(re.escape(path.rstrip("/")) + r"/\?before=\d+&found=\d+&q=axolotl\+habitat#msg-\d+$")
    )
    expect(page.locator("#messages")).to_contain_text("axolotl")


def test_export_markdown_and_json_then_import_the_json(signed_up_page: Page, tmp_path):
    page = signed_up_page
    path = finished_conversation(page, "Explain # headings and *stars*")
    item = page.locator(".conversation-item.current")
    item.locator("summary").click()

    with page.expect_download() as download:
        item.get_by_role("link", name="Markdown").click()
    markdown_file = tmp_path / download.value.suggested_filename
    download.value.save_as(markdown_file)
    markdown = markdown_file.read_text()
    assert markdown_file.suffix == ".md"
    assert "## You\n\nExplain # headings and *stars*" in markdown and "## Claude (" in markdown

    with page.expect_download() as download:
        item.get_by_role("link", name="JSON").click()
    json_file = tmp_path / download.value.suggested_filename
    download.value.save_as(json_file)
    document = json.loads(json_file.read_text())
    assert document["format"] == 1 and [m["role"] for m in document["messages"]] == ["user", "assistant"]

    page.get_by_role("link", name="Import").click()
    page.set_input_files("#import-file", str(json_file))
    page.get_by_role("button", name="Import").click()
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))
    assert page.url.rstrip("/").split("/")[-1] != path.strip("/").split("/")[-1]
    expect(page.locator("#messages article.message")).to_have_count(2)
    expect(page.locator("#messages")).to_contain_text("Explain # headings and *stars*")

    # A file from a newer version is refused with a sentence, and nothing is added.
    document["format"] = 2
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(document))
    count = page.locator(".conversation-item").count()
    page.goto("/import/")
    page.set_input_files("#import-file", str(newer))
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("alert")).to_contain_text("newer version of the app (format 2)")
    page.goto("/")
    expect(page.locator(".conversation-item")).to_have_count(count)


def test_pin_and_archive_from_the_sidebar(signed_up_page: Page):
    page = signed_up_page
    finished_conversation(page, "First conversation")
    finished_conversation(page, "Second conversation")
    first = page.locator(".conversation-item", has_text="First conversation")
    first.locator("summary").click()
    first.get_by_role("button", name="Pin").click()
    expect(page.locator(".group-heading").first).to_have_text("Pinned")
    expect(page.locator(".conversation-item").first).to_contain_text("First conversation")

    second = page.locator(".conversation-item", has_text="Second conversation")
    second.locator("summary").click()
    second.get_by_role("button", name="Archive").click()
    expect(page.locator("#conversation-list")).not_to_contain_text("Second conversation")
    page.get_by_role("link", name="Archived").click()
    expect(page.locator("#conversation-list")).to_contain_text("Second conversation")


def test_the_sidebar_loads_more_conversations_as_it_scrolls(signed_up_page: Page, manage):
    page = signed_up_page
    username = page.locator(".topbar .who").inner_text()
    manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model\n"
        "from conversations.models import Conversation\n"
        f"owner = get_user_model().objects.get(username={username!r})\n"
        "for n in range(75):\n"
        "    Conversation.objects.create(owner=owner, model='claude-sonnet-5-5', title=f'Bulk {n:02d}')\n",
    )
    page.goto("/")
    items = page.locator("#conversation-list .conversation-item")
    expect(items).to_have_count(50)
    # Scroll the sidebar to its end, as a person would (the next page loads when its end shows).
    page.locator("aside.sidebar").evaluate("el => { el.scrollTop = el.scrollHeight; }")
    expect(items).to_have_count(75)
    expect(page.locator("#conversation-list")).to_contain_text("Bulk 00")
    expect(page.locator(".sidebar-more")).to_have_count(0)
    assert len(set(items.all_inner_texts())) == 75  # nothing shown twice

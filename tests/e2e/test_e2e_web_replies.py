"""A reply that looks things up, in Chromium against a real daphne and the offline Claude: the Web is
turned on, the page says what Claude is doing while it searches and reads, the answer cites its sources
as numbered links, the receipt and the staff dashboard show the searches at the ledger's figures, and a
reload, the exports and the shared page keep the sources. Result titles and text that carry script run
nothing anywhere (the offline web's hostile.example pages, offline_claude/corpus.py)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from playwright.sync_api import Locator, Page, expect

from billing.money import format_money
from tests.e2e.test_e2e_chat import COMPLETE, REPLY_TIMEOUT, STREAMING, last_reply
from tests.e2e.test_e2e_chat_page import DESKTOP, signed_up_on
from tests.e2e.test_e2e_minor import staff_page
from tests.servers import PROJECT_DIR, VENV_BIN, Worker, own_worker

PAGE = "https://teahouse.example/guides/black-tea-history"
# Two searches ("brew green tea", then "green tea") and a fetch of PAGE, each taking two seconds, so the
# page has time to show each step while it runs.
QUESTION = f"How do I brew green tea? Also read {PAGE} [[offline web_searches=2 tool_ms=2000 tps=400]]"
DASHBOARD = "/admin/billing/usagerecord/dashboard/"

# Run in the server's database by `manage.py shell`: the ledger rows of one reply, as JSON.
LEDGER = """
import json
from billing.models import UsageRecord
rows = UsageRecord.objects.filter(message_id=MESSAGE_ID).order_by("id")
print(json.dumps([
    {"searches": r.web_search_requests, "fetches": r.web_fetch_requests,
     "server_tool_cost": r.server_tool_cost, "cost": r.cost}
    for r in rows
]))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A worker of this module's own, with share links on (they are off by default)."""
    with own_worker(
        tmp_path_factory.mktemp("web-server"), "web", CHAT_SHARING="1", CHAT_RATE_LIMIT_PER_MINUTE="0"
    ) as worker:
        yield worker


def ledger_of(server: Worker, message_id: int) -> list[dict]:
    result = subprocess.run(
        [str(VENV_BIN / "python"), "manage.py", "shell", "-c", LEDGER.replace("MESSAGE_ID", str(message_id))],
        cwd=PROJECT_DIR,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


class Watch:
    """Everything on a page that would betray running script or loading from elsewhere: dialogs
    (alert, confirm, prompt) and requests to any address but the app's own."""

    def __init__(self, page: Page, origin: str) -> None:
        self.dialogs: list[str] = []
        self.elsewhere: list[str] = []
        self.origin = origin
        page.on("dialog", self._dialog)
        page.on("request", self._request)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _request(self, request) -> None:
        # An image from a result (`<img src=x>`) would be fetched from the page's own address.
        if not request.url.startswith(self.origin + "/") or request.url.endswith("/x"):
            self.elsewhere.append(request.url)


def ask_with_the_web_on(page: Page, text: str) -> Locator:
    """From the home page: tick "Search the web", send `text`; returns the reply, on its own page."""
    page.goto("/")
    page.wait_for_load_state("load")
    page.get_by_label("Search the web").check()
    page.locator("#composer-input").fill(text)
    page.locator("#composer-input").press("Enter")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    return last_reply(page)


def steps_of(reply: Locator) -> list[str]:
    return [" ".join(text.split()) for text in reply.locator(".web-step").all_inner_texts()]


def sources_of(reply: Locator) -> list[dict]:
    """The reply's Sources list: each entry's title, address, domain, and how its link opens."""
    return reply.locator("section.sources li").evaluate_all(
        """items => items.map(li => {
            const a = li.querySelector("a");
            return {title: a ? a.textContent : li.firstChild.textContent,
                    url: a ? a.getAttribute("href") : "",
                    domain: (li.querySelector(".domain") || {}).textContent || "",
                    target: a && a.getAttribute("target"), rel: a && a.getAttribute("rel")};
        })"""
    )


def citations_of(reply: Locator) -> list[dict]:
    return reply.locator(".body sup.citation a").evaluate_all(
        """links => links.map(a => ({text: a.textContent, url: a.getAttribute("href"),
                                     target: a.getAttribute("target"), rel: a.getAttribute("rel")}))"""
    )


def assert_cited(reply: Locator) -> tuple[list[dict], list[dict]]:
    """The answer's [n] links go to source n, and every link opens in a new tab without an opener."""
    sources, citations = sources_of(reply), citations_of(reply)
    assert sources and citations
    for link in [*sources, *citations]:
        assert link["url"].startswith("https://") and link["url"].split("/")[2].endswith(".example"), link
        assert (link["target"], link["rel"]) == ("_blank", "noopener noreferrer"), link
    for citation in citations:
        number = int(citation["text"].strip("[]"))
        assert citation["url"] == sources[number - 1]["url"], (citation, sources)
    return sources, citations


def test_a_reply_with_two_searches_and_a_fetch_shows_its_steps_sources_receipt_and_exports(
    browser, server, tmp_path
):
    page = signed_up_on(browser, server, viewport=DESKTOP)
    watch = Watch(page, server.url)
    reply = ask_with_the_web_on(page, QUESTION)
    expect(page.locator("#web-switch").get_by_role("button", name="Web")).to_have_attribute(
        "aria-pressed", "true"
    )

    # While it streams: what Claude is doing, one step after another, each replaced by its outcome.
    running = reply.locator(".web-step .working")
    expect(running).to_have_text("Searching: brew green tea")
    expect(reply).to_have_class(STREAMING)
    expect(running).to_have_text("Searching: green tea")
    expect(reply.locator(".web-step").first).to_contain_text("Searched: brew green tea · ")
    expect(running).to_have_text("Reading teahouse.example")
    expect(reply).to_have_class(STREAMING)
    expect(reply).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)

    steps = steps_of(reply)
    assert len(steps) == 3, steps
    assert re.fullmatch(r"Searched: brew green tea · \d+ results?", steps[0]), steps
    assert re.fullmatch(r"Searched: green tea · \d+ results?", steps[1]), steps
    assert steps[2] == "Read teahouse.example"
    sources, citations = assert_cited(reply)
    assert any(s["url"] == PAGE for s in sources), sources  # the page it read is a source
    assert all(s["domain"] == s["url"].split("/")[2] for s in sources)

    # The receipt: the two searches and what they cost, the ledger's figures.
    message_id = int(reply.get_attribute("id").removeprefix("msg-"))
    [row] = ledger_of(server, message_id)
    assert (row["searches"], row["fetches"]) == (2, 1)
    reply.get_by_role("link", name="Receipt").click()
    receipt = reply.locator(".receipt-call")
    expect(receipt.locator(".receipt-web")).to_have_text(
        f"2 searches · 1 fetch · {format_money(row['server_tool_cost'])}"
    )
    assert format_money(row["server_tool_cost"]) == "$0.02"  # $10 per 1,000 searches, fetches free
    expect(receipt.locator("tr.receipt-tool").first).to_contain_text("2")
    expect(receipt.locator("tfoot")).to_contain_text(format_money(row["cost"]))

    # A reload shows the same steps, citations and sources, from what was stored.
    page.reload()
    reply = last_reply(page)
    expect(reply).to_have_class(COMPLETE)
    assert steps_of(reply) == steps
    assert assert_cited(reply) == (sources, citations)

    # The exports, from the conversation's header, keep the sources.
    page.locator("#conversation-tools .export-menu summary").click()
    with page.expect_download() as download:
        page.locator("#conversation-tools .export-menu").get_by_role("link", name="Markdown").click()
    markdown = tmp_path / "export.md"
    download.value.save_as(markdown)
    text = markdown.read_text()
    assert "Sources:" in text
    for number, source in enumerate(sources, start=1):
        assert f"{number}. [" in text and f"](<{source['url']}>)" in text
    with page.expect_download() as download:
        page.locator("#conversation-tools .export-menu").get_by_role("link", name="JSON").click()
    exported = tmp_path / "export.json"
    download.value.save_as(exported)
    answer = json.loads(exported.read_text())["messages"][-1]
    assert [(s["title"], s["url"], s["domain"]) for s in answer["sources"]] == [
        (s["title"], s["url"], s["domain"]) for s in sources
    ]
    assert {c["source"] for c in answer["citations"]} == {int(c["text"].strip("[]")) for c in citations}

    # Staff see the searches on the dashboard, at the ledger's figures.
    username = page.locator(".topbar .who").inner_text()
    staff = staff_page(browser, server)
    staff.goto(f"{DASHBOARD}?preset=today&q={username}")
    user_row = staff.locator("#panel-users tbody tr", has_text=username)
    expect(user_row.locator("td").nth(0)).to_have_text(format_money(row["cost"]))
    expect(user_row.locator("td").last).to_contain_text(f"2 {format_money(row['server_tool_cost'])}")

    assert watch.dialogs == [] and watch.elsewhere == []
    page.context.close()
    staff.context.close()


HOSTILE = "https://hostile.example/xss/onerror-image"


def assert_inert(page: Page, watch: Watch) -> None:
    """Nothing from a result ran or loaded: no dialog, no request elsewhere, and no element on the page
    that could run or load something."""
    active = page.evaluate(
        """() => Array.from(document.querySelectorAll("#messages *, .shared-messages *")).flatMap(el => {
            const found = [];
            if (["SCRIPT", "IMG", "IFRAME", "OBJECT", "EMBED"].includes(el.tagName) && el.closest("article"))
                found.push(el.outerHTML.slice(0, 80));
            for (const attr of el.attributes) {
                if (attr.name.startsWith("on") || /^\\s*javascript:/i.test(attr.value))
                    found.push(el.tagName + " " + attr.name + "=" + attr.value);
            }
            return found;
        })"""
    )
    assert active == []
    assert watch.dialogs == [], watch.dialogs
    assert watch.elsewhere == [], watch.elsewhere


def test_result_titles_and_text_carrying_script_run_nothing_live_after_a_reload_or_shared(browser, server):
    page = signed_up_on(browser, server, viewport=DESKTOP)
    watch = Watch(page, server.url)
    reply = ask_with_the_web_on(
        page,
        f"Show me the xss test pages and read {HOSTILE} [[offline tool_ms=1500 tps=200]]",
    )
    expect(reply.locator(".web-step .working")).to_have_text("Searching: xss test")
    expect(reply).to_have_class(COMPLETE, timeout=REPLY_TIMEOUT)
    assert_inert(page, watch)  # including every fragment that streamed in

    titles = [s["title"] for s in sources_of(reply)]
    assert "<script>alert(1)</script> XSS test page" in titles, titles  # shown as the text it is
    assert 'Image with an onerror handler <img src=x onerror="alert(2)">' in titles, titles
    assert_cited(reply)
    # The cited passage with a javascript: link is text too.
    expect(reply.locator(".body")).to_contain_text('<a href="javascript:alert(3)">')
    expect(reply.locator(".web-step").last).to_have_text("Read hostile.example")

    page.reload()
    expect(last_reply(page)).to_have_class(COMPLETE)
    assert_inert(page, watch)

    # The shared page, read by anyone with the link.
    page.locator("#conversation-share summary").click()
    page.get_by_role("button", name="Create link").click()
    shared_url = page.locator("#share-url").input_value()
    reader = browser.new_context(viewport=DESKTOP).new_page()
    shared_watch = Watch(reader, server.url)
    reader.goto(shared_url)
    expect(reader.locator(".shared-messages section.sources")).to_contain_text("<script>alert(1)</script>")
    assert_inert(reader, shared_watch)
    reader.context.close()
    page.context.close()

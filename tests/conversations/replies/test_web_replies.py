"""Replies that look things up (web search and web fetch, server tools), through the real SDK against the
offline Claude: the steps stream while the tools run, the answer cites its sources, the blocks are
stored and go back verbatim, every call is on the ledger, failures and pauses end in an honest reply."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.test import Client

from billing.models import SpendReservation
from billing.money import usd_to_pico
from billing.usage import ServerToolCaps
from conversations import transfer, web
from conversations.models import Message
from conversations.replies import claude, store
from offline_claude.server_tools import SEARCH_ERROR_CODES
from tests.conversations.replies.test_chat_streaming import (
    deltas_in,
    final_frame_for,
    latest_assistant,
    ledger_rows_for,
    reload,
    send_and_finish,
    setup_chat,
)
from tests.helpers import open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("offline_claude")]

SEARCH = {"type": "web_search_20260209", "name": "web_search", "max_uses": 5}
FETCH = {"type": "web_fetch_20260209", "name": "web_fetch", "max_uses": 5, "citations": {"enabled": True}}
PAGE = "https://teahouse.example/guides/black-tea-history"
TWO_SEARCHES_AND_A_FETCH = f"How do I brew green tea? Also read {PAGE} [[offline web_searches=2 tool_ms=150]]"


@pytest.fixture(autouse=True)
def web_on(monkeypatch):
    """Every reply offers web search and web fetch (as the conversation's Web switch will)."""
    tools = web.WebTools(tools=(SEARCH, FETCH), caps=ServerToolCaps(5, 5))
    monkeypatch.setattr(web, "web_tools_for", lambda conversation, reply=None: tools)


@pytest.fixture
def prices():
    """The seeded price list (each test starts with an empty database)."""
    call_command(
        "load_prices",
        str(Path(__file__).resolve().parents[3] / "billing" / "prices" / "anthropic-2026-11.json"),
        verbosity=0,
    )


@pytest.fixture
def calls(monkeypatch):
    """The usage of every call the reply store puts on the ledger, in order."""
    recorded = []
    record = store.usage_record

    def spy(**kwargs):
        recorded.append(kwargs["usage"])
        return record(**kwargs)

    monkeypatch.setattr(store, "usage_record", spy)
    return recorded


@pytest.fixture
def sent(monkeypatch):
    """The body of every request sent to Claude."""
    bodies: list[dict] = []
    build = claude.build_params
    monkeypatch.setattr(claude, "build_params", lambda request: bodies.append(build(request)) or bodies[-1])
    return bodies


async def ask(text: str, **conversation_fields) -> tuple[Message, list[str], object, object]:
    user, conversation = await setup_chat(**conversation_fields)
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    reply, frames = await send_and_finish(socket, conversation, text)
    await socket.close()
    return reply, frames, user, conversation


def page_of(user, conversation) -> str:
    client = Client()
    client.force_login(user)
    return client.get(conversation.get_absolute_url()).text


def step_lines(frames: list[str], message_id: int) -> list[str]:
    """The text of every step frame of the reply, in the order they came."""
    pattern = re.compile(rf'<li id="msg-{message_id}-web-\d+" class="web-step [a-z]+"[^>]*>(.*?)</li>', re.S)
    return [
        " ".join(html.unescape(re.sub(r"<[^>]+>", "", m)).split()) for f in frames for m in pattern.findall(f)
    ]


async def test_two_searches_and_a_fetch_stream_their_steps_cite_sources_and_make_one_ledger_row(
    prices, calls
):
    reply, frames, user, conversation = await ask(TWO_SEARCHES_AND_A_FETCH)

    assert reply.status == Message.Status.COMPLETE and reply.stop_reason == "end_turn", reply.error
    steps = step_lines(frames, reply.pk)
    assert steps[0] == "Searching: brew green tea"  # the query, while the search runs
    assert steps[1].startswith("Searched: brew green tea · ")
    assert "Reading teahouse.example" in steps and "Read teahouse.example" in steps
    first_text = next(
        i for i, f in enumerate(frames) if f'id="msg-{reply.pk}-body" hx-swap-oob="beforeend"' in f
    )
    first_step = next(i for i, f in enumerate(frames) if "Searching: " in f)
    assert first_step < first_text  # the page says what Claude does before the answer comes
    assert deltas_in(frames, reply.pk) == reply.content
    assert [s["state"] for s in reply.web_steps] == ["done", "done", "done"]

    # Stored as the API returned it: tool uses, results with their encrypted content, cited text.
    [blocks] = reply.content_blocks
    kinds = [b["type"] for b in blocks]
    assert kinds.count("server_tool_use") == 3 and kinds[0] == "thinking"
    assert kinds.count("web_search_tool_result") == 2 and "web_fetch_tool_result" in kinds
    assert all(
        r["encrypted_content"] for b in blocks if b["type"] == "web_search_tool_result" for r in b["content"]
    )
    assert "".join(b["text"] for b in blocks if b["type"] == "text") == reply.content
    assert any(b.get("citations") for b in blocks if b["type"] == "text")

    # Sources numbered as the answer's links, which open in a new tab without an opener.
    assert reply.sources and any(s["domain"] == "teahouse.example" for s in reply.sources)
    first = reply.sources[0]
    link = (
        f'<sup class="citation"><a href="{first["url"]}" title="{html.escape(first["title"])}" '
        'target="_blank" rel="noopener noreferrer">[1]</a></sup>'
    )
    assert link in reply.html
    final = frames[-1]
    assert link in final and "<h3>Sources</h3>" in final
    assert f'<a href="{first["url"]}" target="_blank" rel="noopener noreferrer">' in final

    # A reload renders the same reply from what was stored.
    page = await sync_to_async(page_of)(user, conversation)
    assert link in page and "<h3>Sources</h3>" in page
    shown = step_lines([page], reply.pk)
    assert shown == step_lines([final], reply.pk) and len(shown) == 3
    assert shown[0].startswith("Searched: brew green tea · ") and shown[2] == "Read teahouse.example"

    [row] = await ledger_rows_for(reply)
    assert len(calls) == 1
    assert (calls[0].web_search_requests, calls[0].web_fetch_requests) == (2, 1)
    assert (row.input_tokens, row.output_tokens) == (calls[0].input_tokens, calls[0].output_tokens)
    # One row: the tokens at the model's price, plus 2 searches and 1 fetch at the server-tool prices in
    # force ($10 per 1,000 searches; a fetch costs nothing beyond its tokens).
    assert (row.web_search_requests, row.web_fetch_requests) == (2, 1)
    assert (row.rate_web_search, row.rate_web_fetch) == (usd_to_pico("0.01"), 0)
    tokens = row.rates.cost(
        input=row.input_tokens,
        output=row.output_tokens,
        cache_write_5m=row.cache_write_5m_tokens,
        cache_write_1h=row.cache_write_1h_tokens,
        cache_read=row.cache_read_tokens,
    )
    assert row.server_tool_cost == 2 * usd_to_pico("0.01")
    assert row.cost == tokens + 2 * usd_to_pico("0.01") + 1 * 0


async def test_the_next_turn_sends_the_blocks_back_verbatim_and_passes_the_prefix_check(sent):
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    first, _ = await send_and_finish(socket, conversation, TWO_SEARCHES_AND_A_FETCH)
    second, _ = await send_and_finish(socket, conversation, "Thanks! And oolong?")
    await socket.close()
    assert second.status == Message.Status.COMPLETE, second.error  # thinking bound to the blocks checked out
    assert sent[-1]["messages"][1] == {"role": "assistant", "content": first.content_blocks[0]}
    assert sent[-1]["tools"] == [SEARCH, FETCH]


@pytest.mark.parametrize("code", SEARCH_ERROR_CODES)
async def test_a_failed_search_is_shown_as_such_and_the_answer_goes_on(code, calls):
    reply, frames, user, conversation = await ask(f"Tell me about tides [[offline search_error={code}]]")
    assert reply.status == Message.Status.COMPLETE and reply.content.strip()
    [step] = reply.web_steps
    assert step["state"] == "failed" and step["error"] == code and step["reason"]
    said = f"The search for “tides” failed: {step['reason']}."
    assert said in step_lines(frames, reply.pk)
    page = await sync_to_async(page_of)(user, conversation)
    assert said in step_lines([page], reply.pk)
    assert calls[0].web_search_requests == 0  # a failed search is not billed


async def test_a_failed_fetch_is_shown_and_the_answer_goes_on():
    reply, frames, _, _ = await ask(f"Read {PAGE} [[offline fetch_error=url_not_accessible]]")
    assert reply.status == Message.Status.COMPLETE
    assert "Could not read teahouse.example: the page could not be reached." in step_lines(frames, reply.pk)


async def test_pause_turn_is_continued_within_the_same_reply_and_hold_one_row_per_call(prices, calls, sent):
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    reply, frames = await send_and_finish(
        socket, conversation, f"{TWO_SEARCHES_AND_A_FETCH} [[offline pause_turn=1]]"
    )
    assert reply.status == Message.Status.COMPLETE and reply.stop_reason == "end_turn", reply.error
    # The continuation sent the paused turn back as Claude's last message, with the same tools.
    continuation = sent[-1]
    assert continuation["messages"][-1]["role"] == "assistant"
    assert [b["type"] for b in continuation["messages"][-1]["content"]][-2:] == [
        "server_tool_use",
        "web_search_tool_result",
    ]
    assert continuation["tools"] == sent[-2]["tools"]
    assert continuation["max_tokens"] <= sent[-2]["max_tokens"]
    # One reply: every step and the whole turn's blocks, both calls' thinking kept signed.
    assert [s["tool"] for s in reply.web_steps] == ["web_search", "web_search", "web_fetch"]
    [blocks] = reply.content_blocks
    assert [b["type"] for b in blocks].count("thinking") == 2 == len(reply.thinking_blocks)
    assert reply.sources and reply.citations
    # Two calls, two ledger rows, one hold settled by them.
    rows = await ledger_rows_for(reply)
    assert len(rows) == len(calls) == 2 and len({r.attempt_id for r in rows}) == 2
    assert [(c.web_search_requests, c.web_fetch_requests) for c in calls] == [(1, 0), (1, 1)]
    holds = await sync_to_async(list)(SpendReservation.objects.filter(message_id=reply.pk))
    assert len(holds) == 1 and holds[0].settled_at is not None
    # The whole turn goes back as one assistant message, and the next turn passes the prefix check.
    after, _ = await send_and_finish(socket, conversation, "Thanks!")
    await socket.close()
    assert after.status == Message.Status.COMPLETE, after.error
    assert sent[-1]["messages"][1] == {"role": "assistant", "content": blocks}


async def test_a_pause_the_hold_cannot_cover_ends_the_reply_as_paused(prices, settings, calls):
    # A small output allowance: after the first call, what is left of it cannot pay the next call's prompt.
    settings.CHAT_MAX_TOKENS = 120
    reply, _, user, conversation = await ask(f"{TWO_SEARCHES_AND_A_FETCH} [[offline pause_turn=1]]")
    assert reply.status == Message.Status.CUT_OFF and reply.stop_reason == "pause_turn"
    assert len(calls) == 1 and reply.web_steps[0]["state"] == "done"
    page = await sync_to_async(page_of)(user, conversation)
    assert "Claude paused its web research here" in page


class _ActiveMarkup(HTMLParser):
    """What in a piece of HTML could run or load something: script with content, event handlers,
    javascript: links, images."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self._in_script = tag == "script"
        if tag in ("img", "iframe", "object", "embed"):
            self.found.append(tag)
        for name, value in attrs:
            if name.startswith("on") or (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"{tag} {name}={value}")

    def handle_data(self, data):
        if self._in_script and "alert" in data:
            self.found.append(f"script {data[:40]}")

    def handle_endtag(self, tag):
        self._in_script = False


async def test_result_titles_urls_and_cited_text_with_script_are_inert_on_the_page_and_in_exports():
    reply, frames, user, conversation = await ask("Show me the <script>alert(3)</script> xss test pages")
    assert reply.status == Message.Status.COMPLETE
    titles = [s["title"] for s in reply.sources]  # stored as the pages titled themselves
    assert "<script>alert(1)</script> XSS test page" in titles and any("onerror" in t for t in titles)
    assert 'href="javascript:alert(3)"' in reply.content  # cited text with a link in it
    page = await sync_to_async(page_of)(user, conversation)
    for shown in (page, *frames):
        assert _ActiveMarkup(shown).found == []
    assert "&lt;script&gt;alert(1)&lt;/script&gt; XSS test page</a>" in page  # the title, as text
    markdown = await sync_to_async(transfer.conversation_markdown)(conversation)
    assert "1. [\\<script\\>alert\\(1\\)\\</script\\> XSS test page](<https://hostile.example/" in markdown
    exported = await sync_to_async(transfer.conversation_json)(conversation)
    assert exported["messages"][-1]["sources"] == reply.sources


async def test_sources_that_are_not_web_addresses_never_become_links():
    from conversations.rendering import render_cited
    from conversations.replies.blocks import CallBlocks
    from conversations.sources import WebDisplay

    hostile = {
        "type": "web_search_result_location",
        "url": "javascript:alert(1)",
        "title": '<img src=x onerror="alert(2)">',
        "cited_text": "<script>alert(3)</script>",
    }
    streamed = CallBlocks()
    streamed.started({"type": "text", "text": "", "citations": [hostile]}, text_at=0, thinking_at=-1)
    streamed.stopped(text_at=6)
    display = WebDisplay()
    display.add_call(streamed, text_start=0, text_length=6)
    assert display.sources == [{"title": '<img src=x onerror="alert(2)">', "url": "", "domain": ""}]
    assert display.citations == [{"at": 6, "source": 1, "cited_text": "<script>alert(3)</script>"}]
    rendered = render_cited("Cited.", display.citations, display.sources)
    assert "javascript:" not in rendered and "<img" not in rendered
    assert (
        rendered
        == '<p>Cited.<sup class="citation" title="&lt;img src=x onerror=&quot;alert(2)&quot;&gt;">[1]</sup></p>\n'
    )
    message = Message(pk=1, role="assistant", status="complete", sources=display.sources)
    section = await sync_to_async(_sources_html)(message)
    assert "<a " not in section and "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in section


def _sources_html(message: Message) -> str:
    from django.template.loader import render_to_string

    return render_to_string("conversations/_web.html#sources", {"message": message})


async def test_an_exported_reply_with_sources_imports_with_them():
    reply, _, user, conversation = await ask(TWO_SEARCHES_AND_A_FETCH)
    data = json.dumps(await sync_to_async(transfer.conversation_json)(conversation)).encode()
    imported = await sync_to_async(transfer.conversation_import)(owner=user, data=data)
    copy = await imported.messages.filter(role="assistant").afirst()
    assert copy.sources == reply.sources and copy.citations == reply.citations
    assert copy.html == reply.html
    assert copy.content_blocks == []  # the blocks belong to the calls that made them: never sent again


async def test_a_reply_stopped_while_it_searches_says_so_and_the_conversation_goes_on(sent):
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(message="Tell me about tides [[offline tool_ms=3000]]", conversation=conversation.pk)
    await socket.receive_until(lambda f: "Searching: tides" in f)
    stopping = await latest_assistant(conversation)
    await socket.send(action="stop", message_id=stopping.pk)
    frames = await socket.receive_until(final_frame_for(stopping.pk))
    stopped = await reload(stopping)
    assert stopped.status == Message.Status.STOPPED
    assert stopped.web_steps[0]["state"] == "unfinished"
    assert step_lines([frames[-1]], stopped.pk) == ["The search for “tides” did not finish."]
    assert stopped.content_blocks == []  # no words, no result: nothing of it goes back (like any such reply)
    after, _ = await send_and_finish(socket, conversation, "Never mind: what about waves?")
    await socket.close()
    assert after.status == Message.Status.COMPLETE, after.error
    assert [m["role"] for m in sent[-1]["messages"]] == ["user"]  # the two questions, merged


async def test_a_page_opened_while_claude_searches_is_shown_the_steps_so_far():
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(message="Tell me about tides [[offline tool_ms=1500]]", conversation=conversation.pk)
    await socket.receive_until(lambda f: "Searching: tides" in f)
    reply = await latest_assistant(conversation)
    late, _, _ = await open_socket(user, conversation.pk)
    caught_up = await late.receive_until(
        lambda f: f'id="msg-{reply.pk}-web" class="web-steps"' in f and "Searching: tides" in f
    )
    assert 'hx-swap-oob="outerHTML"' in caught_up[-1]
    # Then it follows the live frames: the result replaces the step.
    await late.receive_until(lambda f: "Searched: tides" in f)
    await socket.receive_until(final_frame_for(reply.pk))
    await late.close()
    await socket.close()


async def test_a_reply_stopped_after_its_searches_is_billed_for_the_searches_that_ran(calls):
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(
        message="Tell me about tides [[offline web_searches=2 tool_ms=1500]]", conversation=conversation.pk
    )
    await socket.receive_until(lambda f: "Searched: tides" in f)  # the first search's result came
    reply = await latest_assistant(conversation)
    await socket.send(action="stop", message_id=reply.pk)
    await socket.receive_until(final_frame_for(reply.pk))
    await socket.close()
    reply = await reload(reply)
    assert reply.status == Message.Status.STOPPED
    [usage] = calls  # no final usage came: the searches are counted from the results that did
    assert (usage.web_search_requests, usage.web_fetch_requests) == (1, 0)
    assert [s["state"] for s in reply.web_steps] == ["done", "unfinished"]

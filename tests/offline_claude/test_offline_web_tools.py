"""Web search and web fetch (server tools) through the real SDK: the shapes a client must handle.

What the offline Claude implements (offline_claude/server_tools.py states it in full):
- tools ``{"type": "web_search_20250305", "name": "web_search", "max_uses", "allowed_domains" |
  "blocked_domains", "user_location"}`` and ``{"type": "web_fetch_20250910", "name": "web_fetch",
  "max_uses", "allowed_domains" | "blocked_domains", "citations": {"enabled"}, "max_content_tokens"}``;
- a reply: ``server_tool_use`` (input streamed as ``input_json_delta``) + ``web_search_tool_result``
  (``web_search_result`` items or ``web_search_tool_result_error``) / ``web_fetch_tool_result``
  (``web_fetch_result`` with a document, or ``web_fetch_tool_result_error``), then text blocks carrying
  ``citations`` (``web_search_result_location``; ``char_location`` for a fetched document), then text;
- ``usage.server_tool_use = {"web_search_requests": n, "web_fetch_requests": m}`` (failed ones not
  counted); ``stop_reason: "pause_turn"``, continued by sending the assistant content back as is.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anthropic
import pytest

from offline_claude import corpus
from offline_claude.server_tools import FETCH_ERROR_CODES, SEARCH_ERROR_CODES
from offline_claude.testing import async_client, sync_client

MODEL = "claude-sonnet-5"  # does not think by default: the content is the web blocks and text
SEARCH = {"type": "web_search_20250305", "name": "web_search"}
FETCH = {"type": "web_fetch_20250910", "name": "web_fetch", "citations": {"enabled": True}}
FETCHED_URL = "https://teahouse.example/guides/black-tea-history"
TWO_SEARCHES_AND_A_FETCH = f"How do I brew green tea? Also read {FETCHED_URL} [[offline web_searches=2]]"


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def ask(client: Any, text: str, tools: list[dict[str, Any]], **kwargs: Any) -> Any:
    return client.messages.create(model=MODEL, max_tokens=2000, messages=user(text), tools=tools, **kwargs)


def blocks_of(message: Any, kind: str) -> list[Any]:
    return [b for b in message.content if b.type == kind]


def without_ids(message: Any) -> dict[str, Any]:
    """The message as JSON with its random ids (message, server tool uses) replaced by their order."""
    data = message.model_dump(mode="json")
    data.pop("id")
    ids: dict[str, str] = {}
    for block in data["content"]:
        for key in ("id", "tool_use_id"):
            if key in block:
                block[key] = ids.setdefault(block[key], f"tool-{len(ids)}")
    return data


# ----------------------------------------------------------------------------- a full web turn


def test_two_searches_and_a_fetch_in_one_reply_cite_their_sources(offline_claude):
    msg = ask(sync_client(offline_claude), TWO_SEARCHES_AND_A_FETCH, [SEARCH, FETCH])

    kinds = [b.type for b in msg.content]
    assert kinds[:6] == [
        "server_tool_use",
        "web_search_tool_result",
        "server_tool_use",
        "web_search_tool_result",
        "server_tool_use",
        "web_fetch_tool_result",
    ]
    assert set(kinds[6:]) == {"text"} and msg.stop_reason == "end_turn"
    uses = blocks_of(msg, "server_tool_use")
    assert [u.name for u in uses] == ["web_search", "web_search", "web_fetch"]
    assert all(u.id.startswith("srvtoolu_") for u in uses)
    assert uses[0].input == {"query": "brew green tea"} and uses[2].input == {"url": FETCHED_URL}
    for use, result in zip(uses, msg.content[1:6:2], strict=True):
        assert result.tool_use_id == use.id

    results = msg.content[1].content
    assert results and all(r.type == "web_search_result" for r in results)
    assert results[0].url == "https://teahouse.example/guides/green-tea-brewing"
    assert results[0].title == "Brewing green tea without bitterness"
    assert results[0].encrypted_content and results[0].page_age == "March 2, 2026"

    fetched = msg.content[5].content
    assert fetched.type == "web_fetch_result" and fetched.url == FETCHED_URL and fetched.retrieved_at
    assert fetched.content.type == "document" and fetched.content.title == "A short history of black tea"
    assert fetched.content.source.data.startswith("Black tea is fully oxidised")

    cited = [b for b in blocks_of(msg, "text") if b.citations]
    search_citations = [c for b in cited for c in b.citations if c.type == "web_search_result_location"]
    found = {r.url: r for block in blocks_of(msg, "web_search_tool_result") for r in block.content}
    assert search_citations
    for citation in search_citations:
        assert citation.url in found and citation.title == found[citation.url].title
        assert citation.encrypted_index and citation.cited_text in corpus.page_at(citation.url).text
    fetch_citations = [c for b in cited for c in b.citations if c.type == "char_location"]
    assert len(fetch_citations) == 1
    quote = fetch_citations[0]
    assert quote.document_title == "A short history of black tea"
    assert fetched.content.source.data[quote.start_char_index : quote.end_char_index] == quote.cited_text

    assert msg.usage.server_tool_use.web_search_requests == 2
    assert msg.usage.server_tool_use.web_fetch_requests == 1


def test_streamed_web_turn_accumulates_to_the_same_message(offline_claude):
    client = sync_client(offline_claude)
    with client.messages.stream(
        model=MODEL, max_tokens=2000, messages=user(TWO_SEARCHES_AND_A_FETCH), tools=[SEARCH, FETCH]
    ) as stream:
        events = list(stream)
        streamed = stream.get_final_message()
    created = ask(client, TWO_SEARCHES_AND_A_FETCH, [SEARCH, FETCH])

    assert without_ids(streamed) == without_ids(created)
    starts = [e for e in events if e.type == "content_block_start"]
    assert starts[0].content_block.type == "server_tool_use" and starts[0].content_block.input == {}
    json_deltas = [e.delta.partial_json for e in events if e.type == "content_block_delta" and e.index == 0]
    assert json.loads("".join(json_deltas)) == {"query": "brew green tea"}
    assert starts[1].content_block.type == "web_search_tool_result"  # results arrive whole
    citations = sum(len(b.citations or []) for b in blocks_of(streamed, "text"))
    assert citations and sum(e.type == "citation" for e in events) == citations
    assert streamed.usage.server_tool_use.web_search_requests == 2


async def test_async_raw_stream_carries_citations_deltas_and_the_counts(offline_claude):
    client = async_client(offline_claude)
    stream = await client.messages.create(
        model=MODEL,
        max_tokens=2000,
        messages=user("Why are Saturn's rings bright?"),
        tools=[SEARCH],
        stream=True,
    )
    deltas, final_usage = [], None
    async for event in stream:
        if event.type == "content_block_delta":
            deltas.append(event.delta.type)
        if event.type == "message_delta":
            final_usage = event.usage
    assert "input_json_delta" in deltas and "citations_delta" in deltas and "text_delta" in deltas
    assert deltas.index("citations_delta") < len(deltas) - 1
    assert final_usage.server_tool_use.web_search_requests == 1
    assert final_usage.server_tool_use.web_fetch_requests == 0


def test_search_results_count_as_input_tokens(offline_claude):
    client = sync_client(offline_claude)
    plain = client.messages.create(
        model=MODEL, max_tokens=2000, messages=user("Why are Saturn's rings bright?")
    )
    searched = ask(client, "Why are Saturn's rings bright?", [SEARCH])
    tools_alone = client.messages.count_tokens(
        model=MODEL, messages=user("Why are Saturn's rings bright?"), tools=[SEARCH]
    ).input_tokens
    assert plain.usage.server_tool_use is None  # no tool offered: no server tool counters at all
    assert searched.usage.input_tokens > tools_alone > plain.usage.input_tokens


def test_same_question_same_sources(offline_claude):
    client = sync_client(offline_claude)
    first, second = (ask(client, "How do volcanoes erupt?", [SEARCH]) for _ in range(2))
    assert without_ids(first) == without_ids(second)
    assert first.content[1].content[0].url == "https://earth-facts.example/geology/volcanoes"


def test_no_search_without_the_tool_or_without_words(offline_claude):
    client = sync_client(offline_claude)
    plain = client.messages.create(model=MODEL, max_tokens=2000, messages=user("How do volcanoes erupt?"))
    assert [b.type for b in plain.content] == ["text"]
    url_only = ask(client, f"{FETCHED_URL}", [SEARCH])  # a URL but no fetch tool, no other words
    assert not blocks_of(url_only, "server_tool_use")


def test_result_titles_and_text_with_script_come_back_verbatim(offline_claude):
    msg = ask(sync_client(offline_claude), "Show me the xss test pages", [SEARCH])
    titles = [r.title for r in msg.content[1].content]
    assert "<script>alert(1)</script> XSS test page" in titles
    assert any('onerror="alert(2)"' in t for t in titles)
    cited = " ".join(c.cited_text for b in blocks_of(msg, "text") for c in b.citations or [])
    assert "<script>alert(1)</script>" in cited or 'onerror="alert(2)"' in cited


# ----------------------------------------------------------------------------- limits and filters


def test_max_uses_turns_the_extra_search_into_an_error_result(offline_claude):
    msg = ask(
        sync_client(offline_claude),
        "Tell me about meteor showers [[offline web_searches=3]]",
        [{**SEARCH, "max_uses": 2}],
    )
    results = blocks_of(msg, "web_search_tool_result")
    assert len(results) == 3
    assert all(isinstance(r.content, list) for r in results[:2])
    assert results[2].content.type == "web_search_tool_result_error"
    assert results[2].content.error_code == "max_uses_exceeded"
    assert msg.usage.server_tool_use.web_search_requests == 2  # the refused one is not billed
    assert msg.stop_reason == "end_turn" and "max_uses_exceeded" in "".join(
        b.text for b in blocks_of(msg, "text")
    )


def test_allowed_and_blocked_domains_filter_results_and_subdomains_match(offline_claude):
    client = sync_client(offline_claude)
    question = "green tea, bicycle chains and Saturn's rings"
    everywhere = ask(client, question, [SEARCH]).content[1].content
    assert {corpus.Page(r.url, "", "").domain for r in everywhere} > {"teahouse.example"}

    allowed = ask(client, question, [{**SEARCH, "allowed_domains": ["teahouse.example"]}]).content[1].content
    assert allowed and all(r.url.startswith("https://teahouse.example/") for r in allowed)
    blocked = ask(client, question, [{**SEARCH, "blocked_domains": ["example"]}]).content[1].content
    assert blocked == []  # every page is under .example: a parent domain blocks its subdomains


def test_fetch_outside_the_allowed_domains_or_unknown_page_is_an_error(offline_claude):
    client = sync_client(offline_claude)
    refused = ask(client, f"Read {FETCHED_URL}", [{**FETCH, "allowed_domains": ["sky-watch.example"]}])
    missing = ask(client, "Read https://teahouse.example/nowhere", [FETCH])
    too_long = ask(client, "Read https://teahouse.example/" + "a" * 300, [FETCH])
    for msg, code in (
        (refused, "url_not_allowed"),
        (missing, "url_not_accessible"),
        (too_long, "url_too_long"),
    ):
        result = blocks_of(msg, "web_fetch_tool_result")[0].content
        assert result.type == "web_fetch_tool_result_error" and result.error_code == code
        assert msg.usage.server_tool_use.web_fetch_requests == 0
        assert msg.stop_reason == "end_turn" and blocks_of(msg, "text")


def test_fetch_honours_max_content_tokens_and_citations_off(offline_claude):
    msg = ask(
        sync_client(offline_claude),
        f"Read {FETCHED_URL}",
        [{"type": "web_fetch_20250910", "name": "web_fetch", "max_content_tokens": 5}],
    )
    document = blocks_of(msg, "web_fetch_tool_result")[0].content.content
    assert 0 < len(document.source.data) < len(corpus.page_at(FETCHED_URL).text)
    assert document.citations.enabled is False
    assert not any(b.citations for b in blocks_of(msg, "text"))


# ----------------------------------------------------------------------------- error codes


@pytest.mark.parametrize("code", SEARCH_ERROR_CODES)
def test_each_search_error_code_is_a_result_block_and_the_answer_goes_on(offline_claude, code):
    msg = ask(sync_client(offline_claude), f"Tell me about tides [[offline search_error={code}]]", [SEARCH])
    result = blocks_of(msg, "web_search_tool_result")[0]
    assert result.content.type == "web_search_tool_result_error" and result.content.error_code == code
    assert msg.usage.server_tool_use.web_search_requests == 0
    assert msg.stop_reason == "end_turn"
    assert code in "".join(b.text for b in blocks_of(msg, "text"))


@pytest.mark.parametrize("code", FETCH_ERROR_CODES)
def test_each_fetch_error_code_is_a_result_block_and_the_answer_goes_on(offline_claude, code):
    client = sync_client(offline_claude)
    with client.messages.stream(
        model=MODEL,
        max_tokens=2000,
        messages=user(f"Read {FETCHED_URL} [[offline fetch_error={code}]]"),
        tools=[FETCH],
    ) as stream:
        msg = stream.get_final_message()
    result = blocks_of(msg, "web_fetch_tool_result")[0]
    assert result.content.type == "web_fetch_tool_result_error" and result.content.error_code == code
    assert msg.usage.server_tool_use.web_fetch_requests == 0 and msg.stop_reason == "end_turn"


def test_unknown_error_code_control_is_a_400(offline_claude):
    with pytest.raises(anthropic.BadRequestError, match="search_error"):
        ask(sync_client(offline_claude), "tides [[offline search_error=invalid_input]]", [SEARCH])


# ----------------------------------------------------------------------------- pause_turn


@pytest.mark.parametrize("model", ["claude-sonnet-5", "claude-opus-5-5"])
def test_pause_turn_continued_by_sending_the_content_back_completes_the_turn(offline_claude, model):
    """The documented loop: on pause_turn, append the assistant content as is and call again. Opus 5.5
    thinks, refuses prefill and checks thinking prefixes: the paused turn is still accepted, and the
    whole turn sent back later passes the checks."""
    client = sync_client(offline_claude)
    messages = user(f"{TWO_SEARCHES_AND_A_FETCH} [[offline pause_turn=1]]")
    kwargs: dict[str, Any] = {"model": model, "max_tokens": 4000, "tools": [SEARCH, FETCH]}
    with client.messages.stream(messages=messages, **kwargs) as stream:
        paused = stream.get_final_message()
    assert paused.stop_reason == "pause_turn"
    assert [b.type for b in paused.content if b.type != "thinking"] == [
        "server_tool_use",
        "web_search_tool_result",
    ]
    assert paused.usage.server_tool_use.web_search_requests == 1

    turn = list(paused.content)
    rest = client.messages.create(messages=[*messages, {"role": "assistant", "content": turn}], **kwargs)
    assert rest.stop_reason == "end_turn"
    assert [u.name for u in blocks_of(rest, "server_tool_use")] == ["web_search", "web_fetch"]
    assert rest.usage.server_tool_use.web_search_requests == 1
    assert rest.usage.server_tool_use.web_fetch_requests == 1
    assert any(b.citations for b in blocks_of(rest, "text"))

    follow_up = [*messages, {"role": "assistant", "content": turn + list(rest.content)}, *user("Thanks!")]
    assert client.messages.create(messages=follow_up, **kwargs).stop_reason == "end_turn"


def test_a_trailing_assistant_turn_that_is_not_paused_is_still_refused(offline_claude):
    client = sync_client(offline_claude)
    with pytest.raises(anthropic.BadRequestError, match="prefill"):
        client.messages.create(
            model="claude-opus-5-5",
            max_tokens=4000,
            messages=[*user("Tides?"), {"role": "assistant", "content": "The tides"}],
            tools=[SEARCH],
        )


# ----------------------------------------------------------------------------- tool definitions


@pytest.mark.parametrize(
    ("tool", "fragment"),
    [
        ({**SEARCH, "name": "search"}, "tools.0.name: Input should be 'web_search'"),
        ({**SEARCH, "type": "web_search_20990101"}, "tools.0.type"),
        ({**SEARCH, "max_uses": 0}, "tools.0.max_uses"),
        ({**SEARCH, "max_uses": "3"}, "tools.0.max_uses"),
        ({**SEARCH, "allowed_domains": ["a.example"], "blocked_domains": ["b.example"]}, "both"),
        ({**SEARCH, "allowed_domains": ["https://a.example"]}, "tools.0.allowed_domains.0"),
        ({**SEARCH, "blocked_domains": "a.example"}, "tools.0.blocked_domains"),
        ({**SEARCH, "user_location": {"type": "exact", "city": "Paris"}}, "tools.0.user_location.type"),
        ({**SEARCH, "user_location": {"type": "approximate", "street": "x"}}, "tools.0.user_location.street"),
        ({**SEARCH, "citations": {"enabled": True}}, "tools.0.citations: Extra inputs"),
        ({**FETCH, "max_content_tokens": -1}, "tools.0.max_content_tokens"),
        ({**FETCH, "citations": {"enabled": "yes"}}, "tools.0.citations.enabled"),
        ({**FETCH, "user_location": {"type": "approximate"}}, "tools.0.user_location: Extra inputs"),
    ],
)
@pytest.mark.parametrize("streaming", [False, True])
def test_invalid_tool_definitions_are_400_with_the_api_error_shape(offline_claude, tool, fragment, streaming):
    client = sync_client(offline_claude)
    with pytest.raises(anthropic.BadRequestError) as info:
        if streaming:
            with client.messages.stream(
                model=MODEL, max_tokens=100, messages=user("tides"), tools=[tool]
            ) as s:
                s.get_final_message()
        else:
            ask(client, "tides", [tool])
    body = info.value.body
    assert info.value.status_code == 400
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert fragment in body["error"]["message"] and body["request_id"].startswith("req_")


def test_valid_definitions_of_every_version_are_accepted_and_counted(offline_claude):
    client = sync_client(offline_claude)
    tools = [
        {
            "type": "web_search_20260318",
            "name": "web_search",
            "max_uses": 5,
            "allowed_domains": ["teahouse.example"],
            "user_location": {
                "type": "approximate",
                "city": "Lyon",
                "country": "FR",
                "timezone": "Europe/Paris",
            },
            "cache_control": {"type": "ephemeral"},
        },
        {"type": "web_fetch_20260318", "name": "web_fetch", "max_uses": 2, "max_content_tokens": 1000},
    ]
    without = client.messages.count_tokens(model=MODEL, messages=user("tea")).input_tokens
    counted = client.messages.count_tokens(model=MODEL, messages=user("tea"), tools=tools).input_tokens
    assert counted > without
    msg = client.messages.create(
        model=MODEL,
        max_tokens=2000,
        messages=user("tea"),
        tools=tools,
        extra_headers={"anthropic-beta": "web-fetch-2025-09-10"},
    )
    assert msg.usage.server_tool_use.web_search_requests == 1
    with pytest.raises(anthropic.BadRequestError, match="tools.0.max_uses"):
        client.messages.count_tokens(model=MODEL, messages=user("tea"), tools=[{**SEARCH, "max_uses": 0}])


def test_tool_ms_holds_each_result_back_so_a_page_can_show_the_search(offline_claude):
    client = sync_client(offline_claude)
    arrived: dict[str, float] = {}
    with client.messages.stream(
        model=MODEL,
        max_tokens=2000,
        messages=user("Meteor showers? [[offline tool_ms=300 web_searches=2]]"),
        tools=[SEARCH],
    ) as stream:
        for event in stream:
            if event.type == "content_block_start":
                arrived.setdefault(f"{event.content_block.type}-{event.index}", time.monotonic())
    assert arrived["web_search_tool_result-1"] - arrived["server_tool_use-0"] >= 0.25
    assert arrived["web_search_tool_result-3"] - arrived["server_tool_use-2"] >= 0.25
    assert arrived["text-4"] >= arrived["web_search_tool_result-3"]


@pytest.mark.parametrize("max_tokens", [1, 8, 40, 120])
def test_the_web_part_shares_max_tokens_so_output_never_passes_it(offline_claude, max_tokens):
    """A budget hold covers max_tokens of output: tool inputs and cited text count toward it."""
    client = sync_client(offline_claude)
    with client.messages.stream(
        model=MODEL, max_tokens=max_tokens, messages=user(TWO_SEARCHES_AND_A_FETCH), tools=[SEARCH, FETCH]
    ) as stream:
        msg = stream.get_final_message()
    assert msg.stop_reason == "max_tokens"
    assert 0 < msg.usage.output_tokens <= max_tokens
    assert msg.content and all(b.text for b in blocks_of(msg, "text"))  # nothing empty to send back
    uses, results = (
        blocks_of(msg, "server_tool_use"),
        [b for b in msg.content if b.type.endswith("_tool_result")],
    )
    assert len(uses) == len(results)  # a tool use never goes without its result
    counts = msg.usage.server_tool_use
    assert counts.web_search_requests + counts.web_fetch_requests == len(results)


def test_fetch_max_uses_refuses_the_second_url(offline_claude):
    second = "https://sky-watch.example/planets/saturn-rings"
    msg = ask(sync_client(offline_claude), f"Read {FETCHED_URL} and {second}", [{**FETCH, "max_uses": 1}])
    first_result, second_result = (b.content for b in blocks_of(msg, "web_fetch_tool_result"))
    assert first_result.type == "web_fetch_result" and first_result.url == FETCHED_URL
    assert second_result.type == "web_fetch_tool_result_error"
    assert second_result.error_code == "max_uses_exceeded"
    assert msg.usage.server_tool_use.web_fetch_requests == 1

"""Web search and web fetch, the server tools, over the offline web (``corpus.py``).

The shapes are the Messages API's (SDK 2.x types; docs "Web search tool", "Web fetch tool", "Server
tools", "Citations"):

Tool definitions accepted in ``tools``::

    {"type": "web_search_20250305" | "web_search_20260209" | "web_search_20260318", "name": "web_search",
     "max_uses"?: int >= 1, "allowed_domains"?: [str] | "blocked_domains"?: [str] (not both),
     "user_location"?: {"type": "approximate", "city"?, "region"?, "country"?, "timezone"?}}
    {"type": "web_fetch_20250910" | "web_fetch_20260209" | "web_fetch_20260309" | "web_fetch_20260318",
     "name": "web_fetch", "max_uses"?, "allowed_domains"? | "blocked_domains"?,
     "citations"?: {"enabled": bool}, "max_content_tokens"?: int >= 1}

(plus ``cache_control``, ``allowed_callers``, ``defer_loading``, ``strict`` and the newer versions'
extra keys). A bad definition is a 400 ``invalid_request_error``. Domains are bare host names
("example.com", no scheme); a domain also matches its subdomains. Web fetch was a beta behind
``anthropic-beta: web-fetch-2025-09-10``; SDK 2.x lists every version among the generally available
tools, so the header is accepted but not required.

What one reply carries, in order (streamed as content blocks, or in ``content`` without streaming)::

    {"type": "server_tool_use", "id": "srvtoolu_01…", "name": "web_search", "input": {"query": "…"}}
        (streamed: content_block_start with "input": {}, then input_json_delta pieces)
    {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01…",
     "content": [{"type": "web_search_result", "url", "title", "encrypted_content", "page_age"}, …]
              | {"type": "web_search_tool_result_error", "error_code": SEARCH_ERROR_CODES}}
    {"type": "server_tool_use", …, "name": "web_fetch", "input": {"url": "…"}}
    {"type": "web_fetch_tool_result", "tool_use_id": …,
     "content": {"type": "web_fetch_result", "url", "retrieved_at",
                 "content": {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                             "data": …}, "title": …, "citations": {"enabled": bool}}}
              | {"type": "web_fetch_tool_result_error", "error_code": FETCH_ERROR_CODES}}
    {"type": "text", "text": "…", "citations": [{"type": "web_search_result_location", "url", "title",
     "encrypted_index", "cited_text"}]}          (streamed: citations_delta, then text_delta)
    {"type": "text", "text": "…", "citations": [{"type": "char_location", "document_index",
     "document_title", "start_char_index", "end_char_index", "cited_text"}]}  (fetch, citations on)
    {"type": "text", "text": "…"}                (the rest of the answer)

``usage.server_tool_use`` is ``{"web_search_requests": n, "web_fetch_requests": m}``: the searches and
fetches that ran in this response (a failed one is not counted: it is not billed). Result blocks
count toward the input tokens (Claude reads them), the tool inputs and cited text toward the output.

``stop_reason: "pause_turn"``: the turn stopped after a server tool; the client sends the assistant
content back as is (a trailing assistant message) and calls again; that call completes the turn with
only the new blocks.

Deterministic behaviour (see docs/offline-claude.md for the controls):
- With web search offered, Claude searches the words of the last user message (URLs left out),
  ``web_searches`` times (default 1; the n-th query drops the first n-1 words).
- With web fetch offered, it fetches every URL written in the last user message, after the searches.
- Past ``max_uses`` a step fails with ``max_uses_exceeded``; controls ``search_error`` /
  ``fetch_error`` make the first search / fetch fail with a chosen code; ``pause_turn=1`` pauses after
  the first server tool.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import string
from dataclasses import dataclass, field
from typing import Any

from . import corpus, tool_changes
from .tokenizer import count_tokens, split_pieces

SEARCH_TYPES = frozenset({"web_search_20250305", "web_search_20260209", "web_search_20260318"})
FETCH_TYPES = frozenset(
    {"web_fetch_20250910", "web_fetch_20260209", "web_fetch_20260309", "web_fetch_20260318"}
)
FETCH_BETA = "web-fetch-2025-09-10"
SEARCH_ERROR_CODES = (
    "invalid_tool_input",
    "unavailable",
    "max_uses_exceeded",
    "too_many_requests",
    "query_too_long",
    "request_too_large",
)
FETCH_ERROR_CODES = (
    "invalid_tool_input",
    "url_too_long",
    "url_not_allowed",
    "url_not_in_prior_context",
    "url_not_accessible",
    "unsupported_content_type",
    "too_many_requests",
    "max_uses_exceeded",
    "unavailable",
    "content_too_large",
)
MAX_URL_LENGTH = 250
# When the offline web "retrieved" a page: fixed, so replies stay deterministic.
RETRIEVED_AT = "2026-12-01T12:00:00Z"
CITED_TEXT_LIMIT = 150

_COMMON_KEYS = {"type", "name", "max_uses", "allowed_domains", "blocked_domains", "cache_control"}
_COMMON_KEYS |= {"allowed_callers", "defer_loading", "strict", "response_inclusion"}
_SEARCH_KEYS = _COMMON_KEYS | {"user_location"}
_FETCH_KEYS = _COMMON_KEYS | {"citations", "max_content_tokens", "url_sources", "use_cache"}
_LOCATION_KEYS = {"type", "city", "region", "country", "timezone"}
_INPUT_KEY = {"web_search": "query", "web_fetch": "url"}
_URL_RE = re.compile(r"https?://[^\s<>\"'\])]+")
_ID_ALPHABET = string.ascii_letters + string.digits
_ids = random.SystemRandom()


class ToolError(ValueError):
    """A server tool definition the API refuses (the caller turns it into a 400)."""


def _check_positive(tool: dict[str, Any], key: str, where: str) -> None:
    value = tool.get(key)
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise ToolError(f"{where}.{key}: Input should be a valid integer")
    if value < 1:
        raise ToolError(f"{where}.{key}: Input should be greater than or equal to 1")


def _check_domains(tool: dict[str, Any], key: str, where: str) -> None:
    domains = tool.get(key)
    if domains is None:
        return
    if not isinstance(domains, list):
        raise ToolError(f"{where}.{key}: Input should be a valid list")
    for j, domain in enumerate(domains):
        if not isinstance(domain, str) or not domain.strip():
            raise ToolError(f"{where}.{key}.{j}: Input should be a non-empty string")
        if "://" in domain:
            raise ToolError(f"{where}.{key}.{j}: domains must not include the scheme (http:// or https://)")


def check_tool(tool: dict[str, Any], where: str) -> None:
    """Validate one entry of ``tools`` if it is a web search or web fetch tool; raise ToolError."""
    kind = tool.get("type")
    if not isinstance(kind, str):
        return
    if kind.startswith("web_search_"):
        family, name, keys, known = "search", "web_search", _SEARCH_KEYS, SEARCH_TYPES
    elif kind.startswith("web_fetch_"):
        family, name, keys, known = "fetch", "web_fetch", _FETCH_KEYS, FETCH_TYPES
    else:
        return
    if kind not in known:
        raise ToolError(
            f"{where}.type: Input tag {kind!r} found using 'type' does not match any of the expected tags"
        )
    if tool.get("name") != name:
        raise ToolError(f"{where}.name: Input should be '{name}'")
    extra = sorted(set(tool) - keys)
    if extra:
        raise ToolError(f"{where}.{extra[0]}: Extra inputs are not permitted")
    _check_positive(tool, "max_uses", where)
    _check_domains(tool, "allowed_domains", where)
    _check_domains(tool, "blocked_domains", where)
    if tool.get("allowed_domains") and tool.get("blocked_domains"):
        raise ToolError(f"{where}: cannot specify both allowed_domains and blocked_domains")
    if family == "search":
        location = tool.get("user_location")
        if location is not None:
            if not isinstance(location, dict) or location.get("type") != "approximate":
                raise ToolError(f"{where}.user_location.type: Input should be 'approximate'")
            extra = sorted(set(location) - _LOCATION_KEYS)
            if extra:
                raise ToolError(f"{where}.user_location.{extra[0]}: Extra inputs are not permitted")
            for key in _LOCATION_KEYS - {"type"}:
                if location.get(key) is not None and not isinstance(location[key], str):
                    raise ToolError(f"{where}.user_location.{key}: Input should be a valid string")
    else:
        _check_positive(tool, "max_content_tokens", where)
        citations = tool.get("citations")
        if citations is not None and (
            not isinstance(citations, dict) or not isinstance(citations.get("enabled", False), bool)
        ):
            raise ToolError(f"{where}.citations.enabled: Input should be a valid boolean")


@dataclass
class WebTurn:
    """The server-tool part of one reply: its blocks, and the counters and tokens read off them."""

    blocks: list[dict[str, Any]] = field(default_factory=list)
    paused: bool = False

    @property
    def searches(self) -> int:
        """Searches that ran (a failed one is not billed)."""
        return sum(
            b["type"] == "web_search_tool_result" and isinstance(b["content"], list) for b in self.blocks
        )

    @property
    def fetches(self) -> int:
        """Fetches that ran."""
        return sum(
            b["type"] == "web_fetch_tool_result" and b["content"]["type"] == "web_fetch_result"
            for b in self.blocks
        )

    @property
    def input_tokens(self) -> int:
        """The result content Claude read."""
        return sum(
            count_tokens(json.dumps(b["content"])) for b in self.blocks if b["type"].endswith("_tool_result")
        )

    @property
    def output_tokens(self) -> int:
        """The tool inputs and the text Claude wrote."""
        inputs = sum(
            count_tokens(json.dumps(b["input"])) for b in self.blocks if b["type"] == "server_tool_use"
        )
        return inputs + sum(count_tokens(b["text"]) for b in self.blocks if b["type"] == "text")

    def trim_to(self, budget: int) -> bool:
        """Drop blocks from the end (text first, then whole tool steps) until the output fits
        ``budget`` tokens; whether anything was dropped."""
        trimmed = False
        while self.blocks and self.output_tokens > budget:
            last = self.blocks.pop()
            if last["type"].endswith("_tool_result") and self.blocks:
                self.blocks.pop()  # its server_tool_use
            trimmed = True
        return trimmed

    @property
    def usage(self) -> dict[str, int]:
        """``usage.server_tool_use``."""
        return {"web_search_requests": self.searches, "web_fetch_requests": self.fetches}


def _find_tool(tools: list[Any], kinds: frozenset[str]) -> dict[str, Any] | None:
    for tool in tools:
        if isinstance(tool, dict) and tool.get("type") in kinds:
            return tool
    return None


def _opaque(*parts: str) -> str:
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return base64.b64encode(b"offline-web\x00" + digest * 2).decode()


def _first_sentence(text: str) -> str:
    sentence = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    return sentence[:CITED_TEXT_LIMIT]


def _steps(user_text: str, search: dict | None, fetch: dict | None, searches: int) -> list[tuple[str, str]]:
    urls = _URL_RE.findall(user_text) if fetch is not None else []
    words = corpus.query_words(_URL_RE.sub(" ", user_text)) if search is not None else []
    steps = [("web_search", " ".join(words[i:] or words)) for i in range(searches if words else 0)]
    return steps + [("web_fetch", url.rstrip(".,;:!?")) for url in urls]


def _paused_steps(messages: list[dict[str, Any]]) -> int:
    """How many server tool uses the trailing assistant turn (a paused turn sent back) already holds."""
    if not messages or messages[-1].get("role") != "assistant":
        return 0
    content = messages[-1].get("content")
    blocks = content if isinstance(content, list) else []
    return sum(1 for b in blocks if isinstance(b, dict) and b.get("type") == "server_tool_use")


def is_paused_turn(message: dict[str, Any]) -> bool:
    """A trailing assistant message that ends with a server tool's result (``pause_turn`` sent back)."""
    content = message.get("content")
    if message.get("role") != "assistant" or not isinstance(content, list) or not content:
        return False
    last = content[-1]
    return isinstance(last, dict) and last.get("type") in ("web_search_tool_result", "web_fetch_tool_result")


def plan_web(body: dict[str, Any], user_text: str, controls: Any) -> WebTurn | None:
    """The web part of the reply to ``body``, or None when no web tool applies.

    ``controls`` is the request's :class:`~offline_claude.controls.Controls` (web_searches,
    search_error, fetch_error, pause_turn).
    """
    tools = tool_changes.offered(body)  # a deferred tool only once surfaced, a withdrawn one not
    search, fetch = _find_tool(tools, SEARCH_TYPES), _find_tool(tools, FETCH_TYPES)
    if search is None and fetch is None:
        return None
    steps = _steps(user_text, search, fetch, controls.web_searches)
    if not steps:
        return None
    done = _paused_steps(body["messages"])
    turn = WebTurn()
    used = {"web_search": 0, "web_fetch": 0}
    first_error = {"web_search": controls.search_error, "web_fetch": controls.fetch_error}
    cited: list[dict[str, Any]] = []
    failures: list[str] = []
    documents = 0
    for number, (name, arg) in enumerate(steps):
        tool = search if name == "web_search" else fetch
        assert tool is not None
        used[name] += 1
        error = None
        if tool.get("max_uses") is not None and used[name] > tool["max_uses"]:
            error = "max_uses_exceeded"
        elif used[name] == 1 and first_error[name]:
            error = first_error[name]
        if name == "web_search":
            result, pages = _search_result(tool, arg, error)
            sources = [("search", p) for p in pages]
        else:
            result, page = _fetch_result(tool, arg, error)
            sources = [] if page is None else [("fetch", page)]
        code = result["error_code"] if isinstance(result, dict) and "error_code" in result else None
        if code is not None:
            what = f"search for “{arg}”" if name == "web_search" else f"fetch of {arg}"
            failures.append(f"The web {what} failed ({code}).")
        for kind, page in sources:
            if kind == "fetch":
                cited.append({"page": page, "fetch": tool, "document_index": documents})
                documents += 1
            elif page.url not in {c["page"].url for c in cited} and len(cited) < 3:
                cited.append({"page": page})
        if number < done:
            continue  # already in the paused turn the client sent back
        tool_id = "srvtoolu_01" + "".join(_ids.choices(_ID_ALPHABET, k=22))
        use = {"type": "server_tool_use", "id": tool_id, "name": name, "input": {_INPUT_KEY[name]: arg}}
        kind = "web_search_tool_result" if name == "web_search" else "web_fetch_tool_result"
        turn.blocks += [use, {"type": kind, "tool_use_id": tool_id, "content": result}]
        if controls.pause_turn and done == 0 and number == 0:
            turn.paused = True
            return turn
    for sentence in failures:
        turn.blocks.append({"type": "text", "text": sentence + "\n\n"})
    for source in cited:
        turn.blocks.append(_cited_block(source))
    return turn


def _search_result(tool: dict[str, Any], query: str, error: str | None) -> tuple[Any, list[corpus.Page]]:
    if error is not None:
        return {"type": "web_search_tool_result_error", "error_code": error}, []
    pages = corpus.search(
        query, allowed_domains=tool.get("allowed_domains"), blocked_domains=tool.get("blocked_domains")
    )
    results = [
        {
            "type": "web_search_result",
            "url": page.url,
            "title": page.title,
            "encrypted_content": _opaque("content", page.url, page.text),
            "page_age": page.page_age,
        }
        for page in pages
    ]
    return results, pages


def _fetch_result(
    tool: dict[str, Any], url: str, error: str | None
) -> tuple[dict[str, Any], corpus.Page | None]:
    page = corpus.page_at(url)
    if error is None:
        if len(url) > MAX_URL_LENGTH:
            error = "url_too_long"
        elif not corpus.allowed(url, tool.get("allowed_domains"), tool.get("blocked_domains")):
            error = "url_not_allowed"
        elif page is None:
            error = "url_not_accessible"
    if error is not None or page is None:
        return {"type": "web_fetch_tool_result_error", "error_code": error}, None
    text = page.text
    limit = tool.get("max_content_tokens")
    if limit is not None:
        text = "".join(split_pieces(text)[:limit])
    citations = bool((tool.get("citations") or {}).get("enabled"))
    document = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": text},
        "title": page.title,
        "citations": {"enabled": citations},
    }
    return {
        "type": "web_fetch_result",
        "url": page.url,
        "retrieved_at": RETRIEVED_AT,
        "content": document,
    }, page


def _cited_block(source: dict[str, Any]) -> dict[str, Any]:
    page: corpus.Page = source["page"]
    quote = _first_sentence(page.text)
    if "fetch" not in source:
        citation = {
            "type": "web_search_result_location",
            "url": page.url,
            "title": page.title,
            "encrypted_index": _opaque("index", page.url, quote),
            "cited_text": quote,
        }
        return {"type": "text", "text": quote + "\n\n", "citations": [citation]}
    if not (source["fetch"].get("citations") or {}).get("enabled"):
        return {"type": "text", "text": f"The page {page.url} says: {quote}\n\n"}
    citation = {
        "type": "char_location",
        "document_index": source["document_index"],
        "document_title": page.title,
        "start_char_index": 0,
        "end_char_index": len(quote),
        "cited_text": quote,
    }
    return {"type": "text", "text": quote + "\n\n", "citations": [citation]}


def _event(name: str, payload: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


def _delta(index: int, delta: dict[str, Any]) -> str:
    return _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def stream_events(blocks: list[dict[str, Any]], first_index: int) -> list[tuple[str, str, int]]:
    """The SSE events of ``blocks`` from content index ``first_index``: (event text, kind, server tools
    finished before it). Kind is "delta" for text deltas (they count toward ``fault_after``), "other"
    for the rest; the count lets the server wait ``tool_ms`` per tool before the tool's result."""
    out: list[tuple[str, str, int]] = []
    done = 0
    for index, block in enumerate(blocks, start=first_index):
        kind = block["type"]
        done += kind.endswith("_tool_result")
        if kind == "server_tool_use":
            start = {**block, "input": {}}
        elif kind == "text":
            start = {"type": "text", "text": ""}
        else:
            start = block  # a result block arrives whole
        begin = {"type": "content_block_start", "index": index, "content_block": start}
        out.append((_event("content_block_start", begin), "other", done))
        if kind == "server_tool_use":
            raw = json.dumps(block["input"], ensure_ascii=False)
            for piece in (raw[: len(raw) // 2], raw[len(raw) // 2 :]):
                out.append(
                    (_delta(index, {"type": "input_json_delta", "partial_json": piece}), "other", done)
                )
        elif kind == "text":
            for citation in block.get("citations") or []:
                out.append((_delta(index, {"type": "citations_delta", "citation": citation}), "other", done))
            for piece in split_pieces(block["text"]):
                out.append((_delta(index, {"type": "text_delta", "text": piece}), "delta", done))
        stop = {"type": "content_block_stop", "index": index}
        out.append((_event("content_block_stop", stop), "other", done))
    return out

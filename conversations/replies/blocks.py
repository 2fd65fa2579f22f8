"""The content blocks of one API call, recorded as they stream, so that a reply that used server tools
(web search, web fetch) is stored and sent back exactly as the API returned it; and the steps a person
follows while those tools run ("Searching: …", "Reading …").

Text is not copied here: a text block records where its text starts and ends in the call's text, which
the generation keeps anyway, so a text delta costs nothing more than before. Thinking blocks are the
stream's own (`ReplyStream.thinking_blocks`), referred to by position. Everything else (server tool
uses, their results with their encrypted content, blocks of kinds this app does not know) is kept as
the API sent it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from ..rendering import host_of, shown_text

SERVER_TOOL_USE = "server_tool_use"
RESULT_TYPES = frozenset({"web_search_tool_result", "web_fetch_tool_result"})

# What a failed step's error_code means, said to a person (docs: "Web search tool", "Web fetch tool").
SEARCH_ERRORS = {
    "too_many_requests": "too many searches at once",
    "invalid_tool_input": "the query was not valid",
    "max_uses_exceeded": "this reply reached its limit of searches",
    "unavailable": "the search service was unavailable",
    "query_too_long": "the query was too long",
    "request_too_large": "the request was too large",
}
FETCH_ERRORS = {
    "invalid_tool_input": "the address was not valid",
    "url_too_long": "the address was too long",
    "url_not_allowed": "that site is not allowed here",
    "url_not_in_prior_context": "Claude may only read addresses that came up in the conversation",
    "url_not_accessible": "the page could not be reached",
    "unsupported_content_type": "that kind of content cannot be read",
    "too_many_requests": "too many pages at once",
    "max_uses_exceeded": "this reply reached its limit of pages read",
    "unavailable": "the service was unavailable",
    "content_too_large": "the page was too large",
}


@dataclass(frozen=True)
class WebStep:
    """One server tool use of a reply, as a person follows it: running, then done or failed."""

    id: str  # the server tool use's id (srvtoolu_…): a step's result names it
    tool: str  # "web_search", "web_fetch", or another server tool's name
    target: str  # the query searched, or the address read
    state: str = "running"  # "running", "done" or "failed"
    error: str = ""  # the result's error_code, when it failed
    results: int = 0  # search results found (1 for a page read)

    @property
    def reason(self) -> str:
        """Why it failed, in words (the error code itself when it is one the docs do not list)."""
        if not self.error:
            return ""
        known = SEARCH_ERRORS if self.tool == "web_search" else FETCH_ERRORS
        return known.get(self.error, shown_text(self.error.replace("_", " "), 64))

    def shown(self) -> dict:
        """The step as the page shows it and the message stores it (plain values; what came from Claude
        or a result as one line of visible text, cut to size)."""
        return {
            "tool": shown_text(self.tool, 64),
            "target": shown_text(self.target, 500),
            "domain": host_of(self.target) if self.tool == "web_fetch" else "",
            "state": self.state,
            "error": self.error[:64],
            "reason": self.reason,
            "results": self.results,
        }


def _result_step(use: WebStep, block: dict) -> WebStep:
    content = block.get("content")
    if isinstance(content, list):  # search results
        return replace(use, state="done", results=len(content))
    if isinstance(content, dict) and content.get("error_code"):
        return replace(use, state="failed", error=str(content["error_code"]))
    return replace(use, state="done", results=1)  # a page read


class CallBlocks:
    """The content blocks of one call, in order, as they stream (see the module's docstring)."""

    def __init__(self) -> None:
        self._blocks: list[dict] = []
        self._input: list[str] = []  # input_json_delta pieces of the open server tool use
        self._uses: dict[str, WebStep] = {}
        # Whether the call used a server tool or cited something: only then is it stored block by block.
        self.used = False

    def started(self, block: dict, *, text_at: int, thinking_at: int) -> WebStep | None:
        """A content_block_start; `text_at` is the call's text so far (characters), `thinking_at` the
        position of its thinking block in the stream's list. The step a result block ends, if any."""
        kind = block.get("type")
        if kind == "text":
            citations = list(block.get("citations") or [])
            self.used = self.used or bool(citations)
            self._blocks.append({"type": "text", "_start": text_at, "_end": None, "citations": citations})
            return None
        if kind == "thinking":
            self._blocks.append({"type": "thinking", "_at": thinking_at})
            return None
        self._blocks.append(dict(block))
        if kind == SERVER_TOOL_USE:
            self.used = True
            self._input = []
        elif kind in RESULT_TYPES:
            self.used = True
            use = self._uses.get(block.get("tool_use_id", ""))
            if use is not None:
                done = _result_step(use, block)
                self._uses[use.id] = done
                return done
        return None

    def citation(self, citation: dict) -> None:
        """A citations_delta: one more citation of the open text block."""
        if self._blocks and self._blocks[-1]["type"] == "text":
            self._blocks[-1]["citations"].append(citation)
            self.used = True

    def input_json(self, piece: str) -> None:
        """An input_json_delta of the open server tool use."""
        self._input.append(piece)

    def stopped(self, *, text_at: int) -> WebStep | None:
        """A content_block_stop: a text block's end, or a server tool use whose input is now whole
        (the step it starts)."""
        if not self._blocks:
            return None
        block = self._blocks[-1]
        if block["type"] == "text":
            block["_end"] = text_at
        elif block["type"] == SERVER_TOOL_USE and "_whole" not in block:
            if self._input:
                block["input"] = json.loads("".join(self._input))
                self._input = []
            block["_whole"] = True
            value = block.get("input") or {}
            target = (value.get("query") or value.get("url") or "") if isinstance(value, dict) else ""
            step = WebStep(id=str(block.get("id", "")), tool=str(block.get("name", "")), target=str(target))
            self._uses[step.id] = step
            return step
        return None

    def content(self, text: str, thinking: list[dict], *, paused: bool = False) -> list[dict]:
        """The call's content blocks as the API returned them, text taken from `text` (the call's own)
        and thinking from `thinking` (the stream's blocks). What cannot be sent back is left out: thinking
        without a signature, empty text, and (unless the turn was paused, to be continued as it is) a
        server tool use whose input or result never came."""
        answered = {b.get("tool_use_id") for b in self._blocks if b["type"] in RESULT_TYPES}
        out: list[dict] = []
        for block in self._blocks:
            kind = block["type"]
            if kind == "thinking":
                signed = thinking[block["_at"]]
                if signed["signature"]:
                    out.append(
                        {"type": "thinking", "thinking": signed["thinking"], "signature": signed["signature"]}
                    )
            elif kind == "text":
                end = len(text) if block["_end"] is None else block["_end"]
                piece = text[block["_start"] : end]
                if piece.strip():
                    sent = {"type": "text", "text": piece}
                    if block["citations"]:
                        sent["citations"] = list(block["citations"])
                    out.append(sent)
            elif kind == SERVER_TOOL_USE:
                if "_whole" in block and (paused or block.get("id") in answered):
                    out.append({k: v for k, v in block.items() if k != "_whole"})
            else:
                out.append(block)
        return out

    def cited(self, text_length: int) -> list[tuple[int, dict]]:
        """Every citation with where its text block ends in the call's text: (characters, citation)."""
        return [
            (text_length if block["_end"] is None else block["_end"], citation)
            for block in self._blocks
            if block["type"] == "text"
            for citation in block["citations"]
        ]

    def ran(self) -> tuple[int, int]:
        """The searches and page reads whose results came (a failed one is not billed): what the call is
        billed for when its final usage never came."""
        done = [step for step in self._uses.values() if step.state == "done"]
        return sum(s.tool == "web_search" for s in done), sum(s.tool == "web_fetch" for s in done)

    def fetched(self) -> list[tuple[str, str]]:
        """The pages read in this call, in order: (address, title)."""
        pages = []
        for block in self._blocks:
            content = block.get("content") if block["type"] == "web_fetch_tool_result" else None
            if isinstance(content, dict) and content.get("type") == "web_fetch_result":
                document = content.get("content") or {}
                title = document.get("title") if isinstance(document, dict) else ""
                pages.append((str(content.get("url") or ""), str(title or "")))
        return pages


def sendable(blocks: list[dict]) -> list[dict]:
    """A finished call's blocks as they may go back to the API: as they are while they hold some text,
    else nothing (like a reply stopped before its first words, whose thinking goes with it)."""
    return blocks if any(block["type"] == "text" for block in blocks) else []

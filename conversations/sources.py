"""What a reply that used the web shows besides its text: the steps it took (searches, pages read, the
ones that failed), the sources its answer cites, numbered in the order first cited, and where in the
text each citation ends. Plain values, stored on the message (`web_steps`, `sources`, `citations`), so
a reload, another tab and another worker render the same thing; nothing from a result is trusted:
titles are cut to size and cleared of invisible and direction-changing characters, and only http(s)
addresses become links (rendering escapes the rest).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .rendering import host_of, link_url, shown_text

if TYPE_CHECKING:  # the reply engine's, which builds these from the stream
    from .replies.blocks import CallBlocks, WebStep

TITLE_CHARS = 300
CITED_TEXT_CHARS = 500


def _title(value: object) -> str:
    return shown_text(value, TITLE_CHARS)


@dataclass
class WebDisplay:
    """A reply's steps, sources and citations, built up call by call while it is written."""

    steps: list[dict] = field(default_factory=list)
    # {"title", "url" ("" unless an http(s) address), "domain"}; a citation's "source" is 1 + its index.
    sources: list[dict] = field(default_factory=list)
    # {"at": characters of the reply's text up to the end of the cited passage, "source", "cited_text"}
    citations: list[dict] = field(default_factory=list)
    _step_at: dict[str, int] = field(default_factory=dict)
    # Pages read in the current turn (its calls, paused ones included): document_index counts them.
    _fetched: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, message) -> WebDisplay:
        """What `message` shows already (a cut-off reply being continued adds to it)."""
        return cls(list(message.web_steps), list(message.sources), list(message.citations))

    @property
    def empty(self) -> bool:
        return not (self.steps or self.sources or self.citations)

    def step(self, step: WebStep) -> tuple[int, bool]:
        """Record a step's news: its place among the reply's steps, and whether it is new there."""
        known = self._step_at.get(step.id)
        if known is None:
            self._step_at[step.id] = len(self.steps)
            self.steps.append(step.shown())
            return len(self.steps) - 1, True
        self.steps[known] = step.shown()
        return known, False

    def ended(self) -> None:
        """The reply ended: a step whose result never came (stopped, failed, or paused before it ran)
        did not finish."""
        for step in self.steps:
            if step["state"] == "running":
                step["state"] = "unfinished"

    def add_call(self, blocks: CallBlocks, *, text_start: int, text_length: int) -> None:
        """The citations of one call whose text begins at `text_start` in the reply's text."""
        self._fetched += blocks.fetched()
        for end, citation in blocks.cited(text_length):
            number = self._source_number(citation)
            if number is None:
                continue
            entry = {
                "at": text_start + end,
                "source": number,
                "cited_text": str(citation.get("cited_text") or "")[:CITED_TEXT_CHARS],
            }
            if not any(c["at"] == entry["at"] and c["source"] == number for c in self.citations):
                self.citations.append(entry)

    def _source_number(self, citation: dict) -> int | None:
        if not isinstance(citation, dict):
            return None
        url, title = citation.get("url"), citation.get("title")
        if url is None and isinstance(citation.get("document_index"), int):
            index = citation["document_index"]
            if 0 <= index < len(self._fetched):
                url, title = self._fetched[index]
            title = title or citation.get("document_title")
        if not url and not title:
            return None
        url = str(url or "")
        for number, source in enumerate(self.sources, start=1):
            if (source["url"] or source["title"]) == (link_url(url) or _title(title)):
                return number
        safe = link_url(url)
        self.sources.append(
            {"title": _title(title) or host_of(safe) or "Untitled", "url": safe, "domain": host_of(safe)}
        )
        return len(self.sources)


MAX_SOURCES = 200


def sources_from(value: object) -> list[dict]:
    """Sources read from outside (an imported file), cleaned as new ones are: at most MAX_SOURCES,
    titles cut to size, only http(s) addresses kept, the domain taken from the address."""
    sources = []
    for item in value[:MAX_SOURCES] if isinstance(value, list) else []:
        if not isinstance(item, dict):
            continue
        url = link_url(item.get("url") if isinstance(item.get("url"), str) else "")
        title = _title(item.get("title")) or host_of(url) or "Untitled"
        sources.append({"title": title, "url": url, "domain": host_of(url)})
    return sources


def citations_from(value: object, *, sources: int, text_length: int) -> list[dict]:
    """Citations read from outside (an imported file): those naming one of `sources` sources at a place
    within the text."""
    citations = []
    for item in value[: MAX_SOURCES * 10] if isinstance(value, list) else []:
        if not isinstance(item, dict):
            continue
        at, number = item.get("at"), item.get("source")
        if type(at) is int and type(number) is int and 0 <= at <= text_length and 1 <= number <= sources:
            cited = item.get("cited_text")
            citations.append(
                {
                    "at": at,
                    "source": number,
                    "cited_text": cited[:CITED_TEXT_CHARS] if isinstance(cited, str) else "",
                }
            )
    return citations

"""Typed values that cross into billing: what one API call used, and whom its ledger row is about."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Usage:
    """Token counts of one API call, already normalised at the Claude boundary (non-negative ints; cache writes split by TTL)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    thinking_tokens: int = 0
    service_tier: str = ""
    inference_geo: str = ""
    speed: str = ""
    # Server tools that ran on Anthropic's side in this call (`usage.server_tool_use`): priced per use.
    web_search_requests: int = 0
    web_fetch_requests: int = 0

    @property
    def cache_write_tokens(self) -> int:
        """Cache writes of both TTLs."""
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @property
    def prompt_tokens(self) -> int:
        """Every prompt token, however billed: input, cache writes and cache reads (decides the price band)."""
        return self.input_tokens + self.cache_write_tokens + self.cache_read_tokens


@dataclass(frozen=True)
class ServerToolCaps:
    """The most server-tool uses one call may make (the `max_uses` of the tools it offers): a budget
    hold covers them at their price on top of the tokens, so a call cannot overshoot by searching.

    `result_tokens`: the caller's upper bound of the input tokens the tools' results may add to the
    call (Anthropic bills what a search returns and a fetch reads as input tokens of the same call; a
    fetch's is bounded by its `max_content_tokens`, a search's by nothing documented). The hold counts
    them as prompt tokens, at the dearest prompt rate of the band they could take the call to."""

    web_searches: int = 0
    web_fetches: int = 0
    result_tokens: int = 0


NO_SERVER_TOOLS = ServerToolCaps()


@dataclass(frozen=True)
class LedgerLabels:
    """Who and what a ledger row is about, as plain values that outlive the conversation."""

    user_id: int
    username: str
    conversation_id: int | None
    conversation_title: str
    model: str

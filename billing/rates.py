"""The rates a call is billed at, as exact integers of pico-dollars (see billing/money.py): per token for
the model's tokens (Rates), per use for the server tools that ran on Anthropic's side (ToolRates)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rates:
    """One set of per-token rates in pUSD; cost() is exact integer arithmetic."""

    input: int
    output: int
    cache_write_5m: int
    cache_write_1h: int
    cache_read: int

    def cost(
        self, *, input: int, output: int, cache_write_5m: int, cache_write_1h: int, cache_read: int
    ) -> int:
        return (
            input * self.input
            + output * self.output
            + cache_write_5m * self.cache_write_5m
            + cache_write_1h * self.cache_write_1h
            + cache_read * self.cache_read
        )

    @property
    def max_prompt_rate(self) -> int:
        """The dearest rate a prompt token can be billed at (it may be a cache write)."""
        return max(self.input, self.cache_write_5m, self.cache_write_1h, self.cache_read)

    def prompt_rate(self, cache_ttl: str) -> int:
        """The dearest rate a prompt token of a call writing the cache for `cache_ttl` ("5m", "1h", or ""
        for no writes) can be billed at: it is read, written for that lifetime, or plain input."""
        writes = {"5m": self.cache_write_5m, "1h": self.cache_write_1h}.get(cache_ttl, 0)
        return max(self.input, writes, self.cache_read)


RATE_FIELDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")


@dataclass(frozen=True)
class ToolRates:
    """Per-use rates in pUSD of the server tools (one web search, one web fetch), the same for every
    model; cost() is exact integer arithmetic. A tool without a price in force has rate 0."""

    web_search: int = 0
    web_fetch: int = 0

    def cost(self, *, web_searches: int, web_fetches: int) -> int:
        return max(0, web_searches) * self.web_search + max(0, web_fetches) * self.web_fetch

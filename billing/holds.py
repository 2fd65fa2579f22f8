"""How much a call may cost at most, and how much of a budget it holds for that (billing/services.py's
spend_reserve takes the hold, hold_preview shows it beforehand; both decide with hold_decide).

A call's worst case is its prompt's upper bound at the dearest rate a prompt token can be billed at,
`max_tokens` at the output rate, and the server tools it may use (`max_uses` web searches and fetches)
at their per-use prices: the API enforces `max_tokens` and `max_uses`, so the real cost stays below it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from billing.levels import Level
from billing.models import ModelPrice
from billing.periods import Period
from billing.rates import ToolRates
from billing.refusals import too_dear_message, used_up_message, web_tools_message
from billing.tool_prices import ServerTool, ServerToolPrice
from billing.usage import NO_SERVER_TOOLS, ServerToolCaps
from teams.access import allowed_models, team_of

#: The smallest `max_tokens` a reply is granted when the budget left cannot cover the model's full one.
MIN_REPLY_TOKENS = 2_048


def tool_prices(web_searches: int, web_fetches: int, at: datetime) -> tuple[ServerToolPrice | None, ...]:
    """The price versions of web search and web fetch in force at `at`, each looked up only when the call
    uses (or may use) the tool: a call without server tools costs no query."""
    search = ServerToolPrice.objects.in_effect(ServerTool.WEB_SEARCH, at) if web_searches > 0 else None
    fetch = ServerToolPrice.objects.in_effect(ServerTool.WEB_FETCH, at) if web_fetches > 0 else None
    return search, fetch


def tool_rates(search: ServerToolPrice | None, fetch: ServerToolPrice | None) -> ToolRates:
    return ToolRates(web_search=search.rate if search else 0, web_fetch=fetch.rate if fetch else 0)


def server_tools_worst(tool_caps: ServerToolCaps, at: datetime) -> tuple[int, ToolRates]:
    """The most a call's server tools may cost in pUSD (each tool's `max_uses` at its price in force at
    `at`; a tool without a price costs 0, as an unpriced model's tokens do), and those prices."""
    rates = tool_rates(*tool_prices(tool_caps.web_searches, tool_caps.web_fetches, at))
    return rates.cost(web_searches=tool_caps.web_searches, web_fetches=tool_caps.web_fetches), rates


def worst_case_cost(
    *,
    model: str,
    prompt_tokens: int,
    max_tokens: int,
    at: datetime,
    cache_ttl: str = "1h",
    tool_caps: ServerToolCaps = NO_SERVER_TOOLS,
) -> int:
    """Upper bound in pUSD of what one call can cost, given an upper bound of its prompt tokens and the
    cache lifetime it writes (its prompt tokens cost at most that write), and the most server-tool uses
    it may make (`tool_caps`, priced per use on top of the tokens). An unpriced model's tokens count 0."""
    tools, _rates = server_tools_worst(tool_caps, at)
    price = ModelPrice.objects.in_effect(model, at)
    if price is None:
        return tools
    rates, _banded = price.rates_for(prompt_tokens)  # the highest band the prompt can reach
    return max(0, prompt_tokens) * rates.prompt_rate(cache_ttl) + max(0, max_tokens) * rates.output + tools


def _affordable_max_tokens(
    *, model: str, prompt_tokens: int, max_tokens: int, at: datetime, available: int, cache_ttl: str = "1h"
) -> int:
    """The largest `max_tokens` <= `max_tokens` whose worst case fits in `available` pUSD (0 if none)."""
    price = ModelPrice.objects.in_effect(model, at)
    if price is None:
        return max_tokens
    rates, _banded = price.rates_for(prompt_tokens)
    left = available - max(0, prompt_tokens) * rates.prompt_rate(cache_ttl)
    if left < 0:
        return 0
    return max_tokens if rates.output == 0 else min(max_tokens, left // rates.output)


def cheaper_model_that_fits(
    *,
    user_id: int,
    model: str,
    prompt_tokens: int,
    tokens: int,
    available: int,
    at: datetime,
    cache_ttl: str,
    tools: int = 0,
) -> str:
    """Among the models the user may use (their team's choice), other than `model`: the one whose worst
    case for `tokens` of reply (plus `tools`, the server tools' worst cost, the same on every model) is
    the largest that still fits in `available` pUSD ("" if none does). Priced models only: an unpriced
    one is never suggested to get round a budget."""
    best, best_cost = "", -1
    for candidate in allowed_models(team_of(user_id)):
        if candidate == model or ModelPrice.objects.in_effect(candidate, at) is None:
            continue
        cost = tools + worst_case_cost(
            model=candidate, prompt_tokens=prompt_tokens, max_tokens=tokens, at=at, cache_ttl=cache_ttl
        )
        if best_cost < cost <= available:
            best, best_cost = candidate, cost
    return best


@dataclass(frozen=True)
class HoldPreview:
    """What a call's budget hold would be now, without holding anything: `refusal` is the sentence a
    Send would be refused with ("" if it would go through); `hold` the most the call may cost (pUSD), of
    which `tools_held` for its server tools; `max_tokens` what it would be granted; `level` the level
    with the least left (None: no budget)."""

    hold: int
    max_tokens: int
    level: Level | None
    refusal: str = ""
    tools_held: int = 0


def hold_decide(
    limited: list[Level],
    period: Period,
    *,
    model: str,
    prompt_tokens: int,
    max_tokens: int,
    at,
    cache_ttl: str,
    user_id: int | None = None,
    tool_caps: ServerToolCaps = NO_SERVER_TOOLS,
) -> HoldPreview:
    """The one decision behind a hold and its preview, given the levels with a budget (their standing
    read): refused (a level used up, or not even the smallest reply fits at the shortest level: the
    refusal names a cheaper model that would, for `user_id`, or, when the reply alone would fit, the web
    searches as what does not), or the hold and the `max_tokens` granted (the request's, or less when the
    shortest level cannot cover its worst case). The server tools' uses (`tool_caps` at their prices)
    are held whole and taken off what is left before `max_tokens` is sized; their results' tokens
    (`tool_caps.result_tokens`) count as prompt tokens. `tools_held`: what the tools add to the hold."""
    tools, rates = server_tools_worst(tool_caps, at)
    plain = {"model": model, "prompt_tokens": prompt_tokens, "at": at, "cache_ttl": cache_ttl}
    # What the tools' results may add is billed as prompt tokens of the call (and may reach the band).
    sizing = {**plain, "prompt_tokens": prompt_tokens + max(0, tool_caps.result_tokens)}
    with_tools = tool_caps != NO_SERVER_TOOLS

    def hold_of(granted: int, level: Level | None) -> HoldPreview:
        held = tools + worst_case_cost(**sizing, max_tokens=granted)
        alone = worst_case_cost(**plain, max_tokens=granted) if with_tools else held
        return HoldPreview(held, granted, level, tools_held=held - alone)

    full = hold_of(max_tokens, None)
    if not limited:
        return full
    for level in limited:
        if level.exhausted:
            return HoldPreview(0, 0, level, used_up_message(level, period))
    shortest = min(limited, key=lambda level: level.available)
    if full.hold <= shortest.available:
        return replace(full, level=shortest)
    least = min(max_tokens, MIN_REPLY_TOKENS)
    granted = 0
    if tools <= shortest.available:
        granted = _affordable_max_tokens(
            **sizing, max_tokens=max_tokens, available=shortest.available - tools
        )
    if granted < least:
        smallest = hold_of(least, shortest)
        reply = smallest.hold - smallest.tools_held  # the same reply with Web off
        if with_tools and reply <= shortest.available:
            searches = tool_caps.web_searches if rates.web_search else 0
            fetches = tool_caps.web_fetches if rates.web_fetch else 0  # priced uses only
            words = web_tools_message(
                shortest,
                period,
                reply=reply,
                tools=smallest.tools_held,
                web_searches=searches,
                web_fetches=fetches,
            )
            return HoldPreview(0, 0, shortest, words)
        cheaper = ""
        if user_id is not None:
            cheaper = cheaper_model_that_fits(
                user_id=user_id, tokens=least, available=shortest.available, tools=tools, **sizing
            )
        return HoldPreview(0, 0, shortest, too_dear_message(shortest, smallest.hold, period, cheaper))
    return hold_of(granted, shortest)

"""The sentences a person reads when a call is refused before it is made: which budget (theirs, their
team's or the organisation's) stands in the way, by how much, and what they can do about it."""

from __future__ import annotations

from datetime import timedelta

from billing.levels import ORGANISATION, TEAM, USER, Level
from billing.money import format_money_together
from billing.periods import Period


def _month_name(period: Period) -> str:
    return f"{period.first_day:%B}"


def _who_to_ask(level: Level) -> str:
    if level.scope == ORGANISATION:
        return "ask an administrator"
    if level.scope == TEAM:
        names = level.team.manager_names() if level.team is not None else []
        return f"ask {_joined(names)}" if names else "ask an administrator"
    if level.personal:
        return "you can raise your own limit on your usage page"
    return "ask an administrator if you need more"


def _joined(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _whose(level: Level) -> str:
    if level.scope == ORGANISATION:
        return "the organisation's"
    if level.scope == TEAM:
        return "your team's"
    return "your own" if level.personal else "your"


def used_up_message(level: Level, period: Period) -> str:
    """Why nothing more can be sent this month, naming the level and whom to ask."""
    shown_limit, shown_spent = format_money_together(level.limit, level.spent)
    resets = f"{period.last_day + timedelta(days=1):%B %-d}"
    if level.scope == USER and not level.personal:
        return (
            f"You've reached your monthly budget of {shown_limit} ({shown_spent} spent). "
            f"It resets on {resets}; ask an administrator if you need more."
        )
    if level.scope == USER:
        return (
            f"You've reached the monthly limit you set yourself ({shown_limit}, {shown_spent} spent). "
            f"It resets on {resets}; you can raise it on your usage page."
        )
    owner = "Your team's" if level.scope == TEAM else "The organisation's"
    return (
        f"{owner} budget for {_month_name(period)} is used up ({shown_spent} of {shown_limit}): "
        f"{_who_to_ask(level)}. It resets on {resets}."
    )


def too_dear_message(level: Level, smallest: int, period: Period, cheaper: str = "") -> str:
    """Why this message cannot be afforded although the level is not used up; `cheaper`: a model the
    user may choose whose smallest reply would fit, named as the first thing to try."""
    shown = format_money_together(smallest, level.available, level.limit)
    held = " (other replies in progress hold part of it)" if level.held else ""
    try_first = (
        f"It would fit on {cheaper}: choose it in this conversation's settings, or try" if cheaper else "Try"
    )
    if level.scope == USER and not level.personal:
        return (
            f"This message could cost up to {shown[0]}, but only {shown[1]} of your {shown[2]} monthly "
            f"budget is left{held}. {try_first} a shorter conversation, or ask an administrator for a "
            "higher budget."
        )
    return (
        f"This message could cost up to {shown[0]}, but only {shown[1]} of {_whose(level)} {shown[2]} "
        f"budget for {_month_name(period)} is left{held}. {try_first} a shorter conversation, or "
        f"{_who_to_ask(level)}."
    )


def _uses_words(web_searches: int, web_fetches: int) -> str:
    """'5 web searches', '1 web search and 2 web fetches': the priced uses a call may make."""
    words = []
    if web_searches:
        words.append(f"{web_searches} web search{'es' if web_searches != 1 else ''}")
    if web_fetches:
        words.append(f"{web_fetches} web fetch{'es' if web_fetches != 1 else ''}")
    return " and ".join(words)


def web_tools_message(
    level: Level, period: Period, *, reply: int, tools: int, web_searches: int, web_fetches: int = 0
) -> str:
    """Why a message with Web on cannot be afforded although its reply alone could: `reply` is the
    smallest reply's worst case, `tools` the most its `web_searches` (and priced `web_fetches`) may
    cost. Says that the searches are what does not fit, and that turning Web off sends it without them."""
    total, shown_reply, shown_tools, available, limit = format_money_together(
        reply + tools, reply, tools, level.available, level.limit
    )
    held = " (other replies in progress hold part of it)" if level.held else ""
    if level.scope == USER and not level.personal:
        budget, ask = f"your {limit} monthly budget", "ask an administrator for a higher budget"
    else:
        budget, ask = f"{_whose(level)} {limit} budget for {_month_name(period)}", _who_to_ask(level)
    return (
        f"With Web on, this message could cost up to {total}: {shown_reply} for the reply and {shown_tools} "
        f"for up to {_uses_words(web_searches, web_fetches)}. Only {available} of {budget} is left{held}, "
        "so the web searches are what does not fit. Turn Web off in this conversation to send it without "
        f"them, or {ask}."
    )

"""Web search and web fetch for a conversation: whether Claude may look things up in it, and the server
tools (with their `max_uses`) a reply's request offers. Billing holds the caps at their price."""

from __future__ import annotations

from dataclasses import dataclass, field

from billing.usage import NO_SERVER_TOOLS, ServerToolCaps


@dataclass(frozen=True)
class WebTools:
    """The server tools one reply offers and the most uses of each it may make."""

    tools: tuple[dict, ...] = ()
    caps: ServerToolCaps = field(default=NO_SERVER_TOOLS)


NO_WEB = WebTools()


def web_tools_for(conversation) -> WebTools:
    """The server tools a reply in `conversation` offers now (the conversation's Web switch, where the
    site and its team offer the web at all)."""
    return NO_WEB

"""Web search and web fetch in a conversation: whether the site and the owner's team offer them, the
conversation's Web switch, the server tools its requests declare (with their `max_uses`, which budget
holds cover at their price), and the system message that turns them on or off mid-conversation.

Turning the web on or off must not change what a conversation already sent (Claude's thinking is bound
to `tools` and every earlier message: reference/claude-api.md, "Preserved thinking"). So, as the docs'
"Mid-conversation system messages and tool changes" say: a conversation that ever had the Web on
declares both tools in every request, the same copy each time, with `defer_loading: true` (withheld,
and not part of the prefix, until surfaced); each flip of the switch is a `tool_addition` or
`tool_removal` in a `role: "system"` message after the next message its owner sends, kept there from
then on (replies/history.py places it; beta `mid-conversation-tool-changes-2026-07-01`). On a model
without system messages (no prefix check either) the tools are simply sent while the Web is on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction

from billing.usage import NO_SERVER_TOOLS, ServerToolCaps
from teams.access import team_of

from .catalog import model_info
from .inputs import InvalidInput
from .models import Conversation, Message, WebSettings

# The current versions (the docs' "Web search tool" and "Web fetch tool"; anthropic 2.10 types), called
# by Claude directly (`allowed_callers`): without it these versions filter results through code
# execution, which is billed and streamed apart.
WEB_SEARCH_TYPE = "web_search_20260318"
WEB_FETCH_TYPE = "web_fetch_20260318"
DIRECT = ["direct"]

WEB_ON_TEXT = (
    "The user turned on web search and web fetch: from here on you may search the web and read pages "
    "when current or outside information would help, and cite what you use."
)
WEB_OFF_TEXT = (
    "The user turned off web search and web fetch: from here on you cannot search the web or read pages."
)
NOT_OFFERED = "Web search is not offered here: an administrator turned it off for the site or your team."


@dataclass(frozen=True)
class WebTools:
    """The server tools one reply's request declares, and the most uses of each it may make (what its
    budget hold covers: none while the Web is off, though the tools stay declared)."""

    tools: tuple[dict, ...] = ()
    caps: ServerToolCaps = field(default=NO_SERVER_TOOLS)


NO_WEB = WebTools()


def web_offered(user_id: int) -> bool:
    """Whether `user_id` may turn the Web on: the site offers it and their team (if any) does not say no."""
    if not WebSettings.load().offered:
        return False
    team = team_of(user_id)
    return team is None or team.web


def tool_definitions(site: WebSettings) -> list[dict]:
    """The web search and web fetch tools as the site's settings have them (one domain list or none)."""
    domains: dict = {}
    if site.allowed_domains:
        domains = {"allowed_domains": list(site.allowed_domains)}
    elif site.blocked_domains:
        domains = {"blocked_domains": list(site.blocked_domains)}
    search = {
        "type": WEB_SEARCH_TYPE,
        "name": "web_search",
        "max_uses": site.max_searches,
        "allowed_callers": DIRECT,
        **domains,
    }
    fetch = {
        "type": WEB_FETCH_TYPE,
        "name": "web_fetch",
        "max_uses": site.max_fetches,
        "allowed_callers": DIRECT,
        "citations": {"enabled": True},
        # What one fetch may read (billed as input tokens): the bound the reply's hold counts on.
        "max_content_tokens": settings.CHAT_WEB_FETCH_MAX_TOKENS,
        **domains,
    }
    return [search, fetch]


def _caps(definitions: list[dict]) -> ServerToolCaps:
    """The most uses of each tool, and the most input tokens their results may add to the call: each
    fetch its `max_content_tokens` (sent with it), each search the site's allowance (the API documents
    no bound for a search's results)."""
    tools = {tool["name"]: tool for tool in definitions}
    searches = tools.get("web_search", {}).get("max_uses", 0)
    fetch = tools.get("web_fetch", {})
    fetches = fetch.get("max_uses", 0)
    per_fetch = fetch.get("max_content_tokens") or settings.CHAT_WEB_FETCH_MAX_TOKENS
    return ServerToolCaps(
        web_searches=searches,
        web_fetches=fetches,
        result_tokens=searches * settings.CHAT_WEB_SEARCH_RESULT_TOKENS + fetches * per_fetch,
    )


def web_state(changes: list[dict], *, before: int) -> bool:
    """Whether the Web is on for a message the owner sent with id `before`: the last of `changes`
    (the conversation's `web_changes`) made before it, else off."""
    on = False
    for change in changes:
        if change["after"] < before:
            on = change["on"]
    return on


def web_tools_for(conversation: Conversation, reply: Message | None = None) -> WebTools:
    """The server tools a reply in `conversation` declares, and the uses its hold covers.

    With `reply` (an assistant message, its parent the owner's message it answers): as its call sends
    them, the switch as it was when that message was sent (a retry or a continuation keeps it; a change
    since applies from the owner's next message). Without: as a Send now would (the switch, where the
    site and the owner's team offer the web). Nothing is declared in a conversation that never had the
    Web on."""
    if not conversation.web_tools:
        return NO_WEB
    definitions = list(conversation.web_tools)
    if model_info(conversation.model).system_messages:
        if reply is not None and reply.parent_id is not None:
            on = web_state(conversation.web_changes, before=reply.parent_id)
        else:
            on = conversation.web and web_offered(conversation.owner_id)
        deferred = tuple({**tool, "defer_loading": True} for tool in definitions)
        return WebTools(deferred, _caps(definitions) if on else NO_SERVER_TOOLS)
    # No system messages on this model, and no prefix check: the tools go with the request while on.
    if conversation.web and web_offered(conversation.owner_id):
        return WebTools(tuple(definitions), _caps(definitions))
    return NO_WEB


def web_system_message(on: bool) -> dict:
    """The system message that turns the web tools on or off from its place in the history on."""
    kind = "tool_addition" if on else "tool_removal"
    changes = [
        {"type": kind, "tool": {"type": "tool_reference", "name": name}}
        for name in ("web_search", "web_fetch")
    ]
    return {
        "role": "system",
        "content": [*changes, {"type": "text", "text": WEB_ON_TEXT if on else WEB_OFF_TEXT}],
    }


def compaction_web_on(block: dict | None) -> bool:
    """Whether a compaction block leaves the web tools on (its `tool_changes` surface them)."""
    for change in (block or {}).get("tool_changes") or []:
        if change.get("type") == "tool_addition" and (change.get("tool") or {}).get("name") == "web_search":
            return True
    return False


def _bound(conversation: Conversation) -> bool:
    """Whether a request has declared the conversation's web tools and surfaced them (a message was sent
    after the Web was first turned on): from then on their definitions cannot change."""
    ons = [change["after"] for change in conversation.web_changes if change["on"]]
    return bool(ons) and conversation.messages.filter(role=Message.Role.USER, pk__gt=min(ons)).exists()


def _record(conversation: Conversation, *, on: bool, after: int) -> None:
    """Set the switch and record the change, to apply from the owner's first message after `after`
    (changes between the same two messages collapse into one)."""
    if on and not _bound(conversation):
        conversation.web_tools = tool_definitions(WebSettings.load())
    changes = list(conversation.web_changes)
    if changes and changes[-1]["after"] == after:
        changes.pop()
    if web_state(changes, before=after + 1) != on:
        changes.append({"after": after, "on": on})
    conversation.web, conversation.web_changes = on, changes
    conversation.save(update_fields=["web", "web_changes", "web_tools"])


def conversation_web_set(*, conversation: Conversation, on: bool) -> Conversation:
    """Turn the conversation's Web switch on or off, from its owner's next message on (the owner's
    conversation, checked by the caller). Raises InvalidInput, with nothing changed, when turning it on
    where the site or the owner's team does not offer the web. Returns the conversation as saved."""
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
        if on and not web_offered(conversation.owner_id):
            raise InvalidInput(NOT_OFFERED)
        if on != conversation.web:
            newest = conversation.messages.order_by("-pk").values_list("pk", flat=True).first()
            _record(conversation, on=on, after=newest or 0)
    return conversation


def reply_web_sync(*, conversation: Conversation, message: Message) -> None:
    """Before the reply to `message`, which the owner just sent: where the site or the owner's team no
    longer offers the web, a conversation with the Web on turns it off from this message on. Call in
    the reply's transaction."""
    if conversation.web and not web_offered(conversation.owner_id):
        _record(conversation, on=False, after=message.pk - 1)

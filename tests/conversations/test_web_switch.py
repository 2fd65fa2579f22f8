"""The Web switch of a conversation and the settings behind it: the site's web settings (made from the
CHAT_WEB… settings, edited in the admin), a team's say, the switch on the page (owner only, CSRF, shown
and accepted only where the web is offered), and the tools a reply declares (`web_tools_for`)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from billing.team_admin import TeamForm
from billing.usage import NO_SERVER_TOOLS, ServerToolCaps
from conversations.admin import WebSettingsForm
from conversations.models import Conversation, Message, WebSettings
from conversations.replies import history
from conversations.web import (
    NO_WEB,
    WEB_FETCH_TYPE,
    WEB_SEARCH_TYPE,
    conversation_web_set,
    reply_web_sync,
    web_tools_for,
)
from teams.models import Membership, Team
from tests.helpers import make_conversation, make_message, make_user

pytestmark = pytest.mark.django_db

ON = {"web": "1"}


def client_for(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def site(**fields) -> WebSettings:
    row = WebSettings.load()
    for name, value in fields.items():
        setattr(row, name, value)
    row.save()
    return row


def next_messages(conversation: Conversation) -> list[dict]:
    conversation.refresh_from_db()
    return history.history_for(conversation, before=Message(pk=2**62)).messages


def exchange(conversation: Conversation, text: str) -> tuple[Message, Message]:
    asked = make_message(conversation, content=text)
    return asked, make_message(conversation, role="assistant", content=f"About {text}", parent=asked)


def web_blocks(message: dict) -> list[tuple[str, str]]:
    return [(b["type"], b["tool"]["name"]) for b in message["content"] if "tool" in b]


# --- The switch on the page -------------------------------------------------------------------------


def test_the_owner_turns_the_web_on_and_the_page_says_so_after_a_reload():
    user = make_user()
    conversation = make_conversation(owner=user)
    client = client_for(user)
    page = client.get(conversation.get_absolute_url()).content.decode()
    assert 'id="web-switch"' in page and 'aria-pressed="false"' in page

    # Without JavaScript: a form post, back to the page.
    response = client.post(reverse("conversation_web", args=[conversation.pk]), ON)
    assert response.status_code == 302 and response["Location"] == conversation.get_absolute_url()
    conversation.refresh_from_db()
    assert conversation.web is True
    assert 'aria-pressed="true"' in client.get(conversation.get_absolute_url()).content.decode()

    # With htmx: the switch itself comes back, turned off.
    fragment = client.post(
        reverse("conversation_web", args=[conversation.pk]), {"web": "0"}, HTTP_HX_REQUEST="true"
    )
    assert fragment.status_code == 200
    body = fragment.content.decode()
    assert body.lstrip().startswith('<form id="web-switch"') and 'aria-pressed="false"' in body
    conversation.refresh_from_db()
    assert conversation.web is False


def test_someone_elses_conversation_is_not_found_and_unchanged():
    conversation = make_conversation()
    response = client_for(make_user()).post(reverse("conversation_web", args=[conversation.pk]), ON)
    assert response.status_code == 404
    anonymous = Client().post(reverse("conversation_web", args=[conversation.pk]), ON)
    assert anonymous.status_code == 302 and "/login" in anonymous["Location"]
    conversation.refresh_from_db()
    assert conversation.web is False and conversation.web_changes == []


def test_the_switch_needs_the_csrf_token():
    user = make_user()
    conversation = make_conversation(owner=user)
    client = client_for(user, enforce_csrf_checks=True)
    url = reverse("conversation_web", args=[conversation.pk])
    assert client.post(url, ON).status_code == 403
    conversation.refresh_from_db()
    assert conversation.web is False
    client.get(conversation.get_absolute_url())  # sets the cookie the page's forms and htmx send back
    token = client.cookies["csrftoken"].value
    assert client.post(url, {**ON, "csrfmiddlewaretoken": token}).status_code == 302
    conversation.refresh_from_db()
    assert conversation.web is True


@pytest.mark.parametrize("where", ["site", "team"])
def test_where_the_web_is_not_offered_the_switch_is_absent_and_turning_it_on_is_refused(where):
    user = make_user()
    conversation = make_conversation(owner=user)
    if where == "site":
        site(offered=False)
    else:
        Membership.objects.create(user=user, team=Team.objects.create(name="Quiet", web=False))
    client = client_for(user)
    page = client.get(conversation.get_absolute_url()).content.decode()
    assert 'id="web-switch"' not in page
    assert 'name="web"' not in client.get(reverse("home")).content.decode()

    url = reverse("conversation_web", args=[conversation.pk])
    refused = client.post(url, ON, HTTP_HX_REQUEST="true")
    assert refused.status_code == 400 and "an administrator turned it off" in refused.content.decode()
    after_redirect = client.post(url, ON, follow=True).content.decode()
    assert "Web search is not offered here" in after_redirect
    conversation.refresh_from_db()
    assert conversation.web is False and conversation.web_changes == []
    # Someone in no team still has it where only a team said no.
    other = make_user()
    other_page = client_for(other).get(make_conversation(owner=other).get_absolute_url()).content.decode()
    assert ('id="web-switch"' in other_page) == (where == "team")


def test_a_new_conversation_can_start_with_the_web_on_where_it_is_offered():
    user = make_user()
    client = client_for(user)
    assert 'name="web" value="1"' in client.get(reverse("home")).content.decode()
    response = client.post(reverse("conversation_create"), {"model": "claude-sonnet-5-5", **ON})
    conversation = Conversation.objects.get(owner=user)
    assert response["Location"] == conversation.get_absolute_url()
    assert conversation.web is True and conversation.web_changes == [{"after": 0, "on": True}]

    site(offered=False)
    refused = client.post(reverse("conversation_create"), {"model": "claude-sonnet-5-5", **ON})
    assert refused.status_code == 400 and "Web search is not offered here" in refused.content.decode()
    assert Conversation.objects.filter(owner=user).count() == 1


# --- The settings -------------------------------------------------------------------------------------


def test_the_site_settings_start_from_the_environment_and_are_validated_in_the_admin(settings):
    settings.CHAT_WEB = False
    settings.CHAT_WEB_MAX_SEARCHES = 3
    settings.CHAT_WEB_BLOCKED_DOMAINS = ["spam.example"]
    row = WebSettings.load()
    assert (row.offered, row.max_searches, row.max_fetches) == (False, 3, 5)
    assert row.blocked_domains == ["spam.example"] and row.allowed_domains == []

    def form(**data):
        fields = {
            "offered": "on",
            "max_searches": "5",
            "max_fetches": "5",
            "allowed_domains": "",
            "blocked_domains": "",
        }
        return WebSettingsForm({**fields, **data}, instance=row)

    both = form(allowed_domains="docs.example", blocked_domains="spam.example")
    assert not both.is_valid() and "not both" in str(both.errors)
    scheme = form(allowed_domains="https://docs.example/guide")
    assert not scheme.is_valid() and "without http://" in str(scheme.errors)
    bare = form(blocked_domains="localhost")
    assert not bare.is_valid() and "not a host name" in str(bare.errors)
    assert not form(max_searches="0").is_valid() and not form(max_searches="51").is_valid()
    good = form(allowed_domains="Docs.Example\nwiki.example, docs.example")
    assert good.is_valid(), good.errors
    good.save()
    row.refresh_from_db()
    assert row.allowed_domains == ["docs.example", "wiki.example"] and row.offered is True


def test_staff_open_the_one_row_of_web_settings_and_a_team_can_say_no(admin_client):
    response = admin_client.get(reverse("admin:conversations_websettings_changelist"))
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "admin:conversations_websettings_change", args=[WebSettings.load().pk]
    )
    assert admin_client.get(response["Location"]).status_code == 200
    assert "web" in TeamForm().fields
    team = TeamForm({"name": "Labs", "warning_percent": "80", "web": ""})
    assert team.is_valid(), team.errors
    assert team.save().web is False


# --- What a reply declares ---------------------------------------------------------------------------


def test_web_tools_follow_the_site_settings_and_the_switch():
    user = make_user()
    conversation = make_conversation(owner=user)
    assert web_tools_for(conversation) == NO_WEB  # never turned on: nothing declared
    site(max_searches=3, max_fetches=2, allowed_domains=["docs.example"])
    conversation = conversation_web_set(conversation=conversation, on=True)
    tools = web_tools_for(conversation)
    search, fetch = tools.tools
    assert search == {
        "type": WEB_SEARCH_TYPE,
        "name": "web_search",
        "max_uses": 3,
        "allowed_callers": ["direct"],
        "allowed_domains": ["docs.example"],
        "defer_loading": True,
    }
    assert (
        fetch["type"] == WEB_FETCH_TYPE and fetch["max_uses"] == 2 and fetch["citations"] == {"enabled": True}
    )
    assert fetch["allowed_domains"] == ["docs.example"] and "blocked_domains" not in fetch
    assert fetch["max_content_tokens"] == settings.CHAT_WEB_FETCH_MAX_TOKENS  # what a fetch may read
    per_search, per_fetch = settings.CHAT_WEB_SEARCH_RESULT_TOKENS, settings.CHAT_WEB_FETCH_MAX_TOKENS
    assert tools.caps == ServerToolCaps(3, 2, result_tokens=3 * per_search + 2 * per_fetch)

    # Off again: the same tools stay declared (the history still names them), nothing is held.
    conversation = conversation_web_set(conversation=conversation, on=False)
    assert (
        web_tools_for(conversation).tools == tools.tools
        and web_tools_for(conversation).caps == NO_SERVER_TOOLS
    )

    # Nothing sent yet: the next time it is turned on, the site's settings of then apply.
    site(allowed_domains=[], blocked_domains=["spam.example"], max_searches=4)
    conversation = conversation_web_set(conversation=conversation, on=True)
    search, fetch = web_tools_for(conversation).tools
    assert search["blocked_domains"] == ["spam.example"] and "allowed_domains" not in search
    assert web_tools_for(conversation).caps == ServerToolCaps(
        4, 2, result_tokens=4 * per_search + 2 * per_fetch
    )

    # Once a message went out with them, they are the conversation's for good.
    exchange(conversation, "Tea?")
    site(max_searches=9, blocked_domains=[])
    conversation = conversation_web_set(conversation=conversation, on=False)
    conversation = conversation_web_set(conversation=conversation, on=True)
    assert web_tools_for(conversation).tools[0]["max_uses"] == 4
    assert web_tools_for(conversation).caps.web_searches == 4


def test_a_team_that_turns_the_web_off_stops_it_from_its_members_next_message():
    user = make_user()
    conversation = conversation_web_set(conversation=make_conversation(owner=user), on=True)
    _asked, reply = exchange(conversation, "Tea?")
    team = Team.objects.create(name="Quiet")
    Membership.objects.create(user=user, team=team)
    team.web = False
    team.save()
    assert web_tools_for(conversation).caps == NO_SERVER_TOOLS  # what a Send now would hold
    assert web_tools_for(conversation, reply).caps.web_searches == 5  # a retry of the earlier reply keeps it

    asked = make_message(conversation, content="Coffee?")
    reply_web_sync(conversation=conversation, message=asked)
    conversation.refresh_from_db()
    assert conversation.web is False
    assert conversation.web_changes[-1] == {"after": asked.pk - 1, "on": False}
    answer = make_message(conversation, role="assistant", content="", parent=asked)
    assert web_tools_for(conversation, answer).caps == NO_SERVER_TOOLS
    messages = next_messages(conversation)
    assert [m["role"] for m in messages][-2:] == ["user", "system"]
    assert web_blocks(messages[-1]) == [("tool_removal", "web_search"), ("tool_removal", "web_fetch")]


def test_a_model_without_system_messages_gets_the_tools_while_the_web_is_on():
    user = make_user()
    conversation = conversation_web_set(
        conversation=make_conversation(owner=user, model="claude-sonnet-5"), on=True
    )
    tools = web_tools_for(conversation)
    assert [t["name"] for t in tools.tools] == ["web_search", "web_fetch"]
    assert not any("defer_loading" in t for t in tools.tools) and tools.caps.web_fetches == 5
    exchange(conversation, "Tea?")
    assert not any(m["role"] == "system" for m in next_messages(conversation))
    assert web_tools_for(conversation_web_set(conversation=conversation, on=False)) == NO_WEB


# --- Where the switch goes in the history ------------------------------------------------------------


def test_each_change_goes_after_the_next_message_its_owner_sends_and_stays_there():
    user = make_user()
    conversation = make_conversation(owner=user)
    _, first = exchange(conversation, "Owls?")
    conversation = conversation_web_set(conversation=conversation, on=True)
    assert not any(m["role"] == "system" for m in next_messages(conversation))  # nothing sent after it yet
    exchange(conversation, "Tea?")
    exchange(conversation, "Coffee?")
    conversation = conversation_web_set(conversation=conversation, on=False)
    conversation = conversation_web_set(conversation=conversation, on=True)  # back before anything was sent
    assert conversation.web_changes == [{"after": first.pk, "on": True}]
    exchange(conversation, "Cocoa?")
    conversation = conversation_web_set(conversation=conversation, on=False)
    make_message(conversation, content="Milk?")  # the next Send
    messages = next_messages(conversation)
    roles = [m["role"] for m in messages]
    assert roles == [
        "user",
        "assistant",
        "user",
        "system",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "system",
    ]
    assert messages[2]["content"] == "Tea?"
    assert web_blocks(messages[3]) == [("tool_addition", "web_search"), ("tool_addition", "web_fetch")]
    assert "turned on web search" in messages[3]["content"][-1]["text"]
    assert messages[9]["content"] == "Milk?" and web_blocks(messages[10])[0] == ("tool_removal", "web_search")


def test_a_retry_or_a_continuation_keeps_the_switch_its_message_was_sent_with():
    user = make_user()
    conversation = conversation_web_set(conversation=make_conversation(owner=user), on=True)
    asked, reply = exchange(conversation, "Tea?")
    conversation = conversation_web_set(conversation=conversation, on=False)
    reply.call_ends = [[len(reply.content), 0]]  # cut off, and being continued: its second call
    reply.save()
    continued = history.reply_request_history(reply).messages
    assert [m["role"] for m in continued] == ["user", "system", "assistant", "user"]
    assert web_blocks(continued[1])[0] == ("tool_addition", "web_search")  # the removal waits
    assert web_tools_for(conversation, reply).caps.web_searches == 5
    reply.content += " And more."
    reply.save()
    make_message(conversation, content="Coffee?")
    later = next_messages(conversation)
    assert later[:4] == continued[:4]
    assert [m["role"] for m in later[4:]] == ["assistant", "user", "system"]
    assert web_blocks(later[-1])[0] == ("tool_removal", "web_search")

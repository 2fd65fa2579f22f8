"""Organise: pin and archive, the sidebar's day groups and its pages (no longer stopping at 200)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from conversations import services
from conversations.models import Conversation
from conversations.sidebar import OLDER, TODAY, WEEK, sidebar_page
from tests.helpers import make_conversation, make_user

pytestmark = pytest.mark.django_db


def aged(owner, title, *, days=0, hours=0):
    conversation = make_conversation(owner=owner, title=title)
    moment = timezone.now() - timedelta(days=days, hours=hours)
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=moment)
    conversation.refresh_from_db()
    return conversation


def titles(page):
    return [item.conversation.title for item in page.items]


def test_groups_today_previous_week_and_older_with_one_heading_each():
    me = make_user()
    now = timezone.now()
    aged(me, "old", days=30)
    aged(me, "week", days=3)
    aged(me, "week2", days=4)
    aged(me, "today")
    page = sidebar_page(me, now=now)
    assert titles(page) == ["today", "week", "week2", "old"]
    assert [item.heading for item in page.items] == [TODAY, WEEK, "", OLDER]


def test_pinned_conversations_come_first_and_archived_ones_leave_the_sidebar():
    me = make_user()
    old = aged(me, "old pinned", days=40)
    gone = aged(me, "archived")
    aged(me, "recent")
    services.conversation_pin(conversation=old, pinned=True)
    services.conversation_archive(conversation=gone, archived=True)
    page = sidebar_page(me)
    assert [c.title for c in page.pinned] == ["old pinned"]
    assert titles(page) == ["recent"]
    archived = sidebar_page(me, archived=True)
    assert titles(archived) == ["archived"] and archived.pinned == []


def test_archiving_a_pinned_conversation_unpins_it_and_unarchiving_brings_it_back():
    me = make_user()
    conversation = make_conversation(owner=me, title="x")
    services.conversation_pin(conversation=conversation, pinned=True)
    services.conversation_archive(conversation=conversation, archived=True)
    conversation.refresh_from_db()
    assert conversation.archived and not conversation.pinned
    services.conversation_archive(conversation=conversation, archived=False)
    assert titles(sidebar_page(me)) == ["x"]


def test_pages_cover_every_conversation_once_past_200(settings):
    settings.CHAT_SIDEBAR_PAGE = 60
    me = make_user()
    created = [make_conversation(owner=me, title=f"c{n}") for n in range(230)]
    # Several share one timestamp: the cursor orders by id among them.
    Conversation.objects.filter(pk__in=[c.pk for c in created[100:110]]).update(
        updated_at=created[100].updated_at
    )
    seen, after, pages = [], None, 0
    while True:
        page = sidebar_page(me, after=after)
        seen += [item.conversation.pk for item in page.items]
        pages += 1
        if not page.next_cursor:
            break
        after = page.next_cursor
    assert pages == 4 and len(seen) == len(set(seen)) == 230


def test_a_later_page_does_not_repeat_the_group_heading(settings):
    settings.CHAT_SIDEBAR_PAGE = 2
    me = make_user()
    for n in range(3):
        aged(me, f"old{n}", days=30 + n)
    first = sidebar_page(me)
    second = sidebar_page(me, after=first.next_cursor)
    assert [i.heading for i in first.items] == [OLDER, ""]
    assert [i.heading for i in second.items] == [""] and second.next_cursor == ""


@pytest.mark.parametrize("cursor", ["junk", "1.x", "-5.3", "9" * 50, "99999999999999999999.1"])
def test_a_bad_cursor_shows_the_first_page(cursor):
    me = make_user()
    aged(me, "only")
    assert titles(sidebar_page(me, after=cursor)) == ["only"]


def test_the_sidebar_loads_more_on_scroll_and_has_a_plain_more_link(client, settings):
    settings.CHAT_SIDEBAR_PAGE = 3
    me = make_user()
    for n in range(5):
        aged(me, f"conv {n}", hours=n)
    client.force_login(me)
    page = client.get(reverse("home")).content.decode()
    assert "conv 2" in page and "conv 3" not in page
    first = sidebar_page(me)
    more_url = f"{reverse('sidebar_more')}?after={first.next_cursor}"
    assert (
        f'hx-get="{more_url}" hx-trigger="intersect once"' in page
        and f'<a href="{more_url}">More</a>' in page
    )
    fragment = client.get(more_url, headers={"HX-Request": "true"}).content.decode()
    assert "conv 3" in fragment and "conv 4" in fragment and "<html" not in fragment
    plain = client.get(more_url).content.decode()
    assert "<html" in plain and "conv 3" in plain and "conv 0" not in plain
    # The page has no sidebar: its forms post and come back, they do not swap a sidebar that is not there.
    assert 'id="sidebar-content"' not in plain and 'hx-target="#sidebar-content"' not in plain


def test_pin_and_archive_as_plain_form_posts(client):
    me = make_user()
    conversation = make_conversation(owner=me, title="Keep me")
    client.force_login(me)
    response = client.post(reverse("conversation_pin", args=[conversation.pk]), {"pinned": "1", "next": "/"})
    assert response.status_code == 302 and response.url == "/"
    conversation.refresh_from_db()
    assert conversation.pinned
    assert "Unpin" in client.get(reverse("home")).content.decode()
    response = client.post(
        reverse("conversation_archive", args=[conversation.pk]),
        {"archived": "1", "next": "https://evil.example/"},
    )
    assert response.status_code == 302 and response.url == conversation.get_absolute_url()  # no open redirect
    home = client.get(reverse("home")).content.decode()
    assert 'id="conversation-' + str(conversation.pk) + '"' not in home
    archived = client.get(reverse("archived")).content.decode()
    assert "Keep me" in archived and "Unarchive" in archived
    page = client.get(conversation.get_absolute_url()).content.decode()
    assert "Archived" in page and "Unarchive" in page  # still viewable, and says so


def test_pin_with_htmx_returns_the_sidebar(client):
    me = make_user()
    conversation = make_conversation(owner=me, title="Pin me")
    client.force_login(me)
    response = client.post(
        reverse("conversation_pin", args=[conversation.pk]),
        {"pinned": "1"},
        headers={"HX-Request": "true", "HX-Current-URL": f"http://testserver/c/{conversation.pk}/"},
    )
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith('<div id="sidebar-content"')
    assert "Pinned" in html and 'aria-current="page"' in html


def test_someone_elses_conversation_cannot_be_pinned_or_archived(client):
    other = make_conversation(title="theirs")
    client.force_login(make_user())
    for name, field in (("conversation_pin", "pinned"), ("conversation_archive", "archived")):
        assert client.post(reverse(name, args=[other.pk]), {field: "1"}).status_code == 404
    other.refresh_from_db()
    assert not other.pinned and not other.archived


def test_organise_actions_need_login_post_and_csrf(client):
    me = make_user()
    conversation = make_conversation(owner=me)
    assert (
        client.post(reverse("conversation_pin", args=[conversation.pk]), {"pinned": "1"}).status_code == 302
    )
    client.force_login(me)
    assert client.get(reverse("conversation_pin", args=[conversation.pk])).status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(me)
    assert (
        strict.post(reverse("conversation_archive", args=[conversation.pk]), {"archived": "1"}).status_code
        == 403
    )
    conversation.refresh_from_db()
    assert not conversation.pinned and not conversation.archived
    for name in ("archived", "sidebar_more"):
        assert Client().get(reverse(name)).status_code == 302

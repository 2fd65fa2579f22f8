"""The chat page's second pass: the conversation's actions in its header, the share link's Copy button,
the settings panel closing after Save."""

from __future__ import annotations

import pytest
from django.test import Client

from conversations.models import Conversation
from tests.helpers import make_conversation, make_user

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true", "HX-Current-URL": "http://testserver/c/1/"}


def logged_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def test_the_header_offers_rename_pin_archive_and_delete_of_the_open_conversation(client):
    me = make_user()
    chat = make_conversation(owner=me, title="Plans")
    client.force_login(me)
    page = client.get(chat.get_absolute_url()).content.decode()
    header = page.split('id="conversation-tools"', 1)[1].split('<div class="messages-frame">', 1)[0]
    for action in ("rename", "pin", "archive"):
        assert f'action="/c/{chat.pk}/{action}/"' in header, action
    assert f'href="/c/{chat.pk}/delete/">Delete…</a>' in header  # the same confirmation page as the sidebar
    assert header.count('name="csrfmiddlewaretoken"') >= 3


def test_header_actions_answer_with_the_header_and_the_sidebar_out_of_band(client):
    me = make_user()
    chat = make_conversation(owner=me, title="Plans")
    client.force_login(me)
    headers = {"HX-Request": "true", "HX-Current-URL": f"http://testserver{chat.get_absolute_url()}"}

    renamed = client.post(
        f"/c/{chat.pk}/rename/", {"title": "Better plans", "place": "header"}, headers=headers
    )
    html = renamed.content.decode()
    assert html.lstrip().startswith('<div id="conversation-tools"')
    assert '<h1 id="conversation-title" hx-swap-oob="true">Better plans</h1>' in html
    assert '<div id="sidebar-content" class="sidebar-content" hx-swap-oob="true">' in html
    assert Conversation.objects.get(pk=chat.pk).title == "Better plans"

    pinned = client.post(f"/c/{chat.pk}/pin/", {"pinned": "1", "place": "header"}, headers=headers)
    assert ">Unpin</button>" in pinned.content.decode()
    assert Conversation.objects.get(pk=chat.pk).pinned

    archived = client.post(f"/c/{chat.pk}/archive/", {"archived": "1", "place": "header"}, headers=headers)
    assert '<span class="badge">Archived</span>' in archived.content.decode()
    assert Conversation.objects.get(pk=chat.pk).archived


def test_a_bad_title_from_the_header_is_a_sentence_there_and_changes_nothing(client):
    me = make_user()
    chat = make_conversation(owner=me, title="Plans")
    client.force_login(me)
    headers = {"HX-Request": "true", "HX-Current-URL": f"http://testserver{chat.get_absolute_url()}"}
    response = client.post(f"/c/{chat.pk}/rename/", {"title": "   ", "place": "header"}, headers=headers)
    html = response.content.decode()
    assert 'id="header-rename-error" role="alert"' in html
    assert '<details class="conversation-actions" open>' in html
    assert Conversation.objects.get(pk=chat.pk).title == "Plans"


def test_header_actions_without_javascript_go_back_to_the_conversation(client):
    me = make_user()
    chat = make_conversation(owner=me, title="Plans")
    client.force_login(me)
    back = chat.get_absolute_url()
    assert client.post(f"/c/{chat.pk}/rename/", {"title": "New", "place": "header"}).url == back
    assert client.post(f"/c/{chat.pk}/pin/", {"pinned": "1", "next": back, "place": "header"}).url == back
    assert Conversation.objects.get(pk=chat.pk).pinned
    assert (
        client.post(f"/c/{chat.pk}/archive/", {"archived": "1", "next": back, "place": "header"}).url == back
    )
    chat.refresh_from_db()
    assert (chat.title, chat.archived) == ("New", True)  # (archiving unpins, as from the sidebar)


def test_header_actions_need_the_csrf_token():
    me = make_user()
    chat = make_conversation(owner=me, title="Plans")
    client = logged_in(me, enforce_csrf_checks=True)
    for action, data in (
        ("rename", {"title": "X"}),
        ("pin", {"pinned": "1"}),
        ("archive", {"archived": "1"}),
    ):
        response = client.post(f"/c/{chat.pk}/{action}/", {**data, "place": "header"}, headers=HTMX)
        assert response.status_code == 403, action
    chat.refresh_from_db()
    assert (chat.title, chat.pinned, chat.archived) == ("Plans", False, False)


def test_header_actions_on_someone_elses_conversation_are_404():
    theirs = make_conversation(owner=make_user(), title="Theirs")
    client = logged_in(make_user())
    for action, data in (
        ("rename", {"title": "Mine now"}),
        ("pin", {"pinned": "1"}),
        ("archive", {"archived": "1"}),
    ):
        response = client.post(f"/c/{theirs.pk}/{action}/", {**data, "place": "header"}, headers=HTMX)
        assert response.status_code == 404, action
    assert client.get(f"/c/{theirs.pk}/delete/").status_code == 404
    theirs.refresh_from_db()
    assert (theirs.title, theirs.pinned, theirs.archived) == ("Theirs", False, False)


def test_a_new_share_link_comes_with_a_copy_button_for_it(client, settings):
    settings.CHAT_SHARING = True
    me = make_user()
    chat = make_conversation(owner=me)
    client.force_login(me)
    html = client.post(f"/c/{chat.pk}/share/", headers={"HX-Request": "true"}).content.decode()
    assert 'id="share-url"' in html
    assert '<button type="button" class="copy-share" data-copy-field="share-url">Copy link</button>' in html
    assert "onclick" not in html
    page = client.get(chat.get_absolute_url()).content.decode()
    assert "conversations/copy_field" in page and 'data-copy-field="share-url"' not in page  # shown once only


def test_saving_the_settings_closes_the_panel_and_says_saved(client):
    me = make_user()
    chat = make_conversation(owner=me)
    client.force_login(me)
    data = {"model": chat.model, "system_prompt": "Be brief.", "stop_sequences": ""}
    saved = client.post(f"/c/{chat.pk}/settings/", data, headers={"HX-Request": "true"}).content.decode()
    assert '<details class="settings" id="conversation-settings">' in saved  # closed
    assert 'role="status">· Saved: new replies use these settings.</span>' in saved
    chat.refresh_from_db()
    assert chat.system_prompt == "Be brief."


def test_a_refused_setting_keeps_the_panel_open_with_what_was_typed(client):
    me = make_user()
    chat = make_conversation(owner=me)
    client.force_login(me)
    data = {"model": "no-such-model", "system_prompt": "Kept text", "stop_sequences": ""}
    refused = client.post(f"/c/{chat.pk}/settings/", data, headers={"HX-Request": "true"}).content.decode()
    assert '<details class="settings" id="conversation-settings" open>' in refused
    assert 'class="error" role="alert"' in refused and "Saved" not in refused
    chat.refresh_from_db()
    assert chat.system_prompt == ""


def test_token_counts_of_images_and_pdfs_have_thousands_separators():
    from types import SimpleNamespace

    from django.template.loader import render_to_string

    html = render_to_string(
        "conversations/_attachments.html#media_receipt", {"message": SimpleNamespace(media_tokens=12345)}
    )
    assert "about 12,345 tokens of its input" in html

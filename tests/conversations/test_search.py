"""Search across a person's own conversations: titles and message text, highlighted snippets that are
safe HTML, an index that follows every write (streamed checkpoints, ends, edits, deletes) on whichever
database the suite runs on (SQLite FTS5 or PostgreSQL full-text search)."""

from __future__ import annotations

import re

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.urls import reverse

from conversations import search, services
from conversations.models import Message
from conversations.replies import intents, store
from tests.helpers import eventually, make_conversation, make_message, make_user

pytestmark = pytest.mark.django_db


def hits(user, query):
    return search.search(user=user, query=query)


def test_search_uses_the_databases_own_full_text_index():
    # The suite runs on SQLite and on PostgreSQL: each must have its index, not a fallback scan.
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT count(*) FROM sqlite_master WHERE name = 'conversations_message_fts'")
        else:
            assert connection.vendor == "postgresql"
            cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'message_search'")
        assert cursor.fetchone()[0] == 1


def test_finds_words_in_messages_of_my_conversations_only_newest_first():
    me, other = make_user(), make_user()
    mine = make_conversation(owner=me, title="Trip planning")
    old = make_message(mine, content="The glacier walk starts at nine.")
    new = make_message(mine, role="assistant", content="Bring crampons for the glacier, and water.")
    make_message(make_conversation(owner=other), content="My glacier secret")
    result = hits(me, "glacier")
    assert [h.message_id for h in result.messages] == [new.pk, old.pk]
    assert all(h.conversation_id == mine.pk for h in result.messages)
    assert "<mark>glacier</mark>" in result.messages[0].snippet
    assert result.messages[0].role == "assistant" and result.messages[0].conversation_title == "Trip planning"


def test_every_word_must_match_and_the_last_word_is_a_prefix():
    me = make_user()
    conversation = make_conversation(owner=me)
    both = make_message(conversation, content="Postgres vacuum tuning notes")
    make_message(conversation, content="Postgres replication notes")
    assert [h.message_id for h in hits(me, "postgres vac").messages] == [both.pk]
    assert [h.message_id for h in hits(me, "VACUUM Postgres").messages] == [both.pk]
    assert hits(me, "postgres vacuumed").messages == []


def test_titles_are_searched_and_highlighted():
    me = make_user()
    conversation = make_conversation(owner=me, title="Quarterly budget <draft>")
    make_conversation(title="Quarterly budget of someone else")
    result = hits(me, "budget")
    assert [h.conversation.pk for h in result.titles] == [conversation.pk]
    assert str(result.titles[0].title) == "Quarterly <mark>budget</mark> &lt;draft&gt;"


def test_snippets_escape_the_text_around_the_highlight():
    me = make_user()
    make_message(make_conversation(owner=me), content='<script>alert("x")</script> needle <b>bold</b>')
    snippet = str(hits(me, "needle").messages[0].snippet)
    assert "<script>" not in snippet and "<b>" not in snippet
    assert "&lt;script&gt;" in snippet and "<mark>needle</mark>" in snippet


def test_marker_characters_typed_by_a_person_cannot_unbalance_the_markup():
    me = make_user()
    make_message(make_conversation(owner=me), content="stray \ue001 closer and \ue000 opener around word")
    snippet = str(hits(me, "word").messages[0].snippet)
    assert snippet.count("<mark>") == snippet.count("</mark>") >= 1


def test_query_syntax_is_never_passed_through():
    me = make_user()
    message = make_message(make_conversation(owner=me), content='He said "NEAR" and OR AND NOT * ^')
    for query in ['"near', "or AND not", "NEAR(", "content:near", "*", "a' & b", "near)"]:
        try:
            hits(me, query)
        except search.SearchError:
            pass  # no words at all: a sentence, not a database error
    assert [h.message_id for h in hits(me, '"near" (and)').messages] == [message.pk]


@pytest.mark.parametrize("query", ["", "   ", "!!! ???", "x" * 201])
def test_a_query_without_words_or_too_long_is_a_clear_error(query):
    with pytest.raises(search.SearchError):
        hits(make_user(), query)


def test_the_index_follows_edits_and_deletes():
    me = make_user()
    conversation = make_conversation(owner=me)
    message = make_message(conversation, content="original wording")
    Message.objects.filter(pk=message.pk).update(content="revised phrasing")
    assert hits(me, "original").messages == []
    assert [h.message_id for h in hits(me, "revised").messages] == [message.pk]
    message.refresh_from_db()
    message.delete()
    assert hits(me, "revised").messages == []
    second = make_message(conversation, content="revised again")
    services.conversation_delete(conversation=conversation)
    assert hits(me, "revised").messages == [] and second.pk


def test_text_checkpointed_while_a_reply_streams_is_searchable():
    me = make_user()
    conversation = make_conversation(owner=me)
    reply = make_message(conversation, role="assistant", content="", status=Message.Status.STREAMING)
    store.replies_checkpoint(batch={reply.pk: ("partial answer about fjords", None, "")}, worker="w")
    assert [h.message_id for h in hits(me, "fjords").messages] == [reply.pk]
    store.replies_checkpoint(
        batch={reply.pk: ("partial answer about fjords and lakes", None, "")}, worker="w"
    )
    assert [h.message_id for h in hits(me, "lakes").messages] == [reply.pk]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("offline_claude")
async def test_a_streamed_reply_is_found_by_its_words_once_it_ends():
    me = await sync_to_async(make_user)()
    conversation = await sync_to_async(make_conversation)(owner=me)
    reply = await intents.send(conversation=conversation, text="Tell me about zebrafish")

    @sync_to_async
    def ended():
        message = Message.objects.get(pk=reply.pk)
        return message if message.is_final else None

    final = await eventually(ended, timeout=20)
    assert final.status == Message.Status.COMPLETE and final.content
    asked = {"tell", "me", "about", "zebrafish"}
    word = max((w.lower() for w in re.findall(r"[^\W_]+", final.content) if w.lower() not in asked), key=len)
    result = await sync_to_async(hits)(me, word)
    assert [h.message_id for h in result.messages] == [reply.pk]
    user_turn = await sync_to_async(hits)(me, "zebrafish")
    assert [h.role for h in user_turn.messages][-1] == "user"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("offline_claude")
async def test_a_reply_is_searchable_while_it_streams_from_its_checkpoints():
    me = await sync_to_async(make_user)()
    conversation = await sync_to_async(make_conversation)(owner=me)
    reply = await intents.send(
        conversation=conversation, text="Tell me about narwhals [[offline tps=40 reply_tokens=2000]]"
    )

    @sync_to_async
    def checkpointed_hit():
        message = Message.objects.get(pk=reply.pk)
        if message.status != Message.Status.STREAMING or not message.content:
            return None
        found = hits(me, "narwhals")
        still = Message.objects.get(pk=reply.pk).status == Message.Status.STREAMING
        return found if still and reply.pk in [h.message_id for h in found.messages] else None

    found = await eventually(checkpointed_hit, timeout=20)
    assert found.messages[0].message_id == reply.pk and "<mark>narwhals</mark>" in found.messages[0].snippet
    await intents.stop(user=me, message_id=reply.pk)
    await eventually(sync_to_async(lambda: Message.objects.get(pk=reply.pk).is_final), timeout=20)


def test_archived_conversations_are_searched_and_marked():
    me = make_user()
    conversation = make_conversation(owner=me)
    make_message(conversation, content="archived needle")
    services.conversation_archive(conversation=conversation, archived=True)
    [hit] = hits(me, "needle").messages
    assert hit.archived


def test_a_hit_links_to_the_page_that_shows_its_message(client):
    me = make_user()
    conversation = make_conversation(owner=me)
    target = make_message(conversation, content="needle in the haystack")
    for number in range(60):
        make_message(conversation, content=f"filler {number}")
    client.force_login(me)
    [hit] = hits(me, "haystack").messages
    page = client.get(hit.url.split("#")[0])
    assert page.status_code == 200 and f'id="msg-{target.pk}"'.encode() in page.content


def test_search_page_works_without_javascript_and_with_htmx(client):
    me = make_user()
    make_message(make_conversation(owner=me, title="Cats"), content="whiskers & <paws>")
    make_message(make_conversation(), content="whiskers of someone else")
    client.force_login(me)
    page = client.get(reverse("search"), {"q": "whiskers"}).content.decode()
    assert "<mark>whiskers</mark> &amp; &lt;paws&gt;" in page and "someone else" not in page
    assert 'id="conversation-list"' in page  # the sidebar is there too
    fragment = client.get(
        reverse("search"), {"q": "whiskers"}, headers={"HX-Request": "true"}
    ).content.decode()
    assert "<mark>whiskers</mark>" in fragment and 'id="conversation-list"' not in fragment
    error = client.get(reverse("search"), {"q": "???"}).content.decode()
    assert "Type a word to search for." in error


def test_search_requires_login(client):
    response = client.get(reverse("search"), {"q": "x"})
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_the_sqlite_index_survives_a_table_rebuild():
    """Django rebuilds a SQLite table for some schema changes, which drops its triggers; the
    post-migrate repair puts them back and refills the index."""
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL never rebuilds the table behind the generated column")
    me = make_user()
    conversation = make_conversation(owner=me)
    make_message(conversation, content="before rebuild")
    with connection.cursor() as cursor:
        for suffix in ("insert", "delete", "update"):
            cursor.execute(f"DROP TRIGGER {search.FTS_TABLE}_{suffix}")
    added = make_message(conversation, content="while the triggers were missing")
    search.index_repair(connection)
    assert [h.message_id for h in hits(me, "missing").messages] == [added.pk]
    later = make_message(conversation, content="after the repair")
    assert [h.message_id for h in hits(me, "repair").messages] == [later.pk]

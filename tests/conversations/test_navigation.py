"""Getting around: a search hit in another version opens that version (switched as "<" ">" would, and
said so), a reply's Copy gets its markdown from an owner-only endpoint, the sidebar filters as you
type, and snippets read as plain text."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.urls import reverse

from conversations import search
from conversations.models import Message
from tests.helpers import make_conversation, make_message, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def _message(conversation, role, content, *, parent=None, shown=True, chosen=True, **fields):
    message = Message(
        conversation=conversation,
        role=role,
        content=content,
        parent=parent,
        active=shown,
        chosen=chosen,
        html=f"<p>{content}</p>",
        **fields,
    )
    message.starts_conversation = parent is None
    message.save()
    return message


def branchy():
    """Two versions of the first turn (the newer shown), and two of the shown turn's reply (the newer
    shown): (owner, conversation, messages by name)."""
    owner = make_user()
    conversation = make_conversation(owner=owner)
    old_question = _message(conversation, "user", "Old question about herons", shown=False, chosen=False)
    old_answer = _message(
        conversation, "assistant", "Old answer about pelicans", parent=old_question, shown=False
    )
    question = _message(conversation, "user", "New question about birds")
    first_answer = _message(
        conversation,
        "assistant",
        "First answer mentions albatross",
        parent=question,
        shown=False,
        chosen=False,
    )
    answer = _message(conversation, "assistant", "Second answer", parent=question)
    return (
        owner,
        conversation,
        {
            "old_question": old_question,
            "old_answer": old_answer,
            "question": question,
            "first_answer": first_answer,
            "answer": answer,
        },
    )


@sync_to_async
def shown(conversation) -> list[str]:
    return list(conversation.messages.active().in_order().values_list("content", flat=True))


async def test_opening_a_hit_in_another_version_shows_that_version_and_says_so(async_client):
    owner, conversation, m = await sync_to_async(branchy)()
    await async_client.aforce_login(owner)
    results = (await async_client.get(reverse("search"), {"q": "albatross"})).content.decode()
    show_url = reverse("message_show", args=[m["first_answer"].pk])
    assert f'action="{show_url}"' in results and "Other version" in results

    response = await async_client.post(show_url, {"q": "albatross"})
    assert response.status_code == 302
    assert await shown(conversation) == ["New question about birds", "First answer mentions albatross"]
    target = response.url
    assert f"found={m['first_answer'].pk}" in target and f"version={m['first_answer'].pk}" in target
    assert target.endswith(f"#msg-{m['first_answer'].pk}") and "q=albatross" in target

    page = (await async_client.get(target.split("#")[0])).content.decode()
    assert "Showing version 1 of 2 of this message, where your search matched." in page
    assert f'id="msg-{m["first_answer"].pk}"' in page and "1 / 2" in page


async def test_a_hit_below_another_version_switches_the_turn_above_it_and_follows_to_the_hit(async_client):
    owner, conversation, m = await sync_to_async(branchy)()
    await async_client.aforce_login(owner)
    response = await async_client.post(reverse("message_show", args=[m["old_answer"].pk]), {"q": "pelicans"})
    assert await shown(conversation) == ["Old question about herons", "Old answer about pelicans"]
    assert f"version={m['old_question'].pk}" in response.url
    page = (await async_client.get(response.url.split("#")[0])).content.decode()
    assert "Showing version 1 of 2 of an earlier message: the branch where your search matched." in page

    # Back to the newer first turn with "<" ">": it shows the reply last chosen there, as before.
    await async_client.post(reverse("message_branch", args=[m["old_question"].pk]), {"index": "2"})
    assert await shown(conversation) == ["New question about birds", "Second answer"]


async def test_opening_a_hit_already_shown_changes_nothing_and_says_nothing(async_client):
    owner, conversation, m = await sync_to_async(branchy)()
    await async_client.aforce_login(owner)
    response = await async_client.post(reverse("message_show", args=[m["answer"].pk]))
    assert "version=" not in response.url and f"found={m['answer'].pk}" in response.url
    assert await shown(conversation) == ["New question about birds", "Second answer"]
    page = (await async_client.get(response.url.split("#")[0])).content.decode()
    assert "where your search matched" not in page


async def test_someone_elses_hit_is_404_and_changes_nothing(async_client):
    owner, conversation, m = await sync_to_async(branchy)()
    stranger = await sync_to_async(make_user)()
    await async_client.aforce_login(stranger)
    response = await async_client.post(reverse("message_show", args=[m["first_answer"].pk]))
    assert response.status_code == 404
    assert (await async_client.get(reverse("message_source", args=[m["answer"].pk]))).status_code == 404
    assert await shown(conversation) == ["New question about birds", "Second answer"]
    # A version id of someone else's in the page's address says nothing either.
    mine = await sync_to_async(make_conversation)(owner=stranger)
    page = await async_client.get(mine.get_absolute_url(), {"version": m["first_answer"].pk})
    assert "where your search matched" not in page.content.decode()


async def test_opening_a_hit_while_a_reply_is_written_is_refused_with_a_sentence(async_client):
    owner, conversation, m = await sync_to_async(branchy)()
    await Message.objects.filter(pk=m["answer"].pk).aupdate(status=Message.Status.STREAMING)
    await async_client.aforce_login(owner)
    response = await async_client.post(reverse("message_show", args=[m["first_answer"].pk]), follow=True)
    assert "switching versions" in response.content.decode()
    assert await shown(conversation) == ["New question about birds", "Second answer"]


def test_opening_a_hit_needs_a_post_with_the_csrf_token():
    owner, conversation, m = branchy()
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    url = reverse("message_show", args=[m["first_answer"].pk])
    assert client.get(url).status_code == 405
    assert client.post(url).status_code == 403
    assert list(conversation.messages.active().values_list("pk", flat=True)) == [
        m["question"].pk,
        m["answer"].pk,
    ]


def test_copy_source_is_the_replys_markdown_for_its_owner_only(client):
    owner = make_user()
    text = "Some **bold**\n\n```python\nprint('<hi>')\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |"
    reply = make_message(make_conversation(owner=owner), role="assistant", content=text, html="<p>x</p>")
    page_client = Client()
    page_client.force_login(owner)
    response = page_client.get(reverse("message_source", args=[reply.pk]))
    assert response.status_code == 200 and response.content.decode() == text
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    page = page_client.get(reply.conversation.get_absolute_url()).content.decode()
    assert f'data-copy-source="{reverse("message_source", args=[reply.pk])}"' in page
    assert client.get(reverse("message_source", args=[reply.pk])).status_code == 302  # to the login page
    client.force_login(make_user())
    assert client.get(reverse("message_source", args=[reply.pk])).status_code == 404


def test_snippets_read_as_plain_text_escaped_and_highlighted():
    me = make_user()
    make_message(
        make_conversation(owner=me),
        role="assistant",
        content="## Setup\n\nUse **pelican** with `pip install <pelican>` and [the docs](https://x.test/a_b).\n\n"
        "```bash\npelican --init\n```\n\n| Tool | Use |\n|---|---|\n| *pelican* | sites |",
    )
    [hit] = search.search(user=me, query="pelican").messages
    snippet = str(hit.snippet)
    for syntax in ("**", "##", "`", "](", "https://", "|---", "```"):
        assert syntax not in snippet, (syntax, snippet)
    assert "<mark>pelican</mark>" in snippet and "&lt;<mark>pelican</mark>&gt;" in snippet
    assert "the docs" in snippet and "<script" not in snippet


def test_plain_snippet_keeps_words_and_snake_case():
    assert search.plain_snippet("a snake_case_name and *stress* and 2 * 3") == (
        "a snake_case_name and stress and 2 * 3"
    )
    assert search.plain_snippet("> quoted\n- item\n1. first\n# Title") == "quoted item first Title"


def test_the_sidebar_filters_as_you_type_and_comes_back_when_emptied(client):
    me = make_user()
    cats = make_conversation(owner=me, title="Cats and **whiskers**")
    make_message(make_conversation(owner=me, title="Dogs"), content="a dog with `whiskers` too")
    make_conversation(owner=make_user(), title="Someone else's whiskers")
    client.force_login(me)
    sidebar = {"HX-Request": "true", "HX-Target": "conversation-list"}
    fragment = client.get(reverse("search"), {"q": "whisk"}, headers=sidebar).content.decode()
    assert cats.get_absolute_url() in fragment and "Someone else" not in fragment
    assert "<mark>whiskers</mark> too" in fragment and "`" not in fragment
    assert "<li" in fragment and "<ul" not in fragment  # the list's items only
    none = client.get(reverse("search"), {"q": "zebra"}, headers=sidebar).content.decode()
    assert "Nothing matches “zebra”." in none
    bad = client.get(reverse("search"), {"q": "x" * 201}, headers=sidebar).content.decode()
    assert "Search for at most 200 characters." in bad
    emptied = client.get(reverse("search"), {"q": ""}, headers=sidebar).content.decode()
    assert cats.get_absolute_url() in emptied and "Dogs" in emptied and "Nothing matches" not in emptied

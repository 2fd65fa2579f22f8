"""Pages and form posts: login, isolation, the no-JavaScript paths, escaping."""

from __future__ import annotations

import pytest
from django.urls import reverse

from conversations.models import Conversation, Message
from tests.helpers import make_conversation, make_message, make_user

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name, args", [("home", []), ("conversation", [1]), ("billing:my_usage", [])])
def test_pages_require_login(client, name, args):
    response = client.get(reverse(name, args=args))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_sign_up_logs_in_and_lands_on_the_chat(client):
    response = client.post(
        reverse("signup"),
        {"username": "ada", "password1": "a-Long-passw0rd!", "password2": "a-Long-passw0rd!"},
    )
    assert response.status_code == 302
    page = client.get(reverse("home"))
    assert page.status_code == 200 and b"ada" in page.content and b"What can I help with?" in page.content


@pytest.mark.django_db(transaction=True)  # the async views reach the database from their own threads
def test_another_users_conversation_is_404_everywhere(client):
    owner, intruder = make_user(), make_user()
    conversation = make_conversation(owner=owner)
    reply = make_message(conversation, role="assistant", status="error", content="x")
    client.force_login(intruder)
    assert client.get(reverse("conversation", args=[conversation.pk])).status_code == 404
    for name in ("conversation_rename", "conversation_delete", "conversation_settings", "message_send"):
        assert (
            client.post(reverse(name, args=[conversation.pk]), {"title": "x", "message": "x"}).status_code
            == 404
        )
    for name in ("reply_stop", "reply_retry", "reply_continue"):
        assert client.post(reverse(name, args=[reply.pk])).status_code == 404
    conversation.refresh_from_db()
    assert conversation.title == "" and Conversation.objects.filter(pk=conversation.pk).exists()


def test_sidebar_lists_only_my_conversations_most_recently_active_first(client):
    me = make_user()
    first = make_conversation(owner=me, title="First")
    make_conversation(owner=me, title="Second")
    make_conversation(title="Someone else's")
    client.force_login(me)
    content = client.get(reverse("home")).content.decode()
    assert content.index("Second") < content.index("First")
    assert "Someone else" not in content
    client.post(reverse("conversation_rename", args=[first.pk]), {"title": "First, renamed"})
    content = client.get(reverse("home")).content.decode()
    assert content.index("First, renamed") < content.index("Second")  # activity moves it to the top


def test_text_is_escaped_and_markdown_is_sanitised(client):
    me = make_user()
    conversation = make_conversation(owner=me, title="<b>t</b>")
    make_message(conversation, content="<script>alert('u')</script>")
    from conversations.rendering import render_markdown

    make_message(
        conversation,
        role="assistant",
        content="x",
        html=render_markdown("<img src=x onerror=alert(1)> [a](javascript:alert(2))"),
    )
    client.force_login(me)
    content = client.get(reverse("conversation", args=[conversation.pk])).content.decode()
    assert "<script>alert('u')</script>" not in content and "&lt;script&gt;" in content
    assert "<img" not in content  # raw HTML in markdown is shown as text, never rendered
    assert 'href="javascript' not in content
    assert "<b>t</b>" not in content


def test_rename_settings_and_delete(client):
    me = make_user()
    conversation = make_conversation(owner=me)
    client.force_login(me)
    response = client.post(
        reverse("conversation_rename", args=[conversation.pk]),
        {"title": "Trip plans"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200 and b"Trip plans" in response.content
    bad = client.post(
        reverse("conversation_settings", args=[conversation.pk]), {"model": "gpt-9", "system_prompt": ""}
    )
    assert bad.status_code == 302
    conversation.refresh_from_db()
    assert conversation.model == "claude-sonnet-5-5"
    client.post(
        reverse("conversation_settings", args=[conversation.pk]),
        {"model": "claude-haiku-5-5", "system_prompt": "Be brief."},
    )
    conversation.refresh_from_db()
    assert (conversation.model, conversation.system_prompt) == ("claude-haiku-5-5", "Be brief.")
    confirm = client.get(reverse("conversation_delete", args=[conversation.pk]))
    assert b"cannot be undone" in confirm.content
    client.post(reverse("conversation_delete", args=[conversation.pk]))
    assert not Conversation.objects.filter(pk=conversation.pk).exists()


@pytest.mark.django_db(transaction=True)  # the async view reaches the database from its own threads
def test_too_long_first_message_keeps_the_draft_and_creates_nothing(client):
    me = make_user()
    client.force_login(me)
    response = client.post(
        reverse("conversation_create"), {"message": "x" * 40000, "model": "claude-sonnet-5-5"}
    )
    assert response.status_code == 400 and b"too long" in response.content
    assert ("x" * 40000).encode() in response.content  # what the person typed is still in the composer
    assert not Conversation.objects.filter(owner=me).exists()


@pytest.mark.django_db(transaction=True)
def test_a_first_message_over_budget_is_refused_and_no_conversation_is_ever_made(client):
    from django.core.management import call_command
    from django.db.models.signals import post_delete

    from billing.models import BudgetPolicy, UserBudget
    from tests.conversations.replies.test_chat_budget import PRICES

    call_command("load_prices", str(PRICES), verbosity=0)  # a flushed database has lost the seeded prices
    me = make_user()
    UserBudget.objects.create(user=me, policy=BudgetPolicy.LIMIT, monthly_limit=1)  # a millionth of a cent
    client.force_login(me)
    deleted = []

    def conversation_deleted(sender, instance, **kwargs):
        deleted.append(instance.pk)

    post_delete.connect(conversation_deleted, sender=Conversation)
    try:
        response = client.post(
            reverse("conversation_create"), {"message": "Plan my week", "model": "claude-sonnet-5-5"}
        )
    finally:
        post_delete.disconnect(conversation_deleted, sender=Conversation)
    assert (
        response.status_code == 400 and b"budget" in response.content and b"Plan my week" in response.content
    )
    assert not Conversation.objects.filter(owner=me).exists()
    assert deleted == []  # it was never stored (one transaction), not made and then deleted again


def test_the_api_key_never_reaches_the_page(client, settings):
    settings.ANTHROPIC_API_KEY = "sk-ant-secret-value"
    me = make_user()
    conversation = make_conversation(owner=me)
    make_message(conversation, role="assistant", content="hi", html="<p>hi</p>")
    client.force_login(me)
    content = client.get(reverse("conversation", args=[conversation.pk])).content.decode()
    assert "sk-ant-secret-value" not in content
    assert "Offline Claude" not in content  # real Claude configured: no offline badge


def test_offline_badge_when_no_key(client):
    client.force_login(make_user())
    assert b"Offline Claude" in client.get(reverse("home")).content


@pytest.mark.django_db(transaction=True)
async def test_first_message_without_javascript_creates_the_conversation_and_streams_on_the_server(
    async_client, offline_claude
):
    from asgiref.sync import sync_to_async

    from conversations.replies.generation import generation_wait

    me = await sync_to_async(make_user)()
    await async_client.aforce_login(me)
    response = await async_client.post(
        reverse("conversation_create"),
        {"message": "Hello there [[offline reply_tokens=20]]", "model": "claude-haiku-5-5"},
    )
    conversation = await Conversation.objects.aget(owner=me)
    assert response.status_code == 302 and response.url == conversation.get_absolute_url()
    assert conversation.model == "claude-haiku-5-5" and conversation.title.startswith("Hello there")
    reply = await conversation.messages.aget(role=Message.Role.ASSISTANT)
    await generation_wait(reply.pk)
    await reply.arefresh_from_db()
    assert reply.status == Message.Status.COMPLETE, reply.error


@pytest.mark.django_db(transaction=True)
async def test_retry_and_continue_work_without_javascript(async_client, offline_claude):
    from asgiref.sync import sync_to_async

    from conversations.replies.generation import generation_wait

    me = await sync_to_async(make_user)()
    conversation = await sync_to_async(make_conversation)(owner=me)
    await sync_to_async(make_message)(conversation, content="Hi [[offline reply_tokens=10]]")
    failed = await sync_to_async(make_message)(conversation, role="assistant", content="Par", status="error")
    await async_client.aforce_login(me)

    response = await async_client.post(reverse("reply_retry", args=[failed.pk]))
    assert response.status_code == 302
    retried = await conversation.messages.filter(role="assistant").order_by("-pk").afirst()
    assert retried.pk != failed.pk  # a new version: the failed one keeps its text
    await generation_wait(retried.pk)
    await retried.arefresh_from_db()
    await failed.arefresh_from_db()
    assert retried.status == Message.Status.COMPLETE
    assert (failed.content, failed.status, failed.active) == ("Par", "error", False)

    await Message.objects.filter(pk=retried.pk).aupdate(status=Message.Status.CUT_OFF)
    first_part = retried.content
    response = await async_client.post(reverse("reply_continue", args=[retried.pk]))
    assert response.status_code == 302
    await generation_wait(retried.pk)
    await retried.arefresh_from_db()
    assert retried.status == Message.Status.COMPLETE  # the same reply, extended
    assert retried.content.startswith(first_part) and len(retried.content) > len(first_part)
    roles = [m.role async for m in conversation.messages.active().in_order()]
    assert roles == ["user", "assistant"]

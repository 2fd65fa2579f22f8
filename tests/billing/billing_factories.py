"""Plain factory functions for the billing tests (imported by the test modules)."""

from __future__ import annotations

import itertools

from django.contrib.auth import get_user_model

from billing.services import usage_record
from conversations.models import Conversation, Message

_counter = itertools.count(1)


def make_user(username: str | None = None, **fields):
    username = username or f"user{next(_counter)}"
    return get_user_model().objects.create_user(username=username, password="pw-not-secret-123", **fields)


def make_staff(username: str | None = None):
    return make_user(username, is_staff=True, is_superuser=True)


def make_conversation(owner, title: str = "A chat", model: str = "claude-sonnet-4-6") -> Conversation:
    return Conversation.objects.create(owner=owner, title=title, model=model)


def make_message(conversation: Conversation, role: str = "assistant", content: str = "Hello") -> Message:
    return Message.objects.create(
        conversation=conversation, role=role, content=content, model=conversation.model
    )


def record_call(
    user,
    *,
    model: str = "claude-sonnet-4-6",
    conversation: Conversation | None = None,
    message: Message | None = None,
    purpose: str = "reply",
    estimated: bool = False,
    **usage,
):
    """One ledger row for `user`, like the chat's generation code writes it."""
    return usage_record(
        user_id=user.pk,
        username=user.username,
        conversation_id=conversation.pk if conversation else None,
        conversation_title=conversation.title if conversation else "",
        message_id=message.pk if message else None,
        model=model,
        request_id="req_test",
        usage=usage,
        estimated=estimated,
        purpose=purpose,
    )

"""Factories for the retention and erasure tests: a conversation with everything that hangs off it."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from conversations.attachments import attachment_store, check_upload
from conversations.models import Conversation, ShareLink, share_token_hash
from tests.billing.billing_factories import make_conversation, make_message, record_call
from tests.media_factories import image_bytes, upload


def full_conversation(
    owner, *, days_idle: int, words: str = "hello", pinned: bool = False, cost_tokens: int = 1000
):
    """A conversation of `owner` last active `days_idle` days ago, with a user turn, a billed reply, an
    attached image (its file in storage) and a share link. Returns (conversation, ledger row)."""
    conversation = make_conversation(owner=owner, title=f"About {words}", pinned=pinned)
    question = make_message(conversation, role="user", content=f"Tell me about {words}")
    reply = make_message(conversation, content=f"Here is {words}")
    attachment = attachment_store(
        owner=owner, conversation=conversation, checked=check_upload(upload("chart.png", image_bytes()))
    )
    attachment.message = question
    attachment.save()
    ShareLink.objects.create(conversation=conversation, token_hash=share_token_hash(f"t-{conversation.pk}"))
    row = record_call(
        owner, conversation=conversation, message=reply, input_tokens=cost_tokens, output_tokens=7
    )
    Conversation.objects.filter(pk=conversation.pk).update(
        updated_at=timezone.now() - timedelta(days=days_idle)
    )
    return conversation, row

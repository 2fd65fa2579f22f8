"""Factory functions for the billing tests: the shared ones from tests.helpers, plus ledger rows."""

from __future__ import annotations

from billing.services import usage_record
from billing.usage import LedgerLabels, Usage
from tests import helpers
from tests.helpers import make_conversation, make_user  # re-exported: the billing tests import them from here

__all__ = ["MODEL", "make_conversation", "make_message", "make_staff", "make_user", "record_call"]

#: The model of tests.helpers.make_conversation, so a conversation and its ledger rows agree by default.
MODEL = "claude-sonnet-5-5"


def make_staff(username: str | None = None):
    return make_user(username, is_staff=True, is_superuser=True)


def make_message(conversation, role: str = "assistant", content: str = "Hello"):
    """An assistant message by default: the kind of message the ledger bills."""
    return helpers.make_message(conversation, role=role, content=content, model=conversation.model)


def record_call(
    user,
    *,
    model: str = MODEL,
    conversation=None,
    message=None,
    purpose: str = "reply",
    estimated: bool = False,
    **counts,
):
    """One ledger row for `user`, like the chat's generation code writes it; `counts` are Usage fields."""
    return usage_record(
        labels=LedgerLabels(
            user_id=user.pk,
            username=user.username,
            conversation_id=conversation.pk if conversation else None,
            conversation_title=conversation.display_title if conversation else "",
            model=model,
        ),
        message_id=message.pk if message else None,
        request_id="req_test",
        usage=Usage(**counts),
        estimated=estimated,
        purpose=purpose,
    )

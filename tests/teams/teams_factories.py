"""Factory functions for the teams tests: teams, memberships, and ledger rows written at a chosen time."""

from __future__ import annotations

from datetime import datetime
from unittest import mock

from django.contrib.auth import get_user_model
from django.utils import timezone

from billing.services import usage_record
from billing.usage import LedgerLabels, Usage
from teams.models import Membership, Team
from tests.helpers import make_conversation

__all__ = ["MODEL", "join", "make_conversation", "make_team", "make_user", "record_call_at"]

MODEL = "claude-sonnet-5-5"


def make_user(username: str, **fields):
    """An account without a password (tests log in with force_login): no slow password hashing."""
    return get_user_model().objects.create_user(username=username, **fields)


def make_team(name: str, *, managers=(), members=(), monthly_limit: int | None = None) -> Team:
    team = Team.objects.create(name=name, monthly_limit=monthly_limit)
    team.managers.add(*managers)
    for member in members:
        join(member, team)
    return team


def join(user, team: Team, since: datetime | None = None) -> Membership:
    """Put `user` in `team` (their one team: moving them out of any other) from `since` (default: now)."""
    membership, _ = Membership.objects.update_or_create(
        user=user, defaults={"team": team, "since": since or timezone.now()}
    )
    return membership


def record_call_at(
    when: datetime,
    user,
    *,
    model: str = MODEL,
    conversation=None,
    purpose: str = "reply",
    **counts,
):
    """One ledger row for `user` made at `when`, under the team they are in at that moment."""
    with mock.patch.object(timezone, "now", return_value=when):
        return usage_record(
            labels=LedgerLabels(
                user_id=user.pk,
                username=user.username,
                conversation_id=conversation.pk if conversation else None,
                conversation_title=conversation.display_title if conversation else "",
                model=model,
            ),
            message_id=None,
            request_id="req_statement_test",
            usage=Usage(**counts),
            estimated=False,
            purpose=purpose,
        )

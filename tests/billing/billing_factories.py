"""Factory functions for the billing tests: the shared ones from tests.helpers, plus ledger rows, teams
and the organisation's cap."""

from __future__ import annotations

import itertools
import threading

from django.db import close_old_connections, connection

from billing.services import usage_record
from billing.usage import LedgerLabels, Usage
from tests import helpers
from tests.helpers import make_conversation, make_user  # re-exported: the billing tests import them from here

__all__ = [
    "MODEL",
    "join_team",
    "make_conversation",
    "make_manager",
    "make_message",
    "make_staff",
    "make_team",
    "make_user",
    "record_call",
    "run_in_threads",
    "set_organisation_cap",
]

#: The model of tests.helpers.make_conversation, so a conversation and its ledger rows agree by default.
MODEL = "claude-sonnet-5-5"

_team_numbers = itertools.count(1)


def make_staff(username: str | None = None):
    return make_user(username, is_staff=True, is_superuser=True)


def make_manager(first_name: str, last_name: str, **fields):
    """A person with a name a member would be told to ask, and an address budget alerts are mailed to."""
    username = f"{first_name}.{last_name}".lower()
    return make_user(
        username, first_name=first_name, last_name=last_name, email=f"{username}@example.org", **fields
    )


def make_team(
    name: str | None = None,
    *,
    limit: int | None = None,
    managers=(),
    members=(),
    warning_percent: int = 80,
):
    """A team with a monthly budget of `limit` pUSD (None: no team budget), its managers and members."""
    from teams.models import Team

    team = Team.objects.create(
        name=name or f"Team {next(_team_numbers)}", monthly_limit=limit, warning_percent=warning_percent
    )
    team.managers.add(*managers)
    for user in members:
        join_team(user, team)
    return team


def join_team(user, team) -> None:
    """Put `user` in `team`, out of the one they were in (a user is in at most one team)."""
    from teams.models import Membership

    Membership.objects.update_or_create(user=user, defaults={"team": team})


def set_organisation_cap(limit: int | None, *, warning_percent: int = 80):
    """The organisation's monthly cap on everyone's spend together, in pUSD (None: no cap)."""
    from billing.models import OrganisationBudget

    budget, _created = OrganisationBudget.objects.update_or_create(
        pk=1, defaults={"monthly_limit": limit, "warning_percent": warning_percent}
    )
    return budget


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


def run_in_threads(work, count: int) -> list:
    """`work(index)` in `count` threads released at once (a barrier); each outcome, or the exception it
    raised. Every thread closes its own database connection."""
    barrier = threading.Barrier(count)
    outcomes: list = [None] * count

    def runner(index: int) -> None:
        try:
            barrier.wait()
            outcomes[index] = work(index)
        except Exception as exc:  # noqa: BLE001 - the test inspects every outcome
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    close_old_connections()
    return outcomes

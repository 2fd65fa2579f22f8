"""A Send's database work is lean (issue 28): on SQLite, where the Send's transaction holds the write lock
from its first statement, the rows its budget hold decides on are read along with the conversation
(billing/hold_state.py) instead of one locking read each. These tests pin the statement count and check
that the hold read ahead decides exactly what the hold read row by row decides."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.hold_state import read_ahead
from billing.models import SiteBudget, SpendReservation, UserBudget
from billing.money import usd_to_pico
from billing.services import SpendRefused, spend_reserve
from conversations.inputs import model_choice
from conversations.replies import intents
from conversations.replies.send_sql import send_state

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "billing"))
from billing_factories import (  # noqa: E402
    make_conversation,
    make_message,
    make_team,
    make_user,
    record_call,
    set_organisation_cap,
)

PRICES = Path(__file__).resolve().parents[3] / "billing" / "prices" / "anthropic-2026-11.json"


@pytest.fixture(autouse=True)
def prices():
    call_command("load_prices", str(PRICES), verbosity=0)


def send(conversation, text="How do owls fly so quietly?"):
    """A Send's whole trip to the database (what the websocket consumer runs in the database thread)."""
    sent = intents._send_in_database.func(conversation, text, (), None)
    if sent.refused is not None:
        raise sent.refused
    return sent


@pytest.mark.django_db
@pytest.mark.parametrize("budget_usd", ["unlimited", "20"])
def test_a_send_stores_both_turns_and_its_hold_in_8_statements_on_sqlite(settings, budget_usd):
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL locks the hold's rows one by one (billing/services.py)")
    settings.CHAT_DEFAULT_MONTHLY_BUDGET_USD = budget_usd
    owner = make_user()
    first, later = make_conversation(owner=owner), make_conversation(owner=owner)
    send(first)  # their first Send, in another conversation: a returning user's next one is measured
    with CaptureQueriesContext(connection) as queries:
        sent = send(later)
    # Inside the test's own transaction the Send's BEGIN is a SAVEPOINT and its COMMIT a RELEASE: leave
    # them out, and count the BEGIN a Send runs on its own (bench/send_trip.py counts it too).
    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert 1 + len(statements) <= 8, "\n".join(statements)
    # And it did all a Send does: both turns, the reply leased, its hold taken, the request built.
    assert sent.user_message.pk and sent.assistant.status == "streaming" and sent.assistant.lease_until
    assert SpendReservation.objects.filter(message_id=sent.assistant.pk, settled_at__isnull=True).exists()
    assert sent.context.request.messages[-1] == {"role": "user", "content": "How do owls fly so quietly?"}


def _both_ways(user, conversation, **call) -> tuple:
    """The hold a Send would take, decided from the rows read ahead and then from the rows read one by
    one (each in a transaction rolled back): (granted, held) or the refusal's text, for each."""
    outcomes = []
    for ahead in (True, False):
        try:
            with transaction.atomic():
                state = None
                if ahead:
                    state = send_state(conversation.pk, timezone.now()).hold
                    assert state is not None
                message = make_message(conversation)
                granted = spend_reserve(
                    user=user,
                    model=conversation.model,
                    message_id=message.pk,
                    team=model_choice(user.pk).team,
                    state=state,
                    **call,
                )
                held = SpendReservation.objects.get(message_id=message.pk).amount
                outcomes.append((granted, held))
                raise _RollBack
        except SpendRefused as exc:
            outcomes.append(str(exc))
        except _RollBack:
            pass
    return tuple(outcomes)


class _RollBack(Exception):
    pass


@pytest.mark.django_db
def test_the_hold_read_ahead_decides_as_the_hold_read_row_by_row(settings):
    if not read_ahead():
        pytest.skip("only SQLite reads the hold's rows ahead")
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 3
    call = {"prompt_tokens": 2_000, "max_tokens": 64_000}
    user = make_user()
    conversation = make_conversation(owner=user)

    # The site default as configured, no rows at all.
    settings.CHAT_DEFAULT_MONTHLY_BUDGET_USD = "5"
    ahead, row_by_row = _both_ways(user, conversation, **call)
    assert ahead == row_by_row

    # Part of the month spent and a reply in progress: what is left shortens the reply.
    record_call(user, conversation=conversation, input_tokens=1_000_000, output_tokens=200_000)
    streaming = make_message(conversation)
    spend_reserve(user=user, model=conversation.model, message_id=streaming.pk, **call)
    ahead, row_by_row = _both_ways(user, conversation, **call)
    assert ahead == row_by_row and isinstance(ahead, tuple) and ahead[0] < call["max_tokens"]

    # The site's own row, the person's own row with a personal cap below it.
    SiteBudget.objects.update_or_create(
        pk=1, defaults={"policy": "limit", "monthly_limit": usd_to_pico("50")}
    )
    UserBudget.objects.update_or_create(user=user, defaults={"personal_limit": usd_to_pico("4.50")})
    assert _both_ways(user, conversation, **call)[0] == _both_ways(user, conversation, **call)[1]

    # A team with a budget and an organisation cap: the shortest level binds, both ways alike.
    UserBudget.objects.filter(user=user).update(personal_limit=None)
    make_team(limit=usd_to_pico("100"), members=[user])
    set_organisation_cap(usd_to_pico("4.20"))
    ahead, row_by_row = _both_ways(user, conversation, **call)
    assert ahead == row_by_row

    # Used up at the organisation: both refuse, with the same sentence.
    set_organisation_cap(usd_to_pico("1"))
    ahead, row_by_row = _both_ways(user, conversation, **call)
    assert isinstance(ahead, str) and ahead == row_by_row

    # The rate limit counts the holds read ahead too.
    set_organisation_cap(None)
    for _ in range(2):
        spend_reserve(user=user, model=conversation.model, message_id=make_message(conversation).pk, **call)
    ahead, row_by_row = _both_ways(user, conversation, **call)
    assert "too fast" in ahead and ahead == row_by_row

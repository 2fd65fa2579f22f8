"""Budget alerts are mailed by a thread of their own: a slow or failing mail server never holds the
ledger write (a worker's database thread) that noticed the alert, and each alert is still mailed once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from billing_factories import make_manager, make_team, make_user, record_call
from django.core.management import call_command

from billing import alerts
from billing.models import BudgetAlert
from billing.money import usd_to_pico

pytestmark = pytest.mark.django_db(transaction=True)
PRICES = Path(__file__).resolve().parents[2] / "billing" / "prices" / "anthropic-2026-11.json"


@pytest.fixture(autouse=True)
def _background_mail(settings):
    settings.CHAT_BUDGET_ALERTS_INLINE = False
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    call_command("load_prices", str(PRICES), verbosity=0)
    yield
    assert alerts.wait_for_delivery(10)


def test_a_slow_mail_server_does_not_hold_the_ledger_write_and_the_alert_is_mailed_once(monkeypatch):
    manager = make_manager("Grace", "Hopper")
    member = make_user("ada")
    make_team("Lab", limit=usd_to_pico(1), managers=[manager], members=[member])
    released = threading.Event()
    sent: list[tuple[str, list[str], bool]] = []

    def slow_send_mail(subject, body, sender, recipients):
        # Held until the test says the ledger write has returned: inline, the write would wait here.
        released.wait(timeout=5)
        sent.append((subject, recipients, released.is_set()))

    monkeypatch.setattr(alerts, "send_mail", slow_send_mail)

    record_call(member, output_tokens=90_000)  # $0.90 of the team's $1: past 80 %
    released.set()  # only reached because the write did not wait for the mail

    assert alerts.wait_for_delivery(10)
    assert [(recipients, in_time) for _subject, recipients, in_time in sent] == [
        (["grace.hopper@example.org"], True)
    ]
    assert BudgetAlert.objects.get().notified_at is not None


def test_a_failed_send_is_tried_again_at_the_next_alert_and_never_twice(monkeypatch):
    manager = make_manager("Grace", "Hopper")
    member = make_user("ada")
    make_team("Lab", limit=usd_to_pico(1), managers=[manager], members=[member])
    attempts: list[str] = []

    def failing_then_working(subject, body, sender, recipients):
        attempts.append(subject)
        if len(attempts) == 1:
            raise OSError("connection refused")

    monkeypatch.setattr(alerts, "send_mail", failing_then_working)

    record_call(member, output_tokens=90_000)  # 80 %: the mail server is down
    assert alerts.wait_for_delivery(10)
    assert BudgetAlert.objects.get().notified_at is None  # released for the next attempt
    record_call(member, output_tokens=20_000)  # 110 %: a second alert wakes the mailer

    assert alerts.wait_for_delivery(10)
    assert len(attempts) == 3  # the 80 % alert twice (failed, then sent), the 100 % once
    assert sorted(a.percent for a in BudgetAlert.objects.filter(notified_at__isnull=False)) == [80, 100]

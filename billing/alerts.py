"""Budget alerts: a budget crossing its warning threshold, or used up, once per level and month.

Crossings are noticed where spend changes: `note_crossings` runs in the transaction that writes a ledger
row (that row's cost is what crossed), and `note_refusal` after a call was refused because a level was
used up. The write whose cost crosses sees every other write's cost at that level, because two ledger
writes at one level lock a row in common before the check: the person's budget row, the team's monthly
rollup, the organisation's budget row (usage_record takes it first when it has a cap). Each alert is a
row whose key (scope, subject, month, threshold) is unique, so two workers noticing the same crossing
store it once; `deliver_pending` claims a row (`notified_at`) before mailing it, so it is mailed once.
Team alerts go to the team's managers, the organisation's to staff, a member's own budget to their
team's managers; the person sees their state as a banner.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import connection, transaction
from django.utils import timezone

from billing.levels import ORGANISATION, TEAM, UNREAD, USER, Level, levels_for, read_standing
from billing.models import AlertScope, BudgetAlert, UsageRecord, UserBudget
from billing.money import format_money_together
from billing.periods import Period, current_month
from teams.models import Team

logger = logging.getLogger(__name__)


def _crossed(level: Level, cost: int) -> list[int]:
    """The thresholds (warning %, 100) that spending `cost` more made `level` cross."""
    if level.limit is None or cost <= 0:
        return []
    before, after = level.spent - cost, level.spent
    return [
        percent
        for percent in (level.warning_percent, 100)
        if before * 100 < level.limit * percent <= after * 100
    ]


def _store(level: Level, period: Period, percent: int, subject_name: str) -> None:
    BudgetAlert.objects.bulk_create(
        [
            BudgetAlert(
                scope=level.scope,
                subject_id=level.subject_id,
                subject_name=subject_name[:150],
                month=period.first_day,
                percent=percent,
                limit=level.limit or 0,
                spent=level.spent,
            )
        ],
        ignore_conflicts=True,  # the same crossing noticed by another worker: stored once
    )


def _name(level: Level, username: str) -> str:
    if level.scope == USER:
        return username
    return level.name or ("organisation" if level.scope == ORGANISATION else "team")


def note_crossings(
    record: UsageRecord, budget: UserBudget | None, site_default, *, organisation=UNREAD
) -> None:
    """Store the alerts a new ledger row's cost made its levels cross (call in the row's transaction);
    they are mailed once it commits. Reads spend in one statement, only when some level has a limit."""
    if record.cost <= 0:
        return
    levels = levels_for(
        record.user_id, budget, site_default, lock=False, team_id=record.team_id, organisation=organisation
    )
    if not levels.limited():
        return
    period = current_month(record.created_at)
    read_standing(levels, period, timezone.now(), with_holds=False)
    stored = False
    for level in levels.limited():
        for percent in _crossed(level, record.cost):
            _store(level, period, percent, _name(level, record.username))
            stored = True
    if stored:
        transaction.on_commit(deliver_soon)


def note_refusal(level: Level | None, *, username: str) -> None:
    """A call was refused because `level` is used up: its 100 % alert (stored once, mailed once), which
    no ledger row stored when the budget was lowered below what was already spent. A refusal because
    the call was too dear for what is left (other replies' holds, a long prompt) alerts nothing: the
    budget is not reached. Call outside the refused transaction (its writes were rolled back)."""
    if level is None or not level.exhausted:
        return
    _store(level, current_month(), 100, _name(level, username))
    deliver_soon()


class _Mailer:
    """One thread per process that mails stored alerts when told there may be some: an SMTP server that
    is slow or down (up to the mail timeout per attempt) never holds the thread that noticed the alert,
    which is a worker's database thread. A failed send is tried again at the next alert."""

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        with self._lock:
            self._idle.clear()
            self._wake.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="budget-alert-mail", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            if not self._wake.wait(timeout=60):
                with self._lock:  # idle for a minute: end, unless woken meanwhile
                    if not self._wake.is_set():
                        self._thread = None
                        return
                continue
            self._wake.clear()
            try:
                deliver_pending()
            except Exception:
                logger.exception("Budget alerts could not be delivered; they will be tried again")
            finally:
                connection.close()  # this thread's own connection, never shared
            with self._lock:
                if not self._wake.is_set():
                    self._idle.set()

    def wait(self, timeout: float = 10) -> bool:
        """Until every alert noticed so far was handled (tests, management commands)."""
        return self._idle.wait(timeout)


_mailer = _Mailer()


def deliver_soon() -> None:
    """Mail the stored alerts nobody has mailed yet: on the mailer thread, or here and now with
    CHAT_BUDGET_ALERTS_INLINE (a single-threaded script, or a test reading the outbox of its own
    uncommitted transaction)."""
    if settings.CHAT_BUDGET_ALERTS_INLINE:
        deliver_pending()
    else:
        _mailer.wake()


def wait_for_delivery(timeout: float = 10) -> bool:
    return _mailer.wait(timeout)


def _recipients(alert: BudgetAlert) -> list[str]:
    users = get_user_model().objects.filter(is_active=True).exclude(email="")
    if alert.scope == AlertScope.ORGANISATION:
        users = users.filter(is_staff=True)
    elif alert.scope == AlertScope.TEAM:
        users = users.filter(managed_teams__pk=alert.subject_id)
    else:
        # A member's own budget: their team's managers (the person sees it as a banner).
        team_ids = Team.objects.filter(memberships__user_id=alert.subject_id).values("pk")
        users = users.filter(managed_teams__pk__in=team_ids)
    return sorted(set(users.values_list("email", flat=True)))


def describe(alert: BudgetAlert) -> str:
    """The alert in one sentence (e-mail subject, dashboard, team page)."""
    spent, limit = format_money_together(alert.spent, alert.limit)
    whose = {
        AlertScope.ORGANISATION: "The organisation's budget",
        AlertScope.TEAM: f"Team {alert.subject_name}'s budget",
        AlertScope.USER: f"{alert.subject_name}'s budget",
    }[alert.scope]
    month = f"{alert.month:%B %Y}"
    if alert.percent >= 100:
        return f"{whose} for {month} is used up: {spent} of {limit}; messages are refused until next month."
    return f"{whose} for {month} has passed {alert.percent}%: {spent} of {limit} spent."


def deliver_pending() -> int:
    """Mail every stored alert nobody has mailed yet (each claimed first, so mailed once); returns how
    many were claimed. A failed send is released for the next attempt and logged."""
    claimed = 0
    for alert in BudgetAlert.objects.filter(notified_at__isnull=True).order_by("id")[:50]:
        now = timezone.now()
        if not BudgetAlert.objects.filter(pk=alert.pk, notified_at__isnull=True).update(notified_at=now):
            continue  # another worker claimed it
        claimed += 1
        recipients = _recipients(alert)
        if not recipients:
            continue
        text = describe(alert)
        try:
            send_mail(f"Budget alert: {text}", _body(alert, text), None, recipients)
        except Exception:
            logger.exception("Budget alert %s could not be mailed; it will be tried again", alert.pk)
            BudgetAlert.objects.filter(pk=alert.pk).update(notified_at=None)
            continue
        BudgetAlert.objects.filter(pk=alert.pk).update(recipients=", ".join(recipients)[:2000])
    return claimed


def _body(alert: BudgetAlert, text: str) -> str:
    where = {
        AlertScope.ORGANISATION: "The usage dashboard shows every team and person.",
        AlertScope.TEAM: "The team page shows each member's spend, budgets and the forecast.",
        AlertScope.USER: "The team page shows this member's spend and budget.",
    }[alert.scope]
    return f"{text}\n\n{where}\n\nThis alert is sent once for this budget and month."


def month_alerts(period: Period, *, team_id: int | None = None, member_ids=None):
    """The alerts of `period`'s month, newest first (one team's and its members' with `team_id`)."""
    alerts = BudgetAlert.objects.filter(month=period.first_day)
    if team_id is not None:
        alerts = alerts.filter(scope=TEAM, subject_id=team_id) | alerts.filter(
            scope=USER, subject_id__in=list(member_ids or [])
        )
    return alerts.order_by("-created_at", "-id")

"""Team and organisation budgets under concurrency: zero overshoot at every level, each alert stored and
mailed once.

Runs against the configured database: SQLite (writers serialised by BEGIN IMMEDIATE) and PostgreSQL
(the organisation's, the team's and the person's rows locked with SELECT … FOR UPDATE, in that order).
Every call here records the dearest usage its hold allows (all of its prompt written to the 1-hour
cache, every granted token produced), so what is spent is exactly what was held and the budgets fill
to the last pico-dollar.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from billing_factories import (
    make_conversation,
    make_manager,
    make_message,
    make_staff,
    make_team,
    make_user,
    record_call,
    run_in_threads,
    set_organisation_cap,
)
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from billing import alerts
from billing.alerts import deliver_pending
from billing.holds import worst_case_cost
from billing.levels import ORGANISATION, TEAM
from billing.models import (
    AlertScope,
    BudgetAlert,
    SpendReservation,
    UsageMonthlyTeam,
    UsageRecord,
)
from billing.money import usd_to_pico
from billing.periods import current_month
from billing.services import BudgetExceeded, spend_reserve

pytestmark = pytest.mark.django_db(transaction=True)
PRICES = Path(__file__).resolve().parents[2] / "billing" / "prices" / "anthropic-2026-11.json"

SONNET = "claude-sonnet-4-6"
#: Another model at the same rates (below its 200K band): calls on it share no per-model rollup row
#: with SONNET's, so nothing but the budget's own locking serialises the two.
SONNET_TWIN = "claude-sonnet-4-5"
HAIKU = "claude-haiku-4-5"  # $1/MTok input: 1,000,000 pUSD a token
PROMPT, ASKED = 1_000, 4_000
SHORT_GRANT = 3_000  # the last call that fits gets this many tokens (more than MIN_REPLY_TOKENS)
THREADS = 12


@pytest.fixture(autouse=True)
def _knobs(settings):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    settings.CHAT_DEFAULT_MONTHLY_BUDGET_USD = "unlimited"  # only the team and organisation levels bind
    # The prices the migrations seed are flushed by earlier transactional tests: load them here.
    call_command("load_prices", str(PRICES), verbosity=0)


def full_call() -> int:
    """The worst case of one call asking for ASKED tokens after a PROMPT-token prompt."""
    return worst_case_cost(model=SONNET, prompt_tokens=PROMPT, max_tokens=ASKED, at=timezone.now())


def short_call() -> int:
    """The worst case of the call granted SHORT_GRANT tokens (the same prompt)."""
    return worst_case_cost(model=SONNET, prompt_tokens=PROMPT, max_tokens=SHORT_GRANT, at=timezone.now())


def spent_and_held(team_id: int | None = None) -> int:
    """The ledger's spend this month plus every open hold (one team's, or everyone's), in ONE statement:
    read apart, a call settling between the two reads could be counted twice."""
    ledger, holds = (
        connection.ops.quote_name(model._meta.db_table) for model in (UsageRecord, SpendReservation)
    )
    where, params = ("", []) if team_id is None else (" AND team_id = %s", [team_id])
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT COALESCE(SUM(cost), 0) FROM {ledger} WHERE created_at >= %s{where}) "
            f"+ (SELECT COALESCE(SUM(amount), 0) FROM {holds} WHERE settled_at IS NULL{where})",
            [current_month(timezone.now()).start, *params, *params],
        )
        return int(cursor.fetchone()[0])


def ledger_cost(**filters) -> int:
    return int(UsageRecord.objects.filter(**filters).aggregate(total=Sum("cost"))["total"] or 0)


def reserve_then_record(user, conversation, message, *, model: str = SONNET, observe=None) -> int:
    """One reply's billing: hold its worst case, then record the dearest usage the hold allows.
    `observe()` runs inside the reserving transaction, while it still holds its locks."""
    with transaction.atomic():
        granted = spend_reserve(
            user=user, model=model, prompt_tokens=PROMPT, max_tokens=ASKED, message_id=message.pk
        )
        if observe is not None:
            observe()
    with transaction.atomic():
        record_call(
            user,
            model=model,
            conversation=conversation,
            message=message,
            cache_write_1h_tokens=PROMPT,
            output_tokens=granted,
        )
        if observe is not None:
            observe()
    return granted


def members_sending(members, *, attempts: int, models: dict | None = None, observe=None):
    """`work(index)` for run_in_threads: member `index` sends up to `attempts` replies, stopping at the
    first refusal; returns (the granted max_tokens of each reply, the refusal or None)."""
    chats = []
    for user in members:
        conversation = make_conversation(user)
        chats.append((conversation, [make_message(conversation) for _ in range(attempts)]))

    def work(index: int):
        user = members[index]
        conversation, messages = chats[index]
        grants = []
        for message in messages:
            try:
                grants.append(
                    reserve_then_record(
                        user,
                        conversation,
                        message,
                        model=(models or {}).get(user.pk, SONNET),
                        observe=observe,
                    )
                )
            except BudgetExceeded as refusal:
                return grants, refusal
        return grants, None

    return work


def test_members_of_one_team_sending_at_once_never_spend_past_the_team_budget(mailoutbox):
    grace = make_manager("Grace", "Hopper")
    members = [make_user() for _ in range(THREADS)]
    # Five whole calls fit, then one granted SHORT_GRANT tokens; nothing after that.
    limit = 5 * full_call() + short_call()
    team = make_team("Compilers", limit=limit, managers=[grace], members=members)
    seen: list[int] = []

    outcomes = run_in_threads(
        members_sending(members, attempts=2, observe=lambda: seen.append(spent_and_held(team.pk))),
        THREADS,
    )

    assert all(isinstance(outcome, tuple) for outcome in outcomes), outcomes
    grants = sorted(grant for grants, _refusal in outcomes for grant in grants)
    assert grants == [SHORT_GRANT] + [ASKED] * 5
    assert seen and max(seen) <= limit  # at no moment did spend plus holds pass the team's budget
    assert ledger_cost(team_id=team.pk) == limit  # spent to the last pico-dollar, and not one more
    month = current_month(timezone.now()).first_day
    assert UsageMonthlyTeam.objects.get(month=month, team_id=team.pk).cost == limit
    assert SpendReservation.objects.open(timezone.now()).count() == 0
    refusals = [refusal for _grants, refusal in outcomes if refusal is not None]
    assert len(refusals) >= THREADS - 3  # at most three members had both replies granted
    for refusal in refusals:
        assert refusal.level.scope == TEAM
        assert "your team's" in str(refusal).lower() and "ask Grace Hopper" in str(refusal), str(refusal)
    # Twelve threads crossed the team's 80 % and 100 %: one alert each, mailed once, to its manager.
    assert sorted(
        BudgetAlert.objects.filter(scope=TEAM, subject_id=team.pk).values_list("percent", flat=True)
    ) == [
        80,
        100,
    ]
    assert sorted(mail.to[0] for mail in mailoutbox) == ["grace.hopper@example.org"] * 2
    assert [len(mail.to) for mail in mailoutbox] == [1, 1]


def test_two_teams_under_one_organisation_cap_never_overshoot_either_level():
    ada, edsger = make_manager("Ada", "Lovelace"), make_manager("Edsger", "Dijkstra")
    team_limit = 4 * full_call()
    # Less than the two teams' budgets together: the organisation runs out first.
    org_limit = 6 * full_call() + short_call()
    set_organisation_cap(org_limit)
    analysts = [make_user() for _ in range(THREADS // 2)]
    engineers = [make_user() for _ in range(THREADS // 2)]
    analytics = make_team("Analytics", limit=team_limit, managers=[ada], members=analysts)
    engineering = make_team("Engineering", limit=team_limit, managers=[edsger], members=engineers)
    seen: list[tuple[int, int, int]] = []

    def observe() -> None:
        seen.append((spent_and_held(), spent_and_held(analytics.pk), spent_and_held(engineering.pk)))

    members = analysts + engineers
    models = {user.pk: SONNET_TWIN for user in engineers}  # the two teams' calls share no per-model row
    outcomes = run_in_threads(members_sending(members, attempts=2, models=models, observe=observe), THREADS)

    assert all(isinstance(outcome, tuple) for outcome in outcomes), outcomes
    grants = sorted(grant for grants, _refusal in outcomes for grant in grants)
    assert grants == [SHORT_GRANT] + [ASKED] * 6
    assert ledger_cost() == org_limit  # the organisation's cap, spent exactly
    assert ledger_cost(team_id=analytics.pk) <= team_limit
    assert ledger_cost(team_id=engineering.pk) <= team_limit
    assert max(org for org, _a, _e in seen) <= org_limit
    assert max(a for _o, a, _e in seen) <= team_limit
    assert max(e for _o, _a, e in seen) <= team_limit
    managers = {analytics.pk: "Ada Lovelace", engineering.pk: "Edsger Dijkstra"}
    refusals = [refusal for _grants, refusal in outcomes if refusal is not None]
    assert refusals
    for refusal in refusals:
        text = str(refusal)
        if refusal.level.scope == ORGANISATION:
            assert "the organisation's" in text.lower() and "ask an administrator" in text, text
        else:
            assert refusal.level.scope == TEAM, text
            assert "your team's" in text.lower() and f"ask {managers[refusal.level.subject_id]}" in text, text


def pause_alert_reads_until_both_arrive(monkeypatch) -> None:
    """Make two ledger writes reach their alert check at the same moment, both with their own rows
    written and not yet committed, unless the database keeps one waiting for the other (SQLite always;
    PostgreSQL when the two share a locked row): then the first goes on after a short wait."""
    meeting = threading.Barrier(2, timeout=2)
    read_standing = alerts.read_standing

    def meet_then_read(*args, **kwargs):
        try:
            meeting.wait()
        except threading.BrokenBarrierError:
            pass  # the other write waits for this one to commit: there is nobody to meet
        return read_standing(*args, **kwargs)

    monkeypatch.setattr(alerts, "read_standing", meet_then_read)


def costing(usd: str, model: str = HAIKU) -> dict:
    """Usage that costs exactly `usd` on HAIKU ($1/MTok input) or SONNET ($3/MTok input)."""
    rate = {HAIKU: 1_000_000, SONNET: 3_000_000}[model]
    tokens, rest = divmod(usd_to_pico(usd), rate)
    assert rest == 0
    return {"input_tokens": tokens}


def two_at_once(calls) -> list:
    """Record `calls` ((user, model, usage), (user, model, usage)) from two threads at once; their costs."""

    def work(index: int):
        user, model, usage = calls[index]
        with transaction.atomic():
            return record_call(user, model=model, **usage).cost

    return run_in_threads(work, 2)


def test_two_members_crossing_the_team_warning_and_limit_at_once_store_and_mail_one_alert_each(
    monkeypatch, mailoutbox
):
    grace, linus = make_manager("Grace", "Hopper"), make_manager("Linus", "Torvalds")
    make_staff("root")  # staff are not told of a team's budget
    first, second = make_user(), make_user()
    team = make_team("Kernel", limit=usd_to_pico("1"), managers=[grace, linus], members=[first, second])
    calls = [(first, HAIKU, costing("0.006")), (second, SONNET, costing("0.006", SONNET))]
    record_call(first, model=HAIKU, **costing("0.79"))
    pause_alert_reads_until_both_arrive(monkeypatch)

    # Each call alone would stay below 80 % ($0.796); the two together pass it ($0.802).
    assert two_at_once(calls) == [usd_to_pico("0.006")] * 2
    first_cross = list(
        BudgetAlert.objects.filter(scope=TEAM, subject_id=team.pk).values_list("percent", "spent")
    )
    assert [percent for percent, _spent in first_cross] == [80]
    assert first_cross[0][1] == ledger_cost(team_id=team.pk)  # noticed by the write that saw both

    record_call(first, model=HAIKU, **costing("0.188"))  # $0.99: each alone $0.996, together $1.002
    assert two_at_once(calls) == [usd_to_pico("0.006")] * 2

    alerted = BudgetAlert.objects.filter(scope=TEAM, subject_id=team.pk)
    assert sorted(alerted.values_list("percent", flat=True)) == [80, 100]
    assert all(alert.notified_at is not None for alert in alerted)
    assert len(mailoutbox) == 2
    assert all(
        sorted(mail.to) == ["grace.hopper@example.org", "linus.torvalds@example.org"] for mail in mailoutbox
    )
    subjects = sorted(mail.subject for mail in mailoutbox)
    assert "has passed 80%" in subjects[0] and "is used up" in subjects[1], subjects


def test_two_teams_crossing_the_organisation_warning_at_once_store_one_alert(monkeypatch, mailoutbox):
    """The organisation's spend is the sum of every team's: two calls in different teams, on different
    models, write no row in common, yet the one that passes 80 % must see the other's cost."""
    make_manager("Root", "Admin", is_staff=True)
    set_organisation_cap(usd_to_pico("1"))
    analyst, engineer = make_user(), make_user()
    make_team("Analytics", members=[analyst])
    make_team("Engineering", members=[engineer])
    record_call(analyst, model=HAIKU, **costing("0.79"))
    pause_alert_reads_until_both_arrive(monkeypatch)

    # Each call alone would stay below 80 % ($0.796); the two together pass it ($0.802).
    calls = [(analyst, HAIKU, costing("0.006")), (engineer, SONNET, costing("0.006", SONNET))]
    assert two_at_once(calls) == [usd_to_pico("0.006")] * 2

    alerted = list(BudgetAlert.objects.filter(scope=ORGANISATION).values_list("percent", "spent"))
    assert [percent for percent, _spent in alerted] == [80]
    assert alerted[0][1] == ledger_cost()
    assert [mail.to for mail in mailoutbox] == [["root.admin@example.org"]]


def test_alerts_delivered_from_many_threads_at_once_are_mailed_once_each(mailoutbox):
    grace = make_manager("Grace", "Hopper")
    make_manager("Ada", "Lovelace", is_staff=True)
    make_manager("Nobody", "Staff")  # neither staff nor a manager: never mailed
    make_manager("Gone", "Away", is_staff=True, is_active=False)
    team = make_team("Compilers", managers=[grace])
    month = current_month(timezone.now()).first_day
    stored = [
        BudgetAlert.objects.create(
            scope=scope,
            subject_id=subject,
            subject_name=name,
            month=month,
            percent=percent,
            limit=100,
            spent=100,
        )
        for scope, subject, name in (
            (AlertScope.TEAM, team.pk, team.name),
            (AlertScope.ORGANISATION, 0, "organisation"),
        )
        for percent in (80, 100)
    ]

    claimed = run_in_threads(lambda _index: deliver_pending(), THREADS)

    assert all(isinstance(count, int) for count in claimed), claimed
    assert sum(claimed) == len(stored)
    assert len(mailoutbox) == len(stored)
    sent_to = {}
    for mail in mailoutbox:
        sent_to.setdefault(tuple(mail.to), []).append(mail.subject)
    assert sorted(sent_to) == [("ada.lovelace@example.org",), ("grace.hopper@example.org",)]
    assert all("Team Compilers" in subject for subject in sent_to[("grace.hopper@example.org",)])
    assert all("organisation" in subject for subject in sent_to[("ada.lovelace@example.org",)])
    assert BudgetAlert.objects.filter(notified_at__isnull=True).count() == 0
    assert deliver_pending() == 0  # nothing is mailed twice

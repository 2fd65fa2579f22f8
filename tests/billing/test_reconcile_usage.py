"""Reconciling the ledger with Anthropic's Usage & Cost API, against the offline Claude's Admin API: the
app's own calls (replies on several models with cache writes and reads, a title, a retried call) tie
out exactly; an injected difference is red, explained and settled by an adjustment; a second run
stores nothing twice; a 429 mid-way is waited out; a page that keeps failing stores nothing."""

from __future__ import annotations

import io
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from audit.models import AuditEntry
from billing.keys import OFFLINE_KEY
from billing.models import Adjustment, Reconciliation, UsageRecord
from billing.reconcile import adjustment_book, reconcile, status, suspects, utc_today, why
from billing.services import usage_record
from billing.usage import LedgerLabels, Usage
from billing.usage_report import ReportError
from conversations.models import Message
from conversations.replies import intents, titles
from conversations.replies.generation import generation_wait
from offline_claude.admin_api import USAGE_PATH, AdminFault
from tests.helpers import make_conversation, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("offline_claude")]

PRICES = Path(__file__).resolve().parents[2] / "billing" / "prices" / "anthropic-2026-11.json"
MODELS = ("claude-sonnet-5-5", "claude-opus-5-5", "claude-haiku-5-5")
ADMIN_KEY = "sk-ant-admin01-offline-test"


@pytest.fixture(autouse=True)
def _admin_key(settings):
    settings.ANTHROPIC_ADMIN_KEY = ADMIN_KEY
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0  # fifty calls in a few seconds


@sync_to_async
def _chats():
    call_command("load_prices", str(PRICES), verbosity=0)
    user = make_user()
    return user, [make_conversation(owner=user, model=model) for model in MODELS]


async def _say(conversation, text: str) -> Message:
    assistant = await intents.send(conversation=conversation, text=text)
    await generation_wait(assistant.pk)
    return await sync_to_async(Message.objects.get)(pk=assistant.pk)


async def _traffic(settings, turns: int) -> list[Message]:
    """`turns` replies in each of three conversations (one per model): a long system of turns, so later
    ones read the cache earlier ones wrote; the first conversation gets a title; one call is retried."""
    settings.CHAT_TITLE_MODEL = "claude-haiku-5-5"
    _user, conversations = await _chats()
    replies = [await _say(conversations[0], "Plan a weekend in Lisbon [[offline reply_tokens=40]]")]
    await titles.title_wait(conversations[0].pk)
    settings.CHAT_TITLE_MODEL = ""
    replies.append(
        await _say(
            conversations[1],
            "Hello there [[offline fault=529 fault_times=1 retry_after_ms=10 reply_tokens=30]]",
        )
    )
    for turn in range(turns):
        for conversation in conversations:
            replies.append(
                await _say(conversation, f"Turn {turn}: tell me more [[offline reply_tokens={20 + turn}]]")
            )
    return replies


def _reconcile_today(**options):
    return reconcile([utc_today()], sleep=lambda _s: None, **options)


async def test_the_apps_own_calls_tie_out_exactly_for_every_model_and_kind(settings):
    replies = await _traffic(settings, turns=16)
    assert all(r.status == Message.Status.COMPLETE for r in replies)

    def check():
        rows = list(UsageRecord.objects.all())
        assert len(rows) >= 50
        assert {r.purpose for r in rows} == {"reply", "title"}
        assert {r.model for r in rows} == set(MODELS)
        assert sum(r.cache_read_tokens for r in rows) > 0 and sum(r.cache_write_5m_tokens for r in rows) > 0
        assert all(r.request_id.startswith("req_") and len(r.key_fingerprint) == 16 for r in rows)

        [outcome] = _reconcile_today(page_days=1)
        assert outcome.differences == []
        kinds = {(r.model, r.kind) for r in outcome.rows}
        assert {
            (m, k)
            for m in MODELS
            for k in ("input", "cache_read", "cache_write_5m", "cache_write_1h", "output")
        } <= kinds
        cost = next(r for r in outcome.rows if r.kind == "cost")
        assert cost.ours == cost.theirs == sum(r.cost for r in rows) > 0
        output = {r.model: r for r in outcome.rows if r.kind == "output"}
        assert output["claude-haiku-5-5"].theirs == sum(
            r.output_tokens for r in rows if r.model == "claude-haiku-5-5"
        )
        assert status()["text"].startswith("Reconciled with Anthropic through ")
        assert status()["text"].endswith(": exact")

    await sync_to_async(check)()


async def test_an_injected_difference_is_red_explained_and_settled_by_an_adjustment(settings):
    await _traffic(settings, turns=1)
    _user, conversations = await _chats()
    await _say(conversations[2], "One more [[offline report_extra_tokens=7 reply_tokens=10]]")
    unseen = await _say(conversations[0], "And this [[offline report_unseen=1 reply_tokens=12]]")

    def check():
        [outcome] = _reconcile_today()
        found = {(r.model, r.kind): r.difference for r in outcome.differences}
        assert found[("claude-haiku-5-5", "output")] == 7
        # The call Anthropic booked twice: every one of its counts is missing from the ledger.
        [twice] = UsageRecord.objects.filter(message_id=unseen.pk)
        assert found[("claude-sonnet-5-5", "output")] == twice.output_tokens > 0
        assert found.get(("claude-sonnet-5-5", "input"), 0) == twice.input_tokens
        assert found[("", "cost")] > 0
        assert ("claude-opus-5-5", "output") not in found
        text = status()["text"]
        assert text == f"{len(found)} differences on {utc_today().day} {utc_today():%B}"

        out = io.StringIO()
        with pytest.raises(SystemExit) as exited:
            call_command("reconcile_usage", day=[utc_today().isoformat()], stdout=out)
        assert exited.value.code == 1
        assert "Anthropic reports 7 output tokens more than the ledger for claude-haiku-5-5" in out.getvalue()

        # Settle every difference; the ledger's rows stay as they were.
        staff = make_user(is_staff=True)
        before = list(UsageRecord.objects.values_list("pk", "cost", "output_tokens"))
        for row in Reconciliation.objects.exclude(difference=0):
            adjustment_book(
                reconciliation=row,
                amount=row.difference if row.kind == "cost" else 0,
                reason="Calls Anthropic booked that the ledger never saw",
                staff=staff,
            )
        assert list(UsageRecord.objects.values_list("pk", "cost", "output_tokens")) == before
        assert Adjustment.objects.filter(staff_name=staff.username).count() == len(found)
        assert status()["text"].endswith("exact, differences settled by adjustments")
        # Each run (the function's and the command's) and each adjustment leaves an audit entry.
        runs = AuditEntry.objects.filter(action="reconciliation.run").order_by("seq")
        assert [entry.after["differences"] for entry in runs] == [len(found), len(found)]
        booked = AuditEntry.objects.filter(action="adjustment.created")
        assert booked.count() == len(found)
        assert booked.first().after["staff_name"] == staff.username

    await sync_to_async(check)()


async def test_running_twice_stores_nothing_twice_and_a_new_call_updates_the_day(settings):
    await _traffic(settings, turns=1)
    first = await sync_to_async(lambda: [r for o in _reconcile_today() for r in o.rows])()
    again = await sync_to_async(lambda: [r for o in _reconcile_today() for r in o.rows])()
    assert sorted((r.model, r.kind, r.ours, r.theirs) for r in first) == sorted(
        (r.model, r.kind, r.ours, r.theirs) for r in again
    )
    assert await sync_to_async(Reconciliation.objects.count)() == len(first)


async def test_a_429_mid_way_is_waited_out_and_a_page_that_keeps_failing_stores_nothing(
    settings, offline_claude
):
    await _traffic(settings, turns=1)
    book = offline_claude.server.usage_book
    waits: list[float] = []
    yesterday = utc_today() - timedelta(days=1)

    def run_with_429():
        book.faults.append(AdminFault(path=USAGE_PATH, nth=2, status=429, times=1, retry_after=3))
        outcomes = reconcile([yesterday, utc_today()], sleep=waits.append, page_days=1)
        assert waits == [3.0]  # the second page was refused once, retried after its retry-after
        assert [o.differences for o in outcomes] == [[], []]

    await sync_to_async(run_with_429)()

    def run_with_failing_page():
        stored = list(Reconciliation.objects.order_by("pk").values_list("pk", "ours", "theirs", "checked_at"))
        await_more = AdminFault(path=USAGE_PATH, nth=1, status=500, times=99)
        book.faults.append(await_more)
        with pytest.raises(ReportError, match="nothing was stored"):
            reconcile([yesterday, utc_today()], sleep=lambda _s: None, page_days=1)
        assert (
            list(Reconciliation.objects.order_by("pk").values_list("pk", "ours", "theirs", "checked_at"))
            == stored
        )

    await sync_to_async(run_with_failing_page)()


def test_without_an_admin_key_the_command_says_what_to_set(settings):
    settings.ANTHROPIC_ADMIN_KEY = ""
    err = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("reconcile_usage", stderr=err)
    assert exited.value.code == 2
    assert "Set ANTHROPIC_ADMIN_KEY" in err.getvalue()
    assert not Reconciliation.objects.exists()


def test_a_wrong_key_a_day_to_come_and_a_span_too_long_are_refused_with_a_sentence(settings):
    settings.ANTHROPIC_ADMIN_KEY = "sk-ant-api03-not-an-admin-key"
    err = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("reconcile_usage", stderr=err)
    assert "must be an Admin API key (sk-ant-admin…)" in err.getvalue()

    settings.ANTHROPIC_ADMIN_KEY = ADMIN_KEY
    tomorrow = utc_today() + timedelta(days=1)
    err = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("reconcile_usage", day=[tomorrow.isoformat()], stderr=err)
    assert "is in the future" in err.getvalue()
    err = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("reconcile_usage", day=["2026-01-01", "2026-03-01"], stderr=err)
    assert "at most 31 days at a time" in err.getvalue()
    assert not Reconciliation.objects.exists()


def test_suspects_name_estimates_rows_without_request_id_and_calls_near_midnight():
    call_command("load_prices", str(PRICES), verbosity=0)
    user = make_user()
    labels = LedgerLabels(
        user_id=user.pk,
        username=user.username,
        conversation_id=None,
        conversation_title="",
        model="claude-haiku-5-5",
    )
    # The other rows are written at noon, so a run near midnight does not make them suspects too.
    noon = datetime.combine(utc_today(), time(12, 0), tzinfo=UTC)
    with mock.patch("django.utils.timezone.now", return_value=noon):
        plain = usage_record(
            labels=labels, message_id=None, request_id="req_1", usage=Usage(input_tokens=5), estimated=False
        )
        estimate = usage_record(
            labels=labels, message_id=None, request_id="req_2", usage=Usage(input_tokens=5), estimated=True
        )
        unknown = usage_record(
            labels=labels, message_id=None, request_id="", usage=Usage(input_tokens=5), estimated=False
        )
    midnight = datetime.combine(utc_today(), time(0, 0, 30), tzinfo=UTC)
    near_midnight = UsageRecord.objects.create(
        created_at=midnight,
        user_id=user.pk,
        username=user.username,
        model="claude-haiku-5-5",
        request_id="req_3",
    )
    found = suspects(utc_today(), "claude-haiku-5-5")
    assert estimate in found and unknown in found and near_midnight in found and plain not in found
    assert why(near_midnight, utc_today()) == "another API key (unknown), near midnight UTC"


def test_a_call_written_just_after_midnight_counts_on_the_day_anthropic_booked_it(offline_claude):
    """Clock skew around midnight UTC: the ledger wrote the row at 00:00:20, Anthropic booked the call at
    23:59:40 the day before; both days are exact, the row counted on Anthropic's day."""
    call_command("load_prices", str(PRICES), verbosity=0)
    today, yesterday = utc_today(), utc_today() - timedelta(days=1)
    written = datetime.combine(today, time(0, 0, 20), tzinfo=UTC)
    user = make_user()
    labels = LedgerLabels(
        user_id=user.pk,
        username=user.username,
        conversation_id=None,
        conversation_title="",
        model="claude-haiku-5-5",
    )
    with mock.patch("django.utils.timezone.now", return_value=written):
        row = usage_record(
            labels=labels,
            message_id=None,
            request_id="req_late",
            usage=Usage(input_tokens=300, output_tokens=40, cache_read_tokens=900),
            estimated=False,
        )
    offline_claude.server.usage_book.record(
        api_key=OFFLINE_KEY,
        model="claude-haiku-5-5",
        uncached=300,
        cache_read=900,
        write_5m=0,
        write_1h=0,
        output=40,
        at=datetime.combine(yesterday, time(23, 59, 40), tzinfo=UTC),
    )
    before, after = reconcile([yesterday, today], sleep=lambda _s: None)
    assert before.differences == [] and after.differences == []
    assert (before.moved_in, after.moved_out) == (1, 1)
    cost = next(r for r in before.rows if r.kind == "cost")
    assert cost.ours == cost.theirs == row.cost > 0

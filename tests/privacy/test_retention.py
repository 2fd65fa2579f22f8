"""Retention: a run deletes exactly the expired, unheld conversations with everything hanging off them,
and never the ledger; staff preview it and set it in the admin; each run is one audit entry."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from audit.models import AuditEntry
from billing.models import UsageRecord
from conversations.models import Attachment, Conversation, Message, ShareLink
from conversations.search import search
from privacy.models import DAYS_REFUSAL, LegalHold, RetentionPolicy, TeamRetention
from privacy.retention import retention_apply
from tests.billing.billing_factories import make_staff, make_team, make_user
from tests.privacy.privacy_factories import full_conversation

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_media")]


def policy(*, days: int = 30, enabled: bool = True, pinned_exempt: bool = True) -> RetentionPolicy:
    return RetentionPolicy.objects.update_or_create(
        pk=1, defaults={"days": days, "enabled": enabled, "pinned_exempt": pinned_exempt}
    )[0]


def stored_files(root) -> list:
    return [p for p in root.rglob("*") if p.is_file()]


def ledger_snapshot() -> dict:
    return {
        r.pk: (r.user_id, r.username, r.team_id, r.model, r.input_tokens, r.output_tokens, r.cost)
        for r in UsageRecord.objects.all()
    }


def test_a_run_deletes_exactly_the_expired_unheld_conversations_and_keeps_every_ledger_row(
    private_media, django_capture_on_commit_callbacks
):
    policy(days=30)
    ann, held_person, shortie = make_user("ann"), make_user("held"), make_user("shortie")
    make_team("Short memory", members=[shortie])
    TeamRetention.objects.create(team=shortie.membership.team, days=5, pinned_exempt=False)
    expired, expired_row = full_conversation(ann, days_idle=40, words="zebras")
    recent, _ = full_conversation(ann, days_idle=10, words="giraffes")
    pinned, _ = full_conversation(ann, days_idle=40, words="lions", pinned=True)
    held_one, _ = full_conversation(ann, days_idle=90, words="otters")
    LegalHold.objects.create(conversation=held_one, reason="Case 12")
    of_held_person, _ = full_conversation(held_person, days_idle=90, words="badgers")
    LegalHold.objects.create(user=held_person, reason="Case 13")
    team_expired, team_row = full_conversation(shortie, days_idle=6, words="pinned", pinned=True)
    ledger_before = ledger_snapshot()
    cost_before = UsageRecord.objects.total_cost()
    files_before = len(stored_files(private_media))
    assert search(user=ann, query="zebras").messages

    with django_capture_on_commit_callbacks(execute=True):
        run = retention_apply()

    assert (run.deleted, run.dry_run) == (2, False)
    left = set(Conversation.objects.values_list("pk", flat=True))
    assert left == {recent.pk, pinned.pk, held_one.pk, of_held_person.pk}
    for gone in (expired, team_expired):
        assert not Message.objects.filter(conversation_id=gone.pk).exists()
        assert not Attachment.objects.filter(conversation_id=gone.pk).exists()
        assert not ShareLink.objects.filter(conversation_id=gone.pk).exists()
    assert len(stored_files(private_media)) == files_before - 2  # their files went with them
    assert not search(user=ann, query="zebras").messages and not search(user=ann, query="zebras").titles
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM conversations_message_fts WHERE conversations_message_fts MATCH 'zebras'"
            )
            assert cursor.fetchone()[0] == 0
    # The ledger: every row kept with its figures; the deleted ones lose only their links and title.
    assert ledger_snapshot() == ledger_before and UsageRecord.objects.total_cost() == cost_before
    for row in (expired_row, team_row):
        row.refresh_from_db()
        assert (row.conversation_id, row.message_id, row.conversation_title) == (None, None, "")
    kept = UsageRecord.objects.get(conversation_id=recent.pk)
    assert kept.conversation_title == "About giraffes"
    entry = AuditEntry.objects.get(action="retention.run")
    assert (
        entry.actor_label == "system"
        and entry.after["deleted"] == 2
        and entry.after["ledger_rows_detached"] == 2
    )


def test_pinned_conversations_go_too_when_the_policy_does_not_exempt_them():
    policy(days=30, pinned_exempt=False)
    ann = make_user()
    full_conversation(ann, days_idle=31, pinned=True)
    assert retention_apply().deleted == 1 and not Conversation.objects.exists()


def test_a_dry_run_or_a_disabled_policy_counts_but_deletes_nothing_and_writes_no_entry():
    ann = make_user()
    full_conversation(ann, days_idle=400)
    policy(days=30, enabled=False)
    out = io.StringIO()
    call_command("apply_retention", stdout=out)
    assert "1 conversation(s) would be deleted now (the policy is not enabled" in out.getvalue()
    policy(days=30, enabled=True)
    out = io.StringIO()
    call_command("apply_retention", "--dry-run", stdout=out)
    assert out.getvalue().startswith("1 conversation(s) would be deleted now.")
    assert (
        Conversation.objects.count() == 1 and not AuditEntry.objects.filter(action="retention.run").exists()
    )
    out = io.StringIO()
    call_command("apply_retention", stdout=out)
    assert "Deleted 1 conversation(s); 1 ledger row(s) kept" in out.getvalue()
    assert AuditEntry.objects.filter(action="retention.run").count() == 1


def test_a_conversation_with_a_reply_being_written_is_not_deleted():
    policy(days=30)
    conversation, _ = full_conversation(make_user(), days_idle=40)
    Message.objects.filter(conversation=conversation, role="assistant").update(status="streaming")
    assert retention_apply().deleted == 0 and Conversation.objects.filter(pk=conversation.pk).exists()


def test_staff_see_the_expected_count_before_enabling_and_zero_or_negative_days_are_refused(client):
    full_conversation(make_user(), days_idle=100)
    full_conversation(make_user(), days_idle=1)
    client.force_login(make_staff())
    policy(days=365, enabled=False)
    page = client.get("/admin/privacy/retentionpolicy/1/change/")
    assert page.status_code == 200 and "0 conversations — once enabled" in page.text
    response = client.post("/admin/privacy/retentionpolicy/1/change/", {"days": "30", "pinned_exempt": "on"})
    assert response.status_code == 302
    page = client.get("/admin/privacy/retentionpolicy/1/change/")
    assert "1 conversation — once enabled; nothing is deleted while it is off" in page.text
    assert Conversation.objects.count() == 2
    for days in ("0", "-3"):
        response = client.post(
            "/admin/privacy/retentionpolicy/1/change/", {"days": days, "enabled": "on", "pinned_exempt": "on"}
        )
        assert response.status_code == 200 and DAYS_REFUSAL in response.content.decode()
    assert RetentionPolicy.load().days == 30 and not RetentionPolicy.load().enabled
    response = client.post(
        "/admin/privacy/teamretention/add/",
        {"team": make_team("Physics").pk, "days": "0", "pinned_exempt": "on"},
    )
    assert response.status_code == 200 and DAYS_REFUSAL in response.content.decode()
    assert not TeamRetention.objects.exists()


def test_the_command_refuses_a_policy_of_zero_days_with_a_sentence(monkeypatch):
    policy(days=30)
    full_conversation(make_user(), days_idle=40)
    monkeypatch.setattr(RetentionPolicy, "load", classmethod(lambda cls: cls(pk=1, days=0, enabled=True)))
    with pytest.raises(CommandError, match="at least 1 day"):
        call_command("apply_retention")
    assert Conversation.objects.count() == 1


def test_changing_the_policy_and_placing_a_hold_are_audited(client):
    staff = make_staff("dpo")
    client.force_login(staff)
    RetentionPolicy.load()
    client.post(
        "/admin/privacy/retentionpolicy/1/change/", {"days": "90", "enabled": "on", "pinned_exempt": "on"}
    )
    entry = AuditEntry.objects.get(action="retention.policy.changed")
    assert entry.actor_label == "dpo" and (entry.before["days"], entry.after["days"]) == (365, 90)
    response = client.post("/admin/privacy/legalhold/add/", {"reason": "Case 6"})
    assert "Choose a person or a conversation to hold" in response.content.decode()
    assert not LegalHold.objects.exists()
    person = make_user("carol")
    response = client.post("/admin/privacy/legalhold/add/", {"user": person.pk, "reason": "Case 7"})
    assert response.status_code == 302
    assert AuditEntry.objects.get(action="legal_hold.created").after["reason"] == "Case 7"

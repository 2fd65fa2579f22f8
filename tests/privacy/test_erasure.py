"""Erasure of a person: content and personal data go, the ledger stays exact under a pseudonym, the
account cannot log in, and one audit entry says so."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.test import Client

from audit.models import AuditEntry
from billing.models import UsageMonthlyTeam, UsageMonthlyUser, UsageRecord
from billing.periods import current_month
from billing.rollups import period_by_user, period_totals
from billing.statements import organisation_statement_of
from conversations.models import Attachment, Conversation, Preset
from privacy.erasure import ErasureRefused, user_erase
from privacy.models import Erasure, LegalHold
from tests.billing.billing_factories import make_staff, make_team, make_user, record_call
from tests.privacy.privacy_factories import full_conversation

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_media")]
PASSWORD = "a-Long-passw0rd!"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def monthly_figures() -> dict:
    month = current_month()
    return {
        "ledger": UsageRecord.objects.total_cost(),
        "totals": period_totals(month)["cost"],
        "per_user": sorted((r["user_id"], r["cost"], r["calls"]) for r in period_by_user(month)),
        "organisation": organisation_statement_of(month).total.cost,
        "user_months": sorted(UsageMonthlyUser.objects.values_list("user_id", "cost")),
        "team_months": sorted(UsageMonthlyTeam.objects.values_list("team_id", "cost")),
    }


def test_erasure_keeps_every_monthly_total_exact_to_the_pico_dollar_and_deletes_the_content(
    django_capture_on_commit_callbacks, private_media
):
    eve = make_user("eve", first_name="Eve", last_name="Example", email="eve@example.org")
    other = make_user("other")
    make_team("Physics", members=[eve])
    for idle in (1, 2):
        full_conversation(eve, days_idle=idle, cost_tokens=123_457 * idle)
    full_conversation(other, days_idle=1, cost_tokens=999)
    record_call(eve, purpose="title", input_tokens=3, output_tokens=1)
    Preset.objects.create(owner=eve, name="Mine", system_prompt="Be brief")
    before = monthly_figures()
    eve_rows = UsageRecord.objects.filter(user_id=eve.pk).count()

    with django_capture_on_commit_callbacks(execute=True):
        erasure = user_erase(user=eve)

    assert monthly_figures() == before
    eve.refresh_from_db()
    assert (eve.username, eve.first_name, eve.last_name, eve.email) == (f"erased user #{eve.pk}", "", "", "")
    assert not eve.is_active and not eve.has_usable_password()
    assert (
        not Conversation.objects.filter(owner=eve).exists() and not Preset.objects.filter(owner=eve).exists()
    )
    assert not Attachment.objects.filter(owner=eve).exists()
    assert len([p for p in private_media.rglob("*") if p.is_file()]) == 1  # only the other person's file
    assert Conversation.objects.filter(owner=other).count() == 1
    rows = UsageRecord.objects.filter(user_id=eve.pk)
    assert rows.count() == eve_rows and set(rows.values_list("username", flat=True)) == {
        f"erased user #{eve.pk}"
    }
    assert set(rows.values_list("conversation_title", flat=True)) == {""}
    assert set(UsageMonthlyUser.objects.filter(user_id=eve.pk).values_list("username", flat=True)) == {
        f"erased user #{eve.pk}"
    }
    assert erasure.ledger_rows_relabelled == eve_rows and erasure.conversations_deleted == 2
    entry = AuditEntry.objects.get(action="user.erased")
    assert entry.object_label == f"erased user #{eve.pk}" and "eve" not in str(entry.after)
    assert not AuditEntry.objects.filter(
        action__in=["user.deactivated", "user.renamed", "share_link.revoked"]
    ).exists()


@pytest.mark.django_db(transaction=True)  # the login page checks passwords in threads of its own
def test_an_erased_person_cannot_log_in_again_until_staff_give_the_account_back():
    eve = make_user("eve")
    user_erase(user=eve)
    client = Client()
    response = client.post("/accounts/login/", {"username": "eve", "password": PASSWORD})
    assert "_auth_user_id" not in client.session and response.status_code == 200
    response = client.post("/accounts/login/", {"username": f"erased user #{eve.pk}", "password": PASSWORD})
    assert "_auth_user_id" not in client.session
    eve.refresh_from_db()
    eve.is_active = True
    eve.set_password("a-New-passw0rd!")
    eve.save()
    client.post("/accounts/login/", {"username": f"erased user #{eve.pk}", "password": "a-New-passw0rd!"})
    assert client.session.get("_auth_user_id") == str(eve.pk)


def test_erasure_is_refused_under_a_legal_hold_and_a_hold_on_an_erased_person_is_refused(client):
    held, gone = make_user("held"), make_user("gone")
    LegalHold.objects.create(user=held, reason="Case 1")
    with pytest.raises(ErasureRefused, match="under a legal hold"):
        user_erase(user=held)
    assert get_user_model().objects.get(pk=held.pk).username == "held"
    user_erase(user=gone)
    client.force_login(make_staff())
    response = client.post("/admin/privacy/legalhold/add/", {"user": gone.pk, "reason": "Late request"})
    assert response.status_code == 200
    assert "has been erased: nothing of theirs is left to hold" in response.content.decode()
    assert not LegalHold.objects.filter(user=gone).exists()
    with pytest.raises(ValidationError, match="has been erased"):
        LegalHold(user=gone, reason="From the shell").full_clean()


def test_staff_erase_a_person_in_the_admin_after_confirming(client):
    staff = make_staff("dpo")
    victim = make_user("frank")
    full_conversation(victim, days_idle=1)
    client.force_login(staff)
    response = client.post("/admin/privacy/erasure/add/", {"user": victim.pk})
    assert response.status_code == 200 and "This field is required" in response.content.decode()
    assert not Erasure.objects.exists()
    response = client.post("/admin/privacy/erasure/add/", {"user": staff.pk, "confirm": "on"})
    assert "You cannot erase your own account" in response.content.decode()
    response = client.post("/admin/privacy/erasure/add/", {"user": victim.pk, "confirm": "on"})
    assert response.status_code == 302
    assert Erasure.objects.get().user_id == victim.pk
    assert AuditEntry.objects.get(action="user.erased").actor_label == "dpo"
    response = client.post("/admin/privacy/erasure/add/", {"user": victim.pk, "confirm": "on"})
    assert response.status_code == 200 and Erasure.objects.count() == 1  # not offered twice


def test_a_hold_placed_while_staff_confirm_the_erasure_stops_it_with_a_sentence(client, monkeypatch):
    victim = make_user("grace")
    client.force_login(make_staff())
    monkeypatch.setattr("privacy.admin.erasure_refusal", lambda user, by=None: None)  # the form saw no hold
    LegalHold.objects.create(user=victim, reason="Case 9")  # …placed just before the save
    response = client.post("/admin/privacy/erasure/add/", {"user": victim.pk, "confirm": "on"}, follow=True)
    assert response.status_code == 200 and "under a legal hold" in response.content.decode()
    assert not Erasure.objects.exists() and get_user_model().objects.get(pk=victim.pk).username == "grace"

from __future__ import annotations

import pytest
from billing_factories import MODEL, make_conversation, make_message, make_user, record_call
from django.contrib import admin

from billing.errors import LedgerImmutable
from billing.models import UsageRecord
from billing.services import usage_record
from billing.usage import LedgerLabels, Usage

pytestmark = pytest.mark.django_db


def test_ledger_rows_survive_conversation_deletion():
    user = make_user()
    conversation = make_conversation(user, title="Doomed")
    message = make_message(conversation)
    conversation_id, message_id = conversation.pk, message.pk
    row = record_call(user, conversation=conversation, message=message, input_tokens=1000, output_tokens=500)
    conversation.delete()
    kept = UsageRecord.objects.get(pk=row.pk)
    assert kept.cost == 7_000_000_000  # Sonnet 5.5: 1,000 × $2/MTok + 500 × $10/MTok
    assert kept.conversation_id == conversation_id
    assert kept.conversation_title == "Doomed"
    assert kept.message_id == message_id


def test_ledger_rows_survive_deleting_all_of_a_users_chats_and_the_user():
    user = make_user("leaver")
    user_id = user.pk
    for title in ("one", "two"):
        conversation = make_conversation(user, title=title)
        record_call(user, conversation=conversation, message=make_message(conversation), input_tokens=10)
    user.conversations.all().delete()
    user.delete()
    rows = UsageRecord.objects.for_user(user_id)
    assert rows.count() == 2
    assert set(rows.values_list("username", flat=True)) == {"leaver"}
    assert rows.total_cost() == 2 * 10 * 2_000_000


def test_saving_an_existing_ledger_row_raises():
    row = record_call(make_user(), input_tokens=1)
    row.cost = 0
    with pytest.raises(LedgerImmutable):
        row.save()
    with pytest.raises(LedgerImmutable):
        row.delete()
    with pytest.raises(LedgerImmutable):
        UsageRecord.objects.filter(pk=row.pk).update(cost=0)
    with pytest.raises(LedgerImmutable):
        UsageRecord.objects.filter(pk=row.pk).delete()
    assert UsageRecord.objects.get(pk=row.pk).cost == 2_000_000


def test_ledger_admin_has_no_add_change_or_delete(rf):
    staff = make_user("boss", is_staff=True, is_superuser=True)
    request = rf.get("/admin/billing/usagerecord/")
    request.user = staff
    model_admin = admin.site._registry[UsageRecord]
    row = record_call(staff, input_tokens=1)
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, row)
    assert not model_admin.has_delete_permission(request, row)
    assert model_admin.has_view_permission(request, row)


def test_ledger_admin_pages_render_read_only(client):
    staff = make_user("boss2", is_staff=True, is_superuser=True)
    row = record_call(staff, input_tokens=1000, output_tokens=500)
    client.force_login(staff)
    listing = client.get("/admin/billing/usagerecord/")
    assert listing.status_code == 200
    detail = client.get(f"/admin/billing/usagerecord/{row.pk}/change/")
    assert detail.status_code == 200
    assert b"0.007" in detail.content
    assert client.post(f"/admin/billing/usagerecord/{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert UsageRecord.objects.filter(pk=row.pk).exists()


def test_estimated_rows_keep_their_flag():
    row = record_call(make_user(), input_tokens=100, output_tokens=7, estimated=True, purpose="reply")
    assert UsageRecord.objects.get(pk=row.pk).estimated


def test_labels_longer_than_their_columns_are_cut_to_fit():
    user = make_user()
    row = usage_record(
        labels=LedgerLabels(
            user_id=user.pk,
            username="u" * 200,
            conversation_id=None,
            conversation_title="t" * 300,
            model=MODEL,
        ),
        message_id=None,
        request_id="r" * 200,
        usage=Usage(input_tokens=1, service_tier="s" * 40, inference_geo="g" * 40, speed="f" * 40),
        estimated=False,
        purpose="p" * 40,
    )
    kept = UsageRecord.objects.get(pk=row.pk)
    assert [len(kept.username), len(kept.conversation_title), len(kept.request_id), len(kept.purpose)] == [
        150,
        200,
        128,
        32,
    ]
    assert [kept.service_tier, kept.inference_geo, kept.speed] == ["s" * 32, "g" * 32, "f" * 32]
    assert kept.cost == 2_000_000

from __future__ import annotations

import pytest
from billing_factories import make_conversation, make_message, make_user, record_call
from django.contrib import admin

from billing.models import LedgerImmutable, UsageRecord

pytestmark = pytest.mark.django_db


def test_ledger_rows_survive_conversation_deletion():
    user = make_user()
    conversation = make_conversation(user, title="Doomed")
    message = make_message(conversation)
    row = record_call(user, conversation=conversation, message=message, input_tokens=1000, output_tokens=500)
    conversation.delete()
    kept = UsageRecord.objects.get(pk=row.pk)
    assert kept.cost == 10_500_000_000
    assert kept.conversation_id == conversation.pk or kept.conversation_id is not None
    assert kept.conversation_title == "Doomed"
    assert kept.message_id == message.pk


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
    assert rows.total_cost() == 2 * 10 * 3_000_000


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
    assert UsageRecord.objects.get(pk=row.pk).cost == 3_000_000


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
    assert b"0.0105" in detail.content
    assert client.post(f"/admin/billing/usagerecord/{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert UsageRecord.objects.filter(pk=row.pk).exists()


def test_estimated_rows_keep_their_flag():
    row = record_call(make_user(), input_tokens=100, output_tokens=7, estimated=True, purpose="reply")
    assert UsageRecord.objects.get(pk=row.pk).estimated

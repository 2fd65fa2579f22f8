"""The chat page's second pass, billing side: money in the one format on staff and user pages, current
conversation titles, the admin's links from a person to their usage and budget, no "Active users" on a
single person's page, and a refusal that names a cheaper model which would fit."""

from __future__ import annotations

import pytest
from billing_factories import make_conversation, make_message, make_staff, make_team, make_user, record_call
from django.db import transaction

from billing.models import BudgetAlert, BudgetPolicy, SpendReservation, UserBudget
from billing.money import usd_to_pico
from billing.services import BudgetExceeded, spend_reserve

pytestmark = pytest.mark.django_db


def test_usage_page_shows_a_conversations_title_now_not_the_one_billed_under(client):
    me = make_user("me")
    chat = make_conversation(me, title="Zebra first draft")
    record_call(me, conversation=chat, output_tokens=100)
    chat.title = "Apples"  # later renamed (the ledger keeps "Zebra first draft", which sorts last)
    chat.save(update_fields=["title"])
    gone = make_conversation(me, title="Deleted one")
    record_call(me, conversation=gone, output_tokens=10)
    gone.delete()
    client.force_login(me)
    page = client.get("/usage/").content.decode()
    assert f'<a href="{chat.get_absolute_url()}">Apples</a>' in page
    assert "Zebra first draft" not in page
    assert "Deleted one" in page and "(deleted)" in page  # a deleted one keeps the title it had


def test_receipt_names_the_conversation_by_its_current_title(client):
    me = make_user("me")
    chat = make_conversation(me, title="Old name")
    message = make_message(chat)
    record_call(me, conversation=chat, message=message, output_tokens=100)
    chat.title = "New name"
    chat.save(update_fields=["title"])
    client.force_login(me)
    page = client.get(f"/usage/receipt/{message.pk}/").content.decode()
    assert "← New name" in page and "Old name" not in page


def test_admin_top_conversations_show_current_titles(client):
    me = make_user("me")
    chat = make_conversation(me, title="Zebra first draft")
    record_call(me, conversation=chat, output_tokens=100)
    chat.title = "Apples"
    chat.save(update_fields=["title"])
    client.force_login(make_staff())
    page = client.get(f"/admin/billing/usagerecord/dashboard/user/{me.pk}/")
    assert page.status_code == 200
    assert [row["title"] for row in page.context["conversations"]] == ["Apples"]
    assert f"#{chat.pk} Apples" in page.content.decode()


def test_a_single_users_dashboard_page_has_no_active_users_card(client):
    me = make_user("me")
    record_call(me, output_tokens=100)
    client.force_login(make_staff())
    page = client.get(f"/admin/billing/usagerecord/dashboard/user/{me.pk}/").content.decode()
    assert "Active users" not in page and "Calls" in page
    everyone = client.get("/admin/billing/usagerecord/dashboard/").content.decode()
    assert "Active users" in everyone  # the whole dashboard keeps it


def test_admin_user_page_links_to_that_users_usage_and_budget(client):
    me, other = make_user("me"), make_user("other")
    client.force_login(make_staff())
    page = client.get(f"/admin/auth/user/{me.pk}/change/").content.decode()
    assert f'href="/admin/billing/usagerecord/dashboard/user/{me.pk}/">Usage</a>' in page
    # No budget row yet: the link adds one for this person.
    assert f'href="/admin/billing/userbudget/add/?user={me.pk}">Budget</a>' in page
    UserBudget.objects.create(user=other, policy=BudgetPolicy.LIMIT, monthly_limit=usd_to_pico("5"))
    page = client.get(f"/admin/auth/user/{other.pk}/change/").content.decode()
    assert f'href="/admin/billing/userbudget/{other.pk}/change/">Budget</a>' in page
    assert client.get(f"/admin/billing/userbudget/add/?user={me.pk}").status_code == 200


def test_staff_pages_never_show_raw_pico_dollars(client):
    me = make_user("me")
    row = record_call(me, output_tokens=26_380)  # Sonnet 5.5 output at $10/MTok: $0.2638
    client.force_login(make_staff())
    listing = client.get("/admin/billing/usagerecord/").content.decode()
    assert "$0.26" in listing and "263800000000" not in listing
    detail = client.get(f"/admin/billing/usagerecord/{row.pk}/change/").content.decode()
    assert "$0.26" in detail and "$0.2638" in detail and "263800000000" not in detail
    alert = BudgetAlert.objects.create(
        scope="user",
        subject_id=me.pk,
        subject_name="me",
        month=row.created_at.date().replace(day=1),
        percent=80,
        limit=usd_to_pico("1"),
        spent=usd_to_pico("0.8"),
    )
    page = client.get(f"/admin/billing/budgetalert/{alert.pk}/change/").content.decode()
    assert "$1.00" in page and "$0.80" in page and str(usd_to_pico("0.8")) not in page
    hold = SpendReservation.objects.create(
        user=me, message_id=1, model="claude-sonnet-5-5", amount=usd_to_pico("0.5")
    )
    page = client.get(f"/admin/billing/spendreservation/{hold.pk}/change/").content.decode()
    assert "$0.50" in page and str(usd_to_pico("0.5")) not in page


def test_receipt_shows_amounts_in_the_one_format_and_the_exact_total_beside_it(client):
    me = make_user("me")
    chat = make_conversation(me)
    message = make_message(chat)
    record_call(me, conversation=chat, message=message, input_tokens=12_345, output_tokens=26_380)
    client.force_login(me)
    page = client.get(f"/usage/receipt/{message.pk}/").content.decode()
    # 12,345 × $2/MTok = $0.02469; 26,380 × $10/MTok = $0.2638: together $0.28849.
    assert "12,345" in page and "26,380" in page
    assert "$0.025" in page and "$0.26" in page and "$0.29" in page
    assert "(exactly $0.28849)" in page
    assert "$0.02469<" not in page  # the line costs are in the one format


def refuse(user, *, model="claude-sonnet-5-5"):
    message = make_message(make_conversation(user))
    with pytest.raises(BudgetExceeded) as refused, transaction.atomic():
        spend_reserve(user=user, model=model, prompt_tokens=1_000, max_tokens=16_000, message_id=message.pk)
    return str(refused.value)


def test_a_message_too_dear_for_whats_left_names_a_cheaper_model_that_fits(settings):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    me = make_user("me")
    UserBudget.objects.create(user=me, policy=BudgetPolicy.LIMIT, monthly_limit=usd_to_pico("0.01"))
    # Sonnet 5.5's smallest reply: 1,000 prompt tokens at $4/MTok + 2,048 at $10/MTok = $0.02448;
    # Haiku 5.5's: $0.0002 + $0.001024, which fits in the $0.01 left. Opus 5.5 is dearer still.
    words = refuse(me)
    assert "could cost up to $0.024" in words
    assert "It would fit on claude-haiku-5-5: choose it in this conversation's settings" in words
    assert not SpendReservation.objects.exists()


def test_no_cheaper_model_is_named_that_the_team_does_not_allow(settings):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    me = make_user("me")
    make_team("Big models only", members=[me]).__class__.objects.filter(name="Big models only").update(
        allowed_models=["claude-sonnet-5-5", "claude-opus-5-5"]
    )
    UserBudget.objects.create(user=me, policy=BudgetPolicy.LIMIT, monthly_limit=usd_to_pico("0.01"))
    words = refuse(me)
    assert "could cost up to" in words and "haiku" not in words and "It would fit on" not in words
    assert "Try a shorter conversation" in words


def test_the_dashboards_breadcrumbs_use_the_admins_own_markup(client):
    me = make_user("me")
    record_call(me, output_tokens=100)
    client.force_login(make_staff())
    for path, current in (
        ("/admin/billing/usagerecord/dashboard/", "Dashboard"),
        (f"/admin/billing/usagerecord/dashboard/user/{me.pk}/", "me"),
    ):
        page = client.get(path).content.decode()
        assert '<ol class="breadcrumbs">' in page and '<div class="breadcrumbs">' not in page, path
        assert f'<li aria-current="page">{current}</li>' in page, path

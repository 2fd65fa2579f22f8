"""The audit log: every administrative action writes exactly one entry, hash-chained, append-only;
`verify_audit_log` finds a tampered entry; staff read and export it, and nobody edits it."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.signals import user_login_failed
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from accounts.models import Invite
from audit.hooks import _record_signup_mode
from audit.models import AuditChainHead, AuditEntry, AuditImmutable
from audit.services import audit_record, audit_verify
from billing.models import ModelPrice, OrganisationBudget, SiteBudget, UserBudget
from conversations import services as conversation_services
from conversations import transfer
from teams.models import Membership, Team
from tests.billing.billing_factories import make_staff, make_team, make_user, run_in_threads
from tests.helpers import make_conversation, make_message

pytestmark = pytest.mark.django_db


def new_entries(since: int) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(seq__gt=since).order_by("seq"))


def last_seq() -> int:
    head = AuditChainHead.objects.filter(pk=1).first()
    return head.seq if head else 0


def one_entry(action, *, since: int) -> AuditEntry:
    entries = new_entries(since)
    assert [e.action for e in entries] == [action]
    return entries[0]


# Budgets and prices


def test_staff_adding_a_price_in_the_admin_writes_one_entry_naming_them(client):
    staff = make_staff("ada")
    client.force_login(staff)
    since = last_seq()
    response = client.post(
        "/admin/billing/modelprice/add/",
        {
            "model": "claude-new-9",
            "effective_from_0": "2026-12-01",
            "effective_from_1": "00:00:00",
            "note": "",
            "input_usd": "0.125",
            "output_usd": "2.5",
            "cache_write_5m_usd": "0.15625",
            "cache_write_1h_usd": "0.25",
            "cache_read_usd": "0.0125",
            "band_threshold_tokens": "",
        },
    )
    assert response.status_code == 302
    entry = one_entry("price.created", since=since)
    assert (entry.actor_id, entry.actor_label) == (staff.pk, "ada")
    assert entry.after["input_rate"] == 125_000 and entry.after["model"] == "claude-new-9"
    assert entry.object_type == "billing.modelprice" and entry.object_id == str(
        ModelPrice.objects.get(model="claude-new-9").pk
    )


def test_a_price_changed_or_deleted_writes_one_entry_with_before_and_after():
    price = ModelPrice.objects.create(
        model="claude-x",
        effective_from=timezone.now(),
        input_rate=1,
        output_rate=2,
        cache_write_5m_rate=3,
        cache_write_1h_rate=4,
        cache_read_rate=5,
    )
    since = last_seq()
    price.output_rate = 20
    price.save()
    entry = one_entry("price.changed", since=since)
    assert (entry.before["output_rate"], entry.after["output_rate"]) == (2, 20)
    assert entry.actor_label == "system"
    since = last_seq()
    price.delete()
    assert one_entry("price.deleted", since=since).before["output_rate"] == 20


def test_a_user_budget_set_by_staff_writes_one_entry_but_the_row_a_spend_hold_creates_writes_none(client):
    student = make_user()
    client.force_login(make_staff())
    since = last_seq()
    UserBudget.objects.get_or_create(user=student)  # what billing does on a first reply
    assert new_entries(since) == []
    response = client.post(
        "/admin/billing/userbudget/add/", {"user": student.pk, "policy": "limit", "monthly_limit_usd": "5"}
    )
    assert response.status_code == 302, response.content.decode()[:1500]
    entry = one_entry("budget.user.changed", since=since)
    assert entry.before["policy"] == "default"
    assert entry.after == {
        "policy": "limit",
        "monthly_limit": 5_000_000_000_000,
        "personal_limit": None,
        "warning_percent": None,
    }


def test_site_and_organisation_budgets_changed_write_one_entry_each():
    since = last_seq()
    site = SiteBudget.load()
    organisation = OrganisationBudget.load()
    assert new_entries(since) == []  # created with their defaults: nothing was decided yet
    site.policy, site.monthly_limit = "limit", 7
    site.save()
    assert one_entry("budget.site.changed", since=since).after == {"policy": "limit", "monthly_limit": 7}
    since = last_seq()
    organisation.monthly_limit = 100
    organisation.save()
    entry = one_entry("budget.organisation.changed", since=since)
    assert (entry.before["monthly_limit"], entry.after["monthly_limit"]) == (None, 100)


def test_a_budget_row_saved_without_loading_it_first_records_its_real_before_values():
    OrganisationBudget.objects.create(pk=1, monthly_limit=50)
    since = last_seq()
    OrganisationBudget(pk=1, monthly_limit=60, warning_percent=80).save()
    entry = one_entry("budget.organisation.changed", since=since)
    assert (entry.before["monthly_limit"], entry.after["monthly_limit"]) == (50, 60)


# Teams


def test_team_created_changed_and_its_budget_write_one_entry_each():
    since = last_seq()
    team = Team.objects.create(name="Physics", monthly_limit=10)
    assert one_entry("team.created", since=since).after["monthly_limit"] == 10
    since = last_seq()
    team.monthly_limit = 20
    team.save()
    entry = one_entry("team.changed", since=since)
    assert (entry.before["monthly_limit"], entry.after["monthly_limit"]) == (10, 20)


def test_joining_moving_and_leaving_a_team_write_one_entry_each():
    physics, chemistry = make_team("Physics"), make_team("Chemistry")
    ann = make_user("ann")
    since = last_seq()
    membership = Membership.objects.create(user=ann, team=physics)
    assert one_entry("membership.created", since=since).after["team"] == f"Physics (#{physics.pk})"
    since = last_seq()
    membership.team = chemistry
    membership.save()
    entry = one_entry("membership.changed", since=since)
    assert (entry.before["team"], entry.after["team"]) == (
        f"Physics (#{physics.pk})",
        f"Chemistry (#{chemistry.pk})",
    )
    since = last_seq()
    membership.delete()
    assert one_entry("membership.deleted", since=since).before["team"] == f"Chemistry (#{chemistry.pk})"


def test_manager_rights_given_and_taken_write_one_entry_each():
    team = make_team("Physics")
    boss = make_user("boss")
    since = last_seq()
    team.managers.add(boss)
    entry = one_entry("team.managers_changed", since=since)
    assert (entry.before, entry.after) == ({"managers": []}, {"managers": ["boss"]})
    since = last_seq()
    boss.managed_teams.remove(team)
    assert one_entry("team.managers_changed", since=since).after == {"managers": []}


# Users


def test_user_created_deactivated_activated_given_staff_and_deleted_write_one_entry_each():
    since = last_seq()
    user = make_user("bob")
    assert one_entry("user.created", since=since).after["username"] == "bob"
    for change, action in [
        ({"is_active": False}, "user.deactivated"),
        ({"is_active": True}, "user.activated"),
        ({"is_staff": True}, "user.staff_granted"),
        ({"is_staff": False}, "user.staff_revoked"),
        ({"is_superuser": True}, "user.superuser_granted"),
        ({"username": "robert"}, "user.renamed"),
    ]:
        since = last_seq()
        for name, value in change.items():
            setattr(user, name, value)
        user.save()
        entry = one_entry(action, since=since)
        assert entry.after == change
    since = last_seq()
    user.last_login = timezone.now()
    user.save(update_fields=["last_login"])  # every login does this: not an administrative action
    assert new_entries(since) == []
    since = last_seq()
    user_id = user.pk
    user.delete()
    entry = one_entry("user.deleted", since=since)
    assert entry.object_id == str(user_id) and entry.before["username"] == "robert"


# Sign-up mode and invites


def test_the_sign_up_mode_changed_is_recorded_once_by_migrate(settings):
    from django.apps import apps

    config = apps.get_app_config("audit")
    settings.CHAT_SIGNUP = "invite"
    since = last_seq()
    _record_signup_mode(config)
    _record_signup_mode(config)  # the next deploy, same mode: nothing new
    assert one_entry("signup_mode.changed", since=since).after == {"mode": "invite", "domains": []}
    settings.CHAT_SIGNUP = "closed"
    since = last_seq()
    _record_signup_mode(config)
    entry = one_entry("signup_mode.changed", since=since)
    assert (entry.before["mode"], entry.after["mode"]) == ("invite", "closed")


def test_an_invite_created_in_the_admin_and_deleted_write_one_entry_each(client):
    client.force_login(make_staff("ada"))
    since = last_seq()
    expires = timezone.localtime() + timedelta(days=3)
    response = client.post(
        "/admin/accounts/invite/add/",
        {
            "note": "for Carla",
            "email": "carla@example.org",
            "max_uses": "1",
            "expires_at_0": expires.strftime("%Y-%m-%d"),
            "expires_at_1": expires.strftime("%H:%M:%S"),
        },
    )
    assert response.status_code == 302, response.content.decode()[:1500]
    entry = one_entry("invite.created", since=since)
    assert entry.actor_label == "ada" and entry.after["email"] == "carla@example.org"
    assert "token" not in str(entry.after)  # the link itself is never logged
    since = last_seq()
    Invite.objects.get().delete()
    one_entry("invite.deleted", since=since)


# Share links, exports, imports


def test_share_link_created_and_revoked_write_one_entry_each(settings):
    settings.CHAT_SHARING = True
    conversation = make_conversation(title="Secret plans")
    since = last_seq()
    conversation_services.share_create(conversation=conversation)
    entry = one_entry("share_link.created", since=since)
    assert entry.after == {"conversation_id": conversation.pk} and "Secret plans" not in entry.canonical()
    since = last_seq()
    assert conversation_services.share_revoke(conversation=conversation)
    one_entry("share_link.revoked", since=since)


def test_exports_and_an_import_write_one_entry_each(client):
    me = make_user("me")
    conversation = make_conversation(owner=me, title="Plans")
    make_message(conversation, content="Hello there")
    client.force_login(me)
    since = last_seq()
    assert client.get(reverse("export_json", args=[conversation.pk])).status_code == 200
    entry = one_entry("export.conversation", since=since)
    assert (entry.actor_label, entry.object_id, entry.after) == (
        "me",
        str(conversation.pk),
        {"format": "json"},
    )
    assert entry.object_label == f"conversation #{conversation.pk}"  # never its title
    since = last_seq()
    response = client.get(reverse("export_all"))
    assert response.status_code == 200
    b"".join(response.streaming_content)
    assert one_entry("export.all", since=since).object_id == str(me.pk)
    since = last_seq()
    imported = transfer.conversation_import(
        owner=me, data=transfer.conversation_json_text(conversation).encode()
    )
    entry = one_entry("import.conversation", since=since)
    assert entry.object_id == str(imported.pk) and entry.after == {"messages": 1}


def test_a_refused_import_writes_nothing():
    me = make_user()
    since = last_seq()
    with pytest.raises(Exception):  # noqa: B017,PT011 - whichever refusal, nothing is written
        transfer.conversation_import(owner=me, data=b"not json")
    assert new_entries(since) == []


# Logins


def test_a_failed_login_writes_one_entry_with_the_username_and_address():
    request = RequestFactory().post("/accounts/login/", REMOTE_ADDR="10.1.2.3")
    since = last_seq()
    user_login_failed.send(
        sender=__name__, credentials={"username": "mallory", "password": "x"}, request=request
    )
    entry = one_entry("login.failed", since=since)
    assert entry.after == {"username": "mallory", "client": "10.1.2.3"} and "password" not in str(entry.after)


@pytest.mark.django_db(transaction=True)
def test_a_locked_login_writes_one_locked_entry(client, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    make_user("victim")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post("/accounts/login/", {"username": "victim", "password": "wrong"}, REMOTE_ADDR="10.9.9.9")
    since = last_seq()
    client.post("/accounts/login/", {"username": "victim", "password": "wrong"}, REMOTE_ADDR="10.9.9.9")
    entries = {e.action: e for e in new_entries(since)}
    assert len(new_entries(since)) == 2 and set(entries) == {"login.failed", "login.locked"}
    assert entries["login.locked"].after == {"username": "victim", "client": "10.9.9.9"}


# The chain


def test_the_chain_links_each_entry_to_the_one_before_and_verifies():
    for number in range(5):
        audit_record(action="test.action", object_label=f"thing {number}", after={"n": number})
    entries = list(AuditEntry.objects.in_chain_order())
    for earlier, later in zip(entries, entries[1:], strict=False):
        assert later.prev_hash == earlier.hash and later.seq == earlier.seq + 1
    out = io.StringIO()
    call_command("verify_audit_log", stdout=out)
    assert f"intact: {len(entries)} entries" in out.getvalue()


def test_an_entry_tampered_with_in_the_database_is_reported_by_verify():
    for number in range(4):
        audit_record(action="budget.site.changed", object_label="site", after={"monthly_limit": number})
    target = AuditEntry.objects.in_chain_order()[2]
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE audit_auditentry SET after = %s WHERE id = %s", ['{"monthly_limit": 999}', target.pk]
        )
    with pytest.raises(CommandError) as refused:
        call_command("verify_audit_log")
    assert f"broken at entry #{target.seq}" in str(refused.value) and "was changed" in str(refused.value)


def test_an_entry_deleted_from_the_database_is_reported_by_verify():
    for number in range(4):
        audit_record(action="test.action", after={"n": number})
    target = AuditEntry.objects.in_chain_order()[1]
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditentry WHERE id = %s", [target.pk])
    checked, broken = audit_verify()
    assert broken is not None and broken.seq == target.seq + 1 and "missing" in broken.reason


def test_the_newest_entries_deleted_from_the_database_are_reported_by_verify():
    for number in range(3):
        audit_record(action="test.action", after={"n": number})
    newest = AuditEntry.objects.in_chain_order().last()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditentry WHERE id = %s", [newest.pk])
    with pytest.raises(CommandError, match=f"broken at entry #{newest.seq}: the chain should have"):
        call_command("verify_audit_log")


def test_entries_cannot_be_changed_or_deleted_through_the_app():
    entry = audit_record(action="test.action")
    with pytest.raises(AuditImmutable):
        entry.save()
    with pytest.raises(AuditImmutable):
        entry.delete()
    with pytest.raises(AuditImmutable):
        AuditEntry.objects.filter(pk=entry.pk).update(action="other")
    with pytest.raises(AuditImmutable):
        AuditEntry.objects.all().delete()


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_never_fork_the_chain():
    outcomes = run_in_threads(lambda i: audit_record(action="test.concurrent", after={"i": i}).seq, 8)
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    first = min(outcomes)
    assert sorted(outcomes) == list(range(first, first + 8))  # eight links, none shared
    assert audit_verify()[1] is None


def test_an_action_rolled_back_leaves_no_entry_and_the_chain_intact():
    from django.db import transaction

    since = last_seq()
    with pytest.raises(RuntimeError), transaction.atomic():
        Team.objects.create(name="Ghost")
        raise RuntimeError
    assert new_entries(since) == [] and audit_verify()[1] is None
    Team.objects.create(name="Real")
    assert audit_verify()[1] is None


# The admin


def test_staff_read_filter_and_export_the_log_but_cannot_add_change_or_delete(client):
    client.force_login(make_staff("ada"))
    make_team("Physics")
    audit_record(action="test.other")
    page = client.get("/admin/audit/auditentry/?action=team.created")
    assert page.status_code == 200
    assert [e.action for e in page.context["cl"].result_list] == ["team.created"]
    entry = AuditEntry.objects.get(action="team.created")
    assert client.get(f"/admin/audit/auditentry/{entry.pk}/change/").status_code == 200  # a read-only view
    assert client.get("/admin/audit/auditentry/add/").status_code == 403
    assert client.post(f"/admin/audit/auditentry/{entry.pk}/change/", {"action": "x"}).status_code == 403
    assert client.post(f"/admin/audit/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    response = client.post(
        "/admin/audit/auditentry/", {"action": "export_csv", "_selected_action": [entry.pk]}
    )
    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["action"], r["object_label"], r["hash"]) for r in rows] == [
        ("team.created", "Physics", entry.hash)
    ]
    AuditEntry.objects.get(pk=entry.pk)  # still there


def test_people_who_are_not_staff_cannot_read_the_log(client):
    client.force_login(make_user())
    response = client.get("/admin/audit/auditentry/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]

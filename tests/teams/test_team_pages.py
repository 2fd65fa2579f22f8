"""The team page a manager sees, the admin where staff run teams, a user's own cap, and the dashboard's
teams panel: what each shows and what each refuses."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone
from teams_factories import join, make_team, make_user, record_call_at

from billing.forecast import forecast
from billing.models import BudgetAlert, BudgetPolicy, OrganisationBudget, UserBudget
from billing.money import usd_to_pico
from billing.periods import current_month
from teams.models import Membership, Team

pytestmark = pytest.mark.django_db

USD = usd_to_pico(1)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _member_budget(client, team, member, policy, amount=""):
    prefix = f"m{member.pk}"
    return client.post(
        f"/teams/{team.pk}/members/{member.pk}/budget/",
        {f"{prefix}-policy": policy, f"{prefix}-monthly_limit_usd": amount},
    )


# --- The team page ---------------------------------------------------------------------------------


def test_a_manager_sees_members_spend_budgets_and_forecasts_but_no_conversation_content():
    boss = make_user("boss")
    alice = make_user("alice", first_name="Alice", last_name="Ames")
    team = make_team("Lab", managers=[boss], members=[alice], monthly_limit=10 * USD)
    from tests.helpers import make_conversation

    conversation = make_conversation(alice, title="Secret merger plans")
    record_call_at(timezone.now(), alice, conversation=conversation, input_tokens=1000, output_tokens=500)

    page = client_for(boss).get(f"/teams/{team.pk}/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "Alice Ames" in html and "(alice)" in html
    assert "Secret merger plans" not in html  # costs and names, never conversation content
    assert 'id="team-forecast"' in html
    assert "of its <strong>$10.00</strong> monthly budget" in html
    member = page.context["members"][0]
    assert member["spent_here"] > 0 and member["spent"] == member["spent_here"]


def test_another_teams_manager_and_a_member_get_404_and_staff_see_every_team():
    boss, other_boss, alice = make_user("boss"), make_user("other"), make_user("alice")
    team = make_team("Lab", managers=[boss], members=[alice])
    make_team("Studio", managers=[other_boss])
    staff = make_user("root", is_staff=True)

    assert client_for(other_boss).get(f"/teams/{team.pk}/").status_code == 404
    assert client_for(alice).get(f"/teams/{team.pk}/").status_code == 404
    assert client_for(alice).get("/teams/").status_code == 404
    assert _member_budget(client_for(other_boss), team, alice, "limit", "5").status_code == 404
    assert client_for(staff).get(f"/teams/{team.pk}/").status_code == 200
    assert client_for(boss).get("/teams/").url == f"/teams/{team.pk}/"
    assert Client().get(f"/teams/{team.pk}/").status_code == 302  # to the login page


def test_a_manager_sets_a_members_budget_and_bad_amounts_are_refused_with_a_sentence():
    boss, alice = make_user("boss"), make_user("alice")
    team = make_team("Lab", managers=[boss], members=[alice], monthly_limit=10 * USD)
    client = client_for(boss)

    for amount, words in [
        ("-5", "cannot be negative"),
        ("5000000", "at most $1,000,000"),
        ("ten", "Enter an amount in US dollars"),
        ("", "Enter the limit"),
    ]:
        refused = _member_budget(client, team, alice, "limit", amount)
        assert refused.status_code == 400 and words in refused.content.decode(), amount
        assert not UserBudget.objects.filter(user=alice).exists()

    saved = _member_budget(client, team, alice, "limit", "12.50")
    assert saved.status_code == 302
    budget = UserBudget.objects.get(user=alice)
    assert (budget.policy, budget.monthly_limit) == (BudgetPolicy.LIMIT, usd_to_pico("12.50"))
    page = client.get(f"/teams/{team.pk}/").content.decode()
    # 12.50 is more than the team's 10: allowed, and said.
    assert "more than the team" in page and "still holds" in page


def test_a_budget_below_what_was_spent_is_allowed_and_says_no_more_this_month():
    boss, alice = make_user("boss"), make_user("alice")
    team = make_team("Lab", managers=[boss], members=[alice])
    record_call_at(timezone.now(), alice, output_tokens=200_000)  # $2 at Sonnet 5.5's $10/MTok output
    client = client_for(boss)

    response = _member_budget(client, team, alice, "limit", "1")

    assert response.status_code == 302
    shown = client.get(response.url).content.decode()
    assert "no more can be spent this month" in shown


def test_a_manager_cannot_raise_their_own_budget():
    boss = make_user("boss")
    team = make_team("Lab", managers=[boss], members=[boss])

    response = _member_budget(client_for(boss), team, boss, "unlimited")

    assert response.status_code == 302
    assert not UserBudget.objects.filter(user=boss).exists()
    assert "set by an administrator" in client_for(boss).get(response.url).content.decode()


def test_a_member_who_left_still_shows_with_what_they_spent_under_the_team_and_cannot_be_budgeted():
    boss, alice = make_user("boss"), make_user("alice")
    lab = make_team("Lab", managers=[boss], members=[alice])
    record_call_at(timezone.now(), alice, output_tokens=1000)
    join(alice, make_team("Studio"))

    page = client_for(boss).get(f"/teams/{lab.pk}/")

    assert "(left the team)" in page.content.decode()
    assert _member_budget(client_for(boss), lab, alice, "limit", "5").status_code == 404


def test_the_team_page_lists_the_months_alerts():
    boss, alice = make_user("boss", email="boss@example.org"), make_user("alice")
    team = make_team("Lab", managers=[boss], members=[alice], monthly_limit=USD)
    record_call_at(timezone.now(), alice, output_tokens=90_000)  # $0.90 of $1 ($10/MTok): past 80 %

    html = client_for(boss).get(f"/teams/{team.pk}/").content.decode()

    assert BudgetAlert.objects.filter(subject_id=team.pk, percent=80).count() == 1
    assert "Team Lab&#x27;s budget for" in html and "has passed 80%" in html


# --- The admin ---------------------------------------------------------------------------------------


def _team_form(**fields) -> dict:
    data = {
        "name": "Lab",
        "warning_percent": "80",
        "monthly_limit_usd": "",
        "default_model": "",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    data.update(fields)
    return data


def test_staff_create_a_team_in_dollars_and_absurd_or_inconsistent_input_is_refused(settings):
    staff = make_user("root", is_staff=True, is_superuser=True)
    client = client_for(staff)
    settings.CHAT_MODELS = ["claude-sonnet-5-5", "claude-opus-5-5", "claude-haiku-5-5"]

    negative = client.post("/admin/teams/team/add/", _team_form(monthly_limit_usd="-1"))
    absurd = client.post("/admin/teams/team/add/", _team_form(monthly_limit_usd="99999999"))
    wrong_default = client.post(
        "/admin/teams/team/add/",
        _team_form(allowed_models=["claude-haiku-5-5"], default_model="claude-opus-5-5"),
    )
    assert "cannot be negative" in negative.content.decode()
    assert "at most $1,000,000" in absurd.content.decode()
    assert "must be one of the team" in wrong_default.content.decode()
    assert not Team.objects.exists()

    created = client.post(
        "/admin/teams/team/add/",
        _team_form(
            monthly_limit_usd="250.75", allowed_models=["claude-haiku-5-5"], default_model="claude-haiku-5-5"
        ),
    )
    assert created.status_code == 302
    team = Team.objects.get()
    assert team.monthly_limit == usd_to_pico("250.75")
    assert team.allowed_models == ["claude-haiku-5-5"]


def test_adding_someone_from_another_team_moves_them_and_keeps_their_past_spending_there():
    staff = make_user("root", is_staff=True, is_superuser=True)
    alice = make_user("alice")
    studio = make_team("Studio", members=[alice])
    lab = make_team("Lab")
    record_call_at(timezone.now(), alice, output_tokens=1000)

    response = client_for(staff).post(
        f"/admin/teams/team/{lab.pk}/change/",
        _team_form(**{"memberships-TOTAL_FORMS": "1", "memberships-0-user": str(alice.pk)}),
        follow=True,
    )

    assert response.status_code == 200
    assert Membership.objects.get(user=alice).team == lab
    assert "moved from Studio to Lab" in response.content.decode()
    from billing.models import UsageRecord

    assert set(UsageRecord.objects.values_list("team_id", flat=True)) == {studio.pk}


def test_the_organisation_cap_is_set_in_the_admin():
    staff = make_user("root", is_staff=True, is_superuser=True)
    client = client_for(staff)
    OrganisationBudget.load()

    refused = client.post(
        "/admin/billing/organisationbudget/1/change/", {"monthly_limit_usd": "-3", "warning_percent": "80"}
    )
    saved = client.post(
        "/admin/billing/organisationbudget/1/change/", {"monthly_limit_usd": "5000", "warning_percent": "90"}
    )

    assert "cannot be negative" in refused.content.decode()
    assert saved.status_code == 302
    budget = OrganisationBudget.objects.get(pk=1)
    assert (budget.monthly_limit, budget.warning_percent) == (5000 * USD, 90)


# --- A user's own cap --------------------------------------------------------------------------------


def test_a_user_sets_and_removes_their_own_cap_on_the_usage_page():
    alice = make_user("alice")
    client = client_for(alice)

    assert client.post("/usage/cap/", {"personal_limit_usd": "-1"}).status_code == 400
    assert not UserBudget.objects.filter(user=alice, personal_limit__isnull=False).exists()
    assert client.post("/usage/cap/", {"personal_limit_usd": "4"}).status_code == 302
    assert UserBudget.objects.get(user=alice).personal_limit == 4 * USD
    page = client.get("/usage/").content.decode()
    assert "cap (the one you set yourself)" in page and 'value="4.00"' in page
    assert client.post("/usage/cap/", {"personal_limit_usd": ""}).status_code == 302
    assert UserBudget.objects.get(user=alice).personal_limit is None
    assert client.get("/usage/cap/").status_code == 405


def test_the_usage_page_shows_each_limited_level_with_its_forecast_and_the_team_banner():
    boss = make_user("boss", first_name="Grace", last_name="Hopper")
    alice = make_user("alice")
    make_team("Lab", managers=[boss], members=[alice], monthly_limit=USD)
    OrganisationBudget.objects.create(pk=1, monthly_limit=1000 * USD)
    record_call_at(timezone.now(), alice, output_tokens=105_000)  # $1.05: the team's $1 is used up

    html = client_for(alice).get("/usage/").content.decode()

    assert "Your team&#x27;s budget (Lab):" in html
    assert "The organisation&#x27;s budget:" in html
    assert "Used up for this month." in html
    assert "Your team&#x27;s budget for" in html and "is used up" in html and "ask Grace Hopper" in html


# --- The dashboard -----------------------------------------------------------------------------------


def test_the_dashboard_lists_teams_with_budgets_and_filters_by_team():
    staff = make_user("root", is_staff=True, is_superuser=True)
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    lab = make_team("Lab", members=[alice], monthly_limit=100 * USD)
    make_team("Studio", members=[bob])
    for user in (alice, bob, carol):
        record_call_at(timezone.now(), user, output_tokens=1000)
    client = client_for(staff)

    everyone = client.get("/admin/billing/usagerecord/dashboard/", {"preset": "month"})
    only_lab = client.get("/admin/billing/usagerecord/dashboard/", {"preset": "month", "team": lab.pk})
    no_team = client.get("/admin/billing/usagerecord/dashboard/", {"preset": "month", "team": 0})

    names = [row["name"] for row in everyone.context["teams"]]
    assert {"Lab", "Studio"} <= set(names)
    assert everyone.context["teams"][-1]["no_team"]  # calls made under no team, listed last
    lab_row = next(row for row in everyone.context["teams"] if row["name"] == "Lab")
    assert lab_row["limit"] == 100 * USD and lab_row["members"] == 1
    assert everyone.context["totals"]["active_users"] == 3
    assert only_lab.context["totals"]["active_users"] == 1
    assert [row["username_label"] for row in only_lab.context["users"]] == ["alice"]
    assert [row["username_label"] for row in no_team.context["users"]] == ["carol"]
    assert f'option value="{lab.pk}" selected' in only_lab.content.decode()
    # Preset links keep the team.
    assert f"?preset=last_month&amp;team={lab.pk}" in only_lab.content.decode()


# --- Forecasts ---------------------------------------------------------------------------------------


def test_the_forecast_names_the_day_at_this_months_pace_and_says_when_it_will_not_run_out():
    month = current_month(timezone.make_aware(datetime(2026, 12, 10, 12)))
    noon_10th = timezone.make_aware(datetime(2026, 12, 10, 12))
    # $9.50 spent in 9.5 days: $1 a day, $10 budget: $0.50 left, runs out on the 11th around midnight.
    soon = forecast(usd_to_pico("9.50"), 10 * USD, month, noon_10th)
    assert soon.runs_out and soon.day == date(2026, 12, 11)
    assert soon.sentence == "At this month's pace, it runs out on 11 December."
    # $1 in 9.5 days with a $100 budget: about $3.26 by the month's end, not run out.
    later = forecast(USD, 100 * USD, month, noon_10th)
    assert later.state == "holds" and "will not run out this month" in later.sentence
    assert forecast(0, 10 * USD, month, noon_10th).state == "quiet"
    assert forecast(10 * USD, 10 * USD, month, noon_10th).sentence == "Used up for this month."
    assert forecast(USD, None, month, noon_10th).state == "unlimited"


def test_a_recent_burst_brings_the_forecast_forward():
    now = timezone.make_aware(datetime(2026, 12, 20, 12))
    month = current_month(now)
    # $14 spent: $7 on each of the last two days, nothing before. The month's pace ($0.72/day) would
    # hold a $30 budget; the last week's ($2/day) runs it out before the month ends.
    daily = [(date(2026, 12, 18), 7 * USD), (date(2026, 12, 19), 7 * USD)]
    result = forecast(14 * USD, 30 * USD, month, now, daily)
    assert result.runs_out and result.basis == "the last 7 days' pace"
    assert result.day == now.date() + timedelta(days=8)


def test_the_teams_panel_shows_teams_needing_attention_first_and_all_teams_on_request():
    staff = make_user("root", is_staff=True, is_superuser=True)
    teams = [make_team(f"Team {n:02d}") for n in range(25)]
    spender, runner = make_user("spender"), make_user("runner")
    join(spender, teams[3])
    join(runner, teams[24])
    teams[24].monthly_limit = USD
    teams[24].save()
    record_call_at(timezone.now(), spender, output_tokens=500_000)  # $5: the dearest team
    record_call_at(timezone.now(), runner, output_tokens=105_000)  # $1.05 of $1: used up
    client = client_for(staff)

    first = client.get("/admin/billing/usagerecord/dashboard/", {"preset": "month"})
    every = client.get("/admin/billing/usagerecord/dashboard/", {"preset": "month", "teams": "all"})

    shown = [row["name"] for row in first.context["teams"]]
    assert len(shown) == 20 and first.context["teams_count"] == 25
    assert shown[:2] == ["Team 24", "Team 03"]  # used up first, then the dearest
    assert "Show all teams" in first.content.decode()
    assert len(every.context["teams"]) == 25 and "Show all teams" not in every.content.decode()

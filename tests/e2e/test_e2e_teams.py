"""Teams in Chromium: a manager sets a member's budget and reads the forecast and the alert; a member
whose team's budget is used up is told so, naming the manager; a member picks only the team's models."""

from __future__ import annotations

import re

from playwright.sync_api import expect

# Run by `manage.py shell` in the server's database: a team named TEAM managed by MANAGER (named Grace
# Hopper), with MEMBER in it, a monthly budget of LIMIT dollars and MODELS allowed; MEMBER has spent
# SPENT dollars this month under it (Sonnet 5.5 output at $10 per million tokens).
SEED = """
from django.contrib.auth import get_user_model
from billing.money import usd_to_pico
from billing.services import usage_record
from billing.usage import LedgerLabels, Usage
from teams.models import Membership, Team

User = get_user_model()
manager = User.objects.get(username=MANAGER)
manager.first_name, manager.last_name = "Grace", "Hopper"
manager.save()
member = User.objects.get(username=MEMBER)
team = Team.objects.create(name=TEAM, monthly_limit=usd_to_pico(LIMIT), allowed_models=MODELS,
                           default_model=MODELS[0] if MODELS else "")
team.managers.add(manager)
Membership.objects.create(user=member, team=team)
tokens = int(float(SPENT) * 100_000)
if tokens:
    usage_record(labels=LedgerLabels(user_id=member.pk, username=member.username, conversation_id=None,
                                     conversation_title="", model="claude-sonnet-5-5"),
                 message_id=None, request_id="seed-team", usage=Usage(output_tokens=tokens), estimated=False)
print(team.pk)
"""


def make_team(manage, *, team: str, manager: str, member: str, limit: str, spent: str, models=()) -> int:
    script = (
        SEED.replace("MANAGER", repr(manager))
        .replace("MEMBER", repr(member))
        .replace("TEAM", repr(team))
        .replace("LIMIT", repr(limit))
        .replace("SPENT", repr(spent))
        .replace("MODELS", repr(list(models)))
    )
    return int(manage("shell", "-c", script).strip().splitlines()[-1])


def test_a_manager_sets_a_members_budget_and_sees_the_forecast_and_the_alert(new_context, sign_up, manage):
    boss_page, member_page = new_context().new_page(), new_context().new_page()
    boss, member = sign_up(boss_page), sign_up(member_page)
    team_id = make_team(manage, team="Lab", manager=boss, member=member, limit="1", spent="0.9")

    boss_page.goto("/")
    boss_page.locator(".account-menu summary").click()
    boss_page.locator(".account-menu").get_by_role("link", name="Teams").click()
    expect(boss_page).to_have_url(re.compile(rf"/teams/{team_id}/$"))
    expect(boss_page.locator("#team-budget")).to_contain_text("$0.90 of its $1.00 monthly budget (90%)")
    expect(boss_page.locator("#team-forecast")).to_contain_text(
        re.compile(r"runs out on \d+ \w+|will not run out")
    )
    expect(boss_page.locator("#team-alerts")).to_contain_text("Team Lab's budget for")
    expect(boss_page.locator("#team-alerts")).to_contain_text("has passed 80%")

    row = boss_page.locator("#team-members tbody tr", has_text=member)
    row.get_by_label(f"Budget of {member}").select_option("limit")
    row.get_by_label(f"Monthly limit of {member} (USD)").fill("0.50")
    row.get_by_role("button", name="Save").click()

    expect(boss_page.locator(".flash")).to_contain_text("no more can be spent this month")
    row = boss_page.locator("#team-members tbody tr", has_text=member)
    expect(row).to_contain_text("$0.50")
    # The member's page says their budget is reached.
    member_page.goto("/usage/")
    expect(member_page.locator("#my-budget")).to_contain_text("of your $0.50 monthly budget")
    # On a phone the team page scrolls its tables inside their boxes, never the page sideways.
    boss_page.set_viewport_size({"width": 390, "height": 844})
    boss_page.reload()
    widths = boss_page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"the team page is {widths[0]} px wide on a {widths[1]} px screen"


def test_a_member_is_told_the_teams_budget_is_used_up_and_whom_to_ask(new_context, sign_up, manage):
    boss_page, member_page = new_context().new_page(), new_context().new_page()
    boss, member = sign_up(boss_page), sign_up(member_page)
    make_team(manage, team="Studio", manager=boss, member=member, limit="1", spent="1.05")

    member_page.goto("/")
    banner = member_page.locator("#budget-banner")
    expect(banner).to_contain_text("Your team's budget for")
    expect(banner).to_contain_text("is used up")
    expect(banner).to_contain_text("ask Grace Hopper")

    composer = member_page.locator("#composer-input")
    composer.fill("Can I still ask something?")
    composer.press("Enter")
    # Sending is paused, saying why; what the member typed is kept.
    expect(member_page.locator("#send-button")).to_be_disabled()
    expect(member_page.locator("#composer-hint")).to_contain_text("budget is used up")
    expect(composer).to_have_value("Can I still ask something?")


def test_a_member_picks_only_the_models_their_team_may_use(new_context, sign_up, manage):
    boss_page, member_page = new_context().new_page(), new_context().new_page()
    boss, member = sign_up(boss_page), sign_up(member_page)
    make_team(
        manage,
        team="Haiku club",
        manager=boss,
        member=member,
        limit="100",
        spent="0",
        models=["claude-haiku-5-5"],
    )

    member_page.goto("/")
    options = member_page.locator("select[name=model] option")
    expect(options).to_have_count(1)
    expect(options.first).to_have_attribute("value", "claude-haiku-5-5")
    # Someone outside any team still sees every model the site offers.
    boss_page.goto("/")
    assert boss_page.locator("select[name=model] option").count() > 1

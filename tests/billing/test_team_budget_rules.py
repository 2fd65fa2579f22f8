"""The rules of budgets at three levels (organisation, team, person), one call at a time: which level
refuses and in whose words, which level a shorter reply is granted from, which team a call is billed to,
who is told when a budget passes its thresholds, and what the person sees."""

from __future__ import annotations

import html
from datetime import timedelta
from pathlib import Path

import pytest
from billing_factories import (
    join_team,
    make_conversation,
    make_manager,
    make_message,
    make_team,
    make_user,
    record_call,
    set_organisation_cap,
)
from django.core.management import call_command
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from billing.holds import MIN_REPLY_TOKENS, worst_case_cost
from billing.levels import ORGANISATION, TEAM, USER
from billing.models import (
    AlertScope,
    BudgetAlert,
    BudgetPolicy,
    ModelPrice,
    SpendReservation,
    UsageDailyTeam,
    UsageMonthlyTeam,
    UsageRecord,
    UserBudget,
)
from billing.money import usd_to_pico
from billing.periods import current_month
from billing.services import BudgetExceeded, budget_status, spend_reserve

pytestmark = pytest.mark.django_db
PRICES = Path(__file__).resolve().parents[2] / "billing" / "prices" / "anthropic-2026-11.json"

SONNET = "claude-sonnet-4-6"  # $3/MTok input, $6/MTok 1-hour cache write, $15/MTok output
HAIKU = "claude-haiku-4-5"  # $1/MTok input
PROMPT, ASKED = 1_000, 8_000


@pytest.fixture(autouse=True)
def _knobs(settings):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    settings.CHAT_DEFAULT_MONTHLY_BUDGET_USD = "unlimited"
    # Idempotent; restores the seeded prices if a transactional test flushed them earlier in the run.
    call_command("load_prices", str(PRICES), verbosity=0)


def reserve(user, message_id: int, *, max_tokens: int = ASKED) -> int:
    with transaction.atomic():
        return spend_reserve(
            user=user, model=SONNET, prompt_tokens=PROMPT, max_tokens=max_tokens, message_id=message_id
        )


def refusal_of(user, message_id: int = 1) -> BudgetExceeded:
    with pytest.raises(BudgetExceeded) as refused:
        reserve(user, message_id)
    return refused.value


def spend(user, usd: str, **labels):
    """A call costing exactly `usd` (Haiku 4.5 input at $1/MTok), held by nothing (like a title call)."""
    tokens, rest = divmod(usd_to_pico(usd), 1_000_000)
    assert rest == 0
    return record_call(user, model=HAIKU, input_tokens=tokens, **labels)


def set_budget(user, *, limit: str | None = None, personal: str | None = None) -> None:
    """Staff's monthly limit for `user` (None: unlimited) and the user's own cap (None: none)."""
    UserBudget.objects.update_or_create(
        user=user,
        defaults={
            "policy": BudgetPolicy.LIMIT if limit is not None else BudgetPolicy.UNLIMITED,
            "monthly_limit": usd_to_pico(limit) if limit is not None else None,
            "personal_limit": usd_to_pico(personal) if personal is not None else None,
        },
    )


def month_words() -> tuple[str, str]:
    """This month's name and the day the budgets reset, as the sentences write them."""
    period = current_month(timezone.now())
    resets = period.last_day + timedelta(days=1)
    return f"{period.first_day:%B}", f"{resets:%B} {resets.day}"


def sonnet_rates():
    return ModelPrice.objects.in_effect(SONNET, timezone.now()).base_rates


def room_for(output_tokens: int) -> int:
    """What a level must have left for a call of PROMPT prompt tokens granted `output_tokens`."""
    rates = sonnet_rates()
    return PROMPT * rates.prompt_rate("1h") + output_tokens * rates.output


# Who refuses, and in whose words


def test_a_team_budget_used_up_refuses_in_the_teams_words_naming_its_managers():
    grace, ada = make_manager("Grace", "Hopper"), make_manager("Ada", "Lovelace")
    member = make_user()
    make_team("Compilers", limit=usd_to_pico("0.40"), managers=[grace, ada], members=[member])
    spend(member, "0.40")

    refused = refusal_of(member)

    month, resets = month_words()
    assert refused.level.scope == TEAM
    assert str(refused) == (
        f"Your team's budget for {month} is used up ($0.40 of $0.40): ask Ada Lovelace or Grace Hopper. "
        f"It resets on {resets}."
    )


def test_a_team_without_managers_sends_its_members_to_an_administrator():
    member = make_user()
    make_team("Orphans", limit=usd_to_pico("0.10"), members=[member])
    spend(member, "0.10")

    assert "ask an administrator" in str(refusal_of(member))


def test_a_team_budget_too_short_for_the_message_says_so_and_whom_to_ask():
    grace, member = make_manager("Grace", "Hopper"), make_user()
    make_team("Compilers", limit=usd_to_pico("0.10"), managers=[grace], members=[member])
    spend(member, "0.09")  # $0.01 left: less than the smallest reply's worst case

    refused = refusal_of(member)

    month, _resets = month_words()
    # The smallest reply: its prompt written to the 1-hour cache ($0.006) and MIN_REPLY_TOKENS of output.
    assert worst_case_cost(
        model=SONNET, prompt_tokens=PROMPT, max_tokens=MIN_REPLY_TOKENS, at=timezone.now()
    ) == usd_to_pico("0.03672")
    assert refused.level.scope == TEAM
    assert str(refused) == (
        f"This message could cost up to $0.037, but only $0.01 of your team's $0.10 budget for {month} "
        "is left. It would fit on claude-haiku-5-5: choose it in this conversation's settings, or try a "
        "shorter conversation, or ask Grace Hopper."
    )


def test_the_organisations_cap_used_up_refuses_in_its_words_before_a_team_with_room():
    member = make_user()
    make_team(
        "Compilers", limit=usd_to_pico("5"), managers=[make_manager("Grace", "Hopper")], members=[member]
    )
    set_organisation_cap(usd_to_pico("0.50"))
    spend(make_user(), "0.50")  # someone in no team spent it all

    refused = refusal_of(member)

    month, resets = month_words()
    assert refused.level.scope == ORGANISATION
    assert str(refused) == (
        f"The organisation's budget for {month} is used up ($0.50 of $0.50): ask an administrator. "
        f"It resets on {resets}."
    )


def test_a_personal_cap_below_staffs_limit_refuses_in_the_persons_own_words():
    member = make_user()
    make_team("Compilers", limit=usd_to_pico("5"), members=[member])
    set_budget(member, limit="1", personal="0.10")
    spend(member, "0.10")  # well within staff's $1 and the team's $5

    refused = refusal_of(member)

    _month, resets = month_words()
    assert refused.level.scope == USER and refused.level.personal
    assert str(refused) == (
        "You've reached the monthly limit you set yourself ($0.10, $0.10 spent). "
        f"It resets on {resets}; you can raise it on your usage page."
    )


def test_a_personal_cap_too_short_for_the_message_points_to_the_usage_page_not_an_administrator():
    member = make_user()
    set_budget(member, limit="1", personal="0.10")
    spend(member, "0.09")

    refused = refusal_of(member)

    assert refused.level.scope == USER and refused.level.personal
    assert "of your own $0.10" in str(refused)
    assert str(refused).endswith("you can raise your own limit on your usage page.")
    assert "administrator" not in str(refused)


def test_staffs_limit_below_the_persons_own_cap_refuses_in_staffs_words():
    member = make_user()
    set_budget(member, limit="0.10", personal="1")
    spend(member, "0.10")

    refused = refusal_of(member)

    assert refused.level.scope == USER and not refused.level.personal
    assert str(refused).startswith("You've reached your monthly budget of $0.10 ($0.10 spent).")
    assert "ask an administrator" in str(refused)


# A shorter reply, granted from the shortest level


@pytest.mark.parametrize("shortest", [ORGANISATION, TEAM, USER])
def test_a_shorter_reply_is_granted_from_whichever_level_has_least_left(shortest):
    """Each level has spent something different (the person, a colleague in the team, someone outside
    it); each has room for fewer tokens than asked, the shortest for fewest: the grant is its."""
    member, colleague, outsider = make_user(), make_user(), make_user()
    team = make_team("Compilers", members=[member, colleague])
    spend(member, "0.03")
    spend(colleague, "0.05")
    spend(outsider, "0.07")
    spent = {USER: usd_to_pico("0.03"), TEAM: usd_to_pico("0.08"), ORGANISATION: usd_to_pico("0.15")}
    tokens = {level: 3_600 for level in spent} | {shortest: 3_000}
    tokens[{ORGANISATION: TEAM, TEAM: USER, USER: ORGANISATION}[shortest]] = 3_300
    # Seven pUSD short of one more token at every level: the grant rounds down, never up.
    limits = {level: spent[level] + room_for(tokens[level]) + 7 for level in spent}
    set_organisation_cap(limits[ORGANISATION])
    team.monthly_limit = limits[TEAM]
    team.save()
    UserBudget.objects.create(user=member, policy=BudgetPolicy.LIMIT, monthly_limit=limits[USER])

    granted = reserve(member, message_id=42)

    assert granted == 3_000
    hold = SpendReservation.objects.get(message_id=42)
    assert hold.max_tokens == 3_000
    assert hold.amount == worst_case_cost(
        model=SONNET, prompt_tokens=PROMPT, max_tokens=3_000, at=timezone.now()
    )
    assert hold.amount == room_for(3_000) <= limits[shortest] - spent[shortest]
    assert hold.team_id == team.pk


def test_the_persons_own_cap_sets_the_grant_when_it_is_shorter_than_staffs_limit_and_the_team():
    member = make_user()
    make_team("Compilers", limit=usd_to_pico("5"), members=[member])
    set_budget(member, limit="1")
    UserBudget.objects.filter(user=member).update(personal_limit=room_for(2_500))

    assert reserve(member, message_id=7) == 2_500


def test_no_grant_below_the_useful_minimum_even_when_the_shortest_level_could_pay_for_fewer():
    member = make_user()
    make_team("Compilers", limit=room_for(MIN_REPLY_TOKENS - 1), members=[member])

    refused = refusal_of(member)

    assert refused.level.scope == TEAM
    assert SpendReservation.objects.count() == 0


# The team a call is billed to


def test_a_member_moved_to_another_team_mid_reply_is_billed_to_the_team_of_the_hold():
    member = make_user()
    compilers = make_team("Compilers", limit=usd_to_pico("5"), members=[member])
    kernel = make_team("Kernel", limit=usd_to_pico("5"))
    conversation = make_conversation(member)
    message = make_message(conversation)
    granted = reserve(member, message.pk)
    join_team(member, kernel)  # moved while the reply streams

    record = record_call(
        member,
        model=SONNET,
        conversation=conversation,
        message=message,
        cache_write_1h_tokens=PROMPT,
        output_tokens=granted,
    )

    assert (record.team_id, record.team_name) == (compilers.pk, "Compilers")
    month = current_month(timezone.now()).first_day
    assert UsageMonthlyTeam.objects.get(month=month, team_id=compilers.pk).cost == record.cost
    assert not UsageMonthlyTeam.objects.filter(month=month, team_id=kernel.pk).exists()
    day = timezone.localtime(record.created_at).date()
    assert UsageDailyTeam.objects.get(day=day, team_id=compilers.pk).cost == record.cost
    assert not UsageDailyTeam.objects.filter(team_id=kernel.pk).exists()
    assert SpendReservation.objects.get(message_id=message.pk).settled_at is not None
    # The next call is the new team's; the first team's budget keeps what was spent under it.
    assert budget_status(member).levels.team.subject_id == kernel.pk
    reserve(member, message.pk + 1000)
    assert SpendReservation.objects.get(message_id=message.pk + 1000).team_id == kernel.pk
    assert UsageRecord.objects.get(pk=record.pk).team_id == compilers.pk  # never rewritten


def test_a_team_deleted_mid_reply_still_gets_the_call_and_the_hold_settles(
    django_capture_on_commit_callbacks,
):
    member = make_user()
    grace = make_manager("Grace", "Hopper")
    # The call crosses the team's 80 % and 100 %: the alert check must not trip on the missing team.
    team = make_team("Compilers", limit=usd_to_pico("0.03"), managers=[grace], members=[member])
    team_id = team.pk
    conversation = make_conversation(member)
    message = make_message(conversation)
    granted = reserve(member, message.pk, max_tokens=1_000)
    team.delete()

    with django_capture_on_commit_callbacks(execute=True):
        record = record_call(
            member,
            model=SONNET,
            conversation=conversation,
            message=message,
            cache_write_1h_tokens=PROMPT,
            output_tokens=granted,
        )

    assert (record.team_id, record.team_name) == (team_id, "Compilers")
    assert record.cost == usd_to_pico("0.021")
    month = current_month(timezone.now()).first_day
    rolled = UsageMonthlyTeam.objects.get(month=month, team_id=team_id)
    assert (rolled.cost, rolled.team_name) == (record.cost, "Compilers")
    assert SpendReservation.objects.get(message_id=message.pk).settled_at is not None
    assert SpendReservation.objects.open(timezone.now()).count() == 0
    # The member is now in no team: their next call is held under none.
    reserve(member, message.pk + 1000, max_tokens=1_000)
    assert SpendReservation.objects.get(message_id=message.pk + 1000).team_id is None


# A budget lowered below what is already spent


def test_a_team_budget_lowered_below_its_spend_refuses_and_the_usage_page_says_so(client):
    grace, member = make_manager("Grace", "Hopper"), make_user()
    team = make_team("Compilers", limit=usd_to_pico("1"), managers=[grace], members=[member])
    spend(member, "0.50")
    team.monthly_limit = usd_to_pico("0.40")
    team.save()

    refused = refusal_of(member)

    month, resets = month_words()
    words = f"Your team's budget for {month} is used up ($0.50 of $0.40): ask Grace Hopper. It resets on {resets}."
    assert refused.level.scope == TEAM and str(refused) == words
    status = budget_status(member)
    assert status.state == "exhausted"
    assert status.binding.scope == TEAM and (status.binding.spent, status.binding.limit) == (
        usd_to_pico("0.50"),
        usd_to_pico("0.40"),
    )
    assert status.binding.available == 0
    client.force_login(member)
    page = html.unescape(client.get(reverse("billing:my_usage")).content.decode())
    assert words in page


def test_the_organisations_cap_lowered_below_its_spend_refuses_everyone_and_the_usage_page_says_so(client):
    member, loner = make_user(), make_user()
    make_team("Compilers", limit=usd_to_pico("5"), members=[member])
    spend(member, "0.30")
    spend(loner, "0.30")
    set_organisation_cap(usd_to_pico("0.50"))

    for person in (member, loner):
        refused = refusal_of(person)
        assert refused.level.scope == ORGANISATION and "is used up ($0.60 of $0.50)" in str(refused)
        status = budget_status(person)
        assert status.state == "exhausted" and status.binding.scope == ORGANISATION
        client.force_login(person)
        page = html.unescape(client.get(reverse("billing:my_usage")).content.decode())
        assert str(refused) in page


def test_staffs_limit_lowered_below_the_persons_spend_refuses_and_the_usage_page_says_so(client):
    member = make_user()
    spend(member, "0.50")
    set_budget(member, limit="0.40")

    refused = refusal_of(member)

    assert refused.level.scope == USER and "You've reached your monthly budget of $0.40" in str(refused)
    status = budget_status(member)
    assert status.state == "exhausted" and status.binding.scope == USER
    client.force_login(member)
    page = html.unescape(client.get(reverse("billing:my_usage")).content.decode())
    assert "Monthly budget reached." in page


# Alerts: stored once, to the right people


def test_a_team_passing_80_and_100_percent_alerts_its_managers_once_each(
    django_capture_on_commit_callbacks, mailoutbox
):
    grace = make_manager("Grace", "Hopper")
    make_manager("Root", "Admin", is_staff=True)  # staff are not mailed a team's alert
    other_team_manager = make_manager("Linus", "Torvalds")
    member = make_user()
    team = make_team("Compilers", limit=usd_to_pico("1"), managers=[grace], members=[member])
    make_team("Kernel", managers=[other_team_manager])

    for usd in ("0.50", "0.30", "0.10", "0.10", "0.10"):  # 50, 80, 90, 100, 110 %
        with django_capture_on_commit_callbacks(execute=True):
            spend(member, usd)

    alerts = BudgetAlert.objects.filter(scope=AlertScope.TEAM, subject_id=team.pk).order_by("percent")
    assert [(a.percent, a.spent, a.limit) for a in alerts] == [
        (80, usd_to_pico("0.80"), usd_to_pico("1")),
        (100, usd_to_pico("1.00"), usd_to_pico("1")),
    ]
    assert [mail.to for mail in mailoutbox] == [["grace.hopper@example.org"]] * 2
    assert "Team Compilers's budget" in mailoutbox[0].subject and "has passed 80%" in mailoutbox[0].subject
    assert "is used up" in mailoutbox[1].subject
    assert all(alert.recipients == "grace.hopper@example.org" for alert in alerts)


def test_the_organisation_passing_its_warning_alerts_staff_only(
    django_capture_on_commit_callbacks, mailoutbox
):
    make_manager("Root", "Admin", is_staff=True)
    grace, member = make_manager("Grace", "Hopper"), make_user()
    make_team("Compilers", managers=[grace], members=[member])
    set_organisation_cap(usd_to_pico("1"), warning_percent=50)

    with django_capture_on_commit_callbacks(execute=True):
        spend(member, "0.60")

    assert list(BudgetAlert.objects.values_list("scope", "percent")) == [(AlertScope.ORGANISATION, 50)]
    assert [mail.to for mail in mailoutbox] == [["root.admin@example.org"]]
    assert "The organisation's budget" in mailoutbox[0].subject


def test_a_members_own_budget_passing_its_warning_alerts_the_team_managers(
    django_capture_on_commit_callbacks, mailoutbox
):
    grace, member = make_manager("Grace", "Hopper"), make_user()
    make_team("Compilers", managers=[grace], members=[member])
    set_budget(member, limit="1")

    with django_capture_on_commit_callbacks(execute=True):
        spend(member, "0.85")

    assert list(BudgetAlert.objects.values_list("scope", "subject_id", "percent")) == [
        (AlertScope.USER, member.pk, 80)
    ]
    assert [mail.to for mail in mailoutbox] == [["grace.hopper@example.org"]]

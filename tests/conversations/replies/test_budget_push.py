"""A budget changed by staff or a manager reaches the open chat pages it applies to at once: their
budget banner and Send button re-render, without a reload, and no one else's page hears of it."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from billing.models import BudgetPolicy, OrganisationBudget, UserBudget
from tests.helpers import make_conversation, make_user, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("offline_claude")]


async def open_page(user):
    conversation = await sync_to_async(make_conversation)(owner=user)
    socket, connected, code = await open_socket(user, conversation.pk)
    assert connected, code
    await socket.receive()  # the state every socket gets on connect
    return socket


def set_user_budget(user, usd_limit: int | None):
    policy = BudgetPolicy.LIMIT if usd_limit is not None else BudgetPolicy.UNLIMITED
    budget, _ = UserBudget.objects.get_or_create(user=user)
    budget.policy = policy
    budget.monthly_limit = None if usd_limit is None else usd_limit * 10**12
    budget.save()


async def test_a_used_up_budget_set_by_staff_pauses_send_on_the_open_page_and_a_raise_resumes_it():
    me, someone = await sync_to_async(make_user)(), await sync_to_async(make_user)()
    mine, theirs = await open_page(me), await open_page(someone)

    await sync_to_async(set_user_budget)(me, 0)  # nothing more may be spent this month
    frame = await mine.receive()
    assert 'id="budget-banner"' in frame and "budget-exhausted" in frame
    assert 'id="send-button"' in frame and "disabled" in frame and 'hx-swap-oob="true"' in frame
    assert await theirs.nothing_more()

    await sync_to_async(set_user_budget)(me, None)  # unlimited again
    frame = await mine.receive()
    assert "budget-banner" not in frame and 'id="chat-banners"' in frame
    assert 'id="send-button"' in frame and "disabled" not in frame
    await mine.close()
    await theirs.close()


async def test_the_organisations_cap_reaches_everyones_open_pages():
    me, someone = await sync_to_async(make_user)(), await sync_to_async(make_user)()
    mine, theirs = await open_page(me), await open_page(someone)

    def cap_at_zero():
        budget = OrganisationBudget.load()
        budget.monthly_limit = 0
        budget.save()

    await sync_to_async(cap_at_zero)()
    for socket in (mine, theirs):
        # (Creating the row, if the test database had none, is news too: the page re-renders twice.)
        frame = (await socket.receive_until(lambda frame: "budget-banner" in frame))[-1]
        assert "budget-exhausted" in frame and "organisation" in frame and "disabled" in frame
        await socket.close()


async def test_the_row_the_budget_lock_creates_on_a_first_call_says_nothing():
    me = await sync_to_async(make_user)()
    page = await open_page(me)
    await sync_to_async(UserBudget.objects.get_or_create)(user=me)  # site default: nothing changed
    assert await page.nothing_more()
    await page.close()


async def test_a_team_budget_reaches_its_members_pages_and_no_one_elses():
    from teams.models import Membership, Team

    member, outsider = await sync_to_async(make_user)(), await sync_to_async(make_user)()
    team = await sync_to_async(Team.objects.create)(name="Compilers")
    await sync_to_async(Membership.objects.create)(user=member, team=team)
    mine, theirs = await open_page(member), await open_page(outsider)

    team.monthly_limit = 0
    await sync_to_async(team.save)()
    frame = await mine.receive()
    assert "budget-exhausted" in frame and "team" in frame and "disabled" in frame
    assert await theirs.nothing_more()
    await mine.close()
    await theirs.close()

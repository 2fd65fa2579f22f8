"""The team pages managers (and staff) see outside the admin: members, spend, budgets, forecasts.

A team the viewer may not manage is a 404, as a team that does not exist: ids do not leak.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from billing.forms import MemberBudgetForm, below_spent_note
from billing.money import pico_to_usd
from billing.periods import current_month
from billing.services import budget_status
from billing.team_page import team_page_context
from teams.access import managed_teams, may_manage
from teams.models import Membership, Team


def _managed_team(user, team_id: int) -> Team:
    team = get_object_or_404(Team, pk=team_id)
    if not may_manage(user, team):
        raise Http404("No such team.")
    return team


@login_required
def team_list(request: HttpRequest) -> HttpResponse:
    """The teams the viewer manages (staff: every team); straight to the team when there is one."""
    teams = list(managed_teams(request.user).order_by("name"))
    if not teams and not request.user.is_staff:
        raise Http404("You manage no team.")
    if len(teams) == 1 and not request.user.is_staff:
        return redirect("teams:detail", team_id=teams[0].pk)
    this_month = f"{current_month().first_day:%Y-%m}"
    return render(request, "teams/team_list.html", {"teams": teams, "this_month": this_month})


def _render_team(request: HttpRequest, team: Team, forms: dict | None = None, status: int = 200):
    context = team_page_context(team, request.user)
    forms = forms or {}
    for row in context["members"]:
        row["form"] = forms.get(row["user_id"]) or MemberBudgetForm(
            initial={
                "policy": row["policy"],
                "monthly_limit_usd": pico_to_usd(row["assigned_limit"])
                if row["assigned_limit"] is not None
                else None,
            },
            prefix=f"m{row['user_id']}",
        )
        row["may_set"] = row["member"] and (request.user.is_staff or row["user_id"] != request.user.pk)
    return render(request, "teams/team.html", context, status=status)


@login_required
def team_detail(request: HttpRequest, team_id: int) -> HttpResponse:
    return _render_team(request, _managed_team(request.user, team_id))


@login_required
@require_POST
def member_budget(request: HttpRequest, team_id: int, user_id: int) -> HttpResponse:
    """A manager sets a member's monthly budget (the team's budget still caps everyone together)."""
    team = _managed_team(request.user, team_id)
    membership = Membership.objects.select_related("user").filter(team=team, user_id=user_id).first()
    if membership is None:
        raise Http404("No such member.")
    if user_id == request.user.pk and not request.user.is_staff:
        # A manager's own budget is set by staff, not by the manager.
        messages.error(request, "Your own budget is set by an administrator.")
        return redirect("teams:detail", team_id=team.pk)
    form = MemberBudgetForm(request.POST, prefix=f"m{user_id}")
    if not form.is_valid():
        return _render_team(request, team, {user_id: form}, status=400)
    form.save(user_id)
    name = membership.user.get_full_name() or membership.user.get_username()
    status = budget_status(membership.user)  # the limit now in force (their own cap may be lower)
    note = below_spent_note(status.limit, status.spent, name)
    messages.success(request, note or f"{name}'s budget is saved.")
    return redirect("teams:detail", team_id=team.pk)

"""The team pages managers (and staff) see outside the admin: members, spend, budgets, forecasts."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse


@login_required
def team_list(request: HttpRequest) -> HttpResponse:
    raise Http404("Not yet.")


@login_required
def team_detail(request: HttpRequest, team_id: int) -> HttpResponse:
    raise Http404("Not yet.")


@login_required
def member_budget(request: HttpRequest, team_id: int, user_id: int) -> HttpResponse:
    raise Http404("Not yet.")

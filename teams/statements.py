"""Monthly statements (showback): each member's cost by model for a team, every team for the organisation."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse


@login_required
def team_statement(request: HttpRequest, team_id: int, month: str) -> HttpResponse:
    raise Http404("Not yet.")


@login_required
def team_statement_csv(request: HttpRequest, team_id: int, month: str) -> HttpResponse:
    raise Http404("Not yet.")


@login_required
def organisation_statement(request: HttpRequest, month: str) -> HttpResponse:
    raise Http404("Not yet.")


@login_required
def organisation_statement_csv(request: HttpRequest, month: str) -> HttpResponse:
    raise Http404("Not yet.")

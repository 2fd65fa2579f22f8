"""The team pages and statements, under /teams/ (URL names `teams:…`)."""

from __future__ import annotations

from django.urls import path, register_converter

from billing import statements
from billing import team_views as views


class MonthConverter:
    """A month in a URL as 2026-12 (a statement's month)."""

    regex = r"\d{4}-(0[1-9]|1[0-2])"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(MonthConverter, "month")

app_name = "teams"
urlpatterns = [
    path("", views.team_list, name="list"),
    path("<int:team_id>/", views.team_detail, name="detail"),
    path("<int:team_id>/members/<int:user_id>/budget/", views.member_budget, name="member_budget"),
    path("<int:team_id>/statement/<month:month>/", statements.team_statement, name="statement"),
    path("<int:team_id>/statement/<month:month>.csv", statements.team_statement_csv, name="statement_csv"),
    path("statement/<month:month>/", statements.organisation_statement, name="org_statement"),
    path("statement/<month:month>.csv", statements.organisation_statement_csv, name="org_statement_csv"),
]

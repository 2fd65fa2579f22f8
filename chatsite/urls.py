from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path

from chatsite import logins

admin.site.login_form = logins.ThrottledAdminAuthenticationForm


def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    """Pages that name no icon (the admin's) make browsers ask for /favicon.ico: no 404 for that.
    Resolved per request: with the production static storage the name exists only after collectstatic."""
    return HttpResponsePermanentRedirect(static("conversations/favicon.svg"))


urlpatterns = [
    # Both login pages check passwords in a pool of their own, throttled (chatsite/logins.py); listed
    # first, they take the place of the admin's own login view and of Django's LoginView.
    path("admin/login/", logins.admin_login),
    path("admin/", admin.site.urls),
    path("accounts/login/", logins.login, name="login"),
    path("accounts/", include("accounts.urls")),
    path("accounts/sso/", include("sso.urls")),
    path("usage/", include("billing.urls")),
    path("teams/", include("billing.team_urls")),
    path("", include("conversations.urls")),
    path("favicon.ico", favicon),
]

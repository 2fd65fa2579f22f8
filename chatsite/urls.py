from __future__ import annotations

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from chatsite import logins

admin.site.login_form = logins.ThrottledAdminAuthenticationForm

urlpatterns = [
    # Both login pages check passwords in a pool of their own, throttled (chatsite/logins.py); listed
    # first, they take the place of the admin's own login view and of Django's LoginView.
    path("admin/login/", logins.admin_login),
    path("admin/", admin.site.urls),
    path("accounts/login/", logins.login, name="login"),
    path("accounts/", include("conversations.account_urls")),
    path("usage/", include("billing.urls")),
    path("", include("conversations.urls")),
    # Pages that name no icon (the admin's) make the browser ask for /favicon.ico: no 404 for that.
    path("favicon.ico", RedirectView.as_view(url=static("conversations/favicon.svg"), permanent=True)),
]

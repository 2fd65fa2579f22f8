"""Sign up, log out and password change, styled like the app (log in is chatsite.logins: throttled)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views as accounts_views

urlpatterns = [
    path("signup/", accounts_views.signup, name="signup"),
    path("invite/<str:token>/", accounts_views.invite, name="signup_invite"),
    path("confirm/<str:uidb64>/<str:token>/", accounts_views.signup_confirm, name="signup_confirm"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
]

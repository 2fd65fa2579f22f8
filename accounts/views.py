"""Sign-up under the operator's CHAT_SIGNUP mode. Thin: check the mode, validate, call a service, render."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.forms import SetPasswordForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts.clients import client_address

from . import services
from .forms import EmailSignupForm, SignupForm
from .modes import SignupMode, signup_mode

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
CLOSED = "Sign-up is closed on this server: staff create accounts. Ask one of them for yours."
INVITE_ONLY = "Sign-up on this server needs an invite link. Ask a staff member for one."
PASSWORDS_OFF = "Passwords are not used on this server: log in with single sign-on, which makes your account."


def signup(request: HttpRequest) -> HttpResponse:
    """/accounts/signup/: the form the current mode allows, or a page saying why there is none."""
    if request.user.is_authenticated:
        return redirect("home")
    if not settings.CHAT_PASSWORD_LOGIN:
        return _refused(request, PASSWORDS_OFF)
    mode = signup_mode()
    if mode is SignupMode.OPEN:
        return _signup_with_password(request, token=None)
    if mode is SignupMode.INVITE:
        if token := request.GET.get("invite"):
            return _signup_with_password(request, token=token)
        return _refused(request, INVITE_ONLY, status=200 if request.method == "GET" else 403)
    if mode is SignupMode.DOMAINS:
        return _signup_with_email(request)
    return _refused(request, CLOSED, status=200 if request.method == "GET" else 403)


def invite(request: HttpRequest, token: str) -> HttpResponse:
    """/accounts/invite/<token>/: the link staff hand out (the same as /accounts/signup/?invite=<token>)."""
    if request.user.is_authenticated:
        return redirect("home")
    if not settings.CHAT_PASSWORD_LOGIN:
        return _refused(request, PASSWORDS_OFF)
    if signup_mode() is not SignupMode.INVITE:
        return _refused(request, "Invite links are not in use on this server.")
    return _signup_with_password(request, token=token)


def _signup_with_password(request: HttpRequest, *, token: str | None) -> HttpResponse:
    invite = None
    if token is not None:
        try:
            invite = services.invite_for_link(token)
        except services.SignupRefused as exc:
            return _refused(request, str(exc))
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.account_create_with_invite(form=form, token=token) if token else form.save()
        except services.SignupRefused as exc:
            return _refused(request, str(exc))
        login(request, user, backend=MODEL_BACKEND)
        return redirect("home")
    return render(request, "registration/signup.html", {"form": form, "invite": invite})


def _signup_with_email(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        services.expired_signups_delete()  # a username never confirmed is free again once its link expired
    form = EmailSignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.account_request(
                username=form.cleaned_data["username"],
                email=form.cleaned_data["email"],
                absolute_url=request.build_absolute_uri,
                client=client_address(request) or "",
            )
        except services.SignupRefused as exc:
            form.add_error(None, str(exc))
        else:
            return render(
                request, "registration/signup_mail_sent.html", {"email": form.cleaned_data["email"]}
            )
    return render(request, "registration/signup.html", {"form": form, "by_email": True})


def signup_confirm(request: HttpRequest, uidb64: str, token: str) -> HttpResponse:
    """/accounts/confirm/<uid>/<token>/: the link mailed in domains mode; choosing a password activates
    the account and logs in."""
    if not settings.CHAT_PASSWORD_LOGIN:
        return _refused(request, PASSWORDS_OFF)
    if signup_mode() is not SignupMode.DOMAINS:
        return _refused(request, "This confirmation link does not work any more: sign-up by e-mail is off.")
    try:
        user = services.pending_account(uidb64, token)
    except services.SignupRefused as exc:
        return _refused(request, str(exc))
    form = SetPasswordForm(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = services.account_confirm(form=form)
        login(request, user, backend=MODEL_BACKEND)
        return redirect("home")
    return render(request, "registration/signup_confirm.html", {"form": form, "email": user.email})


def _refused(request: HttpRequest, reason: str, *, status: int = 403) -> HttpResponse:
    """The sign-up page with the reason instead of a form, and a link to log in."""
    return render(request, "registration/signup.html", {"refusal": reason}, status=status)

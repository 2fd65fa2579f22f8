"""The login pages (the app's and the admin's), throttled by django-axes, and kept from starving the site.

django-axes counts failed logins per username and per client address and refuses a login while either
is over the limit (settings: AXES_*); the page then says when to try again instead of "wrong password".

Checking a password costs about half a second of CPU on purpose (PBKDF2). In the request's own thread,
twenty concurrent guesses would take every core and every other page would wait behind them. So a POST
to a login page runs Django's own login view in a small pool of threads of its own
(CHAT_LOGIN_CONCURRENCY): at most that many password checks run at once, and the others wait their turn
without a core or a database connection. CSRF, `next` and the templates are Django's, unchanged.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from asgiref.sync import sync_to_async
from axes.helpers import get_cool_off
from django.conf import settings
from django.contrib import admin
from django.contrib import messages as flash
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import SimpleTemplateResponse
from django.urls import reverse
from django.utils import timezone

from accounts.clients import client_address

_password_checks = ThreadPoolExecutor(max_workers=settings.CHAT_LOGIN_CONCURRENCY, thread_name_prefix="login")


class LockoutMessageMixin:
    """An authentication form that says when to try again once django-axes refused the login."""

    request: HttpRequest

    def clean(self):
        # Already refused in this request (lockout_response is rendering the page again): say so,
        # without asking axes again, which would count one more failure.
        if getattr(self.request, "axes_locked_out", False):
            raise ValidationError(lockout_message(self.request), code="locked_out")
        return super().clean()


class ThrottledAuthenticationForm(LockoutMessageMixin, AuthenticationForm):
    pass


class ThrottledAdminAuthenticationForm(LockoutMessageMixin, AdminAuthenticationForm):
    pass


def lockout_message(request: HttpRequest) -> str:
    cool_off = get_cool_off(request) or timedelta(0)
    until = timezone.localtime(timezone.now() + cool_off)
    return (
        f"Too many failed logins for this account or from your address. Try again in {_duration(cool_off)} "
        f"(after {until:%H:%M} {until.tzname()}); an attempt before then counts as one more failure."
    )


def _duration(delta: timedelta) -> str:
    seconds = max(1, round(delta.total_seconds()))
    count, unit = (seconds, "second") if seconds < 120 else (-(-seconds // 60), "minute")
    return f"{count} {unit}{'' if count == 1 else 's'}"


def _posts_in_login_pool(view):
    """An async view running the sync login `view`: a POST (a password check) in the login pool, the
    rest (showing the page) as any other sync view."""

    def check(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        finally:
            # The pool's threads outlive requests: close what the request opened, as a request's end
            # would (here, inside the call: a connection opened in it is not visible outside it).
            close_old_connections()

    check_in_pool = sync_to_async(check, thread_sensitive=False, executor=_password_checks)
    show = sync_to_async(view)

    async def login_view(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not settings.CHAT_PASSWORD_LOGIN:  # single sign-on only: the admin's page sends people to ours
            if request.method == "POST":
                flash.error(request, PASSWORDS_OFF)
                return HttpResponseRedirect(reverse("login"))
            if request.path != reverse("login") and not (await request.auser()).is_authenticated:
                return redirect_to_login(reverse("admin:index"))
        if request.method != "POST":
            return await show(request, *args, **kwargs)
        client = client_address(request) or ""
        if _queued.total >= _queue_limit() or _queued.per_client.get(client, 0) >= 1:
            # Bounded and fair: one check per client address at a time, a short queue in all; the rest
            # are told at once (a login behind forty guesses from forty addresses waited 27 s).
            flash.error(request, BUSY)
            request.method = "GET"  # the login page again, as its GET shows it
            response = await show(request, *args, **kwargs)
            if isinstance(response, SimpleTemplateResponse):
                response.render()
            response.status_code = 503
            response["Retry-After"] = "5"
            return response
        _queued.enter(client)
        try:
            return await check_in_pool(request, *args, **kwargs)
        finally:
            _queued.leave(client)

    return login_view


PASSWORDS_OFF = "Logging in with a password is turned off here: sign in with the button below."
BUSY = "The server is busy checking other logins right now: try again in a few seconds."


class _Queue:
    """Password checks running or waiting in this worker, in all and per client address (touched only on
    the event loop, so without a lock)."""

    def __init__(self) -> None:
        self.total = 0
        self.per_client: dict[str, int] = {}

    def enter(self, client: str) -> None:
        self.total += 1
        self.per_client[client] = self.per_client.get(client, 0) + 1

    def leave(self, client: str) -> None:
        self.total -= 1
        left = self.per_client.get(client, 1) - 1
        if left:
            self.per_client[client] = left
        else:
            self.per_client.pop(client, None)


_queued = _Queue()


def _queue_limit() -> int:
    """Checks that may run or wait at once: what the pool runs, and four times that waiting."""
    return settings.CHAT_LOGIN_CONCURRENCY * 5


_login_page = auth_views.LoginView.as_view(
    authentication_form=ThrottledAuthenticationForm, redirect_authenticated_user=True
)
login = _posts_in_login_pool(_login_page)
admin_login = _posts_in_login_pool(admin.site.login)  # with admin.site.login_form set in chatsite/urls.py


def lockout_response(request: HttpRequest, *_axes_arguments) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: the login page of this request again, its form saying when to try again
    (429 Too Many Requests). Other arguments are ignored: axes 8.3.1 passes them differently when its
    middleware runs async."""
    page = admin.site.login if request.path == reverse("admin:login") else _login_page
    response = page(request)
    if isinstance(response, SimpleTemplateResponse):
        response.render()
        response.status_code = settings.AXES_HTTP_RESPONSE_CODE
    return response

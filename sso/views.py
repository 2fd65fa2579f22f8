"""Signing in through the provider: the start (a redirect to it) and the callback (back from it).

The start is mozilla-django-oidc's view: it stores a fresh state, nonce and PKCE verifier in the session.
The callback is this app's own, so that each refusal is a sentence on the login page and an audit entry:
a state that is not the session's (a replayed or forged response) is refused before the provider is
asked anything, and the nonce is checked against the ID token by the backend.
"""

from __future__ import annotations

import logging

import requests
from django.conf import settings
from django.contrib import auth
from django.contrib import messages as flash
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, resolve_url
from mozilla_django_oidc.views import OIDCAuthenticationRequestView

from accounts.clients import client_address

from . import discovery
from .services import SsoRefused, sso_refusal_record

logger = logging.getLogger(__name__)

BACKEND = "sso.backends.SsoBackend"
INVALID_RESPONSE = (
    "That sign-in response was not valid here (it was used already, expired, or was not meant for this "
    "browser). Start again with the button below."
)
PROVIDER_REFUSED = "{name} did not sign you in ({error}). Try again, or ask your IT team."


class SsoStart(OIDCAuthenticationRequestView):
    def get(self, request: HttpRequest) -> HttpResponse:
        if not settings.CHAT_SSO_ENABLED:
            raise Http404
        try:
            self.OIDC_OP_AUTH_ENDPOINT = discovery.endpoints().authorization
        except discovery.ProviderUnavailable as exc:
            flash.error(request, str(exc))
            return redirect("login")
        return super().get(request)


def callback(request: HttpRequest) -> HttpResponse:
    if not settings.CHAT_SSO_ENABLED:
        raise Http404
    states = request.session.get("oidc_states") or {}
    state = request.GET.get("state", "")
    entry = states.pop(state, None) if state else None  # used once: a replay finds it gone
    request.session["oidc_states"] = states
    if error := request.GET.get("error"):
        return _refuse(
            request, PROVIDER_REFUSED.format(name=settings.CHAT_SSO_NAME, error=error[:100]), "provider"
        )
    if entry is None or not request.GET.get("code"):
        return _refuse(request, INVALID_RESPONSE, "state")
    request.session.save()  # before the slow exchange with the provider
    backend = auth.load_backend(BACKEND)
    try:
        user = backend.authenticate(request, nonce=entry["nonce"], code_verifier=entry.get("code_verifier"))
    except SsoRefused as exc:  # already recorded
        flash.error(request, exc.message)
        return redirect("login")
    except discovery.ProviderUnavailable as exc:
        return _refuse(request, str(exc), "provider_down")
    except requests.HTTPError as exc:
        if exc.response is not None and exc.response.status_code < 500:  # e.g. a code used already
            return _refuse(request, INVALID_RESPONSE, "code")
        logger.warning("Single sign-on: the provider failed during a login: %s", exc)
        discovery.forget()
        return _refuse(request, discovery.down_message(), "provider_error")
    except requests.RequestException as exc:
        logger.warning("Single sign-on: the provider failed during a login: %s", exc)
        discovery.forget()
        return _refuse(request, discovery.down_message(), "provider_error")
    except SuspiciousOperation as exc:  # a bad signature, nonce, issuer or audience
        logger.warning("Single sign-on: refused an ID token: %s", exc)
        return _refuse(request, INVALID_RESPONSE, "token")
    if user is None:  # the library refused the claims (e.g. the userinfo was about someone else)
        return _refuse(request, INVALID_RESPONSE, "claims")
    next_url = request.session.get("oidc_login_next")
    auth.login(request, user, backend=BACKEND)
    return HttpResponseRedirect(next_url or resolve_url(settings.LOGIN_REDIRECT_URL))


def _refuse(request: HttpRequest, message: str, reason: str) -> HttpResponse:
    sso_refusal_record(reason=reason, issuer=settings.CHAT_SSO_ISSUER, client=client_address(request) or "")
    flash.error(request, message)
    return redirect("login")

"""Signing in through the provider: the start (a redirect to it) and the callback (back from it).

The start is mozilla-django-oidc's view: it stores a fresh state, nonce and PKCE verifier in the session.
The callback is this app's own, so that each refusal is a sentence on the login page and an audit entry:
a state that is not the session's (a replayed or forged response) is refused before the provider is
asked anything, and the nonce is checked against the ID token by the backend.
"""

from __future__ import annotations

import logging

import jwt
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


# The error codes of OAuth 2.0 (RFC 6749, 4.1.2.1) and OpenID Connect Core (3.1.2.6).
OAUTH_ERRORS = frozenset(
    "invalid_request unauthorized_client access_denied unsupported_response_type invalid_scope "
    "server_error temporarily_unavailable interaction_required login_required account_selection_required "
    "consent_required invalid_request_uri invalid_request_object request_not_supported "
    "request_uri_not_supported registration_not_supported".split()
)


def callback(request: HttpRequest) -> HttpResponse:
    if not settings.CHAT_SSO_ENABLED:
        raise Http404
    states = request.session.get("oidc_states") or {}
    state = request.GET.get("state", "")
    entry = states.pop(state, None) if state else None  # used once: a replay finds it gone
    request.session["oidc_states"] = states
    if entry is None:
        # No login of this browser is waiting for an answer: a replay, a forged or stale link. Said on
        # the page and logged, but not written to the audit log (anyone can call this address).
        logger.warning("Single sign-on: a callback without a state this session started")
        flash.error(request, INVALID_RESPONSE)
        return redirect("login")
    if error := request.GET.get("error"):
        # Only the protocol's own error codes are shown: the rest of the address is the caller's text.
        shown = error if error in OAUTH_ERRORS else "an error"
        return _refuse(request, PROVIDER_REFUSED.format(name=settings.CHAT_SSO_NAME, error=shown), "provider")
    if not request.GET.get("code"):
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
    except (SuspiciousOperation, jwt.PyJWTError, KeyError) as exc:
        # A bad signature, nonce, issuer or audience; an ID token not yet valid or expired (the
        # provider's clock ahead of ours); a signing key without an id.
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

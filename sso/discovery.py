"""The provider's endpoints, read from its discovery document (<issuer>/.well-known/openid-configuration).

Read when a login starts and kept for an hour; a provider that cannot be reached is remembered as down
for a short while, so that the login page (which asks) stays quick while it is out.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import requests
from django.conf import settings

CACHE_SECONDS = 3600
DOWN_SECONDS = 30
TIMEOUT_SECONDS = 5

PROVIDER_DOWN = "{name} cannot be reached just now, so signing in with it does not work at the moment."


class ProviderUnavailable(Exception):
    """The provider's discovery document could not be read; str(exc) says so in words for people."""


@dataclass(frozen=True)
class Endpoints:
    issuer: str
    authorization: str
    token: str
    userinfo: str
    jwks: str


_lock = threading.Lock()
_cached: tuple[float, Endpoints | None] | None = None  # (until, endpoints; None: down)


def down_message() -> str:
    return PROVIDER_DOWN.format(name=settings.CHAT_SSO_NAME)


def endpoints() -> Endpoints:
    """The configured provider's endpoints; ProviderUnavailable when it cannot be reached."""
    global _cached
    with _lock:
        cached = _cached
    if cached is not None and cached[0] > time.monotonic():
        if cached[1] is None:
            raise ProviderUnavailable(down_message())
        return cached[1]
    try:
        found = _fetch(settings.CHAT_SSO_ISSUER)
    except (requests.RequestException, ValueError, KeyError, TypeError):
        with _lock:
            _cached = (time.monotonic() + DOWN_SECONDS, None)
        raise ProviderUnavailable(down_message()) from None
    with _lock:
        _cached = (time.monotonic() + CACHE_SECONDS, found)
    return found


def forget() -> None:
    """Read the document again next time (a login that failed on the provider's side, tests)."""
    global _cached
    with _lock:
        _cached = None


def provider_down() -> bool:
    """Whether single sign-on is on and its provider cannot be reached (for the login page)."""
    if not settings.CHAT_SSO_ENABLED:
        return False
    try:
        endpoints()
    except ProviderUnavailable:
        return True
    return False


def _fetch(issuer: str) -> Endpoints:
    response = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=TIMEOUT_SECONDS)
    response.raise_for_status()
    document = response.json()
    # The document must be the issuer's own (OpenID Connect Discovery 1.0, section 4.3).
    if document["issuer"].rstrip("/") != issuer:
        raise ValueError("the discovery document names another issuer")
    return Endpoints(
        issuer=document["issuer"],
        authorization=document["authorization_endpoint"],
        token=document["token_endpoint"],
        userinfo=document["userinfo_endpoint"],
        jwks=document["jwks_uri"],
    )

"""mozilla-django-oidc's authentication backend, with the endpoints from discovery, the ID token's issuer
and audience checked, and the account decided by sso.services."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from . import discovery
from .services import sso_user


class SsoBackend(OIDCAuthenticationBackend):
    def authenticate(self, request, **kwargs):
        # Only the callback view (which passes the nonce it stored) logs in this way; a password login
        # asks every backend and must not reach the provider.
        if request is None or "nonce" not in kwargs:
            return None
        self.endpoints = discovery.endpoints()
        self.OIDC_OP_TOKEN_ENDPOINT = self.endpoints.token
        self.OIDC_OP_USER_ENDPOINT = self.endpoints.userinfo
        self.OIDC_OP_JWKS_ENDPOINT = self.endpoints.jwks
        return super().authenticate(request, **kwargs)

    def verify_token(self, token, **kwargs):
        """The library checks the signature, the expiry and the nonce; the issuer and the audience too."""
        payload = super().verify_token(token, **kwargs)
        audience = payload.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if payload.get("iss") != self.endpoints.issuer or settings.CHAT_SSO_CLIENT_ID not in audiences:
            raise SuspiciousOperation("The ID token was issued by another provider or for another client.")
        self.id_claims = payload
        return payload

    def get_or_create_user(self, access_token, id_token, payload):
        userinfo = self.get_userinfo(access_token, id_token, payload)
        if userinfo.get("sub") != payload.get("sub"):  # OpenID Connect Core 1.0, section 5.3.2
            raise SuspiciousOperation("The userinfo response is about someone else.")
        return sso_user(issuer=self.endpoints.issuer, claims={**payload, **userinfo})

    def get_user(self, user_id):
        """Sessions of deactivated accounts end, as with passwords (ModelBackend.get_user)."""
        user = super().get_user(user_id)
        return user if user is not None and user.is_active else None

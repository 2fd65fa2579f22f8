"""A small, real OpenID Connect provider for the tests, built on Authlib's OAuth 2 / OIDC server.

It runs in a thread on 127.0.0.1 (a port the OS picks) and speaks the authorization code flow as a
real provider does: discovery, an authorize page with a login form, a token endpoint that checks the
client's secret and the redirect URI and signs an RS256 ID token (with the request's nonce), a JWKS
endpoint and a userinfo endpoint. People are registered by the test (`add_person`) with the claims the
provider releases (e-mail, name, groups). `stop()` takes it down, as a provider that is out would be.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, jsonify, request
from joserfc.jwk import RSAKey
from markupsafe import escape
from werkzeug.serving import make_server

PASSWORD = "provider-passw0rd"


@dataclass
class Person:
    sub: str
    email: str
    name: str = ""
    groups: list[str] = field(default_factory=list)
    # What the provider says of the address: True, the string some providers send, or absent (None).
    email_verified: object = True

    def get_user_id(self) -> str:
        return self.sub


@dataclass
class Client:
    client_id: str
    client_secret: str
    redirect_uris: list[str] = field(default_factory=list)  # empty: any (the app's port is not known yet)

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope):
        return " ".join(s for s in (scope or "").split() if s in {"openid", "email", "profile", "groups"})

    def check_redirect_uri(self, redirect_uri):
        return not self.redirect_uris or redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        return method in ("client_secret_post", "client_secret_basic")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    sub: str
    nonce: str | None
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return self.auth_time

    def get_acr(self):
        return None

    def get_amr(self):
        return None


class OidcProvider:
    def __init__(self, *, client_id: str = "teamchat", client_secret: str = "s3cret-for-tests") -> None:
        self.client = Client(client_id, client_secret)
        self.people: dict[str, Person] = {}  # by login (the e-mail address)
        self.codes: dict[str, Code] = {}
        self.tokens: dict[str, str] = {}  # access token -> sub
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key", "use": "sig", "alg": "RS256"})
        self.app = self._build_app()
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.issuer = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> OidcProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_person(
        self, email: str, *, name: str = "", groups: list[str] | None = None, email_verified: object = True
    ) -> Person:
        person = Person(
            sub=f"sub-{secrets.token_hex(6)}",
            email=email,
            name=name,
            groups=groups or [],
            email_verified=email_verified,
        )
        self.people[email] = person
        return person

    def _by_sub(self, sub: str) -> Person:
        return next(p for p in self.people.values() if p.sub == sub)

    def _build_app(self) -> Flask:
        app = Flask("oidc-provider")
        app.config["SECRET_KEY"] = secrets.token_hex(16)
        provider = self

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code, req):
                provider.codes[code] = Code(
                    code=code,
                    client_id=req.client.client_id,
                    redirect_uri=req.payload.redirect_uri,
                    scope=req.payload.scope,
                    sub=req.user.sub,
                    nonce=req.payload.data.get("nonce"),
                )

            def query_authorization_code(self, code, client):
                found = provider.codes.get(code)
                return found if found and found.client_id == client.client_id else None

            def delete_authorization_code(self, authorization_code):
                provider.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code):
                return provider._by_sub(authorization_code.sub)

        class Oidc(OpenIDCode):
            def exists_nonce(self, nonce, req):
                return any(c.nonce == nonce for c in provider.codes.values())

            def resolve_client_private_key(self, client):
                return provider.key

            def get_client_algorithm(self, client):
                return "RS256"

            def get_encode_header(self, client):
                return {"alg": "RS256", "kid": "test-key"}

            def get_client_claims(self, client):
                return {"iss": provider.issuer, "aud": [client.client_id]}

            def generate_user_info(self, user, scope):
                claims = {"sub": user.sub, "email": user.email, "name": user.name}
                if user.email_verified is not None:
                    claims["email_verified"] = user.email_verified
                return UserInfo(**claims)

        def save_token(token, req):
            provider.tokens[token["access_token"]] = req.user.sub

        server = AuthorizationServer(
            app,
            query_client=lambda cid: provider.client if cid == provider.client.client_id else None,
            save_token=save_token,
        )
        server.register_grant(CodeGrant, [Oidc(require_nonce=True)])

        @app.get("/.well-known/openid-configuration")
        def discovery():
            return jsonify(
                issuer=provider.issuer,
                authorization_endpoint=f"{provider.issuer}/authorize",
                token_endpoint=f"{provider.issuer}/token",
                userinfo_endpoint=f"{provider.issuer}/userinfo",
                jwks_uri=f"{provider.issuer}/jwks",
                response_types_supported=["code"],
                subject_types_supported=["public"],
                id_token_signing_alg_values_supported=["RS256"],
            )

        @app.get("/jwks")
        def jwks():
            return jsonify(keys=[provider.key.as_dict(private=False)])

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize():
            if request.method == "GET":
                server.get_consent_grant(end_user=None)  # refuses a bad client or redirect URI
                hidden = "".join(
                    f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
                    for k, v in request.args.items()
                )
                return (
                    '<!doctype html><html lang="en"><head><title>Test provider</title></head><body><main>'
                    '<h1>Test identity provider</h1><form method="post" action="/authorize">'
                    f"{hidden}"
                    '<label for="login">E-mail</label> <input id="login" name="login"> '
                    '<label for="password">Password</label> <input id="password" name="password" type="password"> '
                    '<button type="submit">Sign in at the provider</button></form></main></body></html>'
                )
            person = provider.people.get(request.form.get("login", ""))
            if person is None or request.form.get("password") != PASSWORD:
                return "Unknown person or wrong password", 403
            grant = server.get_consent_grant(end_user=person)
            return server.create_authorization_response(grant=grant, grant_user=person)

        @app.post("/token")
        def token():
            return server.create_token_response()

        @app.get("/userinfo")
        def userinfo():
            bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
            sub = provider.tokens.get(bearer)
            if sub is None:
                return jsonify(error="invalid_token"), 401
            person = provider._by_sub(sub)
            claims = {"sub": person.sub, "email": person.email, "name": person.name, "groups": person.groups}
            if person.email_verified is not None:
                claims["email_verified"] = person.email_verified
            return jsonify(claims)

        return app

    def authorize_url_login(self, authorize_url: str, login: str) -> str:
        """For tests without a browser: the redirect (to the app's callback) that signing in as `login` at
        `authorize_url` (the app's redirect to this provider) yields."""
        from urllib.parse import parse_qsl, urlsplit

        import requests

        params = dict(parse_qsl(urlsplit(authorize_url).query))
        response = requests.post(
            f"{self.issuer}/authorize",
            data={**params, "login": login, "password": PASSWORD},
            allow_redirects=False,
            timeout=10,
        )
        assert response.status_code == 302, response.text
        return response.headers["Location"]

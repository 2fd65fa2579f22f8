"""Which pages may open a websocket: the site's own origins only, compared by scheme, host and port.

A browser sends the session cookie with a websocket handshake from any page of the same host, a page
on another port or scheme included, so the Origin header is what tells the site's own pages from
anyone else's. Accepted, by the rules Django's CSRF check applies to form posts:

- the origin the socket is served on: the Host header (which must be in ALLOWED_HOSTS) with the
  connection's scheme, taken from SECURE_PROXY_SSL_HEADER behind a TLS proxy exactly as
  `HttpRequest.is_secure()` does;
- an origin listed in CSRF_TRUSTED_ORIGINS (`https://*.example.org` also matches its subdomains).

A handshake without an Origin header is refused too: every browser sends one.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

DEFAULT_PORTS = {"http": 80, "https": 443}

#: (scheme, host, port), lower case, with the scheme's default port filled in.
Origin = tuple[str, str, int]


class SiteOriginValidator:
    """ASGI middleware: refuses (HTTP 403 at the handshake) a websocket from a page of another origin."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier.as_asgi()(scope, receive, send)
        return await self.application(scope, receive, send)


def origin_allowed(scope: dict) -> bool:
    """True when the handshake's Origin is the site's own origin or a trusted one."""
    origin_header = _header(scope, b"origin")
    origin = parse_origin(origin_header) if origin_header else None
    if origin is None:
        return False
    return origin == site_origin(scope) or _trusted(origin, origin_header)


def site_origin(scope: dict) -> Origin | None:
    """The origin this connection was made to, or None when its Host is not one of ALLOWED_HOSTS."""
    host = _header(scope, b"host") or ""
    domain, _port = split_domain_port(host)
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]  # as HttpRequest.get_host()
    if not domain or not validate_host(domain, allowed_hosts):
        return None
    return parse_origin(f"{'https' if _is_secure(scope) else 'http'}://{host}")


def parse_origin(value: str) -> Origin | None:
    """`value` ("https://chat.example.org:8443") as an Origin, or None when it is not an http(s) origin."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return (parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme])


def _trusted(origin: Origin, origin_header: str) -> bool:
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        if "*" in trusted:
            # As Django's CSRF check: "https://*.example.org" is a scheme and a domain pattern.
            pattern = urlsplit(trusted)
            if pattern.scheme == origin[0] and is_same_domain(
                urlsplit(origin_header).netloc.lower(), pattern.netloc.lstrip("*")
            ):
                return True
        elif parse_origin(trusted) == origin:
            return True
    return False


def _is_secure(scope: dict) -> bool:
    if settings.SECURE_PROXY_SSL_HEADER:
        meta_name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        header = meta_name.removeprefix("HTTP_").replace("_", "-").lower().encode("latin1")
        value = _header(scope, header)
        if value is not None:
            return value.split(",", 1)[0].strip() == secure_value
    return scope.get("scheme") in ("wss", "https")


def _header(scope: dict, name: bytes) -> str | None:
    """A request header's value (repeated headers joined with commas, as Django does), or None."""
    values = [value.decode("latin1") for key, value in scope.get("headers", ()) if key.lower() == name]
    return ",".join(values) if values else None

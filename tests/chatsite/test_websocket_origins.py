"""A logged-in user's socket opens only from the site's own pages: scheme, host and port must all match
the origin the site is served on, or one listed in CSRF_TRUSTED_ORIGINS."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from tests.helpers import make_conversation, make_user, session_cookie_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _site(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast users
    settings.ALLOWED_HOSTS = ["127.0.0.1", "chat.example.org", ".team.example.org"]
    settings.CSRF_TRUSTED_ORIGINS = []
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")


async def opens(
    *, origin: str | None, host: str, scheme: str = "ws", forwarded_proto: str | None = None
) -> bool:
    """Whether a logged-in user's socket on their own conversation opens with these handshake details."""
    from channels.testing import WebsocketCommunicator

    from chatsite.asgi import application

    user = await database_sync_to_async(make_user)()
    conversation = await database_sync_to_async(make_conversation)(owner=user)
    cookie = await database_sync_to_async(session_cookie_for)(user)
    headers = [(b"host", host.encode()), (b"cookie", f"sessionid={cookie}".encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if forwarded_proto is not None:
        headers.append((b"x-forwarded-proto", forwarded_proto.encode()))
    communicator = WebsocketCommunicator(application, f"/ws/chat/{conversation.pk}/", headers=headers)
    communicator.scope["scheme"] = scheme
    connected, _code = await communicator.connect(timeout=5)
    await communicator.disconnect()
    return connected


@pytest.mark.parametrize("origin", ["http://127.0.0.1:8000"])
async def test_the_sites_own_page_opens_the_socket(origin):
    assert await opens(origin=origin, host="127.0.0.1:8000")


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:9999",  # another port of the same host
        "https://127.0.0.1:8000",  # another scheme
        "http://127.0.0.1",  # port 80
        "http://localhost:8000",  # another name for the host, not the one served
        "http://evil.example",
        "null",  # a sandboxed frame or a file
        "",
    ],
)
async def test_a_page_of_another_origin_on_the_same_host_cannot_open_the_socket(origin):
    assert not await opens(origin=origin, host="127.0.0.1:8000")


async def test_a_handshake_without_origin_is_refused():
    assert not await opens(origin=None, host="127.0.0.1:8000")


async def test_behind_a_tls_proxy_only_the_https_origin_of_the_site_opens_the_socket():
    behind_proxy = {"host": "chat.example.org", "forwarded_proto": "https"}
    assert await opens(origin="https://chat.example.org", **behind_proxy)
    for origin in (
        "http://chat.example.org:8080",
        "https://chat.example.org:8443",
        "http://chat.example.org",
        "https://evil.example",
    ):
        assert not await opens(origin=origin, **behind_proxy), origin


async def test_a_tls_socket_served_directly_is_an_https_origin():
    assert await opens(origin="https://chat.example.org", host="chat.example.org", scheme="wss")
    assert not await opens(origin="http://chat.example.org", host="chat.example.org", scheme="wss")


async def test_x_forwarded_proto_counts_only_as_secure_proxy_ssl_header_says(settings):
    settings.SECURE_PROXY_SSL_HEADER = None
    assert not await opens(
        origin="https://chat.example.org", host="chat.example.org", forwarded_proto="https"
    )
    assert await opens(origin="http://chat.example.org", host="chat.example.org", forwarded_proto="https")


async def test_a_host_not_in_allowed_hosts_is_refused_even_from_its_own_origin():
    # A rebound DNS name pointing at the server: the page and the socket agree, the host is not ours.
    assert not await opens(origin="http://rebound.example:8000", host="rebound.example:8000")


async def test_origins_in_csrf_trusted_origins_open_the_socket(settings):
    # The proxy forwards to 127.0.0.1:8001 without passing the public Host on.
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.org", "https://*.team.example.org"]
    served = {"host": "127.0.0.1:8001"}
    assert await opens(origin="https://chat.example.org", **served)
    assert await opens(origin="https://a.team.example.org", **served)
    for origin in (
        "http://chat.example.org",
        "https://chat.example.org:8443",
        "http://a.team.example.org",
        "https://a.team.example.org:8443",
        "https://team.example.org.evil.example",
    ):
        assert not await opens(origin=origin, **served), origin

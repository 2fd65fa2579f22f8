"""Logins are throttled per username and per client address, say when to try again, and cannot starve
the rest of the site: the app's login page and the admin's."""

from __future__ import annotations

import asyncio
import re
import threading
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.hashers import MD5PasswordHasher
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from accounts.clients import client_address
from tests.helpers import eventually, make_user, session_cookie_for

# The login views check passwords in a thread pool of their own: the data must be committed for them.
pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a-Long-passw0rd!"  # tests.helpers.make_user's
LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"
WRONG = "correct username and password"  # the app's and the admin's message
LOCKED = "Too many failed logins for this account or from your address"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def log_in(
    client: Client, username: str, password: str, *, url: str = LOGIN, address: str = "10.0.0.1", **data
):
    return client.post(url, {"username": username, "password": password, **data}, REMOTE_ADDR=address)


def is_logged_in_as(client: Client, user) -> bool:
    return client.session.get("_auth_user_id") == str(user.pk)


def fail_until_locked(client: Client, username: str, *, url: str = LOGIN, address: str = "10.0.0.1"):
    """Wrong passwords up to the failure limit; returns the answer to the last one."""
    from django.conf import settings

    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = log_in(client, username, "wrong", url=url, address=address)
        assert response.status_code == 200 and WRONG in response.text
    return log_in(client, username, "wrong", url=url, address=address)


def age_attempts_past_the_cool_off():
    """The clock moves on: every failed attempt so far is now older than the cool-off."""
    from axes.models import AccessAttempt
    from django.conf import settings

    AccessAttempt.objects.update(
        attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    )


def test_sixty_failed_logins_lock_the_account_and_the_address_with_a_page_saying_when(client, settings):
    alice, bob = make_user("alice"), make_user("bob")
    answers = [log_in(client, "alice", f"wrong-{n}") for n in range(60)]

    limit = settings.AXES_FAILURE_LIMIT
    assert [a.status_code for a in answers] == [200] * (limit - 1) + [429] * (60 - limit + 1)
    assert all(WRONG in a.text for a in answers[: limit - 1])
    locked = answers[-1]
    assert LOCKED in locked.text and "Try again in 15 minutes (after " in locked.text
    # The login page itself, as it was (the form, the username kept), not a bare error page.
    assert 'id="id_password"' in locked.text and 'value="alice"' in locked.text
    assert "<title>Log in · Team chat</title>" in locked.text

    # The right password is refused while locked: from the same address, and from another one.
    for address in ("10.0.0.1", "10.0.0.2"):
        refused = log_in(client, "alice", PASSWORD, address=address)
        assert refused.status_code == 429 and LOCKED in refused.text
        assert not is_logged_in_as(client, alice)
    # The address is locked too, whoever logs in from it.
    refused = log_in(client, "bob", PASSWORD, address="10.0.0.1")
    assert refused.status_code == 429 and not is_logged_in_as(client, bob)


def test_other_users_elsewhere_are_not_affected_by_a_locked_account(client):
    make_user("alice")
    bob = make_user("bob")
    assert fail_until_locked(client, "alice", address="10.0.0.1").status_code == 429

    response = log_in(Client(), "bob", PASSWORD, address="10.0.0.2")
    assert response.status_code == 302 and response.url == reverse("home")
    other = Client()
    log_in(other, "bob", PASSWORD, address="10.0.0.2")
    assert is_logged_in_as(other, bob)


def test_the_right_password_works_again_after_the_cool_off_and_follows_next(client):
    alice = make_user("alice")
    assert fail_until_locked(client, "alice").status_code == 429
    assert log_in(client, "alice", PASSWORD).status_code == 429

    age_attempts_past_the_cool_off()
    response = log_in(client, "alice", PASSWORD, next="/usage/")
    assert response.status_code == 302 and response.url == "/usage/"
    assert is_logged_in_as(client, alice)


def test_staff_unlock_with_axes_reset(client):
    from axes.utils import reset

    alice = make_user("alice")
    assert fail_until_locked(client, "alice").status_code == 429
    reset(username="alice")
    reset(ip="10.0.0.1")
    assert log_in(client, "alice", PASSWORD).status_code == 302 and is_logged_in_as(client, alice)


def test_the_admin_login_is_throttled_too_and_says_when(client):
    admin_user = make_user("boss", is_staff=True, is_superuser=True)
    locked = fail_until_locked(client, "boss", url=ADMIN_LOGIN)
    assert locked.status_code == 429
    assert LOCKED in locked.text and 'id="login-form"' in locked.text  # the admin's own login page

    refused = log_in(client, "boss", PASSWORD, url=ADMIN_LOGIN, next="/admin/")
    assert refused.status_code == 429 and not is_logged_in_as(client, admin_user)
    # One count per username: the app's login page refuses the same account.
    assert log_in(client, "boss", PASSWORD, address="10.0.0.9").status_code == 429

    age_attempts_past_the_cool_off()
    response = log_in(client, "boss", PASSWORD, url=ADMIN_LOGIN, next="/admin/")
    assert response.status_code == 302 and response.url == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_login_still_checks_csrf_and_only_follows_a_local_next():
    alice = make_user("alice")
    browser = Client(enforce_csrf_checks=True)
    forged = browser.post(LOGIN, {"username": "alice", "password": PASSWORD})
    assert forged.status_code == 403 and not is_logged_in_as(browser, alice)

    browser.get(LOGIN)
    token = browser.cookies["csrftoken"].value
    data = {"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": token}
    away = browser.post(LOGIN, {**data, "next": "https://evil.example/"})
    assert away.status_code == 302 and away.url == reverse("home")
    browser.logout()
    browser.get(LOGIN)
    data["csrfmiddlewaretoken"] = browser.cookies["csrftoken"].value
    assert browser.post(LOGIN, {**data, "next": "/usage/"}).url == "/usage/"


def request_from(remote_addr: str, forwarded_for: str | None = None):
    headers = {"REMOTE_ADDR": remote_addr}
    if forwarded_for is not None:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return RequestFactory().post(LOGIN, **headers)


def test_the_client_address_is_the_peer_unless_proxies_are_trusted(settings):
    settings.CHAT_TRUSTED_PROXY_COUNT = 0
    assert client_address(request_from("198.51.100.7", "203.0.113.5")) == "198.51.100.7"

    settings.CHAT_TRUSTED_PROXY_COUNT = 1
    assert client_address(request_from("127.0.0.1", "203.0.113.5")) == "203.0.113.5"
    # What the client wrote itself is further left and is ignored.
    assert client_address(request_from("127.0.0.1", "1.2.3.4, 203.0.113.5")) == "203.0.113.5"
    # Not through the proxy, or a header that is not an address: the peer.
    assert client_address(request_from("127.0.0.1")) == "127.0.0.1"
    assert client_address(request_from("127.0.0.1", "1.2.3.4, unknown")) == "127.0.0.1"

    settings.CHAT_TRUSTED_PROXY_COUNT = 2
    assert client_address(request_from("10.0.0.3", "1.2.3.4, 203.0.113.5, 10.0.0.2")) == "203.0.113.5"
    assert client_address(request_from("10.0.0.3", "10.0.0.2")) == "10.0.0.3"


def test_behind_a_trusted_proxy_the_forwarded_address_is_locked_not_the_proxy(client, settings):
    settings.CHAT_TRUSTED_PROXY_COUNT = 1
    make_user("alice")
    bob = make_user("bob")

    def via_proxy(username, password, forwarded_for):
        return client.post(
            LOGIN,
            {"username": username, "password": password},
            REMOTE_ADDR="127.0.0.1",
            HTTP_X_FORWARDED_FOR=forwarded_for,
        )

    for n in range(settings.AXES_FAILURE_LIMIT):
        via_proxy(f"guess{n}", "wrong", "203.0.113.5")  # one address, many usernames
    # Spoofing an entry on the left does not get the attacker a fresh address.
    assert via_proxy("bob", PASSWORD, "192.0.2.1, 203.0.113.5").status_code == 429
    # Someone else behind the same proxy logs in.
    assert via_proxy("bob", PASSWORD, "203.0.113.6").status_code == 302 and is_logged_in_as(client, bob)


# --- Through the real ASGI application, as daphne serves it ---------------------------------------


class GatedHasher(MD5PasswordHasher):
    """A password check that waits at a gate, counting how many checks are in progress at once."""

    algorithm = "gated_md5"
    gate = threading.Event()
    lock = threading.Lock()
    running = 0
    peak = 0

    def verify(self, password, encoded):
        cls = type(self)
        with cls.lock:
            cls.running += 1
            cls.peak = max(cls.peak, cls.running)
        try:
            cls.gate.wait(timeout=30)
        finally:
            with cls.lock:
                cls.running -= 1
        return super().verify(password, encoded)


async def asgi(
    method: str, path: str, *, cookies: dict | None = None, form: dict | None = None, address="192.0.2.10"
):
    """One request through chatsite.asgi.application; returns (status, headers, text)."""
    from channels.testing import HttpCommunicator

    from chatsite.asgi import application

    headers = [(b"host", b"localhost")]
    if cookies:
        headers.append((b"cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()).encode()))
    body = b""
    if form is not None:
        body = urlencode(form).encode()
        headers.append((b"content-type", b"application/x-www-form-urlencoded"))
    communicator = HttpCommunicator(application, method, path, body=body, headers=headers)
    communicator.scope["client"] = (address, 50000)
    response = await communicator.get_response(timeout=30)
    await communicator.wait()
    return response["status"], {k.lower(): v for k, v in response["headers"]}, response["body"].decode()


async def login_form(username: str, password: str) -> tuple[dict, dict]:
    """The cookies and form data of a login, as a browser would send them after showing the page."""
    _status, headers, page = await asgi("GET", LOGIN)
    csrf_cookie = re.search(r"csrftoken=([^;]+)", headers[b"set-cookie"].decode()).group(1)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    return {"csrftoken": csrf_cookie}, {
        "csrfmiddlewaretoken": token,
        "username": username,
        "password": password,
    }


@pytest.fixture
def gated_passwords(settings):
    settings.PASSWORD_HASHERS = [f"{GatedHasher.__module__}.{GatedHasher.__qualname__}"]  # this very class
    GatedHasher.gate.clear()
    GatedHasher.running = GatedHasher.peak = 0
    yield GatedHasher
    GatedHasher.gate.set()  # never leave a check waiting


# The tests below set up their data in the test's own thread and drive the ASGI application from an
# event loop of their own (async_to_sync), as daphne would from its thread.


def test_password_checks_run_a_few_at_a_time_and_other_pages_are_served_meanwhile(settings, gated_passwords):
    make_user("alice")
    bob_cookie = session_cookie_for(make_user("bob"))
    allowed = settings.CHAT_LOGIN_CONCURRENCY

    async def scenario():
        attempts = [await login_form("alice", f"wrong-{n}") for n in range(allowed + 2)]
        logins = [
            asyncio.create_task(asgi("POST", LOGIN, cookies=c, form=f, address=f"192.0.2.{20 + n}"))
            for n, (c, f) in enumerate(attempts)
        ]
        await eventually(lambda: gated_passwords.running >= allowed)
        usage = await asgi("GET", "/usage/", cookies={"sessionid": bob_cookie})
        running_meanwhile = gated_passwords.running
        gated_passwords.gate.set()
        return usage, running_meanwhile, await asyncio.gather(*logins)

    (status, _headers, page), running_meanwhile, answers = async_to_sync(scenario)()
    assert status == 200 and "Your usage" in page  # served while every check allowed was in progress
    assert running_meanwhile == allowed
    assert [status for status, _h, _t in answers] == [200] * (allowed + 2)
    assert all(WRONG in text for _s, _h, text in answers)
    assert gated_passwords.peak == allowed


def test_a_locked_out_login_through_asgi_shows_the_page_saying_when(settings):
    make_user("alice")

    async def fail_until_locked_over_asgi():
        for _ in range(settings.AXES_FAILURE_LIMIT):
            cookies, form = await login_form("alice", "wrong")
            answer = await asgi("POST", LOGIN, cookies=cookies, form=form)
        return answer

    status, _headers, page = async_to_sync(fail_until_locked_over_asgi)()
    assert status == 429 and LOCKED in page and 'id="id_password"' in page


def test_the_wait_for_a_password_check_is_bounded_and_fair_busy_is_said_at_once(settings, gated_passwords):
    # Many guesses queue behind the few checks that run at once: one address gets one check at a time,
    # and past a short queue the page says the server is busy at once, instead of a real person's login
    # waiting behind all of them.
    make_user("alice")
    allowed = settings.CHAT_LOGIN_CONCURRENCY
    limit = allowed * 5

    async def scenario():
        attempts = [await login_form("alice", f"wrong-{n}") for n in range(limit + 3)]
        queued = [
            asyncio.create_task(asgi("POST", LOGIN, cookies=c, form=f, address=f"192.0.2.{20 + n}"))
            for n, (c, f) in enumerate(attempts[:limit])
        ]
        await eventually(lambda: gated_passwords.running >= allowed)
        await asyncio.sleep(0.2)  # the rest are waiting for the pool
        cookies, form = attempts[limit]
        over = await asgi("POST", LOGIN, cookies=cookies, form=form, address="192.0.2.200")
        cookies, form = attempts[limit + 1]
        same_address = await asgi("POST", LOGIN, cookies=cookies, form=form, address="192.0.2.20")
        gated_passwords.gate.set()
        return over, same_address, await asyncio.gather(*queued)

    over, same_address, answers = async_to_sync(scenario)()
    for status, headers, text in (over, same_address):
        assert status == 503 and headers[b"retry-after"] == b"5"
        assert "busy checking other logins" in text and 'name="password"' in text
    assert [status for status, _h, _t in answers] == [200] * limit

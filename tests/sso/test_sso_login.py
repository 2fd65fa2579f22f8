"""Single sign-on through a real OpenID Connect provider (tests/oidc_provider.py, Authlib) on 127.0.0.1.

Nothing inside the app is mocked: the Django test client follows the app's redirect to the provider,
signs in there over HTTP, and brings the provider's redirect back to the app's callback, which exchanges
the code with the provider, checks the ID token and decides the account.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.services import expired_signups_delete
from audit.models import AuditEntry
from privacy.erasure import user_erase
from sso import discovery
from sso.models import GroupTeam, SsoIdentity
from teams.models import Membership, Team
from tests.chatsite.test_settings import run_manage
from tests.helpers import make_user
from tests.oidc_provider import OidcProvider

pytestmark = pytest.mark.django_db
User = get_user_model()


@pytest.fixture
def provider(settings):
    """A running provider, and the app configured for it (as CHAT_SSO_* would configure it)."""
    idp = OidcProvider().start()
    settings.CHAT_SSO_ISSUER = idp.issuer
    settings.CHAT_SSO_CLIENT_ID = settings.OIDC_RP_CLIENT_ID = idp.client.client_id
    settings.CHAT_SSO_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET = idp.client.client_secret
    settings.CHAT_SSO_ENABLED = True
    settings.CHAT_SSO_NAME = "Example ID"
    settings.CHAT_SSO_ALLOWED_DOMAINS = ["example.org"]
    settings.CHAT_SIGNUP = "open"
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, "sso.backends.SsoBackend"]
    discovery.forget()
    yield idp
    idp.stop()
    discovery.forget()


def start(client) -> str:
    """The app's redirect to the provider's authorize page."""
    response = client.get(reverse("sso_start"))
    assert response.status_code == 302
    assert response["Location"].startswith(f"{discovery.endpoints().authorization}?")
    return response["Location"]


def back_to_app(location: str) -> str:
    """The provider's redirect, as a path + query on the app."""
    parts = urlsplit(location)
    assert parts.path == reverse("sso_callback")
    return f"{parts.path}?{parts.query}"


def sso_login(client, provider, login: str):
    callback = back_to_app(provider.authorize_url_login(start(client), login))
    return client.get(callback), callback


def logged_in_user(client):
    user = client.get(reverse("home")).wsgi_request.user
    return user if user.is_authenticated else None


def refusals(reason: str) -> int:
    return AuditEntry.objects.filter(action="sso.login_failed", after__reason=reason).count()


def page_says(client, response, text: str) -> bool:
    assert response.status_code == 302 and response["Location"] == reverse("login")
    return text in client.get(reverse("login")).content.decode()


def test_first_login_creates_an_active_account_and_the_next_reuses_it(client, provider):
    provider.add_person("ada@example.org", name="Ada", groups=[])
    response, _ = sso_login(client, provider, "ada@example.org")
    assert response.status_code == 302 and response["Location"] == reverse("home")
    user = logged_in_user(client)
    assert user is not None and user.email == "ada@example.org" and user.is_active
    assert not user.has_usable_password()
    assert AuditEntry.objects.filter(action="sso.identity_linked", after__account_created=True).count() == 1

    client.logout()
    assert logged_in_user(client) is None
    sso_login(client, provider, "ada@example.org")
    assert logged_in_user(client).pk == user.pk
    assert User.objects.filter(email="ada@example.org").count() == 1
    assert SsoIdentity.objects.get(user=user).last_login is not None


def test_an_existing_account_with_the_same_address_is_linked_not_duplicated(client, provider):
    existing = make_user("grace", email="grace@example.org")
    provider.add_person("grace@example.org")
    sso_login(client, provider, "grace@example.org")
    assert logged_in_user(client).pk == existing.pk
    assert SsoIdentity.objects.filter(user=existing).count() == 1


@pytest.mark.parametrize("verified", [None, "false", False])
def test_an_address_the_provider_did_not_verify_links_no_account_and_makes_none(client, provider, verified):
    existing = make_user("grace", email="grace@example.org")
    provider.add_person("grace@example.org", email_verified=verified)
    response, _ = sso_login(client, provider, "grace@example.org")
    assert page_says(client, response, "did not give a verified e-mail address")
    assert logged_in_user(client) is None
    assert not SsoIdentity.objects.exists()
    assert User.objects.filter(email="grace@example.org").get() == existing


def test_a_staff_account_is_never_linked_automatically(client, provider):
    staff = make_user("root", email="root@example.org", is_staff=True)
    provider.add_person("root@example.org")
    response, _ = sso_login(client, provider, "root@example.org")
    assert page_says(client, response, "A staff account here already uses your e-mail address")
    assert logged_in_user(client) is None
    assert not SsoIdentity.objects.filter(user=staff).exists()
    assert refusals("staff_account") == 1


def test_an_unconfirmed_sign_up_with_the_address_does_not_lock_its_owner_out(client, provider, settings):
    settings.CHAT_SIGNUP = "domains"
    settings.CHAT_SIGNUP_DOMAINS = ["example.org"]
    squatted = User.objects.create_user("squatter", email="ada@example.org", is_active=False)
    squatted.set_unusable_password()
    squatted.save()
    provider.add_person("ada@example.org")
    sso_login(client, provider, "ada@example.org")
    user = logged_in_user(client)
    assert user is not None and user.is_active and user.username != "squatter"
    assert not User.objects.filter(pk=squatted.pk).exists()


def test_groups_claim_places_the_person_in_the_mapped_team(client, provider):
    maths = Team.objects.create(name="Maths")
    GroupTeam.objects.create(group="staff-maths", team=maths)
    provider.add_person("alan@example.org", groups=["everyone", "staff-maths"])
    sso_login(client, provider, "alan@example.org")
    assert Membership.objects.get(user=logged_in_user(client)).team == maths


def test_foreign_domain_is_refused_with_a_sentence_and_no_account(client, provider):
    provider.add_person("eve@elsewhere.net")
    response, _ = sso_login(client, provider, "eve@elsewhere.net")
    assert page_says(client, response, "Addresses at elsewhere.net cannot sign in here")
    assert logged_in_user(client) is None
    assert not User.objects.filter(email="eve@elsewhere.net").exists()
    assert refusals("domain") == 1


def test_a_replayed_response_is_refused(client, provider):
    provider.add_person("ada@example.org")
    first, callback = sso_login(client, provider, "ada@example.org")
    assert first["Location"] == reverse("home")
    client.logout()
    replay = client.get(callback)  # the same code and state again, e.g. from the browser's history
    assert page_says(client, replay, "That sign-in response was not valid here")
    assert logged_in_user(client) is None
    # Anyone can call the callback: a response no login of this browser waits for is not audited.
    assert refusals("state") == 0


def test_an_error_from_the_provider_is_shown_by_its_code_only(client, provider):
    stray = client.get(reverse("sso_callback"), {"error": "Your account is locked, call 555-0100"})
    assert not page_says(client, stray, "555-0100")  # no login waits: nothing of it is shown
    state = dict(parse_qsl(urlsplit(start(client)).query))["state"]
    text = client.get(reverse("sso_callback"), {"state": state, "error": "Call 555-0100 now"})
    assert page_says(client, text, "did not sign you in (an error)")  # the caller's words are not shown
    state = dict(parse_qsl(urlsplit(start(client)).query))["state"]
    denied = client.get(reverse("sso_callback"), {"state": state, "error": "access_denied"})
    assert page_says(client, denied, "access_denied")
    assert refusals("provider") == 2


def test_a_forged_state_is_refused_before_the_provider_is_asked(client, provider):
    provider.add_person("ada@example.org")
    location = provider.authorize_url_login(start(client), "ada@example.org")
    query = dict(parse_qsl(urlsplit(location).query))
    forged = client.get(reverse("sso_callback"), {"code": query["code"], "state": "forged-state"})
    assert page_says(client, forged, "That sign-in response was not valid here")
    assert logged_in_user(client) is None
    assert query["code"] in provider.codes  # never exchanged


def test_a_code_injected_under_another_login_s_state_fails_the_nonce_check(client, provider):
    """Two logins started in one browser: the code of the first brought back with the state of the
    second. The state is the session's, but the ID token carries the first login's nonce."""
    provider.add_person("ada@example.org")
    first = start(client)
    second = start(client)
    code = dict(parse_qsl(urlsplit(provider.authorize_url_login(first, "ada@example.org")).query))["code"]
    second_state = dict(parse_qsl(urlsplit(second).query))["state"]
    response = client.get(reverse("sso_callback"), {"code": code, "state": second_state})
    assert page_says(client, response, "That sign-in response was not valid here")
    assert logged_in_user(client) is None
    assert refusals("token") == 1


def test_a_deactivated_account_cannot_log_in_through_sso(client, provider):
    provider.add_person("ada@example.org")
    sso_login(client, provider, "ada@example.org")
    user = logged_in_user(client)
    client.logout()
    User.objects.filter(pk=user.pk).update(is_active=False)
    response, _ = sso_login(client, provider, "ada@example.org")
    assert page_says(client, response, "This account has been deactivated")
    assert logged_in_user(client) is None
    assert refusals("deactivated") == 1


def test_an_erased_person_cannot_come_back_through_sso(client, provider):
    provider.add_person("ada@example.org")
    sso_login(client, provider, "ada@example.org")
    user = logged_in_user(client)
    client.logout()
    user_erase(user=user)
    response, _ = sso_login(client, provider, "ada@example.org")
    assert page_says(client, response, "This account was erased")
    assert logged_in_user(client) is None
    assert User.objects.count() == 1  # no new account for the same person
    assert refusals("erased") == 1


def test_closed_sign_up_creates_a_pending_account_that_staff_activate(client, provider, settings):
    settings.CHAT_SIGNUP = "closed"
    provider.add_person("ada@example.org")
    response, _ = sso_login(client, provider, "ada@example.org")
    assert page_says(client, response, "waits for a member of staff to activate it")
    pending = User.objects.get(email="ada@example.org")
    assert not pending.is_active and logged_in_user(client) is None

    User.objects.filter(pk=pending.pk).update(is_active=True)  # staff activate it in the admin
    sso_login(client, provider, "ada@example.org")
    assert logged_in_user(client).pk == pending.pk


@pytest.mark.django_db(transaction=True)  # the password check runs in the login pool's own thread
def test_provider_down_says_so_on_the_login_page_and_passwords_still_work(client, provider):
    make_user("grace")
    provider.stop()
    discovery.forget()
    page = client.get(reverse("login")).content.decode()
    assert "Example ID cannot be reached just now" in page
    assert "You can still log in with your password." in page
    response = client.get(reverse("sso_start"))
    assert response["Location"] == reverse("login")
    assert (
        client.post(reverse("login"), {"username": "grace", "password": "a-Long-passw0rd!"}).status_code
        == 302
    )
    assert logged_in_user(client).get_username() == "grace"


def test_a_provider_failing_during_the_code_exchange_is_reported_and_logs_nobody_in(client, provider):
    provider.add_person("ada@example.org")
    location = provider.authorize_url_login(start(client), "ada@example.org")
    provider.stop()  # between its login page and the app's exchange of the code
    response = client.get(back_to_app(location))
    assert page_says(client, response, "Example ID cannot be reached just now")
    assert logged_in_user(client) is None
    assert refusals("provider_error") == 1


def test_a_login_the_provider_refused_says_so(client, provider):
    state = dict(parse_qsl(urlsplit(start(client)).query))["state"]
    response = client.get(reverse("sso_callback"), {"error": "access_denied", "state": state})
    assert page_says(client, response, "Example ID did not sign you in (access_denied)")
    assert logged_in_user(client) is None


def test_without_sso_settings_the_login_page_is_the_password_one(client):
    page = client.get(reverse("login")).content.decode()
    assert "Sign in with" not in page and 'name="password"' in page
    assert client.get(reverse("sso_start")).status_code == 404
    assert client.get(reverse("sso_callback"), {"code": "x", "state": "y"}).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_password_login_off_leaves_only_sso(client, provider, settings):
    settings.CHAT_PASSWORD_LOGIN = False
    make_user("grace")
    page = client.get(reverse("login")).content.decode()
    assert "Sign in with Example ID" in page and 'name="password"' not in page
    assert reverse("signup") not in page  # sign-up would make a password account
    assert "Passwords are not used on this server" in client.get(reverse("signup")).content.decode()
    response = client.post(reverse("login"), {"username": "grace", "password": "a-Long-passw0rd!"})
    assert response.status_code == 302 and logged_in_user(client) is None
    assert "Logging in with a password is turned off" in client.get(reverse("login")).content.decode()


def test_staff_changes_to_group_mappings_are_audited(db):
    mapping = GroupTeam.objects.create(group="staff-maths", team=Team.objects.create(name="Maths"))
    mapping.team = Team.objects.create(name="Physics")
    mapping.save()
    entries = AuditEntry.objects.filter(action__startswith="sso.group_team.").order_by("seq")
    assert [e.action for e in entries] == ["sso.group_team.created", "sso.group_team.changed"]
    assert entries[1].before["team"].startswith("Maths") and entries[1].after["team"].startswith("Physics")


def test_a_pending_sso_account_is_not_swept_as_an_unconfirmed_sign_up(client, provider, settings):
    settings.CHAT_SIGNUP = "closed"
    provider.add_person("ada@example.org")
    sso_login(client, provider, "ada@example.org")
    expired_signups_delete(timezone.now() + timedelta(days=30))
    assert User.objects.filter(email="ada@example.org", is_active=False).exists()


def test_password_login_off_without_sso_refuses_to_start():
    result = run_manage("check", CHAT_PASSWORD_LOGIN="off")
    assert result.returncode != 0
    assert "CHAT_PASSWORD_LOGIN=off needs single sign-on" in result.stderr


def test_a_superuser_links_a_staff_account_and_its_owner_then_signs_in(client, provider, settings):
    staff = make_user("root", email="root@example.org", is_staff=True)
    person = provider.add_person("root@example.org")
    admin = Client()
    admin.force_login(make_user("boss", is_staff=True, is_superuser=True))
    added = admin.post(
        "/admin/sso/ssoidentity/add/",
        {"user": staff.pk, "issuer": settings.CHAT_SSO_ISSUER, "subject": person.sub},
    )
    assert added.status_code == 302, added.content.decode()[:2000]
    assert AuditEntry.objects.filter(action="sso.identity_linked", actor_label="boss").count() == 1
    sso_login(client, provider, "root@example.org")
    assert logged_in_user(client) == staff
    # A member of staff who is not a superuser cannot link accounts.
    plain = Client()
    plain.force_login(make_user("clerk", is_staff=True))
    assert plain.get("/admin/sso/ssoidentity/add/").status_code == 403

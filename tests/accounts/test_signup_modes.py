"""Who may sign up: the operator's CHAT_SIGNUP mode (open, invite, domains, closed)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from accounts.models import Invite, token_digest
from tests.chatsite.test_settings import run_manage
from tests.helpers import make_user

pytestmark = pytest.mark.django_db

PASSWORD = "a-Long-passw0rd!"
User = get_user_model()


def sign_up(client, url=None, username="ada", **fields):
    data = {"username": username, "password1": PASSWORD, "password2": PASSWORD, **fields}
    return client.post(url or reverse("signup"), data)


def make_invite(**fields) -> tuple[Invite, str]:
    invite = Invite(**fields)
    token = invite.assign_new_token()
    invite.save()
    return invite, token


def signed_in_as(client) -> str | None:
    user = client.get(reverse("home")).wsgi_request.user
    return user.get_username() if user.is_authenticated else None


# --- open -------------------------------------------------------------------------------------------


def test_open_mode_lets_anyone_sign_up_and_the_login_page_links_to_it(client, settings):
    settings.CHAT_SIGNUP = "open"
    assert reverse("signup") in client.get(reverse("login")).content.decode()
    assert sign_up(client).status_code == 302
    assert signed_in_as(client) == "ada"


# --- closed -----------------------------------------------------------------------------------------


def test_closed_mode_says_so_links_to_login_and_creates_no_user(client, settings):
    settings.CHAT_SIGNUP = "closed"
    page = client.get(reverse("signup"))
    assert page.status_code == 200
    assert "Sign-up is closed on this server" in page.content.decode()
    assert reverse("login") in page.content.decode() and b'name="password1"' not in page.content

    refused = sign_up(client)
    assert refused.status_code == 403 and "Sign-up is closed" in refused.content.decode()
    assert not User.objects.exists() and signed_in_as(client) is None
    assert reverse("signup") not in client.get(reverse("login")).content.decode()


# --- invite -----------------------------------------------------------------------------------------


def test_invite_mode_without_a_link_refuses_and_the_login_page_does_not_offer_sign_up(client, settings):
    settings.CHAT_SIGNUP = "invite"
    assert "needs an invite link" in client.get(reverse("signup")).content.decode()
    assert sign_up(client).status_code == 403
    assert not User.objects.exists()
    assert reverse("signup") not in client.get(reverse("login")).content.decode()


def test_an_invite_link_signs_one_person_up_with_the_invites_address(client, settings):
    settings.CHAT_SIGNUP = "invite"
    invite, token = make_invite(email="ada@example.org")
    link = reverse("signup_invite", args=[token])
    page = client.get(link)
    assert page.status_code == 200 and "ada@example.org" in page.content.decode()

    assert sign_up(client, link).status_code == 302
    assert signed_in_as(client) == "ada"
    ada = User.objects.get(username="ada")
    assert ada.email == "ada@example.org"
    invite.refresh_from_db()
    assert invite.uses == 1 and list(invite.accounts.all()) == [ada]
    assert invite.token_hash == token_digest(token) and token not in invite.token_hash  # stored hashed


def test_a_used_invite_is_refused_with_a_clear_message_and_creates_no_user(client, settings):
    settings.CHAT_SIGNUP = "invite"
    _, token = make_invite()
    url = f"{reverse('signup')}?invite={token}"  # the query-string form of the link works the same
    assert sign_up(client, url, username="first").status_code == 302
    client.logout()

    page = client.get(url)
    assert page.status_code == 403 and "already been used" in page.content.decode()
    refused = sign_up(client, url, username="second")
    assert refused.status_code == 403 and "already been used" in refused.content.decode()
    assert not User.objects.filter(username="second").exists()


def test_an_invite_for_n_people_takes_n_sign_ups(client, settings):
    settings.CHAT_SIGNUP = "invite"
    _, token = make_invite(max_uses=2)
    link = reverse("signup_invite", args=[token])
    for username in ("one", "two"):
        assert sign_up(client, link, username=username).status_code == 302
        client.logout()
    assert "already been used" in sign_up(client, link, username="three").content.decode()
    assert sorted(User.objects.values_list("username", flat=True)) == ["one", "two"]


def test_an_expired_invite_is_refused_with_its_expiry_date(client, settings):
    settings.CHAT_SIGNUP = "invite"
    _, token = make_invite(expires_at=timezone.now() - timedelta(minutes=1))
    refused = sign_up(client, reverse("signup_invite", args=[token]))
    assert refused.status_code == 403 and "This invite link expired on" in refused.content.decode()
    assert not User.objects.exists()


def test_an_unknown_invite_token_is_refused(client, settings):
    settings.CHAT_SIGNUP = "invite"
    make_invite()
    refused = sign_up(client, reverse("signup_invite", args=["not-the-token"]))
    assert refused.status_code == 403 and "This invite link is not valid" in refused.content.decode()
    assert not User.objects.exists()


def test_invite_links_do_nothing_in_closed_mode(client, settings):
    settings.CHAT_SIGNUP = "closed"
    _, token = make_invite()
    assert sign_up(client, reverse("signup_invite", args=[token])).status_code == 403
    assert sign_up(client, f"{reverse('signup')}?invite={token}").status_code == 403
    assert not User.objects.exists()


def test_staff_create_an_invite_in_the_admin_and_see_its_link_once_with_the_mode(client, settings):
    settings.CHAT_SIGNUP = "invite"
    client.force_login(make_user("boss", is_staff=True, is_superuser=True))
    listing = client.get(reverse("admin:accounts_invite_changelist")).content.decode()
    assert "Sign-up: <strong>invite</strong>" in listing
    assert "Sign-up: <strong>invite</strong>" in client.get(reverse("admin:index")).content.decode()

    assert client.get(reverse("admin:accounts_invite_add")).status_code == 200
    expires = timezone.localtime() + timedelta(days=3)
    response = client.post(
        reverse("admin:accounts_invite_add"),
        {
            "note": "For Grace",
            "email": "",
            "max_uses": "1",
            "expires_at_0": expires.strftime("%Y-%m-%d"),
            "expires_at_1": expires.strftime("%H:%M:%S"),
        },
        follow=True,
    )
    page = response.content.decode()
    [link] = set(re.findall(r"https?://[^\"<\s]+/accounts/invite/[^\"<\s/]+/", page))
    invite = Invite.objects.get()
    assert invite.created_by.username == "boss" and invite.note == "For Grace"
    assert client.get(reverse("admin:accounts_invite_change", args=[invite.pk])).status_code == 200
    assert "cannot be shown again" in page

    client.logout()
    assert sign_up(client, link, username="grace").status_code == 302
    assert signed_in_as(client) == "grace"


# --- domains ----------------------------------------------------------------------------------------


def test_domains_mode_refuses_other_addresses_and_creates_no_user(client, settings, mailoutbox):
    settings.CHAT_SIGNUP = "domains"
    settings.CHAT_SIGNUP_DOMAINS = ["example.org"]
    page = client.get(reverse("signup")).content.decode()
    assert 'name="email"' in page and 'name="password1"' not in page
    for address in ("ada@elsewhere.com", "ada@mail.example.org", "ada@example.org.evil.com"):
        refused = client.post(reverse("signup"), {"username": "ada", "email": address})
        assert (
            refused.status_code == 200
            and "needs an address ending in @example.org" in refused.content.decode()
        )
    assert not User.objects.exists() and not mailoutbox


def test_domains_mode_mails_a_link_and_the_account_works_only_after_it_is_opened(
    client, settings, mailoutbox
):
    settings.CHAT_SIGNUP = "domains"
    settings.CHAT_SIGNUP_DOMAINS = ["example.org"]
    response = client.post(reverse("signup"), {"username": "ada", "email": "Ada@Example.org"})
    assert "Check your inbox" in response.content.decode()
    ada = User.objects.get(username="ada")
    assert not ada.is_active and not ada.has_usable_password()
    assert signed_in_as(client) is None

    [mail] = mailoutbox
    assert mail.to == ["Ada@example.org"]
    [link] = re.findall(r"https?://\S+/accounts/confirm/\S+/", mail.body)
    assert "Choose your password" in client.get(link).content.decode()
    assert client.post(link, {"new_password1": PASSWORD, "new_password2": PASSWORD}).status_code == 302
    assert signed_in_as(client) == "ada"
    ada.refresh_from_db()
    assert ada.is_active and ada.check_password(PASSWORD)

    client.logout()
    reused = client.post(link, {"new_password1": "an-Other-passw0rd!", "new_password2": "an-Other-passw0rd!"})
    assert reused.status_code == 403 and "does not work any more" in reused.content.decode()


def test_domains_mode_does_not_say_which_addresses_have_accounts(client, settings, mailoutbox):
    settings.CHAT_SIGNUP = "domains"
    settings.CHAT_SIGNUP_DOMAINS = ["example.org"]
    make_user("ada", email="ada@example.org")
    response = client.post(reverse("signup"), {"username": "someone", "email": "ada@example.org"})
    assert "Check your inbox" in response.content.decode()
    assert User.objects.count() == 1
    [mail] = mailoutbox
    assert "already has an account" in mail.body and "/accounts/confirm/" not in mail.body


def test_domains_mode_mails_an_address_once_in_five_minutes_and_a_network_five_times_an_hour(
    client, settings, mailoutbox
):
    settings.CHAT_SIGNUP = "domains"
    settings.CHAT_SIGNUP_DOMAINS = ["example.org"]
    first = client.post(reverse("signup"), {"username": "ada", "email": "ada@example.org"})
    assert "Check your inbox" in first.content.decode()
    for _ in range(14):  # a flood of requests for one address
        again = client.post(reverse("signup"), {"username": "ada", "email": "ada@example.org"})
        assert "ask again in 5 minutes" in again.content.decode()
    assert len(mailoutbox) == 1
    for n in range(2, 10):  # other addresses from the same network
        client.post(reverse("signup"), {"username": f"user{n}", "email": f"user{n}@example.org"})
    assert len(mailoutbox) == 5
    refused = client.post(reverse("signup"), {"username": "zed", "email": "zed@example.org"})
    assert "Too many sign-up mails" in refused.content.decode()


def test_a_username_never_confirmed_is_free_again_once_its_link_expired(client, settings, mailoutbox):
    from datetime import timedelta

    from django.utils import timezone

    settings.CHAT_SIGNUP = "domains"
    settings.CHAT_SIGNUP_DOMAINS = ["example.org"]
    client.post(reverse("signup"), {"username": "ada", "email": "ada@example.org"})
    taken = client.post(reverse("signup"), {"username": "ada", "email": "other@example.org"})
    assert "already exists" in taken.content.decode()
    expired = timezone.now() - timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT + 60)
    User.objects.filter(username="ada").update(date_joined=expired)
    free = client.post(reverse("signup"), {"username": "ada", "email": "other@example.org"})
    assert "Check your inbox" in free.content.decode()
    assert User.objects.get(username="ada").email == "other@example.org"


# --- settings ---------------------------------------------------------------------------------------


def test_production_defaults_to_closed_sign_up_and_an_unknown_mode_refuses_to_start():
    production = {
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "a-long-random-production-secret-value-0123456789-abcdefghijkl",
        "DJANGO_ALLOWED_HOSTS": "chat.example.org",
    }

    def mode(**env: str) -> str:
        code = "from django.conf import settings; print('mode', settings.CHAT_SIGNUP)"
        return run_manage("shell", "-c", code, **env).stdout.split("mode ")[-1].strip()

    assert mode(**production) == "closed"
    assert mode(**production, CHAT_SIGNUP="invite") == "invite"
    assert mode() == "open"  # DJANGO_DEBUG on: one person trying the app
    wrong = run_manage("check", CHAT_SIGNUP="everyone")
    assert wrong.returncode != 0 and "CHAT_SIGNUP='everyone'" in wrong.stderr
    no_domains = run_manage("check", CHAT_SIGNUP="domains")
    assert no_domains.returncode != 0 and "needs CHAT_SIGNUP_DOMAINS" in no_domains.stderr

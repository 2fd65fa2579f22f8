"""Browser tests of single sign-on: a real Chromium, a real daphne configured for single sign-on, and a
real OpenID Connect provider (tests/oidc_provider.py, Authlib) on 127.0.0.1. The person types their
address and password at the provider's page, as they would at their organisation's."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.e2e.test_e2e_usage_dashboard import serious_violations
from tests.oidc_provider import PASSWORD, OidcProvider
from tests.servers import PROJECT_DIR, VENV_BIN, ServerDatabase, Worker, migrate, server_env


class SsoSite:
    def __init__(self, provider: OidcProvider, worker: Worker) -> None:
        self.provider = provider
        self.worker = worker

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [str(VENV_BIN / "python"), "manage.py", *args],
            cwd=PROJECT_DIR,
            env=self.worker.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def shell(self, code: str) -> str:
        return self.manage("shell", "--no-imports", "-c", code).strip()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SsoSite]:
    provider = OidcProvider().start()
    workdir = tmp_path_factory.mktemp("e2e-sso")
    database = ServerDatabase(workdir, "sso")
    env = server_env(
        database.url,
        CHAT_SSO_ISSUER=provider.issuer,
        CHAT_SSO_CLIENT_ID=provider.client.client_id,
        CHAT_SSO_CLIENT_SECRET=provider.client.client_secret,
        CHAT_SSO_NAME="Example ID",
        CHAT_SSO_ALLOWED_DOMAINS="example.org",
        CHAT_SIGNUP="open",
    )
    worker = Worker(env, workdir / "daphne.log")
    try:
        migrate(env)
        worker.start()
        yield SsoSite(provider, worker)
    finally:
        worker.stop()
        database.drop()
        provider.stop()


@pytest.fixture
def page(browser, site: SsoSite) -> Iterator:
    context = browser.new_context(base_url=site.worker.url)
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def person(site: SsoSite, **claims) -> str:
    login = f"p{uuid.uuid4().hex[:8]}@{claims.pop('domain', 'example.org')}"
    site.provider.add_person(login, **claims)
    return login


def sign_in_at_provider(page, login: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_role("link", name="Sign in with Example ID").click()
    expect(page.get_by_role("heading", name="Test identity provider")).to_be_visible()
    page.fill("#login", login)
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Sign in at the provider").click()


def test_first_sso_login_creates_the_account_and_the_second_reuses_it_after_logout(page, site):
    login = person(site, name="Ada Lovelace")
    username = login.partition("@")[0]
    page.goto("/accounts/login/")
    assert serious_violations(page) == []

    sign_in_at_provider(page, login)
    expect(page.locator("#composer-input")).to_be_visible()  # in the chat
    expect(page.locator(".topbar .who")).to_have_text(username)

    page.locator(".account-menu summary").click()
    expect(page.get_by_role("link", name="Password")).to_have_count(0)  # they have none here
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("link", name="Sign in with Example ID")).to_be_visible()
    page.goto("/")
    expect(page).to_have_url(f"{site.worker.url}/accounts/login/?next=/")  # the app's session is over

    sign_in_at_provider(page, login)
    expect(page.locator(".topbar .who")).to_have_text(username)
    count = site.shell(
        f"from django.contrib.auth.models import User; print(User.objects.filter(email='{login}').count())"
    )
    assert count == "1"


def test_the_groups_claim_places_the_person_in_the_mapped_team(page, site):
    team = f"Physics {uuid.uuid4().hex[:6]}"
    group = f"staff-physics-{uuid.uuid4().hex[:6]}"
    site.shell(
        "from teams.models import Team; from sso.models import GroupTeam; "
        f"GroupTeam.objects.create(group='{group}', team=Team.objects.create(name='{team}'))"
    )
    login = person(site, groups=["everyone", group])
    sign_in_at_provider(page, login)
    expect(page.locator("#composer-input")).to_be_visible()
    placed = site.shell(
        f"from teams.models import Membership; print(Membership.objects.get(user__email='{login}').team.name)"
    )
    assert placed == team


def test_a_foreign_domain_is_refused_with_a_clear_sentence_and_no_account(page, site):
    login = person(site, domain="elsewhere.net")
    sign_in_at_provider(page, login)
    expect(page).to_have_url(f"{site.worker.url}/accounts/login/")
    expect(page.get_by_role("status")).to_contain_text(
        "Addresses at elsewhere.net cannot sign in here: use an account at example.org."
    )
    assert serious_violations(page) == []
    count = site.shell(
        f"from django.contrib.auth.models import User; print(User.objects.filter(email='{login}').count())"
    )
    assert count == "0"

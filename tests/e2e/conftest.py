"""Browser tests: a real daphne server (own database, the offline Claude) driven by Debian's Chromium.

The test process never touches a database: everything goes through the server over HTTP and the
websocket, exactly as a user's browser would. The server gets its own database, derived from the
environment of the test run: a fresh SQLite file, or (when DATABASE_URL points at PostgreSQL) a
throwaway database on the same PostgreSQL server. REDIS_URL, if set, is passed through so the
scale-out pass exercises the Redis channel layer.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PROJECT_DIR,
    VENV_BIN,
    ServerDatabase,
    Worker,
    migrate,
    server_env,
)


@pytest.fixture(autouse=True)
def _generations_finished():
    """Replies of browser tests run in the server process; Playwright's loop owns this thread."""
    yield


PASSWORD = "e2e-Long-passw0rd!"

_user_numbers = itertools.count(1)
_server_log: list[Path] = []  # where the running server writes, for failure reports
_server_environ: dict[str, str] = {}  # the running server's environment, for management commands


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: drives a real browser against a real daphne server")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def live_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a daphne server running the app against its own fresh database."""
    workdir = tmp_path_factory.mktemp("e2e-server")
    log_path = workdir / "daphne.log"
    _server_log[:] = [log_path]
    database = ServerDatabase(workdir, "e2e")
    # An Admin key, so the dashboard offers "Reconcile now" (against the server's offline Claude).
    env = server_env(database.url, ANTHROPIC_ADMIN_KEY="sk-ant-admin01-e2e")
    _server_environ.clear()
    _server_environ.update(env)
    worker = Worker(env, log_path)
    try:
        migrate(env)
        worker.start()
        yield worker.url
    finally:
        worker.stop()
        database.drop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    report = yield
    if report.when == "call":
        item.call_failed = report.failed  # read by new_context: screenshots only of a failed test
    # On a failing browser test, show what the server said: tracebacks live there, not in the browser.
    if report.failed and "live_server_url" in getattr(item, "fixturenames", ()):
        for log_path in _server_log:
            if log_path.exists():
                report.sections.append(("daphne server output", log_path.read_text()[-20000:]))
    return report


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """One Chromium for the whole session (Debian's; Playwright's own browsers are not available)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (apt-get install chromium).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def new_context(browser, live_server_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator:
    """Factory for isolated browser contexts (separate cookies: separate users); all closed after the test.
    When the test failed, a screenshot of each page it left open goes into its `tmp_path` first (the
    failure report names the files)."""
    contexts = []

    def make(**options):
        context = browser.new_context(base_url=live_server_url, **options)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context

    yield make
    if getattr(request.node, "call_failed", False):
        for n, shown in enumerate(page for context in contexts for page in context.pages):
            path = tmp_path / f"failed-{n}.png"
            try:
                shown.screenshot(path=str(path), full_page=True)
                print(f"Screenshot of the failed test's page {shown.url}: {path}")
            except Exception as exc:  # a page that crashed cannot be shot: the report says so
                print(f"No screenshot of {shown.url}: {exc}")
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_context):
    return new_context().new_page()


def _sign_up(page, username: str | None = None) -> str:
    """Sign a new user up through the form; returns the username. The page ends on the home page."""
    from playwright.sync_api import expect

    username = username or f"e2e{next(_user_numbers)}_{uuid.uuid4().hex[:8]}"
    page.goto("/accounts/signup/")
    page.fill("#id_username", username)
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.locator("#composer-input")).to_be_visible()
    expect(page.locator(".topbar .who")).to_have_text(username)
    # The home page shows before its deferred scripts (htmx, app.js) have run; callers act on it at once.
    page.wait_for_load_state("load")
    return username


@pytest.fixture
def sign_up():
    """`sign_up(page)` signs a fresh, unique user up through the form (for tests with several users)."""
    return _sign_up


@pytest.fixture
def signed_up_page(page):
    """A page of a freshly signed-up user, on the home page."""
    _sign_up(page)
    return page


@pytest.fixture
def manage(live_server_url: str):
    """`manage("createsuperuser", ...)` runs a management command against the running server's database."""

    def run(*args: str, **env: str) -> str:
        result = subprocess.run(
            [str(VENV_BIN / "python"), "manage.py", *args],
            cwd=PROJECT_DIR,
            env={**_server_environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    return run


@pytest.fixture
def log_in_as_staff(manage):
    """`log_in_as_staff(page)` creates a fresh superuser (createsuperuser) and logs it in through the admin's
    login page; returns the username. The page ends on the admin's index."""
    from playwright.sync_api import expect

    def log_in(page) -> str:
        username = f"staff{next(_user_numbers)}_{uuid.uuid4().hex[:8]}"
        manage(
            "createsuperuser",
            "--noinput",
            "--username",
            username,
            "--email",
            f"{username}@example.org",
            DJANGO_SUPERUSER_PASSWORD=PASSWORD,
        )
        page.goto("/admin/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        page.locator("#login-form [type=submit]").click()
        expect(page).to_have_url(re.compile(r"/admin/$"))
        expect(page.locator("#site-name")).to_be_visible()
        return username

    return log_in

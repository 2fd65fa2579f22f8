"""Shared fixtures: the offline Claude as the only Claude, users, conversations, sockets."""

from __future__ import annotations

import asyncio
import os

import pytest

from tests import servers

# Anything that builds an SDK client from the environment instead of the app's settings would
# try api.anthropic.com with this key and fail loudly (there is no network here anyway).
os.environ["ANTHROPIC_API_KEY"] = "sk-ant-test-fake-key-never-valid"
os.environ.pop("ANTHROPIC_BASE_URL", None)


@pytest.fixture(autouse=True)
def _chat_settings(settings):
    settings.ANTHROPIC_API_KEY = ""  # the app uses its in-process offline Claude
    # Budget alerts mailed by the thread that noticed them, so a test reads them in its outbox at once
    # (test_budget_alert_mail.py covers the mailer thread).
    settings.CHAT_BUDGET_ALERTS_INLINE = True
    settings.ANTHROPIC_BASE_URL = ""
    settings.CHAT_COALESCE_MS = 20
    from conversations.replies.relay import frame_pace

    frame_pace.lateness = 0.0  # each test starts at the base window, whatever an earlier one left
    settings.CHAT_CHECKPOINT_SECONDS = 0.2
    settings.CHAT_READ_TIMEOUT_SECONDS = 5
    settings.CHAT_MAX_RETRIES = 2
    # No periodic lease sweep in the background of a test (tests sweep explicitly, or through Send and
    # Stop): a sweep still running when the test's database is flushed would race with the flush.
    settings.CHAT_LEASE_SECONDS = 600
    # No title call after each test's first reply (it would add a ledger row and a task outliving the
    # test); the tests of titles turn it on.
    settings.CHAT_TITLE_MODEL = ""


@pytest.fixture(autouse=True)
def _price_line_asks_forgotten():
    """The price line's per-person count of drafts priced this minute starts empty in every test (ids
    are reused from one test's database to the next)."""
    from conversations.replies import price

    price._asks.clear()


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    """A new channel layer per test: each test has its own event loop, and channels-redis keeps
    loop-bound locks inside the layer object (one daphne process has a single loop)."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
async def _generations_finished():
    """Replies a test started but did not wait for end on the test's own loop, before its database is
    flushed: a reply still writing (in a database thread) while PostgreSQL truncates the tables can
    deadlock with the flush, which then fails the next test's setup. (Browser tests override this:
    their replies run in a server process.)"""
    yield
    from conversations.replies import tasks as server_tasks
    from conversations.replies.claude import client_close

    tasks = server_tasks.running(("generation", "title"))
    if tasks:
        _done, pending = await asyncio.wait(tasks, timeout=30)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await client_close()  # the SDK's connections belong to this test's loop


@pytest.fixture
def offline_claude():
    """The app's shared offline Claude, fast by default, with caches, fault counters and stats cleared."""
    from offline_claude import default_server

    server = default_server()
    server.reset()
    server.set_defaults(ttft_ms=0, tps=0, tokens_per_delta=3, context_window=None, refuse=False)
    yield server
    server.set_defaults(ttft_ms=0, tps=0, tokens_per_delta=3, context_window=None, refuse=False)


def pytest_collection_modifyitems(session, config, items):
    """Browser tests last: Playwright's sync API keeps an event loop running in the main thread until
    its session fixtures end, and async tests after it could not start their own."""
    items.sort(key=lambda item: "/e2e/" in str(item.path))


@pytest.fixture
def private_media(tmp_path, monkeypatch):
    """Attachments stored in a directory of this test's own (the field's storage is built at import)."""
    from django.core.files.storage import FileSystemStorage

    from conversations.models import Attachment

    field = Attachment._meta.get_field("file")
    monkeypatch.setattr(field, "storage", FileSystemStorage(location=tmp_path, base_url=None))
    return tmp_path


# Real daphne workers (tests/servers.py), for the tests that start their own processes.
@pytest.fixture
def database(tmp_path):
    db = servers.ServerDatabase(tmp_path, "workers")
    yield db
    db.drop()


@pytest.fixture
def workers(tmp_path):
    """`workers(env)` starts a daphne worker; every worker still running is stopped after the test."""
    started: list[servers.Worker] = []

    def start(env: dict[str, str]) -> servers.Worker:
        worker = servers.Worker(env, tmp_path / f"worker-{len(started)}.log").start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()

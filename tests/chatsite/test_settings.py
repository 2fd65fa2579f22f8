"""Settings come from the environment; production refuses to start without a secret key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_a_secret_key():
    result = run_manage("check", DJANGO_DEBUG="0")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_check_deploy_is_clean_with_production_variables():
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="x" * 20 + "a-long-random-production-secret-value-0123456789",
        DJANGO_ALLOWED_HOSTS="chat.example.org",
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_database_and_channel_layer_follow_the_environment():
    code = (
        "from django.conf import settings as s;"
        "print(s.DATABASES['default']['ENGINE']);"
        "print(s.CHANNEL_LAYERS['default']['BACKEND'])"
    )
    result = run_manage(
        "shell",
        "-c",
        code,
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/chat",
        REDIS_URL="redis://127.0.0.1:6379/0",
    )
    assert result.returncode == 0, result.stderr
    assert "postgresql" in result.stdout and "RedisChannelLayer" in result.stdout
    embedded = run_manage("shell", "-c", code)
    assert "sqlite3" in embedded.stdout and "InProcessChannelLayer" in embedded.stdout


def test_app_log_lines_are_printed_once_under_daphne():
    # daphne's command line configures the root logger before it loads the app; then Django applies
    # LOGGING. A line from the app must come out once, not once per handler on its way up.
    script = (
        "import logging, django\n"
        "logging.basicConfig(level=logging.WARNING, format='%(message)s')\n"
        "django.setup()\n"
        "logging.getLogger('conversations.replies.generation').warning('reply 42 stopped')\n"
        "logging.getLogger('billing.services').warning('no price for model x')\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "chatsite.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("reply 42 stopped") == 1
    assert result.stderr.count("no price for model x") == 1


PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "x" * 20 + "a-long-random-production-secret-value-0123456789",
    "DJANGO_ALLOWED_HOSTS": "chat.example.org",
}


@pytest.mark.parametrize(
    "key",
    [
        "short",
        "Ab1-" * 12 + "x",  # 49 characters
        "abcd" * 20,  # 80 characters, 4 different ones
        "django-insecure-" + "a1B2c3D4e5" * 5,  # what startproject writes
    ],
)
def test_production_refuses_to_start_with_a_secret_key_too_weak_to_be_safe(key):
    result = run_manage("check", **{**PRODUCTION, "DJANGO_SECRET_KEY": key})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is too weak to be safe: use at least 50 characters" in result.stderr


def test_a_fifty_character_key_of_five_different_characters_is_enough_and_debug_takes_any():
    assert run_manage("check", **{**PRODUCTION, "DJANGO_SECRET_KEY": "abcde" * 10}).returncode == 0
    assert run_manage("check", DJANGO_DEBUG="1", DJANGO_SECRET_KEY="short").returncode == 0


def test_a_production_response_carries_the_security_headers():
    code = (
        "from django.conf import settings\n"
        "from django.test import Client, override_settings\n"
        # Static file names without the manifest `collectstatic` would write: they are not the point.
        "storages = {**settings.STORAGES, 'staticfiles': {'BACKEND': 'django.contrib.staticfiles.storage.StaticFilesStorage'}}\n"
        "with override_settings(STORAGES=storages):\n"
        "    r = Client().get('/accounts/login/', secure=True, headers={'host': 'chat.example.org'})\n"
        "print(r.status_code)\n"
        "for name, value in r.headers.items():\n"
        "    print(f'{name}: {value}')\n"
        "for cookie in r.cookies.values():\n"
        "    print(f'Set-Cookie: {cookie.OutputString()}')\n"
    )
    result = run_manage("shell", "--no-imports", "-c", code, **PRODUCTION)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    assert lines[0] == "200"
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert headers["Content-Security-Policy"].startswith("default-src 'self'; script-src 'self' 'nonce-")
    assert "camera=()" in headers["Permissions-Policy"]
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
    assert (
        headers["Referrer-Policy"] == "same-origin" and headers["Cross-Origin-Opener-Policy"] == "same-origin"
    )
    assert headers["Set-Cookie"].startswith("csrftoken=") and "; Secure" in headers["Set-Cookie"]


def test_an_unknown_http_client_is_refused_at_start_with_the_choices():
    result = run_manage("check", CHAT_HTTP_CLIENT="requests")
    assert result.returncode != 0
    assert "CHAT_HTTP_CLIENT must be aiohttp or httpx" in result.stderr


async def test_the_sdk_streams_over_the_configured_transport(settings):
    """aiohttp by default (less CPU per delta); httpx2, the SDK's own default, on request."""
    from anthropic._vendor.httpx_aiohttp import AiohttpTransport

    from conversations.replies import claude

    assert settings.CHAT_HTTP_CLIENT == "aiohttp"
    assert isinstance(claude.client()._client._transport, AiohttpTransport)
    settings.CHAT_HTTP_CLIENT = "httpx"
    claude._clients.clear()
    assert not isinstance(claude.client()._client._transport, AiohttpTransport)

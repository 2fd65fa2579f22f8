"""daphne runs on uvloop when started as `make run`, the systemd unit and tests/servers.py start it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What `python -m chatsite.serve` does before daphne's CLI runs, then the loop daphne's reactor got.
PROBE = (
    "from chatsite.serve import install_event_loop; print(install_event_loop()); "
    "import daphne.server; from twisted.internet import reactor; "
    "print(type(reactor._asyncioEventloop).__module__)"
)


def probe(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_daphnes_reactor_runs_on_uvloop_by_default():
    result = probe(CHAT_EVENT_LOOP="")
    assert result.returncode == 0, result.stderr
    chosen, loop_module = result.stdout.split()
    assert chosen == "uvloop" and loop_module.startswith("uvloop")


def test_chat_event_loop_asyncio_keeps_the_standard_loop():
    result = probe(CHAT_EVENT_LOOP="asyncio")
    assert result.returncode == 0, result.stderr
    chosen, loop_module = result.stdout.split()
    assert chosen == "asyncio" and loop_module.startswith("asyncio")


@pytest.mark.parametrize("value", ["tokio", "1"])
def test_an_unknown_event_loop_is_refused_with_a_clear_error(value):
    result = probe(CHAT_EVENT_LOOP=value)
    assert result.returncode != 0
    assert "CHAT_EVENT_LOOP must be 'uvloop' or 'asyncio'" in result.stderr

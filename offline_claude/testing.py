"""Test helpers: a context manager, client factories and pytest fixtures others can import.

Usage in any conftest.py::

    from offline_claude.testing import offline_claude  # noqa: F401  (session fixture)

    def test_x(offline_claude):
        client = sync_client(offline_claude)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .background import OfflineClaudeHandle, start_in_background

# Tests want speed: no time to first token, unpaced deltas.
FAST = {"ttft_ms": 0.0, "tps": 0.0}


@contextmanager
def offline_claude_server(**options: Any) -> Iterator[OfflineClaudeHandle]:
    """Run a private offline Claude for the duration of the ``with`` block (fast by default)."""
    handle = start_in_background(**{**FAST, **options})
    try:
        yield handle
    finally:
        handle.stop()


def sync_client(handle: OfflineClaudeHandle, **kwargs: Any) -> Any:
    """An ``anthropic.Anthropic`` pointed at ``handle`` (max_retries=0 unless given)."""
    import anthropic

    kwargs.setdefault("max_retries", 0)
    kwargs.setdefault("api_key", handle.api_key)
    return anthropic.Anthropic(base_url=handle.base_url, **kwargs)


def async_client(handle: OfflineClaudeHandle, **kwargs: Any) -> Any:
    """An ``anthropic.AsyncAnthropic`` pointed at ``handle`` (max_retries=0 unless given)."""
    import anthropic

    kwargs.setdefault("max_retries", 0)
    kwargs.setdefault("api_key", handle.api_key)
    return anthropic.AsyncAnthropic(base_url=handle.base_url, **kwargs)


try:
    import pytest
except ImportError:  # pragma: no cover - the package works without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="session")
    def offline_claude() -> Iterator[OfflineClaudeHandle]:
        """One fast offline Claude shared by the whole test session."""
        with offline_claude_server() as handle:
            yield handle

    @pytest.fixture
    def fresh_offline_claude() -> Iterator[OfflineClaudeHandle]:
        """A private fast offline Claude for one test (empty cache, no counters)."""
        with offline_claude_server() as handle:
            yield handle

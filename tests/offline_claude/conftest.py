"""Fixtures for the offline Claude tests (the reusable ones live in the package's testing module)."""

from __future__ import annotations

import sys
from pathlib import Path

# pytest-django puts the project root on sys.path; with ``-p no:django`` nothing does, so do it here.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from offline_claude.testing import fresh_offline_claude, offline_claude  # noqa: E402, F401

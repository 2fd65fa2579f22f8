"""The API key's identity on ledger rows: a stable fingerprint, never the key itself."""

from __future__ import annotations

import hashlib
from functools import lru_cache

from django.conf import settings

# The key the app's client presents to the in-process offline Claude (conversations/replies/claude.py).
OFFLINE_KEY = "offline-claude"


@lru_cache(maxsize=8)
def key_fingerprint(key: str) -> str:
    """16 hex digits of the key's SHA-256: the same key always gives the same fingerprint, and the
    fingerprint gives nothing of the key away."""
    return hashlib.sha256(key.encode()).hexdigest()[:16] if key else ""


def current_key_fingerprint() -> str:
    """The fingerprint of the key the app's calls use now (the offline Claude's when none is set)."""
    return key_fingerprint(settings.ANTHROPIC_API_KEY or OFFLINE_KEY)

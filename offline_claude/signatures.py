"""Signatures of thinking blocks: opaque, deterministic, and checkable when a block is sent back.

The real API signs each thinking block so that a later request can send it back unmodified (and
rejects one whose signature does not match). The offline Claude signs the block's text with a fixed
key, so it can check a block it signed in an earlier request without keeping any state.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

_KEY = b"offline-claude thinking signature"
_PREFIX = b"\x12\xa4\x01"


def sign(thinking: str) -> str:
    """The signature of a thinking block with this text (base64, like the real ones)."""
    digest = hmac.new(_KEY, thinking.encode(), hashlib.sha256).digest()
    return base64.b64encode(_PREFIX + digest * 3).decode()


def signature_valid(thinking: str, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(raw, base64.b64decode(sign(thinking)))

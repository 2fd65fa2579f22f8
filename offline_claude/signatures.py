"""Signatures of thinking and compaction blocks, bound to what came before them, as the API binds them.

Preserved thinking (claude-api.md; the docs' "Preserved thinking" and "Prefix checks on thinking
blocks"): a thinking block sent back is bound to its *prefix* — the top-level ``system``, the
``tools`` and every message before it, as they were when Claude wrote the block — and to the thinking
block written before it (the blocks kept must be one unbroken run of the original sequence: dropping
from the start, from the end or all is fine, leaving one out in the middle is not). Thinking blocks
themselves are not part of the prefix, so stripping the thinking from old turns keeps later blocks
valid. ``cache_control`` markers and JSON key order do not count; content values do, and a string
content is the same as one text block.

The offline Claude keeps no state: everything a later check needs is in the signature, under an HMAC
with a fixed key. A thinking signature carries the producing model, the block it followed and two
MACs: one over the thinking text (an altered block is simply invalid) and one over the prefix digest
(a block whose prefix changed is "bound to a different conversation").

The prefix digest is a running hash: it starts from ``system`` and ``tools`` and takes in each message
(without its thinking blocks) in turn. A compaction block (on-demand compaction) records the running
hash at the end of the messages it summarises, so turns kept after the block still check out, and
blocks written after a compaction are bound to the conversation as it continues from it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

_KEY = b"offline-claude thinking signature"
_THINKING_MAGIC = b"\x12\xa4\x02"
_COMPACTION_MAGIC = b"\x12\xa4\xc0"
_NO_BLOCK = b"\x00" * 8
_THINKING_TYPES = ("thinking", "redacted_thinking")


def _mac(*parts: bytes) -> bytes:
    return hmac.new(_KEY, b"".join(len(p).to_bytes(4, "big") + p for p in parts), hashlib.sha256).digest()


def _canon(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _plain(block: Any) -> Any:
    return {k: v for k, v in block.items() if k != "cache_control"} if isinstance(block, dict) else block


def content_blocks(content: Any) -> list[Any]:
    """A message's content as a list of blocks (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content or [])


def model_tag(model: str) -> bytes:
    return hashlib.sha256(model.encode()).digest()[:4]


def chain_start(body: dict[str, Any]) -> bytes:
    """The prefix digest before any message: the top-level ``system`` and ``tools``."""
    system = body.get("system")
    system_blocks = content_blocks(system) if system else []
    # A deferred tool (`defer_loading`) is not part of the prefix until a tool_addition surfaces it
    # (tool_changes.bound_blocks puts its definition in the chain there).
    tools = [t for t in body.get("tools") or [] if not (isinstance(t, dict) and t.get("defer_loading"))]
    return hashlib.sha256(
        _canon(["start", [_plain(b) for b in system_blocks], [_plain(t) for t in tools]])
    ).digest()


def chain_step(state: bytes, role: str, blocks: list[Any]) -> bytes:
    """The prefix digest after one more message (its thinking blocks left out)."""
    kept = [_plain(b) for b in blocks if not (isinstance(b, dict) and b.get("type") in _THINKING_TYPES)]
    return hashlib.sha256(state + _canon([role, kept])).digest()


def block_id(signature: str) -> bytes:
    """A short id of a thinking block (its signature's hash): what the next block records."""
    return hashlib.sha256(signature.encode()).digest()[:8]


def sign(thinking: str, *, model: str, prefix: bytes, previous: bytes = _NO_BLOCK) -> str:
    """The signature of a thinking block written by ``model`` after the prefix digest ``prefix``, following
    the thinking block ``previous`` (its ``block_id``; none for the first)."""
    tag = model_tag(model)
    text_mac = _mac(b"text", tag, thinking.encode())
    prefix_mac = _mac(b"prefix", tag, prefix, previous, thinking.encode())
    return base64.b64encode(_THINKING_MAGIC + tag + previous + text_mac + prefix_mac).decode()


@dataclass(frozen=True)
class ThinkingSignature:
    model_tag: bytes
    previous: bytes
    prefix_mac: bytes


def read_signature(thinking: str, signature: str) -> ThinkingSignature | None:
    """The parts of a valid signature for this text, or None if it was altered, truncated or is not one."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 3 + 4 + 8 + 32 + 32 or not raw.startswith(_THINKING_MAGIC):
        return None
    tag, previous, text_mac, prefix_mac = raw[3:7], raw[7:15], raw[15:47], raw[47:]
    if not hmac.compare_digest(text_mac, _mac(b"text", tag, thinking.encode())):
        return None
    return ThinkingSignature(tag, previous, prefix_mac)


def prefix_matches(parts: ThinkingSignature, thinking: str, *, prefix: bytes, previous: bytes) -> bool:
    """Whether a block with a valid signature was written after this prefix and this previous block."""
    expected = _mac(b"prefix", parts.model_tag, prefix, previous, thinking.encode())
    return hmac.compare_digest(parts.prefix_mac, expected)


def _tool_changes_mac(summary: str, tool_changes: list[Any]) -> bytes:
    return _mac(b"compaction tool changes", summary.encode(), _canon([_plain(c) for c in tool_changes]))


def sign_compaction(
    summary: str, *, state: bytes, start: bytes, tool_changes: list[Any] | None = None
) -> str:
    """The signature of a compaction block summarising messages whose running digest ended at ``state``,
    under the ``system`` and ``tools`` whose digest is ``start``; with ``tool_changes`` (the block's, a
    list), a second MAC over them, so a block sent back with other changes is refused."""
    mac = _mac(b"compaction", summary.encode(), state, start)
    extra = b"" if tool_changes is None else _tool_changes_mac(summary, tool_changes)
    return base64.b64encode(_COMPACTION_MAGIC + state + start + mac + extra).decode()


@dataclass(frozen=True)
class CompactionSignature:
    state: bytes
    start: bytes
    # False when the block's `tool_changes` are not the ones it was returned with.
    tool_changes_ok: bool = True


def read_compaction(summary: str, signature: str, tool_changes: Any = None) -> CompactionSignature | None:
    """What a valid compaction signature for this summary records, or None if the summary or signature
    was altered. A signature made with tool changes checks the block's ``tool_changes`` too."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) not in (3 + 32 * 3, 3 + 32 * 4) or not raw.startswith(_COMPACTION_MAGIC):
        return None
    state, start, mac, extra = raw[3:35], raw[35:67], raw[67:99], raw[99:]
    if not hmac.compare_digest(mac, _mac(b"compaction", summary.encode(), state, start)):
        return None
    changes_ok = not extra or (
        isinstance(tool_changes, list)
        and hmac.compare_digest(extra, _tool_changes_mac(summary, tool_changes))
    )
    return CompactionSignature(state, start, changes_ok)

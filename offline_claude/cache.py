"""Prompt-caching simulation and prompt segmentation (shared with token counting).

A prompt is a sequence of *segments* in the order the API renders it: tools, then system blocks, then
every content block of every message. A ``cache_control`` on a block (or the top-level automatic
``cache_control``, which marks the last block of the last message) is a *breakpoint*. The cache key of a
breakpoint is a SHA-256 of the model id and every segment up to and including it (``cache_control``
itself excluded, so moving a breakpoint does not change the content hash), stored per API key.

Rule per request:
1. Read: the longest prefix, ending at any block boundary at or before the last breakpoint, that has a
   live entry is read (``cache_read_input_tokens``) and its TTL is refreshed. (The real API looks back
   about 20 blocks from each breakpoint; looking back all the way is a simplification.)
2. Write: every breakpoint after the read prefix writes an entry; the tokens between the previous
   boundary and that breakpoint count as ``cache_creation_input_tokens``, split into
   ``ephemeral_5m_input_tokens`` / ``ephemeral_1h_input_tokens`` by that breakpoint's ttl.
3. ``input_tokens`` is the rest (the uncached tail). Prefixes shorter than ``min_tokens`` (server
   option, default 0) are not cached, like the real minimum cacheable length.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from . import media, tool_changes
from .tokenizer import count_tokens

TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}


@dataclass(frozen=True)
class Segment:
    """One block of the rendered prompt."""

    digest: bytes
    tokens: int
    ttl: str | None  # "5m"/"1h" if this block carries a cache breakpoint


@dataclass(frozen=True)
class CacheResult:
    """How a prompt's tokens split into cached-read, cache-written and plain input."""

    input_tokens: int
    cache_read: int
    created_5m: int
    created_1h: int

    @property
    def cache_creation(self) -> int:
        """Total tokens written to the cache (5m + 1h)."""
        return self.created_5m + self.created_1h


def _canon(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _strip_cc(block: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in block.items() if k != "cache_control"}


def block_tokens(block: Any) -> int:
    """Tokens of one content block (text of every kind counted with the one tokenizer rule)."""
    if isinstance(block, str):
        return count_tokens(block)
    if not isinstance(block, dict):
        return count_tokens(json.dumps(block))
    kind = block.get("type")
    if kind == "text":
        return count_tokens(str(block.get("text", "")))
    if kind == "thinking":
        return count_tokens(str(block.get("thinking", "")))
    if kind == "redacted_thinking":
        return 0
    if kind == "image":
        return media.image_info(block).tokens  # ceil(width x height / 750) at the size the model sees
    if kind == "document":
        info = media.document_info(block)
        return count_tokens(info) if isinstance(info, str) else info.tokens
    if kind == "tool_use":
        return count_tokens(str(block.get("name", ""))) + count_tokens(json.dumps(block.get("input", {})))
    if kind == "tool_result":
        content = block.get("content", "")
        if isinstance(content, list):
            return sum(block_tokens(b) for b in content)
        return count_tokens(str(content))
    return count_tokens(json.dumps(_strip_cc(block), sort_keys=True))


def _json_tokens(obj: Any) -> int:
    return count_tokens(json.dumps(obj, sort_keys=True))


def _ttl_of(block: Any) -> str | None:
    if isinstance(block, dict) and isinstance(block.get("cache_control"), dict):
        return str(block["cache_control"].get("ttl") or "5m")
    return None


def build_segments(body: dict[str, Any]) -> list[Segment]:
    """Segment a (validated) request body: tools, system, then message blocks, with breakpoints."""
    segs: list[Segment] = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("defer_loading"):
            continue  # not in the prompt until a tool_addition surfaces it (its tokens count there)
        plain = _strip_cc(tool) if isinstance(tool, dict) else tool
        segs.append(
            Segment(_canon(["tool", plain]), count_tokens(json.dumps(plain, sort_keys=True)), _ttl_of(tool))
        )
    system = body.get("system")
    if isinstance(system, str) and system:
        segs.append(Segment(_canon(["system", system]), count_tokens(system), None))
    elif isinstance(system, list):
        for block in system:
            segs.append(Segment(_canon(["system", _strip_cc(block)]), block_tokens(block), _ttl_of(block)))
    for msg in body.get("messages") or []:
        role = msg.get("role")
        content = msg.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
        for i, block in enumerate(blocks):
            # The role is part of the first block's identity so "hi" from user != "hi" from assistant.
            # A surfaced deferred tool's definition is part of the block's identity (and of its tokens).
            bound = tool_changes.bound_blocks([block], body)[0] if role == "system" else block
            tag = [role if i == 0 else "", _strip_cc(bound) if isinstance(bound, dict) else bound]
            added = tool_changes.definition_tokens_of(block, body, _json_tokens)
            tokens = block_tokens(block) if added is None else added
            segs.append(Segment(_canon(tag), tokens, _ttl_of(block)))
    auto = body.get("cache_control")
    if isinstance(auto, dict) and segs and segs[-1].ttl is None:
        last = segs[-1]
        segs[-1] = Segment(last.digest, last.tokens, str(auto.get("ttl") or "5m"))
    return segs


def count_prompt_tokens(segments: list[Segment]) -> int:
    """The count_tokens figure: every segment's tokens."""
    return sum(s.tokens for s in segments)


class PromptCache:
    """In-memory cache entries keyed by (API key hash, prefix hash) -> (expiry, ttl)."""

    def __init__(self, min_tokens: int = 0, clock: Any = time.monotonic) -> None:
        self.min_tokens = min_tokens
        self._clock = clock
        self._entries: dict[tuple[str, bytes], tuple[float, str]] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget every entry (tests use this between scenarios)."""
        with self._lock:
            self._entries.clear()

    def apply(self, api_key: str, model: str, segments: list[Segment]) -> CacheResult:
        """Account one request against the cache (reading and writing entries) and split its tokens."""
        total = count_prompt_tokens(segments)
        bps = [i for i, s in enumerate(segments) if s.ttl]
        if not bps:
            return CacheResult(total, 0, 0, 0)
        owner = hashlib.sha256(api_key.encode()).hexdigest()[:16]
        now = self._clock()
        running = hashlib.sha256(model.encode())
        hashes: list[bytes] = []
        cum: list[int] = []
        acc = 0
        for s in segments[: bps[-1] + 1]:
            running.update(len(s.digest).to_bytes(4, "big") + s.digest)
            hashes.append(running.digest())
            acc += s.tokens
            cum.append(acc)

        with self._lock:
            read_idx = -1
            for i in range(bps[-1], -1, -1):
                entry = self._entries.get((owner, hashes[i]))
                if entry and entry[0] > now:
                    read_idx = i
                    # A hit refreshes the entry's lifetime, as on the real API.
                    self._entries[(owner, hashes[i])] = (now + TTL_SECONDS[entry[1]], entry[1])
                    break
                if entry:
                    del self._entries[(owner, hashes[i])]
            read = cum[read_idx] if read_idx >= 0 else 0
            c5 = c1 = 0
            prev_cum = read
            for b in bps:
                if b <= read_idx or cum[b] < self.min_tokens:
                    continue
                ttl = segments[b].ttl or "5m"
                span = cum[b] - prev_cum
                if ttl == "1h":
                    c1 += span
                else:
                    c5 += span
                prev_cum = cum[b]
                self._entries[(owner, hashes[b])] = (now + TTL_SECONDS.get(ttl, 300.0), ttl)
        return CacheResult(total - read - c5 - c1, read, c5, c1)

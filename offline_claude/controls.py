"""Speed and fault controls: server defaults, the ``x-offline-claude`` header and the magic word.

Syntax (header value, or the inside of ``[[offline ...]]`` in the last user message)::

    ttft_ms=200, tps=50, tokens_per_delta=1, reply_tokens=2000, fault=drop, fault_after=5, stamp=1

Pairs are ``key=value`` separated by commas and/or spaces. Precedence: server defaults < header <
magic word (the most specific wins, and a browser test can only type the magic word).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace

from .server_tools import FETCH_ERROR_CODES, SEARCH_ERROR_CODES

# Faults before the stream starts (an HTTP error status) ...
STATUS_FAULTS = {"429": 429, "500": 500, "529": 529, "overloaded": 529, "401": 401, "503": 503, "504": 504}
# ... and faults during a 200 stream, after ``fault_after`` content deltas.
STREAM_FAULTS = {"error", "drop", "stall", "end", "malformed", "malformed_start"}
ALL_FAULTS = set(STATUS_FAULTS) | STREAM_FAULTS

MAGIC_RE = re.compile(r"\[\[offline\b([^\]]*)\]\]", re.IGNORECASE)
_PAIR_RE = re.compile(r"([A-Za-z_]+)\s*=\s*([^\s,]+)")


class ControlError(ValueError):
    """A control string that cannot be parsed (reported to the client as a 400)."""


@dataclass(frozen=True)
class Controls:
    """Effective speed and fault settings for one request.

    ``tps`` 0 means unpaced (as fast as the socket takes it). ``reply_tokens`` None means the natural
    length of the deterministic reply; a number pads or trims the text part to exactly that many tokens.
    """

    ttft_ms: float = 0.0
    tps: float = 0.0
    tokens_per_delta: int = 1
    reply_tokens: int | None = None
    fault: str | None = None
    fault_after: int = 0
    # Fire the fault on the first N identical requests only (keyed by a hash of the body), so the SDK's
    # retry of the same request succeeds. None = every time.
    fault_times: int | None = None
    retry_after: float | None = None  # seconds, sent as ``retry-after`` on 429/529/5xx
    retry_after_ms: float | None = None  # sent as ``retry-after-ms`` (the SDK prefers it)
    stall_s: float = 600.0  # how long a stall holds the connection if the client never gives up
    # Benchmarks: append ``⟦<send time>⟧`` (time.time(), 6 decimals, taken as the chunk is written)
    # to every streamed text delta, so a client can measure delivery latency per delta.
    stamp: bool = False
    # Answer with stop_reason "refusal" (and its stop_details) after a short preamble.
    refuse: bool = False
    # A smaller context window than the model's, so tests reach the limit with little text.
    context_window: int | None = None
    # The Admin API's usage report differs from this call's response (admin_api.py): this many output
    # tokens more, and/or the call booked twice (one the client never saw).
    report_extra_tokens: int = 0
    report_unseen: bool = False
    # Server tools (server_tools.py): how many web searches Claude runs, an error code for the first
    # search / fetch, and a pause (stop_reason "pause_turn") after the first server tool.
    web_searches: int = 1
    search_error: str | None = None
    fetch_error: str | None = None
    pause_turn: bool = False
    # How long each server tool takes before its result (so a page can show "Searching…"), in ms.
    tool_ms: float = 0.0

    def merged(self, overrides: dict[str, object]) -> Controls:
        """A copy with ``overrides`` applied (values already converted)."""
        return replace(self, **overrides) if overrides else self


_INT_KEYS = {
    "tokens_per_delta",
    "reply_tokens",
    "fault_after",
    "fault_times",
    "context_window",
    "report_extra_tokens",
    "web_searches",
}
_FLOAT_KEYS = {"ttft_ms", "tps", "retry_after", "retry_after_ms", "stall_s", "tool_ms"}
_BOOL_KEYS = {"stamp", "refuse", "report_unseen", "pause_turn"}
_BOOLS = dict.fromkeys(("1", "true", "on", "yes"), True) | dict.fromkeys(("0", "false", "off", "no"), False)
_KNOWN = {f.name for f in fields(Controls)}


def parse_controls(text: str) -> dict[str, object]:
    """Parse ``key=value`` pairs into typed overrides for :class:`Controls`.

    Raises ControlError on unknown keys or bad values, so a typo in a test is loud, not ignored.
    """
    out: dict[str, object] = {}
    leftover = _PAIR_RE.sub("", text).replace(",", " ").strip()
    if leftover:
        raise ControlError(f"x-offline-claude: cannot parse {leftover!r}")
    for key, raw in _PAIR_RE.findall(text):
        key = key.lower()
        if key not in _KNOWN:
            raise ControlError(f"x-offline-claude: unknown control {key!r}")
        try:
            if key in _INT_KEYS:
                value: object = None if raw.lower() == "none" else int(raw)
            elif key in _FLOAT_KEYS:
                value = None if raw.lower() == "none" else float(raw)
            elif key in _BOOL_KEYS:
                value = _BOOLS[raw.lower()]
            else:  # fault, search_error, fetch_error
                value = None if raw.lower() in {"none", "off", ""} else raw.lower()
        except (ValueError, KeyError) as exc:
            raise ControlError(f"x-offline-claude: bad value for {key}: {raw!r}") from exc
        if key == "fault" and value is not None and value not in ALL_FAULTS:
            raise ControlError(f"x-offline-claude: unknown fault {raw!r}; known: {sorted(ALL_FAULTS)}")
        codes = {"search_error": SEARCH_ERROR_CODES, "fetch_error": FETCH_ERROR_CODES}.get(key)
        if codes and value is not None and value not in codes:
            raise ControlError(f"x-offline-claude: unknown {key} {raw!r}; known: {sorted(codes)}")
        if isinstance(value, (int, float)) and value < 0:
            raise ControlError(f"x-offline-claude: {key} must not be negative")
        out[key] = value
    if out.get("tokens_per_delta") == 0:
        raise ControlError("x-offline-claude: tokens_per_delta must be at least 1")
    return out


def extract_magic(text: str) -> tuple[str, str | None]:
    """Remove every ``[[offline ...]]`` from ``text``; return (clean text, joined control string)."""
    found = MAGIC_RE.findall(text)
    if not found:
        return text, None
    clean = MAGIC_RE.sub("", text)
    # Collapse the gap the magic word leaves so the quoted text reads naturally.
    clean = re.sub(r"[ \t]{2,}", " ", clean).strip()
    return clean, " ".join(found)

"""The offline Claude's wire-level pieces: ids, status lines and headers, error texts of injected
faults, the server's options, and the /v1/models listing (kept apart from the server's event loop)."""

from __future__ import annotations

import json
import os
import random
import string
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from .catalog import MODELS, get_model
from .controls import Controls
from .validation import ApiError, bad

_ID_ALPHABET = string.ascii_letters + string.digits
_ids = random.Random(int.from_bytes(os.urandom(8), "big"))
_JSON_SEP = (",", ":")
dumps = json.JSONEncoder(separators=_JSON_SEP, ensure_ascii=False).encode
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    529: "Overloaded",
}
FAULT_ERRORS = {
    429: (
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit (offline fault)",
    ),
    500: ("api_error", "Internal server error (offline fault)"),
    503: ("api_error", "Service unavailable (offline fault)"),
    504: ("timeout_error", "Request timeout (offline fault)"),
    529: ("overloaded_error", "Overloaded (offline fault)"),
    401: ("authentication_error", "invalid x-api-key (offline fault)"),
}


def new_id(prefix: str, n: int) -> str:
    """A random id like the API's (``req_011C…``, ``msg_01…``)."""
    return prefix + "".join(_ids.choices(_ID_ALPHABET, k=n))


@dataclass
class ServerOptions:
    """Per-server configuration. ``defaults`` are the controls used when a request names none."""

    host: str = "127.0.0.1"
    port: int = 0
    api_key: str | None = None  # None: accept any key (or none); else require exactly this key
    admin_key: str | None = None  # None: accept any Admin key (sk-ant-admin…); else exactly this one
    defaults: Controls = field(default_factory=Controls)
    fault_rate: float = 0.0  # probability that a request gets a random fault (soak runs)
    fault_kinds: tuple[str, ...] = ("429", "529", "500", "error", "drop", "end")
    seed: int = 0  # seeds the random-fault RNG, so soak runs are reproducible
    min_cache_tokens: int = 0
    max_body_bytes: int = 32 * 1024 * 1024


def http_head(status: int, request_id: str, headers: list[tuple[str, str]], keep_alive: bool) -> bytes:
    """The status line and headers of a response, as the API sends them."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}", f"request-id: {request_id}"]
    lines.append("anthropic-organization-id: 00000000-0000-4000-8000-0ff11e0c1a0d")
    lines.append("server: offline-claude")
    lines += [f"{k}: {v}" for k, v in headers]
    lines.append("connection: keep-alive" if keep_alive else "connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def models_page(path: str, query: str) -> dict[str, Any]:
    """GET /v1/models (one page, after_id / before_id / limit) or /v1/models/{id}."""
    rest = path[len("/v1/models") :].strip("/")
    if rest:
        spec = get_model(rest)
        if spec is None:
            raise ApiError(404, "not_found_error", f"model: {rest}")
        return spec.to_api()
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    try:
        limit = max(1, min(1000, int(params.get("limit", 20))))
    except ValueError as exc:
        raise bad("limit: Input should be a valid integer") from exc
    ids = [m.id for m in MODELS]
    items = list(MODELS)
    if "after_id" in params and params["after_id"] in ids:
        items = items[ids.index(params["after_id"]) + 1 :]
        page = items[:limit]
    elif "before_id" in params and params["before_id"] in ids:
        items = items[: ids.index(params["before_id"])]
        page = items[-limit:]
    else:
        page = items[:limit]
    data = [m.to_api() for m in page]
    payload = {
        "data": data,
        "has_more": len(page) < len(items),
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
    return payload

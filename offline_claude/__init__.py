"""The offline Claude: a local stand-in server speaking the Anthropic Messages API wire format.

It is NOT Claude. It answers deterministically (see ``replies.py``) so the app, its tests and its
benchmarks can run without network access or an API key, through the real ``anthropic`` SDK.

Public API::

    handle = start_in_background(ttft_ms=0, tps=0, api_key=None, ...)  # daemon thread, own loop
    handle.base_url; handle.stop(); handle.reset()
    default_server()  # one shared lazily-started instance per process (what the app uses)

This package must not import Django (benchmarks use it without settings).
"""

from __future__ import annotations

from .background import OfflineClaudeHandle, default_server, make_options, start_in_background
from .catalog import MODELS, ModelSpec, get_model
from .controls import Controls, parse_controls
from .server import CONTROL_HEADER, OfflineClaudeServer, ServerOptions
from .tokenizer import count_tokens

__all__ = [
    "CONTROL_HEADER",
    "MODELS",
    "Controls",
    "ModelSpec",
    "OfflineClaudeHandle",
    "OfflineClaudeServer",
    "ServerOptions",
    "count_tokens",
    "default_server",
    "get_model",
    "make_options",
    "parse_controls",
    "start_in_background",
]

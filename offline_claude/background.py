"""Running the server in-process: a daemon thread with its own event loop, and a shared default."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from .controls import Controls
from .server import OfflineClaudeServer, ServerOptions

# Speed of the shared default server: feels like a quick Claude in the browser.
DEFAULT_SPEED = {"ttft_ms": 400.0, "tps": 90.0, "tokens_per_delta": 3}

_CONTROL_FIELDS = set(Controls.__dataclass_fields__)
_OPTION_FIELDS = set(ServerOptions.__dataclass_fields__) - {"defaults"}


def make_options(**options: Any) -> ServerOptions:
    """Build ServerOptions from flat keyword arguments.

    Server fields (host, port, api_key, fault_rate, fault_kinds, seed, min_cache_tokens, ...) and
    default controls (ttft_ms, tps, tokens_per_delta, reply_tokens, fault, fault_after, fault_times,
    retry_after, retry_after_ms, stall_s) may be mixed freely.
    """
    controls = {k: options.pop(k) for k in list(options) if k in _CONTROL_FIELDS}
    unknown = set(options) - _OPTION_FIELDS
    if unknown:
        raise TypeError(f"unknown offline Claude option(s): {sorted(unknown)}")
    if "fault_kinds" in options and isinstance(options["fault_kinds"], str):
        options["fault_kinds"] = tuple(k.strip() for k in options["fault_kinds"].split(",") if k.strip())
    return ServerOptions(defaults=Controls(**controls), **options)


class OfflineClaudeHandle:
    """A server running in a background thread. Use ``base_url`` with the SDK; ``stop()`` when done."""

    def __init__(
        self, server: OfflineClaudeServer, loop: asyncio.AbstractEventLoop, thread: threading.Thread
    ):
        self.server = server
        self.loop = loop
        self.thread = thread

    @property
    def base_url(self) -> str:
        """e.g. ``http://127.0.0.1:54321``."""
        return self.server.base_url

    @property
    def api_key(self) -> str:
        """A key the server accepts (its configured key, or a placeholder when any key goes)."""
        return self.server.options.api_key or "sk-offline-claude"

    def reset(self) -> None:
        """Clear cache entries, fault-once counters and stats."""
        self.server.reset()

    def set_defaults(self, **controls: Any) -> None:
        """Change the default controls (speed/faults) for subsequent requests."""
        from dataclasses import replace

        self.server.options.defaults = replace(self.server.options.defaults, **controls)

    def stop(self, timeout: float = 5.0) -> None:
        """Close the server and every connection, stop the loop and join the thread."""
        if not self.thread.is_alive():
            return
        fut = asyncio.run_coroutine_threadsafe(self.server.close(), self.loop)
        try:
            fut.result(timeout)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout)

    def __enter__(self) -> OfflineClaudeHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_background(**options: Any) -> OfflineClaudeHandle:
    """Start an offline Claude on 127.0.0.1 (ephemeral port unless ``port=``) in a daemon thread.

    Keyword arguments are those of :func:`make_options`. Returns once the socket is listening.
    """
    server = OfflineClaudeServer(make_options(**options))
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as exc:  # report bind errors to the caller
            failure.append(exc)
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    thread = threading.Thread(target=run, name="offline-claude", daemon=True)
    thread.start()
    ready.wait()
    if failure:
        raise failure[0]
    return OfflineClaudeHandle(server, loop, thread)


_default: OfflineClaudeHandle | None = None
_default_lock = threading.Lock()


def default_server(**options: Any) -> OfflineClaudeHandle:
    """The process-wide shared offline Claude, started on first call (thread-safe).

    Options apply only to the first call; later calls return the same running instance.
    """
    global _default
    with _default_lock:
        if _default is None or not _default.thread.is_alive():
            _default = start_in_background(**{**DEFAULT_SPEED, **options})
        return _default

"""HTTP/1.1 + SSE server speaking the Anthropic Messages API wire format, on bare asyncio streams.

Why hand-written: it must hold hundreds of paced streams on one core, write one chunk per delta (or
per batch when behind schedule), and do wire-level faults (drop the socket mid-body, stall) that a
framework would hide. Streams use ``Transfer-Encoding: chunked`` so that a dropped connection is a
protocol error for the client (``httpx2.RemoteProtocolError``) while a deliberate early end is clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import logging
import random
import threading
import time
from collections import Counter, deque
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import admin_api
from .binding import BINDING_BETA
from .cache import PromptCache, build_segments, count_prompt_tokens
from .catalog import context_window
from .controls import STATUS_FAULTS, STREAM_FAULTS, ControlError, Controls, parse_controls
from .generation import ReplyPlan, last_user_controls, plan_reply, plan_threshold_compaction
from .validation import KNOWN_VERSIONS, ApiError, bad, threshold_edit, validate_request
from .wire import FAULT_ERRORS, ServerOptions, dumps, http_head, models_page, new_id

log = logging.getLogger("offline_claude")

CONTROL_HEADER = "x-offline-claude"
# Stands for the send time of a stamped text delta until its chunk is written (control ``stamp``).
STAMP_PLACEHOLDER = "\u27e6@\u27e7"
# The request-log entry ([method, path, status]) of the request this task is answering. The status is
# set just before the response is written, so a client that has its answer also sees it logged.
_entry: contextvars.ContextVar[list[Any]] = contextvars.ContextVar("offline_claude_entry")


def _log_status(status: int) -> None:
    entry = _entry.get(None)
    if entry is not None:
        entry[2] = status


class _Closed(Exception):
    """The client went away; stop working on this connection."""


class OfflineClaudeServer:
    """The server object; run it with :meth:`start` inside an event loop."""

    def __init__(self, options: ServerOptions | None = None) -> None:
        self.options = options or ServerOptions()
        self.cache = PromptCache(min_tokens=self.options.min_cache_tokens)
        self.stats: Counter[str] = Counter()
        # The calls answered, for the Admin API's usage and cost reports (admin_api.py).
        self.usage_book = admin_api.UsageBook()
        # [method, path, status] per request, newest last (status None until answered).
        self.request_log: deque[list[Any]] = deque(maxlen=2000)
        self._fault_counts: dict[str, int] = {}
        self._fault_rng = random.Random(self.options.seed)
        self._lock = threading.Lock()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.host = self.options.host
        self.port = self.options.port

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> tuple[str, int]:
        """Bind and start accepting; returns the (host, port) actually bound."""
        self._server = await asyncio.start_server(
            self._handle_connection, self.options.host, self.options.port, backlog=2048, limit=1 << 16
        )
        sock = self._server.sockets[0]
        self.host, self.port = sock.getsockname()[:2]
        return self.host, self.port

    @property
    def base_url(self) -> str:
        """The URL to give the SDK as ``base_url``."""
        return f"http://{self.host}:{self.port}"

    async def serve_forever(self) -> None:
        """Start (if needed) and serve until cancelled."""
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self) -> None:
        """Stop accepting and close every open connection (streams end abruptly)."""
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def reset(self) -> None:
        """Forget cache entries, fault-once counters and stats (thread-safe)."""
        self.cache.clear()
        self.usage_book.clear()
        with self._lock:
            self._fault_counts.clear()
            self.stats.clear()
            self.request_log.clear()

    # ----------------------------------------------------------------- HTTP plumbing
    async def _handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                except asyncio.LimitOverrunError:
                    await self._send_error(
                        writer, ApiError(431, "invalid_request_error", "headers too large"), False
                    )
                    return
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    return
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if not line:
                        continue
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
                body = await self._read_body(reader, writer, headers)
                if body is None:
                    return
                keep = await self._dispatch(method, target, headers, body, reader, writer, keep_alive)
                if not keep:
                    return
        except (_Closed, ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not kill the server, only this connection
            log.exception("offline claude: unhandled error")
        finally:
            self._writers.discard(writer)
            writer.transport.abort() if writer.transport.is_closing() else writer.close()

    async def _read_body(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]
    ) -> bytes | None:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    return b"".join(parts)
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
        length = int(headers.get("content-length") or 0)
        if length > self.options.max_body_bytes:
            err = ApiError(413, "request_too_large", "Request exceeds the maximum allowed number of bytes.")
            await self._send_error(writer, err, False)
            return None
        return await reader.readexactly(length) if length else b""

    _head = staticmethod(http_head)

    async def _send_json(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: Any,
        keep_alive: bool,
        request_id: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> bool:
        request_id = request_id or new_id("req_011C", 21)
        if isinstance(payload, dict) and payload.get("type") == "error":
            payload["request_id"] = request_id
        body = dumps(payload).encode()
        hdrs = [("content-type", "application/json"), ("content-length", str(len(body)))]
        hdrs += list((extra or {}).items())
        _log_status(status)
        writer.write(self._head(status, request_id, hdrs, keep_alive) + body)
        await writer.drain()
        return keep_alive

    async def _send_error(self, writer: asyncio.StreamWriter, err: ApiError, keep_alive: bool) -> bool:
        payload = {"type": "error", "error": {"type": err.error_type, "message": err.message}}
        return await self._send_json(writer, err.status, payload, keep_alive, extra=err.headers)

    # ----------------------------------------------------------------- routing
    async def _dispatch(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        keep_alive: bool,
    ) -> bool:
        url = urlsplit(target)
        path = url.path.rstrip("/") or "/"
        entry: list[Any] = [method, path, None]
        self.request_log.append(entry)
        _entry.set(entry)
        try:
            if path == "/health":
                return await self._send_json(
                    writer, 200, {"status": "ok", "offline_claude": True}, keep_alive
                )
            if path in (admin_api.USAGE_PATH, admin_api.COST_PATH):
                status, payload, extra = admin_api.answer(
                    self.usage_book, path, method, headers, parse_qs(url.query), self.options.admin_key
                )
                return await self._send_json(writer, status, payload, keep_alive, extra=extra)
            self._authenticate(headers)
            if path.startswith("/v1/models"):
                if method != "GET":
                    raise ApiError(405, "invalid_request_error", f"{method} not allowed on {path}")
                return await self._models(writer, path, url.query, keep_alive)
            if path in ("/v1/messages", "/v1/messages/count_tokens"):
                if method != "POST":
                    raise ApiError(405, "invalid_request_error", f"{method} not allowed on {path}")
                return await self._messages(
                    path.endswith("count_tokens"), headers, body, reader, writer, keep_alive
                )
            raise ApiError(404, "not_found_error", f"Not found: {method} {path}")
        except ApiError as err:
            if "bound to a different conversation" in err.message:
                self.stats["prefix check failed"] += 1  # benches and tests count what the 5.5 models refuse
            return await self._send_error(writer, err, keep_alive)
        finally:
            self.stats[f"{path} {entry[2]}"] += 1

    def _authenticate(self, headers: dict[str, str]) -> str:
        """Return the presented key; enforce it only when the server was given one."""
        key = headers.get("x-api-key")
        if key is None:
            auth = headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                key = auth[7:].strip()
        expected = self.options.api_key
        if expected is not None:
            if not key:
                raise ApiError(401, "authentication_error", "x-api-key header is required")
            if key != expected:
                raise ApiError(401, "authentication_error", "invalid x-api-key")
        return key or ""

    async def _models(self, writer: asyncio.StreamWriter, path: str, query: str, keep_alive: bool) -> bool:
        return await self._send_json(writer, 200, models_page(path, query), keep_alive)

    # ----------------------------------------------------------------- /v1/messages
    def _controls(self, headers: dict[str, str], body: Any, raw: bytes, api_key: str) -> Controls:
        overrides: dict[str, Any] = {}
        try:
            if CONTROL_HEADER in headers:
                overrides.update(parse_controls(headers[CONTROL_HEADER]))
            if isinstance(body, dict) and isinstance(body.get("messages"), list):
                magic = last_user_controls(body)
                if magic:
                    overrides.update(parse_controls(magic))
        except ControlError as exc:
            raise bad(str(exc)) from exc
        controls = self.options.defaults.merged(overrides)
        if controls.fault is None and self.options.fault_rate > 0 and self.options.fault_kinds:
            with self._lock:
                if self._fault_rng.random() < self.options.fault_rate:
                    controls = replace(
                        controls,
                        fault=self._fault_rng.choice(self.options.fault_kinds),
                        fault_after=self._fault_rng.randint(0, 20),
                    )
        if controls.fault is not None and controls.fault_times is not None:
            # "Fault N times, then succeed": count identical requests (same key + body bytes).
            key = hashlib.sha256(api_key.encode() + b"\0" + raw).hexdigest()
            with self._lock:
                seen = self._fault_counts.get(key, 0)
                self._fault_counts[key] = seen + 1
            if seen >= controls.fault_times:
                controls = replace(controls, fault=None)
        return controls

    @staticmethod
    def _status_fault(controls: Controls) -> ApiError:
        status = STATUS_FAULTS[controls.fault or "500"]
        etype, msg = FAULT_ERRORS.get(status, ("api_error", "offline fault"))
        hdrs: dict[str, str] = {}
        if controls.retry_after_ms is not None:
            hdrs["retry-after-ms"] = f"{controls.retry_after_ms:g}"
        if controls.retry_after is not None:
            hdrs["retry-after"] = f"{controls.retry_after:g}"
        elif status == 429:
            # Real 429s carry retry-after; the SDK prefers retry-after-ms when both are present.
            hdrs["retry-after"] = "1"
        return ApiError(status, etype, msg, hdrs)

    async def _messages(
        self,
        count_only: bool,
        headers: dict[str, str],
        raw: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        keep_alive: bool,
    ) -> bool:
        api_key = self._authenticate(headers)
        version = headers.get("anthropic-version")
        if not version:
            raise bad("anthropic-version: header is required")
        if version not in KNOWN_VERSIONS:
            raise bad(f"anthropic-version: invalid value {version!r}")
        try:
            body = json.loads(raw or b"null")
        except ValueError as exc:
            raise bad(f"There was an error parsing the body: {exc}") from exc
        betas = {b.strip() for b in headers.get("anthropic-beta", "").split(",") if b.strip()}

        controls = None
        if not count_only:
            controls = self._controls(headers, body, raw, api_key)
            if controls.fault in STATUS_FAULTS:
                raise self._status_fault(controls)

        segments_box: list[Any] = []

        def prompt_tokens() -> int:
            segments_box.append(build_segments(body))
            return count_prompt_tokens(segments_box[0])

        window_override = controls.context_window if controls is not None else None
        spec, bound = validate_request(
            body,
            version=version,
            count_only=count_only,
            betas=betas,
            prompt_tokens=prompt_tokens,
            window_override=window_override,
        )
        segments = segments_box[0]
        if count_only:
            return await self._send_json(
                writer, 200, {"input_tokens": count_prompt_tokens(segments)}, keep_alive
            )

        assert controls is not None
        usage_in = self.cache.apply(api_key, body["model"], segments)
        room = context_window(spec, betas, window_override) - count_prompt_tokens(segments)
        options = {
            "thinks_by_default": spec.thinks_by_default,
            "default_effort": spec.default_effort,
            "refuse": controls.refuse,
            "room": room,
            "show_transformations": BINDING_BETA in betas,
            "web_controls": controls,
        }
        edit = threshold_edit(body, spec, betas)
        if edit is not None and count_prompt_tokens(segments) > edit["trigger"]:
            system = body.get("system")
            system_tokens = (
                count_prompt_tokens(build_segments({"system": system, "messages": []})) if system else 0
            )
            plan = plan_threshold_compaction(
                body,
                usage_in,
                bound,
                pause=edit["pause"],
                system_tokens=system_tokens,
                reply_tokens=controls.reply_tokens,
                **options,
            )
        else:
            plan = plan_reply(body, usage_in, controls.reply_tokens, binding=bound, **options)
        request_id = new_id("req_011C", 21)
        msg_id = new_id("msg_01", 22)
        if body.get("stream"):
            self.stats["streams"] += 1
            keep = await self._stream(plan, controls, request_id, msg_id, reader, writer, keep_alive)
        else:
            keep = await self._non_stream(plan, controls, request_id, msg_id, reader, writer, keep_alive)
        if plan.answered:
            admin_api.book_call(self.usage_book, api_key, plan, controls)
        return keep

    async def _non_stream(
        self,
        plan: ReplyPlan,
        controls: Controls,
        request_id: str,
        msg_id: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        keep_alive: bool,
    ) -> bool:
        fault = controls.fault
        # A non-streaming call waits for the whole generation, like the real API.
        delay = (controls.ttft_ms + plan.web_tool_uses * controls.tool_ms) / 1000
        if controls.tps > 0:
            delay += plan.output_tokens / controls.tps
        if delay > 0:
            await asyncio.sleep(delay)
        if fault == "error":
            raise self._status_fault(replace(controls, fault="529"))
        if fault == "drop":
            writer.transport.close()  # FIN, not RST: the client sees a disconnect, not a reset
            raise _Closed
        if fault == "stall":
            await self._stall(reader, controls)
            raise _Closed
        if fault in ("malformed", "malformed_start"):
            body = dumps(plan.message_json(msg_id)).encode()[:40]
            hdrs = [("content-type", "application/json"), ("content-length", str(len(body)))]
            writer.write(self._head(200, request_id, hdrs, keep_alive) + body)
            await writer.drain()
            return keep_alive
        plan.answered = True
        return await self._send_json(writer, 200, plan.message_json(msg_id), keep_alive, request_id)

    async def _stall(self, reader: asyncio.StreamReader, controls: Controls) -> None:
        # Hold the connection open, sending nothing, until the client gives up (EOF) or stall_s passes.
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            await asyncio.wait_for(reader.read(1 << 16), controls.stall_s)

    async def _stream(
        self,
        plan: ReplyPlan,
        controls: Controls,
        request_id: str,
        msg_id: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        keep_alive: bool,
    ) -> bool:
        loop = asyncio.get_running_loop()
        transport = writer.transport
        hdrs = [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
            ("transfer-encoding", "chunked"),
        ]
        head = self._head(200, request_id, hdrs, keep_alive)
        fault = controls.fault if controls.fault in STREAM_FAULTS else None
        fault_after = controls.fault_after
        tpd = max(1, controls.tokens_per_delta)
        per_token = 1.0 / controls.tps if controls.tps > 0 else 0.0
        ttft = controls.ttft_ms / 1000
        # stamp=1: text deltas end with a placeholder that frame() replaces by the wall-clock time at
        # which the chunk is written (not when the event was scheduled).
        stamp = STAMP_PLACEHOLDER if controls.stamp else ""

        def ev(name: str, payload: str) -> str:
            return f"event: {name}\ndata: {payload}\n\n"

        def delta(index: int, kind: str, key: str, text: str) -> str:
            return ev(
                "content_block_delta",
                f'{{"type":"content_block_delta","index":{index},"delta":{{"type":"{kind}","{key}":{dumps(text)}}}}}',
            )

        start_msg = {
            "type": "message_start",
            "message": {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": plan.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "stop_details": None,
                "usage": plan.start_usage(),
                **({} if plan.transformations is None else {"input_transformations": plan.transformations}),
            },
        }

        # The event schedule: (due offset in seconds, text, kind) with kind "delta" (counts toward
        # fault_after), "other", or "final" (message_delta: a pending fault fires before it).
        def schedule():
            offset = ttft
            index = 0
            tokens_done = 0
            if plan.leading_compaction is not None:
                # Compaction at a threshold: the block first, its summary in one compaction_delta.
                block = plan.leading_compaction
                start = dumps(
                    {
                        "type": "compaction",
                        "content": "",
                        "signature": block["signature"],
                        "tool_changes": block["tool_changes"],
                    }
                )
                yield (
                    offset,
                    ev(
                        "content_block_start",
                        f'{{"type":"content_block_start","index":0,"content_block":{start}}}',
                    ),
                    "other",
                )
                yield (
                    offset,
                    ev(
                        "content_block_delta",
                        f'{{"type":"content_block_delta","index":0,"delta":{{"type":"compaction_delta","content":{dumps(block["content"])}}}}}',
                    ),
                    "other",
                )
                yield offset, ev("content_block_stop", '{"type":"content_block_stop","index":0}'), "other"
                index = 1
            if plan.compaction is not None:
                # The whole block in its content_block_start, no deltas (compaction on demand).
                tokens_done = plan.output_tokens
                block = dumps(plan.compaction)
                yield (
                    offset,
                    ev(
                        "content_block_start",
                        f'{{"type":"content_block_start","index":0,"content_block":{block}}}',
                    ),
                    "other",
                )
                yield offset, ev("content_block_stop", '{"type":"content_block_stop","index":0}'), "other"
            elif plan.thinking:
                yield (
                    0.0,
                    ev(
                        "content_block_start",
                        f'{{"type":"content_block_start","index":{index},"content_block":'
                        f'{{"type":"thinking","thinking":"","signature":""}}}}',
                    ),
                    "other",
                )
                yield 0.0, ev("ping", '{"type":"ping"}'), "other"
                if plan.thinking_visible:
                    pieces = plan.thinking_pieces
                    for i in range(0, len(pieces), tpd):
                        chunk = pieces[i : i + tpd]
                        tokens_done += len(chunk)
                        yield (
                            offset + (tokens_done - 1) * per_token,
                            delta(index, "thinking_delta", "thinking", "".join(chunk)),
                            "delta",
                        )
                # Hidden (omitted) thinking still takes generation time before the signature.
                tokens_done = plan.thinking_tokens
                yield (
                    offset + max(tokens_done - 1, 0) * per_token,
                    delta(index, "signature_delta", "signature", plan.signature),
                    "other",
                )
                yield (
                    offset + max(tokens_done - 1, 0) * per_token,
                    ev("content_block_stop", f'{{"type":"content_block_stop","index":{index}}}'),
                    "other",
                )
                index += 1
            tool_s = controls.tool_ms / 1000  # each server tool's run time, before its result
            for text, kind, tools_done in plan.web_events(index):  # server tools, then cited text
                yield offset + tools_done * tool_s + max(tokens_done - 1, 0) * per_token, text, kind
            index += len(plan.web_blocks)
            offset += plan.web_tool_uses * tool_s
            if plan.has_text_block:
                first = ev(
                    "content_block_start",
                    f'{{"type":"content_block_start","index":{index},"content_block":{{"type":"text","text":""}}}}',
                )
                yield offset + max(tokens_done - 1, 0) * per_token if plan.thinking else 0.0, first, "other"
                if not plan.thinking:
                    yield 0.0, ev("ping", '{"type":"ping"}'), "other"
                pieces = plan.text_pieces
                for i in range(0, len(pieces), tpd):
                    chunk = pieces[i : i + tpd]
                    tokens_done += len(chunk)
                    yield (
                        offset + (tokens_done - 1) * per_token,
                        delta(index, "text_delta", "text", "".join(chunk) + stamp),
                        "delta",
                    )
                yield (
                    offset + max(tokens_done - 1, 0) * per_token,
                    ev("content_block_stop", f'{{"type":"content_block_stop","index":{index}}}'),
                    "other",
                )
            final = {
                "type": "message_delta",
                "delta": {
                    "stop_reason": plan.stop_reason,
                    "stop_sequence": plan.stop_sequence,
                    "stop_details": plan.stop_details,
                },
                "usage": plan.final_usage(),
            }
            last = offset + max(tokens_done - 1, 0) * per_token
            yield last, ev("message_delta", dumps(final)), "final"
            yield last, ev("message_stop", '{"type":"message_stop"}'), "other"

        def frame(parts: list[str]) -> bytes:
            text = "".join(parts)
            if stamp:
                text = text.replace(STAMP_PLACEHOLDER, f"\u27e6{time.time():.6f}\u27e7")
            data = text.encode()
            return b"%x\r\n%s\r\n" % (len(data), data)

        t0 = loop.time()
        _log_status(200)
        if fault == "malformed_start":
            # A 200 stream whose very first event is not valid JSON; the body then ends properly.
            self.stats[f"fault {fault}"] += 1
            transport.write(head + frame([ev("message_start", dumps(start_msg)[:40])]) + b"0\r\n\r\n")
            await writer.drain()
            return keep_alive
        transport.write(head + frame([ev("message_start", dumps(start_msg))]))
        buf: list[str] = []
        sent_deltas = 0
        fired = False
        for due, text, kind in schedule():
            if fault and not fired and (kind == "final" or (kind == "delta" and sent_deltas >= fault_after)):
                fired = True
                break
            wait = t0 + due - loop.time()
            if wait > 0:
                if buf:
                    transport.write(frame(buf))
                    buf = []
                    await writer.drain()
                await asyncio.sleep(wait)
                if transport.is_closing() or reader.at_eof():
                    self.stats["client_closed"] += 1
                    raise _Closed  # the client left (e.g. Stop): stop generating, like the real API
            buf.append(text)
            if kind == "delta":
                sent_deltas += 1
        if buf:
            transport.write(frame(buf))
            await writer.drain()
        if fired:
            return await self._stream_fault(fault or "", request_id, reader, writer, controls)
        plan.answered = True
        transport.write(b"0\r\n\r\n")
        await writer.drain()
        return keep_alive

    async def _stream_fault(
        self,
        fault: str,
        request_id: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        controls: Controls,
    ) -> bool:
        transport = writer.transport
        self.stats[f"fault {fault}"] += 1
        if fault == "error":
            payload = {
                "type": "error",
                "error": {"type": "overloaded_error", "message": "Overloaded"},
                "request_id": request_id,
            }
            data = f"event: error\ndata: {dumps(payload)}\n\n".encode()
            transport.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
            await writer.drain()
            return True
        if fault == "malformed":
            # A corrupted chunk (a content delta whose JSON is cut short), then a proper end of body.
            data = (
                b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"ty\n\n'
            )
            transport.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
            await writer.drain()
            return True
        if fault == "end":
            # Clean early end: the body terminates properly, but without message_delta/message_stop.
            transport.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        if fault == "stall":
            await self._stall(reader, controls)
            raise _Closed
        # drop: close the socket mid-body; the client sees an incomplete chunked body.
        # FIN rather than RST, so h11 reports an incomplete body (RemoteProtocolError), not a reset.
        await writer.drain()
        transport.close()
        raise _Closed

"""The one module that talks to Claude (real, or the offline stand-in) through the anthropic SDK.

It builds clients and requests, reads the stream's server-sent events as plain JSON (cheaper per
delta than the SDK's event models, and than its stream helper) and maps every failure, with the SDK's
own typed errors, to a `ClaudeError` the rest of the app can show a person. Nothing else in the project imports `anthropic`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import math
import re
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace

import anthropic
import httpx2
from django.conf import settings

from billing.keys import OFFLINE_KEY
from billing.usage import Usage

from .blocks import CallBlocks, WebStep

logger = logging.getLogger(__name__)

# Message shown to people when the server's own configuration is at fault (bad or missing key).
NOT_CONFIGURED = "The service is not configured correctly. An administrator has been told why."


def usage_from_api(api_usage, previous: Usage | None = None) -> Usage:
    """The one normalisation of the API's usage object (message_start's, or message_delta's cumulative
    one) into billing's `Usage`, over the counts `previous` events gave.

    Fields an event leaves out keep their previous value (message_delta counts are cumulative: they
    overwrite, never add). Counts are clamped at zero; a cache write total the TTL split does not
    explain is billed as 5-minute writes, the cheaper assumption the API documents as the default.
    """
    previous = previous or Usage()
    iterations = _field(api_usage, "iterations")
    if iterations:
        # A call with a compaction in it reports the compaction as an iteration of its own and leaves it
        # out of the top-level counts: what is billed is the sum of the iterations.
        api_usage = {
            "input_tokens": sum(_count_of(it, "input_tokens") for it in iterations),
            "output_tokens": sum(_count_of(it, "output_tokens") for it in iterations),
            "cache_creation_input_tokens": sum(
                _count_of(it, "cache_creation_input_tokens") for it in iterations
            ),
            "cache_read_input_tokens": sum(_count_of(it, "cache_read_input_tokens") for it in iterations),
            "service_tier": _field(api_usage, "service_tier"),
            "inference_geo": _field(api_usage, "inference_geo"),
            "speed": _field(api_usage, "speed"),
            "server_tool_use": _field(api_usage, "server_tool_use"),
        }

    def count(value, default: int) -> int:
        return default if value is None else max(0, int(value))

    def label(name: str, default: str) -> str:
        value = _field(api_usage, name)
        return str(value)[:32] if value else default

    writes = count(_field(api_usage, "cache_creation_input_tokens"), previous.cache_write_tokens)
    split = _field(api_usage, "cache_creation")
    if split is not None:
        write_5m = count(_field(split, "ephemeral_5m_input_tokens"), 0)
        write_1h = count(_field(split, "ephemeral_1h_input_tokens"), 0)
    else:
        write_5m, write_1h = previous.cache_write_5m_tokens, previous.cache_write_1h_tokens
    if write_5m + write_1h < writes:
        write_5m += writes - (write_5m + write_1h)
    details = _field(api_usage, "output_tokens_details")
    # `server_tool_use`: the searches and fetches that ran (a failed one is not counted: not billed).
    tools = _field(api_usage, "server_tool_use")
    return Usage(
        input_tokens=count(_field(api_usage, "input_tokens"), previous.input_tokens),
        output_tokens=count(_field(api_usage, "output_tokens"), previous.output_tokens),
        cache_write_5m_tokens=write_5m,
        cache_write_1h_tokens=write_1h,
        cache_read_tokens=count(_field(api_usage, "cache_read_input_tokens"), previous.cache_read_tokens),
        thinking_tokens=count(_field(details, "thinking_tokens"), previous.thinking_tokens),
        service_tier=label("service_tier", previous.service_tier),
        inference_geo=label("inference_geo", previous.inference_geo),
        speed=label("speed", previous.speed),
        web_search_requests=count(_field(tools, "web_search_requests"), previous.web_search_requests),
        web_fetch_requests=count(_field(tools, "web_fetch_requests"), previous.web_fetch_requests),
    )


def _count_of(obj, name: str) -> int:
    value = _field(obj, name)
    return max(0, int(value)) if value is not None else 0


def _field(obj, name: str):
    """`obj.name` of an SDK object, or `obj[name]` of the decoded JSON of a raw event (None if absent)."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


RETRYABLE = {"overloaded", "rate_limited", "server"}
# What a person reads while a reply waits to be retried, per kind.
RETRY_REASONS = {
    "overloaded": "Claude is overloaded",
    "rate_limited": "Claude's rate limit was reached",
    "server": "Claude had an error",
}


def _retry_after(exc: anthropic.APIStatusError) -> float | None:
    headers = exc.response.headers if exc.response is not None else {}
    for name, scale in (("retry-after-ms", 1000), ("retry-after", 1)):
        try:
            return max(0.0, float(headers[name]) / scale)
        except (KeyError, ValueError):
            continue
    return None


class ClaudeError(Exception):
    """A reply failed. `user_message` is safe to show; `str(self)` is for the server log."""

    def __init__(
        self, kind: str, user_message: str, detail: str = "", request_id: str = "", window: int | None = None
    ):
        super().__init__(detail or user_message)
        self.kind = kind
        self.user_message = user_message
        self.request_id = request_id
        # For kind "prompt_too_long": the window the API said the prompt must fit, when it said so.
        self.window = window
        # For retryable kinds: how long the API asked us to wait (retry-after-ms / retry-after), if it did.
        self.retry_after: float | None = None
        # What a call that answered but failed its purpose (a compaction with no summary) used.
        self.usage: Usage | None = None

    @property
    def retryable(self) -> bool:
        """Worth asking again after a wait (overloaded, rate limited, a server error)."""
        return self.kind in RETRYABLE


@dataclass
class ReplyRequest:
    model: str
    messages: list[dict]
    max_tokens: int
    system: str = ""
    user_id: str = ""
    # Prompt caching: "5m" or "1h" puts one automatic, rolling breakpoint at the end of the prompt
    # (each call reads what the previous one wrote and writes its own new turns); "" sends none.
    cache_ttl: str = ""
    # Why that lifetime (for the receipt; not sent).
    cache_note: str = ""
    # Ask models that think by default to stream a summary of their thinking: the page shows it above
    # the answer, and a reply stopped or dropped mid-thought is estimated from it.
    summarize_thinking: bool = False
    # The `thinking.type` of a small side call (a title) that should think as little as the model allows:
    # "disabled" or "between_tools" (catalog's quiet_thinking); "" leaves the model's default.
    quiet_thinking: str = ""
    # Send `thinking.block_binding.prefix_mismatch_behavior: "drop_block"` (a conversation stored before
    # its history was append-only): thinking whose prefix changed is dropped instead of refused.
    drop_mismatched_thinking: bool = False
    # The API's stop_sequences: the reply ends before the first of them it would write.
    stop_sequences: tuple[str, ...] = ()
    # `output_config.effort` ("low" ... "max"); "" leaves the model's default.
    effort: str = ""
    # Server tools offered (web search / web fetch definitions, conversations/web.py); () offers none.
    tools: tuple[dict, ...] = ()


# What `ReplyStream.deltas()` yields: (TEXT, piece of the answer), (THINKING, piece of the thinking),
# or (WEB, a WebStep): a server tool began (its input is whole) or its result came (done or failed).
TEXT = "text"
THINKING = "thinking"
WEB = "web"


@dataclass
class ReplyStream:
    """One streamed reply. Iterate `deltas()`; afterwards read `usage`, `stop_reason`, `request_id`.

    `opened` is true once the API answered 200 (from then on the call may be billed); `started` once
    message_start arrived with the prompt's counts.
    """

    request: ReplyRequest
    usage: Usage = field(default_factory=Usage)
    stop_reason: str | None = None
    # The stop sequence the reply ended on (stop_reason "stop_sequence"), else "".
    stop_sequence: str = ""
    request_id: str = ""
    opened: bool = False
    started: bool = False
    text_chars: int = 0
    thinking_chars: int = 0  # thinking streamed (billed as output, shown above the answer)
    # On a refusal: Claude's explanation (`stop_details.explanation`), when it gave one.
    refusal_explanation: str = ""
    # The thinking blocks as the API streamed them ({"thinking", "signature"}), to send back later.
    thinking_blocks: list[dict] = field(default_factory=list)
    # Milliseconds from the start of the first thinking block to the end of the last one.
    thinking_ms: int = 0
    # The call's content blocks in order (server tool uses, results, citations: blocks.py).
    blocks: CallBlocks = field(default_factory=CallBlocks)
    _thinking_since: float | None = None
    # Called with the prompt's counts when message_start arrives (before any output is generated).
    on_start: Callable[[Usage], None] | None = None
    _stream: object = None

    async def deltas(self) -> AsyncIterator[tuple[str, str | WebStep]]:
        loop = asyncio.get_running_loop()
        in_thinking = False
        try:
            api = client()
            # The SDK sends the request, retries nothing (max_retries=0) and raises its own typed errors
            # for a non-2xx answer. The body's server-sent events are then read here as plain JSON: the
            # SDK would build a pydantic model of every event, which cost more CPU than the relay of
            # the delta itself once a worker ran a hundred replies (bench/relay_latency.py).
            self._stream = await api.messages.create(**build_params(self.request), stream=True)
            self.opened = True
            response = self._stream.response
            self.request_id = response.headers.get("request-id", "")
            async for sse in anthropic.AsyncStream.raw_events(response):
                kind = sse.event
                if kind is None or kind == "ping" or not sse.data:
                    continue  # what the SDK's own stream skips too
                if kind == "error":
                    # A mid-stream error event becomes the SDK's typed error, as its own stream makes it.
                    try:
                        body = json.loads(sse.data)
                        detail = f"{body}"
                    except ValueError:
                        body, detail = sse.data, sse.data
                    raise api._make_status_error(detail, body=body, response=response)
                event = json.loads(sse.data)  # every event, as the SDK does: a garbled one is an error
                if kind == "content_block_delta":
                    delta = event["delta"]
                    delta_type = delta["type"]
                    if delta_type == "text_delta":
                        text = delta["text"]
                        if not isinstance(text, str):
                            raise TypeError(f"text_delta.text is {type(text).__name__}")
                        self.text_chars += len(text)
                        yield TEXT, text
                    elif delta_type == "thinking_delta" and self.thinking_blocks:
                        thinking = delta["thinking"]
                        if not isinstance(thinking, str):
                            raise TypeError(f"thinking_delta.thinking is {type(thinking).__name__}")
                        self.thinking_chars += len(thinking)
                        self.thinking_blocks[-1]["thinking"] += thinking
                        yield THINKING, thinking
                    elif delta_type == "signature_delta" and self.thinking_blocks:
                        self.thinking_blocks[-1]["signature"] += delta["signature"]
                    elif delta_type == "citations_delta":
                        self.blocks.citation(delta["citation"])
                    elif delta_type == "input_json_delta":
                        self.blocks.input_json(delta["partial_json"])
                elif kind == "content_block_start":
                    block = event["content_block"]
                    if block["type"] == "thinking":
                        self.thinking_blocks.append({"thinking": "", "signature": ""})
                        if self._thinking_since is None:
                            self._thinking_since = loop.time()
                        in_thinking = True
                    step = self.blocks.started(
                        block, text_at=self.text_chars, thinking_at=len(self.thinking_blocks) - 1
                    )
                    if step is not None:
                        yield WEB, step
                elif kind == "content_block_stop":
                    if in_thinking:
                        in_thinking = False
                        self.thinking_ms = round((loop.time() - self._thinking_since) * 1000)
                    step = self.blocks.stopped(text_at=self.text_chars)
                    if step is not None:
                        yield WEB, step
                elif kind == "message_start":
                    self.started = True
                    self.usage = usage_from_api(event["message"].get("usage"), self.usage)
                    if self.on_start is not None:
                        self.on_start(self.usage)
                elif kind == "message_delta":
                    self.usage = usage_from_api(event.get("usage"), self.usage)
                    self.stop_reason = event["delta"].get("stop_reason")
                    self.stop_sequence = event["delta"].get("stop_sequence") or ""
                    details = event["delta"].get("stop_details") or {}
                    self.refusal_explanation = str(details.get("explanation") or "")[:2000]
                # Other events (unknown future types) carry no reply text.
        except anthropic.APIStatusError as exc:
            error = _map_status_error(exc, self.request_id)
            error.retry_after = _retry_after(exc)
            raise error from exc
        except (anthropic.APITimeoutError, httpx2.TimeoutException) as exc:
            raise ClaudeError(
                "timeout",
                "Claude stopped responding, so the reply was cut short.",
                repr(exc),
                self.request_id,
            ) from exc
        except (anthropic.APIConnectionError, httpx2.TransportError) as exc:
            raise ClaudeError(
                "connection", "The connection to Claude was lost mid-reply.", repr(exc), self.request_id
            ) from exc
        except (ValueError, AttributeError, TypeError, KeyError) as exc:
            # A garbled event (not JSON, or not the shape the API documents) is a broken connection
            # for the person reading: the text so far stands, and Retry asks again.
            logger.warning("Malformed event from Claude (request %s): %r", self.request_id, exc)
            if not self.started:  # nothing streamed: the answer itself could not be read
                raise ClaudeError(
                    "unreadable",
                    "Claude's reply could not be read. Please retry.",
                    repr(exc),
                    self.request_id,
                ) from exc
            raise ClaudeError(
                "connection", "The connection to Claude was lost mid-reply.", repr(exc), self.request_id
            ) from exc
        finally:
            await self.close()

    async def close(self) -> None:
        """Close the upstream HTTP stream: Claude stops generating, and billing stops with it."""
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.close()

    def content(self, text: str, *, paused: bool = False) -> list[dict]:
        """The call's content blocks as the API returned them, given the call's own `text` (see
        `CallBlocks.content`)."""
        return self.blocks.content(text, self.thinking_blocks, paused=paused)

    def thinking_elapsed_ms(self) -> int:
        """How long the thinking took: until its last block ended, or until now while (or if it
        stopped) thinking; 0 if it never thought."""
        if self._thinking_since is None:
            return 0
        if self.thinking_ms:
            return self.thinking_ms
        return round((asyncio.get_running_loop().time() - self._thinking_since) * 1000)

    @property
    def usage_is_estimated(self) -> bool:
        """True when the API answered but the final cumulative usage (message_delta) never came."""
        return self.opened and self.stop_reason is None

    def billable_usage(self) -> Usage:
        """Usage to bill: the API's figures, plus an estimate of output received when the final count is missing."""
        if not self.usage_is_estimated:
            return self.usage
        searches, fetches = self.blocks.ran()
        return replace(
            self.usage,
            output_tokens=max(self.usage.output_tokens, self.output_estimate()),
            thinking_tokens=max(self.usage.thinking_tokens, estimate_tokens_from_chars(self.thinking_chars)),
            web_search_requests=max(self.usage.web_search_requests, searches),
            web_fetch_requests=max(self.usage.web_fetch_requests, fetches),
        )

    def output_estimate(self) -> int:
        """Output tokens received so far, estimated from everything streamed (thinking included)."""
        return estimate_tokens_from_chars(self.text_chars + self.thinking_chars)


async def count_prompt_tokens(request: ReplyRequest) -> int:
    """The exact size in tokens of `request`'s prompt (the API's count_tokens: free, generates nothing)."""
    params = build_params(request)
    params.pop("max_tokens")
    params.pop("metadata", None)
    params.pop("stop_sequences", None)  # not a count_tokens argument: it changes no prompt token
    try:
        result = await client().messages.count_tokens(**params)
    except anthropic.APIStatusError as exc:
        raise _map_status_error(exc, "") from exc
    except (anthropic.APIConnectionError, httpx2.TransportError) as exc:
        raise ClaudeError("connection", "Claude could not be reached. Please retry.", repr(exc)) from exc
    return result.input_tokens


@dataclass(frozen=True)
class Completion:
    """A short, non-streamed answer (a title): its text, what the call used, and its request id."""

    text: str
    usage: Usage
    request_id: str


@contextlib.contextmanager
def _one_call_errors():
    """A non-streamed call's failures as ClaudeError (nothing billable then)."""
    try:
        yield
    except anthropic.APIStatusError as exc:
        raise _map_status_error(exc, "") from exc
    except (anthropic.APITimeoutError, httpx2.TimeoutException) as exc:
        raise ClaudeError("timeout", "Claude stopped responding.", repr(exc)) from exc
    except (anthropic.APIConnectionError, httpx2.TransportError) as exc:
        raise ClaudeError("connection", "Claude could not be reached.", repr(exc)) from exc


async def complete(request: ReplyRequest) -> Completion:
    """Ask for a short answer in one non-streamed call. Raises ClaudeError (nothing billable then)."""
    with _one_call_errors():
        message = await client().messages.create(**build_params(request))
    text = "".join(block.text for block in message.content if block.type == "text")
    return Completion(text=text, usage=usage_from_api(message.usage), request_id=message._request_id or "")


@dataclass(frozen=True)
class CompactionResult:
    """An on-demand compaction: the block to send in place of the turns it summarises, its text, what
    the call used, and its request id."""

    block: dict
    summary: str
    usage: Usage
    request_id: str


async def compact(request: ReplyRequest) -> CompactionResult:
    """Ask the API to summarise `request.messages` (on-demand compaction, beta): the same system prompt,
    the summary as one compaction block. Raises ClaudeError, also when no summary came back."""
    params = build_params(request)
    params.pop("stop_sequences", None)  # not allowed beside compaction
    params["extra_body"] = {"compaction": {"type": "summarize"}}
    headers = params.setdefault("extra_headers", {})
    betas = [b for b in headers.get("anthropic-beta", "").split(",") if b]
    headers["anthropic-beta"] = ",".join(dict.fromkeys([*betas, COMPACTION_BETA]))
    with _one_call_errors():
        raw = await client().messages.with_raw_response.create(**params)
    request_id = raw.http_response.headers.get("request-id", "")
    try:
        body = json.loads(raw.http_response.content)
        usage = usage_from_api(body.get("usage"))
        blocks = [b for b in body.get("content") or [] if b.get("type") == "compaction" and b.get("content")]
    except (ValueError, AttributeError, TypeError) as exc:
        raise ClaudeError("connection", "The connection to Claude was lost.", repr(exc), request_id) from exc
    if not blocks:
        error = ClaudeError(
            "compaction_empty",
            f"Claude wrote no summary (it stopped with {body.get('stop_reason') or 'no reason'}).",
            f"compaction returned no block: {body.get('stop_reason')}",
            request_id,
        )
        error.usage = usage
        raise error
    block = {k: v for k, v in blocks[0].items() if v is not None}
    return CompactionResult(block=block, summary=str(block["content"]), usage=usage, request_id=request_id)


def estimate_tokens_from_chars(chars: int) -> int:
    """A rough count for text whose tokens the API never reported (about four characters a token)."""
    return math.ceil(chars / 4)


# Beta headers (claude-api.md, "Preserved thinking" and "Compaction on demand").
BINDING_BETA = "thinking-binding-controls-2026-08-01"
COMPACTION_BETA = "compact-2026-09-04"
# Mid-conversation tool changes (tool_addition / tool_removal in system messages: conversations/web.py).
TOOL_CHANGES_BETA = "mid-conversation-tool-changes-2026-07-01"


def _changes_tools(messages: list[dict]) -> bool:
    """Whether `messages` switch tools on or off: a system message's tool_addition / tool_removal, or a
    compaction block's `tool_changes`."""
    for message in messages:
        content = message["content"]
        for block in content if isinstance(content, list) else ():
            if block.get("type") in ("tool_addition", "tool_removal") or block.get("tool_changes"):
                return True
    return False


def _leads_with_compaction(messages: list[dict]) -> bool:
    content = messages[0]["content"] if messages else ""
    return isinstance(content, list) and bool(content) and content[0].get("type") == "compaction"


def build_params(request: ReplyRequest) -> dict:
    """Request body per API 2026-10-21: ends with a user turn, no sampling knobs, opaque user id; the
    beta headers its history needs (a compaction block, drop_block, tool changes) as `extra_headers`."""
    params: dict = {"model": request.model, "max_tokens": request.max_tokens, "messages": request.messages}
    betas = []
    if request.system:
        params["system"] = request.system
    if request.user_id:
        params["metadata"] = {"user_id": request.user_id}
    if request.quiet_thinking:
        params["thinking"] = {"type": request.quiet_thinking}
    elif request.summarize_thinking:
        params["thinking"] = {"type": "adaptive", "display": "summarized"}
    if request.drop_mismatched_thinking and params.get("thinking", {}).get("type") in (
        None,
        "adaptive",
        "enabled",
    ):
        thinking = params.setdefault("thinking", {"type": "adaptive"})
        thinking["block_binding"] = {"prefix_mismatch_behavior": "drop_block"}
        betas.append(BINDING_BETA)
    if _leads_with_compaction(request.messages):
        betas.append(COMPACTION_BETA)
    if _changes_tools(request.messages):
        betas.append(TOOL_CHANGES_BETA)
    if betas:
        params["extra_headers"] = {"anthropic-beta": ",".join(betas)}
    if request.stop_sequences:
        params["stop_sequences"] = list(request.stop_sequences)
    if request.effort:
        params["output_config"] = {"effort": request.effort}
    if request.cache_ttl:
        params["cache_control"] = {"type": "ephemeral", "ttl": request.cache_ttl}
    if request.tools:
        params["tools"] = [dict(tool) for tool in request.tools]
    return params


def opaque_user_id(user_pk: int) -> str:
    """A stable id for `metadata.user_id` that reveals nothing about the person (HMAC of the pk)."""
    digest = hmac.new(settings.SECRET_KEY.encode(), f"user:{user_pk}".encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


# "prompt is too long: 211815 tokens > 200000 maximum"
_TOO_LONG = re.compile(r"tokens? > (\d+)")


def _map_status_error(exc: anthropic.APIStatusError, request_id: str) -> ClaudeError:
    request_id = exc.request_id or request_id
    detail = f"{type(exc).__name__} status={exc.status_code} type={exc.type} request_id={request_id}: {exc}"
    if isinstance(exc, anthropic.AuthenticationError | anthropic.PermissionDeniedError):
        logger.error("Claude rejected the API key; check ANTHROPIC_API_KEY. %s", detail)
        return ClaudeError("not_configured", NOT_CONFIGURED, detail, request_id)
    if isinstance(exc, anthropic.PaymentRequiredError):
        logger.error("Anthropic account needs payment. %s", detail)
        return ClaudeError("not_configured", NOT_CONFIGURED, detail, request_id)
    logger.warning("Claude call failed: %s", detail)
    if exc.type == "overloaded_error" or isinstance(exc, anthropic.OverloadedError):
        return ClaudeError(
            "overloaded", "Claude is overloaded right now. Please retry in a moment.", detail, request_id
        )
    if isinstance(exc, anthropic.RateLimitError):
        return ClaudeError(
            "rate_limited", "Claude's rate limit was reached. Please retry shortly.", detail, request_id
        )
    if isinstance(exc, anthropic.ContentTooLargeError):
        return ClaudeError("too_large", "This conversation is too long for the model.", detail, request_id)
    if isinstance(exc, anthropic.BadRequestError) and "prompt is too long" in (exc.api_message or ""):
        found = _TOO_LONG.search(exc.api_message)
        return ClaudeError(
            "prompt_too_long",
            "This conversation is too long for the model.",
            detail,
            request_id,
            window=int(found.group(1)) if found else None,
        )
    if isinstance(exc, anthropic.BadRequestError | anthropic.NotFoundError):
        message = exc.api_message or "Claude refused the request."
        return ClaudeError("bad_request", f"Claude refused the request: {message}", detail, request_id)
    return ClaudeError("server", "Claude had an internal error. Please retry.", detail, request_id)


# One client per event loop: its connection pool belongs to the loop that made it (tests and
# restarts run new loops; a dead loop's entry goes with it).
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anthropic.AsyncAnthropic] = (
    weakref.WeakKeyDictionary()
)


def client() -> anthropic.AsyncAnthropic:
    """The AsyncAnthropic client for the running event loop."""
    loop = asyncio.get_running_loop()
    existing = _clients.get(loop)
    if existing is not None:
        return existing
    api_key, base_url = settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_BASE_URL or None
    if not api_key:
        from offline_claude import default_server  # only when it is used: it starts a server

        api_key, base_url = OFFLINE_KEY, default_server().base_url
    made = anthropic.AsyncAnthropic(
        api_key=api_key,
        base_url=base_url,
        # Replies retry in generation.py, visibly and with a cap on the total wait (the SDK's own
        # retries are silent and honour any retry-after).
        max_retries=0,
        timeout=httpx2.Timeout(settings.CHAT_READ_TIMEOUT_SECONDS, connect=5.0),
        **(
            {"http_client": anthropic.DefaultAioHttpClient()}
            if settings.CHAT_HTTP_CLIENT == "aiohttp"
            else {}
        ),
    )
    _clients[loop] = made
    return made


async def client_close() -> None:
    """Close the running loop's client, if it made one: its connections go with it (for the end of a
    worker or of a test's loop; the aiohttp transport complains about a session left open)."""
    made = _clients.pop(asyncio.get_running_loop(), None)
    if made is not None:
        await made.close()

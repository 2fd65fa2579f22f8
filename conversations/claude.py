"""The one module that talks to Claude (real, or the offline stand-in) through the anthropic SDK.

It builds clients and requests, reads the raw event stream (cheaper per delta than the SDK's
stream helper) and maps every failure to a `ClaudeError` the rest of the app can show a person.
Nothing else in the project imports `anthropic`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import weakref
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field

import anthropic
import httpx2
from django.conf import settings

logger = logging.getLogger(__name__)

# Message shown to people when the server's own configuration is at fault (bad or missing key).
NOT_CONFIGURED = "The service is not configured correctly. An administrator has been told why."


@dataclass
class Usage:
    """Token counts one API call reported (or, for a stream that died early, what it reported so far)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_creation_5m_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    thinking_tokens: int = 0
    service_tier: str = ""
    inference_geo: str = ""
    speed: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    def update_from(self, usage) -> None:
        """Overwrite with the fields an event carries: message_delta counts are cumulative, never added."""
        for name in (
            "input_tokens",
            "output_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        ):
            value = getattr(usage, name, None)
            if value is not None:
                setattr(self, name, value)
        creation = getattr(usage, "cache_creation", None)
        if creation is not None:
            self.cache_creation_5m_input_tokens = creation.ephemeral_5m_input_tokens or 0
            self.cache_creation_1h_input_tokens = creation.ephemeral_1h_input_tokens or 0
        details = getattr(usage, "output_tokens_details", None)
        if details is not None and getattr(details, "thinking_tokens", None) is not None:
            self.thinking_tokens = details.thinking_tokens
        for name in ("service_tier", "inference_geo", "speed"):
            value = getattr(usage, name, None)
            if value:
                setattr(self, name, str(value))


class ClaudeError(Exception):
    """A reply failed. `user_message` is safe to show; `str(self)` is for the server log."""

    def __init__(self, kind: str, user_message: str, detail: str = "", request_id: str = ""):
        super().__init__(detail or user_message)
        self.kind = kind
        self.user_message = user_message
        self.request_id = request_id


@dataclass
class ReplyRequest:
    model: str
    messages: list[dict]
    max_tokens: int
    system: str = ""
    user_id: str = ""


@dataclass
class ReplyStream:
    """One streamed reply. Iterate `deltas()`; afterwards read `usage`, `stop_reason`, `request_id`.

    `started` is true once message_start arrived, i.e. once the API has billed the prompt.
    """

    request: ReplyRequest
    usage: Usage = field(default_factory=Usage)
    stop_reason: str | None = None
    request_id: str = ""
    started: bool = False
    finished: bool = False
    text_chars: int = 0
    _stream: object = None

    async def deltas(self) -> AsyncIterator[str]:
        try:
            self._stream = await client().messages.create(**build_params(self.request), stream=True)
            self.request_id = self._stream.response.headers.get("request-id", "")
            async for event in self._stream:
                kind = event.type
                if kind == "content_block_delta":
                    if event.delta.type == "text_delta":
                        self.text_chars += len(event.delta.text)
                        yield event.delta.text
                elif kind == "message_start":
                    self.started = True
                    self.usage.update_from(event.message.usage)
                elif kind == "message_delta":
                    self.usage.update_from(event.usage)
                    self.stop_reason = event.delta.stop_reason
                elif kind == "message_stop":
                    self.finished = True
                # Other events (content_block_start/stop, thinking, unknown future types) carry no reply text.
        except anthropic.APIStatusError as exc:
            raise _map_status_error(exc, self.request_id) from exc
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
        finally:
            await self.close()

    async def close(self) -> None:
        """Close the upstream HTTP stream: Claude stops generating, and billing stops with it."""
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.close()

    @property
    def usage_is_estimated(self) -> bool:
        """True when the stream ended before its final cumulative usage (message_delta) arrived."""
        return self.stop_reason is None

    def billable_usage(self) -> Usage:
        """Usage to bill: the API's figures, plus an estimate of output received when the final count is missing."""
        if self.usage_is_estimated:
            self.usage.output_tokens = max(
                self.usage.output_tokens, estimate_tokens_from_chars(self.text_chars)
            )
        return self.usage


def estimate_tokens_from_chars(chars: int) -> int:
    """A rough count for text whose tokens the API never reported (about four characters a token)."""
    return math.ceil(chars / 4)


def build_params(request: ReplyRequest) -> dict:
    """Request body per API 2026-10-21: ends with a user turn, no sampling knobs, opaque user id."""
    params: dict = {"model": request.model, "max_tokens": request.max_tokens, "messages": request.messages}
    if request.system:
        params["system"] = request.system
    if request.user_id:
        params["metadata"] = {"user_id": request.user_id}
    return params


def opaque_user_id(user_pk: int) -> str:
    """A stable id for `metadata.user_id` that reveals nothing about the person (HMAC of the pk)."""
    digest = hmac.new(settings.SECRET_KEY.encode(), f"user:{user_pk}".encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


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
        from offline_claude import default_server

        api_key, base_url = "offline-claude", default_server().base_url
    made = anthropic.AsyncAnthropic(
        api_key=api_key,
        base_url=base_url,
        max_retries=settings.CHAT_MAX_RETRIES,
        timeout=httpx2.Timeout(settings.CHAT_READ_TIMEOUT_SECONDS, connect=5.0),
    )
    _clients[loop] = made
    return made

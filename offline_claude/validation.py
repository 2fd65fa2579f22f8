"""Request validation with the real API's status codes, error types and (approximate) messages."""

from __future__ import annotations

from typing import Any

from . import binding, media, server_tools, tool_changes
from .catalog import ModelSpec, context_window, get_model


class ApiError(Exception):
    """An error answered as ``{"type":"error","error":{"type":...,"message":...},"request_id":...}``."""

    def __init__(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = headers or {}


def bad(message: str) -> ApiError:
    """A 400 invalid_request_error."""
    return ApiError(400, "invalid_request_error", message)


# Versions the server accepts in ``anthropic-version``. Sampling knobs were removed in 2026-10-21.
KNOWN_VERSIONS = {"2023-01-01", "2023-06-01", "2026-10-21"}
SAMPLING_REMOVED_IN = "2026-10-21"
SAMPLING_KEYS = ("temperature", "top_p", "top_k")

_COMMON_KEYS = {
    "model",
    "messages",
    "system",
    "thinking",
    "output_config",
    "output_format",
    "tools",
    "tool_choice",
    "cache_control",
    "speed",
    "user_profile_id",
    "workspace_id",
    "context_management",
    "mcp_servers",
}
MESSAGES_KEYS = _COMMON_KEYS | {
    "max_tokens",
    "stream",
    "stop_sequences",
    "metadata",
    "container",
    "diagnostics",
    "inference_geo",
    "service_tier",
    "compaction",
}
COUNT_KEYS = _COMMON_KEYS
_BLOCK_TYPES = {
    "text",
    "image",
    "document",
    "thinking",
    "redacted_thinking",
    "tool_use",
    "tool_result",
    "search_result",
    "server_tool_use",
    "web_search_tool_result",
    "web_fetch_tool_result",
    "container_upload",
    "compaction",
    "tool_addition",
    "tool_removal",
}
MAX_BREAKPOINTS = 4


def _check_cache_control(cc: Any, where: str) -> str | None:
    if cc is None:
        return None
    if not isinstance(cc, dict) or cc.get("type") != "ephemeral":
        raise bad(f"{where}.cache_control.type: Input should be 'ephemeral'")
    ttl = cc.get("ttl", "5m")
    if ttl not in ("5m", "1h"):
        raise bad(f"{where}.cache_control.ttl: Input should be '5m' or '1h'")
    extra = set(cc) - {"type", "ttl"}
    if extra:
        raise bad(f"{where}.cache_control.{sorted(extra)[0]}: Extra inputs are not permitted")
    return ttl


def _check_block(block: Any, where: str, ttls: list[str]) -> None:
    if not isinstance(block, dict):
        raise bad(f"{where}: Input should be a valid dictionary or object")
    kind = block.get("type")
    if kind not in _BLOCK_TYPES:
        raise bad(f"{where}.type: Input tag {kind!r} does not match any of the expected content block types")
    if kind == "text":
        text = block.get("text")
        if not isinstance(text, str):
            raise bad(f"{where}.text: Field required")
        if not text:
            raise bad(f"{where}: text content blocks must be non-empty")
        if not text.strip():
            raise bad(f"{where}: text content blocks must contain non-whitespace text")
    elif kind == "image":
        try:
            media.image_info(block)
        except media.MediaError as exc:
            raise bad(
                f"{where}.image.{exc}" if str(exc).startswith("source") else f"{where}: {exc}"
            ) from None
    elif kind == "document":
        try:
            media.document_info(block)
        except media.MediaError as exc:
            raise bad(
                f"{where}.document.{exc}" if str(exc).startswith("source") else f"{where}: {exc}"
            ) from None
    ttl = _check_cache_control(block.get("cache_control"), where)
    if ttl:
        ttls.append(ttl)


def _check_thinking(block: dict, role: str, where: str) -> None:
    """Thinking blocks go back unmodified, in assistant turns, with the signature they came with."""
    if block.get("type") not in ("thinking", "redacted_thinking"):
        return
    if role != "assistant":
        raise bad(f"{where}: thinking blocks are only allowed in assistant messages")
    if block["type"] == "thinking":
        if not isinstance(block.get("thinking"), str):
            raise bad(f"{where}.thinking: Field required")
        if not isinstance(block.get("signature"), str) or not block["signature"]:
            raise bad(f"{where}.signature: Field required")
        # Whether the signature holds, and for which prefix, is binding.check's (it needs the whole body).


def _check_system_messages(messages: list, spec: ModelSpec) -> None:
    """Mid-conversation system messages: on models that take them, right after a user turn and followed
    by Claude's turn (or last), never first (the docs' "Mid-conversation system messages")."""
    for i, msg in enumerate(messages):
        if msg.get("role") != "system":
            continue
        if not spec.system_messages:
            raise bad(f"messages.{i}.role: system messages are not supported on {spec.id}")
        if i == 0:
            raise bad(f"messages.{i}: a system message cannot be the first message")
        before = i - 1
        while before >= 0 and messages[before].get("role") == "system":
            before -= 1  # consecutive system messages are one section
        if before < 0 or messages[before].get("role") != "user":
            raise bad(f"messages.{i}: a system message must immediately follow a user message")
        after = i + 1
        while after < len(messages) and messages[after].get("role") == "system":
            after += 1
        if after < len(messages) and messages[after].get("role") != "assistant":
            raise bad(
                f"messages.{i}: a system message must be followed by an assistant message or end the messages"
            )


def _check_media_counts(messages: list) -> None:
    images = pages = 0
    for msg in messages:
        content = msg.get("content")
        for block in content if isinstance(content, list) else []:
            if block.get("type") == "image":
                images += 1
            elif block.get("type") == "document":
                info = media.document_info(block)
                pages += info.pages if isinstance(info, media.PdfInfo) else 0
    if images > media.MAX_IMAGES:
        raise bad(f"messages: Too many images: {images} > {media.MAX_IMAGES} maximum")
    if pages > media.PDF_MAX_PAGES:
        raise bad(f"messages: A maximum of {media.PDF_MAX_PAGES} PDF pages may be provided.")


def validate_request(
    body: Any,
    *,
    version: str,
    count_only: bool,
    betas: set[str],
    prompt_tokens: Any = None,
    window_override: int | None = None,
) -> tuple[ModelSpec, binding.Binding]:
    """Validate a /v1/messages (or count_tokens) body; return the model and what the thinking checks
    left (the blocks they dropped are removed from ``body``), or raise ApiError.

    ``prompt_tokens`` is a callable computing the prompt size, called last (only for valid bodies) so
    the context-window check sees a well-formed request.
    """
    if not isinstance(body, dict):
        raise bad("Request body must be a JSON object")
    allowed = COUNT_KEYS if count_only else MESSAGES_KEYS
    for key in SAMPLING_KEYS:
        if key in body and version >= SAMPLING_REMOVED_IN:
            raise bad(f"{key}: this parameter is not supported in API version {version}; it was removed")
    for key in body:
        if key not in allowed and key not in SAMPLING_KEYS:
            raise bad(f"{key}: Extra inputs are not permitted")

    model_id = body.get("model")
    if not isinstance(model_id, str) or not model_id:
        raise bad("model: Field required")
    spec = get_model(model_id)
    if spec is None:
        raise ApiError(404, "not_found_error", f"model: {model_id}")
    if spec.lifecycle == "retired":
        raise ApiError(404, "not_found_error", f"model: {model_id} has been retired")

    max_tokens = body.get("max_tokens")
    if not count_only:
        if max_tokens is None:
            raise bad("max_tokens: Field required")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise bad("max_tokens: Input should be a valid integer")
        if max_tokens < 1:
            raise bad("max_tokens: Input should be greater than or equal to 1")
        if max_tokens > spec.max_tokens:
            raise bad(
                f"max_tokens: {max_tokens} > {spec.max_tokens}, which is the maximum allowed number of "
                f"output tokens for {spec.id}"
            )
        if "stream" in body and not isinstance(body["stream"], bool):
            raise bad("stream: Input should be a valid boolean")

    ttls: list[str] = []
    for i, tool in enumerate(body.get("tools") or []):
        if not isinstance(tool, dict) or not tool.get("name"):
            raise bad(f"tools.{i}.name: Field required")
        try:
            server_tools.check_tool(tool, f"tools.{i}")
        except server_tools.ToolError as exc:
            raise bad(str(exc)) from None
        ttl = _check_cache_control(tool.get("cache_control"), f"tools.{i}")
        if ttl:
            ttls.append(ttl)

    system = body.get("system")
    if system is not None:
        if isinstance(system, list):
            for i, block in enumerate(system):
                _check_block(block, f"system.{i}", ttls)
                if block.get("type") != "text":
                    raise bad(f"system.{i}.type: Input should be 'text'")
        elif not isinstance(system, str):
            raise bad("system: Input should be a valid string or a list of text blocks")

    messages = body.get("messages")
    if messages is None:
        raise bad("messages: Field required")
    if not isinstance(messages, list):
        raise bad("messages: Input should be a valid list")
    if not messages:
        raise bad("messages: at least one message is required")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise bad(f"messages.{i}: Input should be a valid dictionary")
        role = msg.get("role")
        if role not in ("user", "assistant", "system"):
            raise bad(f"messages.{i}.role: Input should be 'user', 'assistant' or 'system'")
        extra = set(msg) - {"role", "content"}
        if extra:
            raise bad(f"messages.{i}.{sorted(extra)[0]}: Extra inputs are not permitted")
        content = msg.get("content")
        is_last = i == len(messages) - 1
        if isinstance(content, str):
            if not content and not (is_last and role == "assistant"):
                raise bad(
                    f"messages.{i}: all messages must have non-empty content except for the optional "
                    "final assistant message"
                )
            if content and not content.strip():
                # A string is one text block to the API: the same rule applies.
                raise bad(f"messages.{i}.content.0: text content blocks must contain non-whitespace text")
        elif isinstance(content, list):
            if not content and not (is_last and role == "assistant"):
                raise bad(
                    f"messages.{i}: all messages must have non-empty content except for the optional "
                    "final assistant message"
                )
            for j, block in enumerate(content):
                _check_block(block, f"messages.{i}.content.{j}", ttls)
                _check_thinking(block, role, f"messages.{i}.content.{j}")
        else:
            raise bad(f"messages.{i}.content: Field required")
    _check_media_counts(messages)
    _check_system_messages(messages, spec)
    try:
        tool_changes.check(body, betas)
    except tool_changes.ToolChangeError as exc:
        raise bad(str(exc)) from None
    if messages[0].get("role") != "user" and not _leads_with_compaction(messages[0]):
        raise bad('messages: first message must use the "user" role')
    compaction = body.get("compaction")
    if compaction is not None:
        _check_compaction_request(body, compaction, spec, betas)
    elif (
        not count_only
        and messages[-1].get("role") == "assistant"
        and not spec.supports_prefill
        and not server_tools.is_paused_turn(messages[-1])  # pause_turn sent back to be continued
    ):
        raise bad(
            "This model does not support assistant message prefill. The conversation must end with a user message."
        )
    threshold_edit(body, spec, betas)  # checks context_management

    auto = body.get("cache_control")
    auto_ttl = _check_cache_control(auto, "cache_control") if auto is not None else None
    if auto_ttl:
        last = messages[-1].get("content")
        last_marked = (
            isinstance(last, list) and last and isinstance(last[-1], dict) and "cache_control" in last[-1]
        )
        if not last_marked:
            ttls.append(auto_ttl)
    if len(ttls) > MAX_BREAKPOINTS:
        raise bad(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {len(ttls)}."
        )
    if "5m" in ttls and "1h" in ttls[ttls.index("5m") :]:
        raise bad("cache_control: a ttl='1h' cache breakpoint must not come after a ttl='5m' one")

    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise bad("stop_sequences: Input should be a valid list of strings")
        if any(not s.strip() for s in stops):
            raise bad("stop_sequences: each stop sequence must contain non-whitespace")

    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise bad("metadata: Input should be a valid dictionary")
        for key in metadata:
            if key != "user_id":
                raise bad(f"metadata.{key}: Extra inputs are not permitted")
        uid = metadata.get("user_id")
        if uid is not None and (not isinstance(uid, str) or len(uid) > 256):
            raise bad("metadata.user_id: String should have at most 256 characters")

    thinking = body.get("thinking")
    if thinking is not None:
        if not isinstance(thinking, dict) or thinking.get("type") not in THINKING_TYPES:
            raise bad("thinking.type: Input should be 'enabled', 'adaptive', 'disabled' or 'between_tools'")
        display = thinking.get("display")
        if display not in (None, "summarized", "omitted"):
            raise bad("thinking.display: Input should be 'summarized' or 'omitted'")
        if thinking["type"] == "disabled" and spec.always_thinks:
            raise bad(f"thinking.type: thinking cannot be disabled for {spec.id}")
        if thinking["type"] not in spec.thinking_types:
            accepted = " or ".join(f'"thinking.type.{kind}"' for kind in spec.thinking_types)
            raise bad(f'"thinking.type.{thinking["type"]}" is not supported for this model. Use {accepted}.')
        effort_asked = (
            (body.get("output_config") or {}).get("effort")
            if isinstance(body.get("output_config"), dict)
            else None
        )
        if thinking["type"] in ("disabled", "between_tools") and effort_asked in ("xhigh", "max"):
            raise bad(f'"thinking.type.{thinking["type"]}" is not supported with effort "{effort_asked}"')
        if thinking["type"] == "enabled":
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or isinstance(budget, bool):
                raise bad("thinking.enabled.budget_tokens: Field required")
            if budget < 1024:
                raise bad("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
            if not count_only and budget >= max_tokens:
                raise bad("`max_tokens` must be greater than `thinking.budget_tokens`")

    output_config = body.get("output_config")
    if output_config is not None:
        if not isinstance(output_config, dict):
            raise bad("output_config: Input should be a valid dictionary")
        effort = output_config.get("effort")
        if effort is not None and effort not in ("low", "medium", "high", "xhigh", "max"):
            raise bad("output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'")

    try:
        binding.drop_before_compaction(body, betas)
        bound = binding.check(body, spec, betas)
    except binding.BindingError as exc:
        raise bad(str(exc)) from None

    if prompt_tokens is not None:
        n = prompt_tokens()
        limit = context_window(spec, betas, window_override)
        if n > limit:
            raise bad(f"prompt is too long: {n} tokens > {limit} maximum")
    return spec, bound


THINKING_TYPES = ("enabled", "adaptive", "disabled", "between_tools")


def _leads_with_compaction(message: dict) -> bool:
    content = message.get("content")
    return (
        isinstance(content, list)
        and bool(content)
        and isinstance(content[0], dict)
        and content[0].get("type") == "compaction"
    )


def _check_compaction_request(body: dict, compaction: Any, spec: ModelSpec, betas: set[str]) -> None:
    """On-demand compaction: `compaction: {"type": "summarize", "instructions"?}` with its beta header."""
    if binding.COMPACTION_BETA not in betas:
        raise bad(f"compaction: this parameter requires `anthropic-beta: {binding.COMPACTION_BETA}`")
    if not isinstance(compaction, dict) or compaction.get("type") != "summarize":
        raise bad("compaction.type: Input should be 'summarize'")
    if set(compaction) - {"type", "instructions"}:
        raise bad(
            f"compaction.{sorted(set(compaction) - {'type', 'instructions'})[0]}: Extra inputs are not permitted"
        )
    instructions = compaction.get("instructions")
    if instructions is not None and (
        not isinstance(instructions, str) or not instructions.strip() or len(instructions) > 16384
    ):
        raise bad("compaction.instructions: must be non-blank and at most 16384 characters")
    if not spec.compaction:
        raise bad(f"compaction: on-demand compaction is not supported on {spec.id}")
    for key in ("stop_sequences", "context_management"):
        if key in body:
            raise bad(f"{key}: cannot be used with compaction")


COMPACT_EDIT = "compact_20260112"
MIN_TRIGGER = 50_000


def threshold_edit(body: dict, spec: ModelSpec, betas: set[str]) -> dict | None:
    """The `compact_20260112` edit of `context_management` (compaction at a threshold), checked, or None.
    Shape (the docs' "Compaction at a token threshold"): {"type", "trigger": {"type": "input_tokens",
    "value" >= 50,000} (default 150,000), "pause_after_compaction": bool, "instructions": str | null}."""
    management = body.get("context_management")
    if management is None:
        return None
    if not isinstance(management, dict) or not isinstance(management.get("edits"), list):
        raise bad("context_management.edits: Field required")
    found = None
    for n, edit in enumerate(management["edits"]):
        if not isinstance(edit, dict) or edit.get("type") != COMPACT_EDIT:
            continue  # other edits (context editing) are the API's business, not simulated here
        where = f"context_management.edits.{n}"
        if binding.THRESHOLD_COMPACTION_BETA not in betas:
            raise bad(
                f"{where}.type: {COMPACT_EDIT} requires `anthropic-beta: {binding.THRESHOLD_COMPACTION_BETA}`"
            )
        if body.get("compaction") is not None:
            raise bad(f"{where}: compaction at a threshold cannot be combined with on-demand compaction")
        if not spec.compaction:
            raise bad(f"{where}: compaction is not supported on {spec.id}")
        extra = set(edit) - {"type", "trigger", "pause_after_compaction", "instructions"}
        if extra:
            raise bad(f"{where}.{sorted(extra)[0]}: Extra inputs are not permitted")
        trigger = edit.get("trigger", {"type": "input_tokens", "value": 150_000})
        if not isinstance(trigger, dict) or trigger.get("type") != "input_tokens":
            raise bad(f"{where}.trigger.type: Input should be 'input_tokens'")
        value = trigger.get("value")
        if not isinstance(value, int) or isinstance(value, bool) or value < MIN_TRIGGER:
            raise bad(f"{where}.trigger.value: Input should be greater than or equal to {MIN_TRIGGER}")
        if not isinstance(edit.get("pause_after_compaction", False), bool):
            raise bad(f"{where}.pause_after_compaction: Input should be a valid boolean")
        found = {"trigger": value, "pause": bool(edit.get("pause_after_compaction", False))}
    return found

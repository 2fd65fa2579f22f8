"""Models the offline Claude knows, with their limits.

The ids and limits follow Anthropic's public models overview and pricing pages
(https://docs.claude.com/en/docs/about-claude/models/overview, https://www.anthropic.com/pricing). They are data, not
behaviour: the server looks a model up here to validate ``max_tokens``, the context window and whether
assistant prefill is allowed, and ``GET /v1/models`` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    """One model: its id, display name, limits and the few behaviours that differ between models."""

    id: str
    display_name: str
    created_at: str  # RFC 3339, as /v1/models returns it
    line: str
    max_input_tokens: int
    max_tokens: int
    # Claude 4.6+ and 5.x reject a trailing assistant turn (prefill); older models continue it.
    supports_prefill: bool = False
    # Current models think when a request names no `thinking` (adaptive, display omitted); some cannot
    # be told not to (claude-api.md: Opus 5.5 and Fable 5.x).
    thinks_by_default: bool = False
    always_thinks: bool = False
    # The effort a request gets without `output_config.effort` (claude-api.md: Sonnet 5.5 high, Opus 5.5
    # and Haiku 5.5 medium); it sets how long the offline Claude thinks.
    default_effort: str = "high"
    # Preserved thinking: thinking sent back is checked against its prefix (the docs' prefix-checks page).
    prefix_checked: bool = False
    # `role: "system"` entries in `messages` (mid-conversation system messages).
    system_messages: bool = False
    # On-demand compaction (`compaction: {"type": "summarize"}`, beta compact-2026-09-04).
    compaction: bool = False
    # The `thinking.type` values the model takes.
    thinking_types: tuple[str, ...] = ("enabled", "adaptive", "disabled")
    lifecycle: str = "active"
    deprecated_at: str | None = None
    retires_at: str | None = None

    def to_api(self) -> dict[str, object]:
        """The ModelInfo object as the real API serialises it."""
        return {
            "type": "model",
            "id": self.id,
            "display_name": self.display_name,
            "created_at": self.created_at,
            "line": self.line,
            "lifecycle": self.lifecycle,
            "deprecated_at": self.deprecated_at,
            "retires_at": self.retires_at,
            "max_input_tokens": self.max_input_tokens,
            "max_tokens": self.max_tokens,
        }


_K = 1_000
_M = 1_000_000

# Newest first, like the real listing.
MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        "claude-opus-5-5",
        "Claude Opus 5.5",
        "2026-10-07T00:00:00Z",
        "opus",
        _M,
        128 * _K,
        thinks_by_default=True,
        always_thinks=True,
        default_effort="medium",
        prefix_checked=True,
        system_messages=True,
        compaction=True,
        thinking_types=("adaptive",),
    ),
    ModelSpec(
        "claude-sonnet-5-5",
        "Claude Sonnet 5.5",
        "2026-10-07T00:00:00Z",
        "sonnet",
        _M,
        128 * _K,
        thinks_by_default=True,
        prefix_checked=True,
        system_messages=True,
        compaction=True,
        thinking_types=("adaptive", "between_tools"),
    ),
    ModelSpec(
        "claude-haiku-5-5",
        "Claude Haiku 5.5",
        "2026-10-07T00:00:00Z",
        "haiku",
        _M,
        128 * _K,
        thinks_by_default=True,
        default_effort="medium",
        prefix_checked=True,
        system_messages=True,
        thinking_types=("adaptive", "disabled"),
    ),
    ModelSpec(
        "claude-fable-5-2",
        "Claude Fable 5.2",
        "2026-08-12T00:00:00Z",
        "fable",
        _M,
        128 * _K,
        thinks_by_default=True,
        always_thinks=True,
        prefix_checked=True,
        system_messages=True,
        compaction=True,
        thinking_types=("adaptive",),
    ),
    ModelSpec(
        "claude-fable-5-1",
        "Claude Fable 5.1",
        "2026-06-02T00:00:00Z",
        "fable",
        _M,
        128 * _K,
        thinks_by_default=True,
        always_thinks=True,
        prefix_checked=True,
        system_messages=True,
        compaction=True,
        thinking_types=("adaptive",),
    ),
    ModelSpec(
        "claude-opus-5",
        "Claude Opus 5",
        "2026-05-05T00:00:00Z",
        "opus",
        _M,
        128 * _K,
        system_messages=True,
        compaction=True,
    ),
    ModelSpec(
        "claude-sonnet-5", "Claude Sonnet 5", "2026-05-05T00:00:00Z", "sonnet", _M, 128 * _K, compaction=True
    ),
    ModelSpec(
        "claude-opus-4-8",
        "Claude Opus 4.8",
        "2026-03-24T00:00:00Z",
        "opus",
        _M,
        128 * _K,
        system_messages=True,
        compaction=True,
    ),
    ModelSpec("claude-opus-4-7", "Claude Opus 4.7", "2026-02-17T00:00:00Z", "opus", _M, 128 * _K),
    ModelSpec("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17T00:00:00Z", "sonnet", _M, 64 * _K),
    ModelSpec("claude-opus-4-6", "Claude Opus 4.6", "2026-02-05T00:00:00Z", "opus", _M, 128 * _K),
    ModelSpec("claude-opus-4-5", "Claude Opus 4.5", "2025-11-24T00:00:00Z", "opus", 200 * _K, 64 * _K, True),
    ModelSpec(
        "claude-haiku-4-5", "Claude Haiku 4.5", "2025-10-15T00:00:00Z", "haiku", 200 * _K, 64 * _K, True
    ),
    ModelSpec(
        "claude-sonnet-4-5",
        "Claude Sonnet 4.5",
        "2025-09-29T00:00:00Z",
        "sonnet",
        200 * _K,
        64 * _K,
        True,
        lifecycle="deprecated",
        deprecated_at="2026-08-31T00:00:00Z",
        retires_at="2026-11-30T00:00:00Z",
    ),
)

MODELS_BY_ID: dict[str, ModelSpec] = {m.id: m for m in MODELS}

# Sonnet 4.5 has a 1M window only with this beta header (see claude-api.md).
CONTEXT_1M_BETA = "context-1m-2025-08-07"


def get_model(model_id: str) -> ModelSpec | None:
    """Return the model with this exact id, or None if the offline Claude does not know it."""
    return MODELS_BY_ID.get(model_id)


def context_window(spec: ModelSpec, betas: set[str], override: int | None = None) -> int:
    """The context window for this request, honouring the 1M-context beta on models that have it.

    ``override`` (the ``context_window`` control) shrinks the window so tests can fill it cheaply.
    """
    if override is not None:
        return override
    if CONTEXT_1M_BETA in betas and spec.max_input_tokens < _M and spec.id == "claude-sonnet-4-5":
        return _M
    return spec.max_input_tokens

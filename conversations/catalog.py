"""What the app knows about each Claude model: its window, its output limit, whether it thinks by default.

One place, data only (from Anthropic's public models overview, https://docs.claude.com/en/docs/about-claude/models/overview), imported by whatever sizes a
request or a budget: `max_tokens` per reply and the context budget come from here. Prices are not here:
they are effective-dated rows in billing, editable by staff.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

_K = 1_000
_M = 1_000_000


@dataclass(frozen=True)
class ModelInfo:
    """One model's limits and behaviours.

    `reply_max_tokens` is what a reply asks for: room for the thinking these models do unasked
    (thinking counts toward `max_tokens`) plus a long answer, well under `max_output`.
    """

    id: str
    context_window: int
    max_output: int
    thinks_by_default: bool = False
    always_thinks: bool = False
    # `output_config.effort` without which the model uses this level ("" where it takes no effort).
    default_effort: str = ""
    features: frozenset[str] = frozenset({"images", "pdf", "cache_1h"})
    # `role: "system"` messages inside `messages`: how a system-prompt edit reaches Claude without
    # changing the prefix earlier thinking is bound to. Without them the top-level prompt changes.
    system_messages: bool = False
    # On-demand compaction (beta): a conversation that outgrows the window is summarised by the API.
    # Without it, the oldest turns are left out and the thinking of the turns kept is not sent back.
    compaction: bool = False
    # The `thinking` a small side call (a title) sends to think as little as the model allows:
    # "disabled", "between_tools" (Sonnet 5.5 refuses "disabled"), or "" (it always thinks).
    quiet_thinking: str = "disabled"
    # The model the page offers to try after a refusal ("" for none).
    fallback: str = ""

    @property
    def reply_max_tokens(self) -> int:
        return min(self.max_output, 16_000 if self.thinks_by_default else 8_000)


def _current(model_id: str, **kwargs) -> ModelInfo:
    return ModelInfo(model_id, context_window=_M, max_output=128 * _K, **kwargs)


MODELS: dict[str, ModelInfo] = {
    info.id: info
    for info in (
        _current(
            "claude-opus-5-5",
            thinks_by_default=True,
            always_thinks=True,
            default_effort="medium",
            system_messages=True,
            compaction=True,
            quiet_thinking="",
            fallback="claude-sonnet-5-5",
        ),
        _current(
            "claude-sonnet-5-5",
            thinks_by_default=True,
            default_effort="high",
            system_messages=True,
            compaction=True,
            quiet_thinking="between_tools",
            fallback="claude-opus-5-5",
        ),
        # Compaction is not listed for Haiku 5.5 (docs, 2026-09): its long conversations leave turns out.
        _current(
            "claude-haiku-5-5",
            thinks_by_default=True,
            default_effort="medium",
            system_messages=True,
            fallback="claude-sonnet-5-5",
        ),
        _current(
            "claude-fable-5-2",
            thinks_by_default=True,
            always_thinks=True,
            default_effort="high",
            system_messages=True,
            compaction=True,
            quiet_thinking="",
        ),
        _current(
            "claude-fable-5-1",
            thinks_by_default=True,
            always_thinks=True,
            default_effort="high",
            system_messages=True,
            compaction=True,
            quiet_thinking="",
        ),
        _current("claude-opus-5", system_messages=True, compaction=True),
        _current("claude-sonnet-5", compaction=True),
        _current("claude-opus-4-8", system_messages=True, compaction=True),
        _current("claude-opus-4-7", compaction=True),
        _current("claude-opus-4-6", compaction=True),
        ModelInfo("claude-sonnet-4-6", context_window=_M, max_output=64 * _K, compaction=True),
        ModelInfo("claude-opus-4-5", context_window=200 * _K, max_output=64 * _K),
        ModelInfo("claude-haiku-4-5", context_window=200 * _K, max_output=64 * _K),
        ModelInfo("claude-sonnet-4-5", context_window=200 * _K, max_output=64 * _K),
    )
}

# A model the catalog does not know (e.g. a newer one named in CHAT_MODELS): assume the smallest
# window and output of current models, so requests stay valid; the system check warns about it.
UNKNOWN = ModelInfo("", context_window=200 * _K, max_output=64 * _K)


def model_info(model_id: str) -> ModelInfo:
    """The catalog entry of `model_id` (a conservative stand-in for a model it does not know)."""
    return MODELS.get(model_id) or ModelInfo(
        model_id, context_window=UNKNOWN.context_window, max_output=UNKNOWN.max_output
    )


def reply_max_tokens(model_id: str) -> int:
    """`max_tokens` of a reply on `model_id`: the catalog's, or CHAT_MAX_TOKENS when set (capped at
    the model's output limit)."""
    info = model_info(model_id)
    configured = settings.CHAT_MAX_TOKENS
    return min(configured, info.max_output) if configured else info.reply_max_tokens


def context_window(model_id: str) -> int:
    """The window a request on `model_id` must fit: the model's, or CHAT_CONTEXT_WINDOW when smaller."""
    window = model_info(model_id).context_window
    configured = settings.CHAT_CONTEXT_WINDOW
    return min(configured, window) if configured else window


# `output_config.effort` levels, least to most thinking (claude-api.md).
EFFORTS = ("low", "medium", "high", "xhigh", "max")


def takes_effort(model_id: str) -> bool:
    """Whether `model_id` takes an effort level (the models that think by default)."""
    return bool(model_info(model_id).default_effort)


def effort_for(model_id: str, chosen: str) -> str:
    """The effort to send for a conversation's choice on `model_id`: "" (the model's default) when it
    chose none or the model takes none."""
    return chosen if chosen in EFFORTS and takes_effort(model_id) else ""

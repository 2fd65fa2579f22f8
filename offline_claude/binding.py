"""The checks the API runs on thinking and compaction blocks sent back, and what it drops.

- The model check (every model): a model reads its own thinking, Claude Haiku 5.5's (not locked to
  its model) and a fixed set of others; a block it cannot read is dropped without an error.
- The prefix check (models with preserved thinking, ``ModelSpec.prefix_checked``): a block whose
  prefix changed, or that does not follow the block kept before it, fails; so does every thinking
  block after it. The request gets the documented 400, or, with
  ``thinking.block_binding.prefix_mismatch_behavior: "drop_block"`` (beta
  ``thinking-binding-controls-2026-08-01``), the failing blocks are dropped and the response lists
  them in ``input_transformations``.
- Compaction blocks (beta ``compact-2026-09-04``) must lead ``messages``, unaltered: the prefix of
  what follows starts at the block.

See ``signatures`` for how a block carries what it is bound to.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from . import tool_changes
from .catalog import ModelSpec
from .signatures import (
    block_id,
    chain_start,
    chain_step,
    content_blocks,
    model_tag,
    prefix_matches,
    read_compaction,
    read_signature,
)

BINDING_BETA = "thinking-binding-controls-2026-08-01"
COMPACTION_BETA = "compact-2026-09-04"  # on demand
THRESHOLD_COMPACTION_BETA = "compact-2026-01-12"  # at a threshold (context_management)
BEHAVIOURS = ("error", "drop_block")

# Which other models' thinking each model reads (the docs' "Switching models mid-conversation"):
# every model reads its own, and Haiku 5.5's blocks are not locked to their model.
READS: dict[str, tuple[str, ...]] = {
    "claude-fable-5-1": ("claude-opus-5", "claude-opus-5-5"),
    "claude-fable-5-2": ("claude-opus-5", "claude-opus-5-5", "claude-fable-5-1"),
}
UNLOCKED = ("claude-haiku-5-5",)


class BindingError(Exception):
    """A 400 the caller raises as ``invalid_request_error``."""


@dataclass
class Binding:
    """What the checks left: the prefix digest a new block is bound to, the block it follows, and the
    blocks dropped (``input_transformations`` entries)."""

    state: bytes
    previous: bytes
    transformations: list[dict[str, str]] = field(default_factory=list)
    # When the messages end with an assistant turn being continued (a ``pause_turn`` sent back): the
    # prefix of a block appended to that turn (the turn's own blocks before it count, as on a re-check).
    continued: bytes | None = None


def _readable(reader: str, tag: bytes) -> bool:
    allowed = (reader, *UNLOCKED, *READS.get(reader, ()))
    return any(model_tag(model) == tag for model in allowed)


def _mismatch_message(where: str, betas: set[str]) -> str:
    message = (
        f"{where}: Invalid `signature` in `thinking` block. The block is bound to a different conversation. "
        'Remove the block, or set `thinking.block_binding.prefix_mismatch_behavior` to "drop_block".'
    )
    if BINDING_BETA not in betas:
        message += f" That setting requires the `{BINDING_BETA}` value in the `anthropic-beta` header."
    return message


def behaviour(body: dict[str, Any], betas: set[str]) -> str:
    """``prefix_mismatch_behavior`` of the request ("error" when it names none)."""
    thinking = body.get("thinking")
    binding = thinking.get("block_binding") if isinstance(thinking, dict) else None
    if binding is None:
        return "error"
    if BINDING_BETA not in betas:
        raise BindingError("thinking.block_binding: Extra inputs are not permitted")
    if not isinstance(binding, dict) or set(binding) - {"prefix_mismatch_behavior"}:
        raise BindingError("thinking.block_binding: only `prefix_mismatch_behavior` is allowed")
    value = binding.get("prefix_mismatch_behavior", "error")
    if value not in BEHAVIOURS:
        raise BindingError(
            "thinking.block_binding.prefix_mismatch_behavior: Input should be 'error' or 'drop_block'"
        )
    return value


def drop_before_compaction(body: dict[str, Any], betas: set[str]) -> None:
    """Compaction at a threshold: the client appends the reply that carries a compaction block as usual,
    and the API drops every content block before the newest compaction block (in `body` itself)."""
    if THRESHOLD_COMPACTION_BETA not in betas:
        return
    messages = body.get("messages") or []
    for i in range(len(messages) - 1, -1, -1):
        content = messages[i].get("content")
        if not isinstance(content, list):
            continue
        for j in range(len(content) - 1, -1, -1):
            if isinstance(content[j], dict) and content[j].get("type") == "compaction":
                body["messages"] = [{**messages[i], "content": content[j:]}, *messages[i + 1 :]]
                return


def check(body: dict[str, Any], spec: ModelSpec, betas: set[str]) -> Binding:
    """Run the model, prefix and compaction checks on ``body`` (already well formed); drop what they
    drop from ``body`` itself (dropped blocks are not billed). Raises BindingError for a 400."""
    on_mismatch = behaviour(body, betas)
    start = chain_start(body)
    state = start
    messages = body["messages"]
    skip_first = 0  # blocks of messages[0] that a leading compaction block stands for
    for i, message in enumerate(messages):
        for j, block in enumerate(content_blocks(message.get("content"))):
            if isinstance(block, dict) and block.get("type") == "compaction":
                if COMPACTION_BETA not in betas and THRESHOLD_COMPACTION_BETA not in betas:
                    raise BindingError(
                        f"messages.{i}.content.{j}: compaction blocks require `anthropic-beta: {COMPACTION_BETA}`"
                    )
                if (i, j) != (0, 0):
                    raise BindingError(
                        f"messages.{i}.content.{j}: compaction_block_misplaced: a compaction block must be the "
                        "first block of the first message, in place of the messages it summarises"
                    )
                recorded = read_compaction(
                    str(block.get("content") or ""),
                    str(block.get("signature") or ""),
                    block.get("tool_changes"),
                )
                if recorded is None:
                    raise BindingError(
                        f"messages.{i}.content.{j}: compaction_signature_invalid: the compaction block was altered"
                    )
                if not recorded.tool_changes_ok:
                    raise BindingError(
                        f"messages.{i}.content.{j}.tool_changes: compaction_tool_changes_mismatch: the "
                        "compaction block's `tool_changes` differs from what was returned with the block"
                    )
                recorded_state, recorded_start = recorded.state, recorded.start
                # The summarised turns were bound to the system prompt and tools of their time.
                state = (
                    recorded_state if recorded_start == start else hashlib.sha256(b"changed" + start).digest()
                )
                skip_first = 1

    dropped: list[tuple[int, int, str]] = []
    previous: bytes | None = None  # the last thinking block kept (None: none yet, any may lead)
    failed = False
    continued: bytes | None = None
    for i, message in enumerate(messages):
        blocks = content_blocks(message.get("content"))
        role = message.get("role")
        first = skip_first if i == 0 else 0
        for j in range(first, len(blocks)):
            block = blocks[j]
            if not isinstance(block, dict) or block.get("type") != "thinking":
                continue
            where = f"messages.{i}.content.{j}"
            parts = read_signature(block["thinking"], block["signature"])
            if parts is None:
                raise BindingError(f"{where}: Invalid `signature` in `thinking` block")
            if not _readable(spec.id, parts.model_tag):
                dropped.append((i, j, "model_binding_mismatch"))
                continue
            if spec.prefix_checked:
                if not failed:
                    prefix = chain_step(state, role, blocks[first:j])
                    expected_previous = parts.previous if previous is None else previous
                    failed = not prefix_matches(
                        parts, block["thinking"], prefix=prefix, previous=expected_previous
                    )
                if failed:
                    if on_mismatch == "error":
                        raise BindingError(_mismatch_message(where, betas))
                    dropped.append((i, j, "prefix_binding_mismatch"))
                    continue
            previous = block_id(block["signature"])
        chained = tool_changes.bound_blocks(blocks[first:], body) if role == "system" else blocks[first:]
        if i == len(messages) - 1 and role == "assistant":
            continued = chain_step(state, role, chained)
        if chained or not first:  # a compaction block alone is not a message of the chain
            state = chain_step(state, role, chained)

    for i, j, _reason in sorted(dropped, reverse=True):
        content = messages[i]["content"]
        del content[j]
    transformations = [
        {"type": "thinking_dropped", "path": f"messages.{i}.content.{j}", "reason": reason}
        for i, j, reason in dropped
    ]
    return Binding(
        state=state, previous=previous or b"\x00" * 8, transformations=transformations, continued=continued
    )


def new_block_prefix(binding: Binding) -> bytes:
    """The prefix digest a thinking block written in reply to the request is bound to."""
    if binding.continued is not None:
        return binding.continued
    return chain_step(binding.state, "assistant", [])

"""Turn a validated request into a reply plan: what to say, how many tokens, why it stops.

The plan is computed once per request (all token pieces precomputed), so streaming only formats and
writes; nothing here depends on time or on the network.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

from . import media, replies, server_tools, tool_changes
from .binding import Binding, new_block_prefix
from .cache import CacheResult
from .controls import extract_magic
from .signatures import chain_start, sign, sign_compaction
from .tokenizer import count_tokens, split_pieces


@dataclass
class ReplyPlan:
    """Everything needed to answer one request, streamed or not."""

    model: str
    usage_in: CacheResult
    thinking: bool = False
    thinking_visible: bool = False
    thinking_pieces: list[str] = field(default_factory=list)  # visible pieces (summarized display)
    thinking_tokens: int = 0  # billed thinking tokens (visible or not)
    signature: str = ""
    text_pieces: list[str] = field(default_factory=list)
    stop_reason: str | None = "end_turn"
    stop_sequence: str | None = None
    stop_details: dict[str, Any] | None = None
    # `input_transformations` (thinking blocks the checks dropped), sent when the binding beta is on.
    transformations: list[dict[str, str]] | None = None
    # On-demand compaction: the compaction block is the whole reply (its usage is an iteration).
    compaction: dict[str, str] | None = None
    # Compaction at a threshold: the block that leads the reply, and the compaction's own iteration.
    leading_compaction: dict[str, str] | None = None
    compaction_iteration: dict[str, int] | None = None
    # Web search / web fetch (server_tools.py): the blocks before the text, their counters.
    web: server_tools.WebTurn | None = None
    # Set once the whole answer was written (the Admin API's reports count only those calls).
    answered: bool = False

    @property
    def web_blocks(self) -> list[dict[str, Any]]:
        """The server tool blocks and cited text blocks that come before the text."""
        return self.web.blocks if self.web is not None else []

    @property
    def web_tool_uses(self) -> int:
        """How many server tools ran in this reply."""
        return sum(block["type"] == "server_tool_use" for block in self.web_blocks)

    def web_events(self, first_index: int) -> list[tuple[str, str, int]]:
        """The streamed events of :attr:`web_blocks` (see ``server_tools.stream_events``)."""
        return server_tools.stream_events(self.web_blocks, first_index)

    @property
    def has_text_block(self) -> bool:
        """Whether the reply ends with a plain text block (a reply always has some content)."""
        return self.compaction is None and bool(self.text_pieces or not (self.thinking or self.web_blocks))

    @property
    def output_tokens(self) -> int:
        """Billed output tokens: thinking, server tool inputs and cited text, plus text."""
        web = self.web.output_tokens if self.web is not None else 0
        return self.thinking_tokens + web + len(self.text_pieces)

    @property
    def text(self) -> str:
        """The full text of the reply."""
        return "".join(self.text_pieces)

    def compaction_usage(self) -> dict[str, Any]:
        """A compaction call's usage: zero at the top level, the call itself in ``iterations``."""
        u = self.usage_in
        return {
            "input_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 0,
            "iterations": [
                {
                    "type": "compaction",
                    "input_tokens": u.input_tokens,
                    "cache_creation_input_tokens": u.cache_creation,
                    "cache_read_input_tokens": u.cache_read,
                    "output_tokens": self.output_tokens,
                }
            ],
            "service_tier": "standard",
        }

    def iterations(self, output_tokens: int | None = None) -> list[dict[str, Any]]:
        """A reply after a compaction at a threshold: the compaction's sampling, then the message's (the
        top-level counts are the message's only)."""
        u = self.usage_in
        return [
            dict(self.compaction_iteration or {}),
            {
                "type": "message",
                "input_tokens": u.input_tokens,
                "cache_creation_input_tokens": u.cache_creation,
                "cache_read_input_tokens": u.cache_read,
                "output_tokens": self.output_tokens if output_tokens is None else output_tokens,
            },
        ]

    def start_usage(self) -> dict[str, Any]:
        """The usage object of ``message_start`` (output_tokens is a placeholder 1, like the real API)."""
        if self.compaction is not None:
            return self.compaction_usage()
        u = self.usage_in
        return {
            "input_tokens": u.input_tokens,
            "cache_creation_input_tokens": u.cache_creation,
            "cache_read_input_tokens": u.cache_read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": u.created_5m,
                "ephemeral_1h_input_tokens": u.created_1h,
            },
            "output_tokens": 1,
            "service_tier": "standard",
            "inference_geo": "global",
        }

    def final_usage(
        self, output_tokens: int | None = None, thinking_tokens: int | None = None
    ) -> dict[str, Any]:
        """The cumulative usage for ``message_delta`` (and, with start fields, the JSON reply)."""
        if self.compaction is not None:
            return self.compaction_usage()
        u = self.usage_in
        return {
            "input_tokens": u.input_tokens,
            "cache_creation_input_tokens": u.cache_creation,
            "cache_read_input_tokens": u.cache_read,
            "output_tokens": self.output_tokens if output_tokens is None else output_tokens,
            "output_tokens_details": {
                "thinking_tokens": self.thinking_tokens if thinking_tokens is None else thinking_tokens
            },
            **(
                {"iterations": self.iterations(output_tokens)}
                if self.compaction_iteration is not None
                else {}
            ),
            **({"server_tool_use": self.web.usage} if self.web is not None else {}),
        }

    def message_json(self, msg_id: str) -> dict[str, Any]:
        """The complete non-streaming Message object."""
        content: list[dict[str, Any]] = []
        if self.leading_compaction is not None:
            content.append(dict(self.leading_compaction))
        if self.compaction is not None:
            content.append(dict(self.compaction))
        elif self.thinking:
            content.append(
                {"type": "thinking", "thinking": "".join(self.thinking_pieces), "signature": self.signature}
            )
        content += [dict(block) for block in self.web_blocks]
        if self.has_text_block:
            content.append({"type": "text", "text": self.text})
        if self.compaction is not None:
            usage = self.compaction_usage()
        else:
            usage = self.start_usage()
            usage["output_tokens"] = self.output_tokens
            usage["output_tokens_details"] = {"thinking_tokens": self.thinking_tokens}
            if self.compaction_iteration is not None:
                usage["iterations"] = self.iterations()
            if self.web is not None:
                usage["server_tool_use"] = self.web.usage
        extra = {} if self.transformations is None else {"input_transformations": self.transformations}
        return {
            **extra,
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.stop_reason,
            "stop_sequence": self.stop_sequence,
            "stop_details": self.stop_details,
            "usage": usage,
        }


def message_text(msg: dict[str, Any]) -> str:
    """All text of a message (string content or its text blocks)."""
    content = msg.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(
        b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text"
    )


def _last_user_blocks(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for msg in reversed(messages):
        if msg.get("role") == "user":
            content = msg.get("content")
            return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
    return []


def last_user_controls(body: dict[str, Any]) -> str | None:
    """The magic-word control string of the last user message, if any."""
    for msg in reversed(body.get("messages") or []):
        if isinstance(msg, dict) and msg.get("role") == "user":
            return extract_magic(message_text(msg))[1]
    return None


def request_seed(body: dict[str, Any]) -> int:
    """A stable seed from the request's meaning (model, system, texts) with magic words removed.

    Speed/fault controls therefore never change what the reply says.
    """
    system = body.get("system")
    sys_text = system if isinstance(system, str) else message_text({"content": system or []})
    turns = [(m.get("role"), extract_magic(message_text(m))[0]) for m in body.get("messages") or []]
    raw = json.dumps([body.get("model"), sys_text, turns], ensure_ascii=False, sort_keys=True)
    return int.from_bytes(hashlib.sha256(raw.encode()).digest()[:8], "big")


REFUSAL_TEXT = "I can't help with that request."
REFUSAL_DETAILS = {
    "type": "refusal",
    "category": "cyber",
    "explanation": "The offline Claude was asked to refuse (control refuse=1).",
}


def plan_reply(
    body: dict[str, Any],
    usage_in: CacheResult,
    reply_tokens: int | None,
    *,
    thinks_by_default: bool = False,
    default_effort: str = "high",
    refuse: bool = False,
    room: int | None = None,
    binding: Binding | None = None,
    show_transformations: bool = False,
    web_controls: Any = None,
) -> ReplyPlan:
    """Build the reply plan for a validated body.

    ``web_controls``: the request's controls, read when web search or web fetch is offered.
    ``thinks_by_default``: the model thinks (adaptive, display omitted) when the body names no
    ``thinking``; ``output_config.effort`` (else ``default_effort``) sets how long it thinks. ``refuse``: stop with ``refusal``. ``room``: tokens left in the context window after
    the prompt; output that would pass it stops with ``model_context_window_exceeded``.
    """
    seed = request_seed(body)
    messages = body["messages"]
    if binding is None:
        binding = Binding(state=chain_start(body), previous=b"\x00" * 8)
    if body.get("compaction") is not None:
        return plan_compaction(body, usage_in, binding)
    users = [extract_magic(message_text(m))[0] for m in messages if m.get("role") == "user"]
    user_text = users[-1] if users else ""
    previous = users[-2] if len(users) > 1 else None
    system = body.get("system")
    sys_text = system if isinstance(system, str) else message_text({"content": system or []})

    plan = ReplyPlan(model=body["model"], usage_in=usage_in)
    if show_transformations:
        plan.transformations = list(binding.transformations)
    max_tokens: int = body["max_tokens"]
    budget = max_tokens
    window_bound = room is not None and room < max_tokens
    if window_bound:
        budget = max(room, 0)

    thinking_cfg = body.get("thinking") or ({"type": "adaptive"} if thinks_by_default else {})
    if thinking_cfg.get("type") in ("enabled", "adaptive"):
        plan.thinking = True
        plan.thinking_visible = thinking_cfg.get("display") == "summarized"
        wants_code = bool(replies._CODE_WORDS.search(user_text))
        effort = (body.get("output_config") or {}).get("effort") or default_effort
        think = replies.thinking_text(user_text, seed=seed, has_code=wants_code, effort=effort)
        pieces = split_pieces(think)
        if thinking_cfg.get("type") == "enabled":
            pieces = pieces[: thinking_cfg.get("budget_tokens", len(pieces))]
        pieces = pieces[:budget]
        plan.thinking_tokens = len(pieces)
        think = "".join(pieces)
        if plan.thinking_visible:
            plan.thinking_pieces = pieces
        # It signs the block as sent (its text, or "" when the display is omitted), bound to the
        # request's prefix and to the thinking block before it, so that block sent back unmodified
        # after the same history checks out, and after a changed one does not.
        plan.signature = sign(
            think if plan.thinking_visible else "",
            model=body["model"],
            prefix=new_block_prefix(binding),
            previous=binding.previous,
        )
        budget -= plan.thinking_tokens

    text = replies.build_reply(user_text, seed=seed, previous_user_text=previous, context=sys_text)
    received = media.describe(_last_user_blocks(messages))
    if received:
        text = f"{received}\n\n{text}"
    if refuse:
        text, reply_tokens = REFUSAL_TEXT, None
    if reply_tokens is not None:
        need = max(0, reply_tokens - count_tokens(text))
        extra = replies.padding_text(user_text, seed=seed, min_tokens=need + 1) if need else ""
        pieces = replies.fit_to_tokens(text, extra, reply_tokens)
    else:
        pieces = split_pieces(text)

    if len(pieces) > budget:
        pieces = pieces[: max(budget, 0)]
        plan.stop_reason = "model_context_window_exceeded" if window_bound else "max_tokens"
    elif refuse:
        plan.stop_reason = "refusal"
        plan.stop_details = dict(REFUSAL_DETAILS)
    stops = body.get("stop_sequences") or []
    if stops:
        full = "".join(pieces)
        hits = [(full.find(s), s) for s in stops if s in full]
        if hits:
            pos, seq = min(hits)
            pieces = split_pieces(full[:pos]) if pos > 0 else []
            plan.stop_reason = "stop_sequence"
            plan.stop_sequence = seq
    plan.text_pieces = pieces
    if web_controls is not None:
        _add_web(plan, body, user_text, web_controls)
    return plan


def _add_web(plan: ReplyPlan, body: dict[str, Any], user_text: str, controls: Any) -> None:
    """Searches and fetches before the text (their results are read: input tokens), or a pause."""
    web = server_tools.plan_web(body, user_text, controls)
    if web is None:
        return
    plan.web = web
    # The web part comes first and shares max_tokens with the thinking and the text after it.
    budget = body["max_tokens"] - plan.thinking_tokens
    trimmed = web.trim_to(budget)
    room = max(budget - web.output_tokens, 0)
    if web.paused and not trimmed:
        plan.text_pieces = []
        plan.stop_reason, plan.stop_sequence, plan.stop_details = "pause_turn", None, None
    elif trimmed or len(plan.text_pieces) > room:
        plan.text_pieces = plan.text_pieces[:room]
        plan.stop_reason, plan.stop_sequence, plan.stop_details = "max_tokens", None, None
    u = plan.usage_in
    plan.usage_in = replace(u, input_tokens=u.input_tokens + web.input_tokens)


SUMMARY_QUOTES = 12


def plan_compaction(body: dict[str, Any], usage_in: CacheResult, binding: Binding) -> ReplyPlan:
    """On-demand compaction: a deterministic summary of the request's messages, as one compaction
    block signed with where they ended (the turns kept after it stay bound), stop_reason "compaction"."""
    earlier = ""
    quotes: list[str] = []
    for message in body["messages"]:
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        if blocks and isinstance(blocks[0], dict) and blocks[0].get("type") == "compaction":
            earlier = str(blocks[0].get("content") or "").split("\n", 1)[0]
        if message.get("role") == "user":
            text = extract_magic(message_text(message))[0].strip()
            if text:
                quotes.append(replies.quote_of(text, 10))
    lines = ["Summary of the earlier conversation (written by the offline Claude)."]
    if earlier:
        lines.append(f"Before that: {earlier}")
    shown = quotes[-SUMMARY_QUOTES:]
    if len(quotes) > len(shown):
        lines.append(f"The user asked {len(quotes) - len(shown)} earlier question(s) on related points.")
    lines += [f"- The user asked: “{quote}”, and Claude answered it." for quote in shown]
    summary = "\n".join(lines)
    changes = tool_changes.compaction_changes(body)  # the tool set at the end of what it summarises
    plan = ReplyPlan(model=body["model"], usage_in=usage_in, stop_reason="compaction")
    plan.text_pieces = split_pieces(summary)  # counted as the call's output
    plan.compaction = {
        "type": "compaction",
        "content": summary,
        "signature": sign_compaction(
            summary, state=binding.state, start=chain_start(body), tool_changes=changes
        ),
        "tool_changes": changes,
    }
    return plan


def plan_threshold_compaction(
    body: dict[str, Any],
    usage_in: CacheResult,
    binding: Binding,
    *,
    pause: bool,
    system_tokens: int,
    **reply_options: Any,
) -> ReplyPlan:
    """Compaction at a threshold: the prompt passed the trigger, so Claude first summarises everything
    (one compaction block, leading the reply), then answers from the summary (or stops there with
    stop_reason "compaction" when the edit asks to pause). The compaction is an iteration of its own in
    the usage; the top-level counts are the answer's."""
    summary = plan_compaction(body, usage_in, binding)
    iteration = {
        "type": "compaction",
        "input_tokens": usage_in.input_tokens + usage_in.cache_read + usage_in.cache_creation,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": summary.output_tokens,
    }
    if pause:
        summary.usage_in = usage_in
        return summary
    answered_from = CacheResult(system_tokens + summary.output_tokens, 0, 0, 0)
    plan = plan_reply(body, answered_from, binding=binding, **reply_options)
    plan.leading_compaction = summary.compaction
    plan.compaction_iteration = iteration
    return plan

"""Turns Claude paused. With server tools the API runs Claude's searches and fetches in a loop of its
own, and may end a long turn early with `stop_reason: "pause_turn"`. The docs' way on: send the
assistant content so far back as it is, as a trailing assistant message (the one place the models
that refuse prefill accept one), with the same request otherwise, and call again; that call returns
only the rest of the turn. The reply goes on doing that, within the same reply and its one budget
hold, up to MAX_CONTINUATIONS times.

Each call is billed on its own ledger row. The rows of the paused calls are written with the reply's
end, in its transaction, so the reply's hold stays open until every call it made is on the ledger.
The hold covers the first call's prompt and `max_tokens` of output (and the tools' `max_uses`, which
count across the whole turn): every call after a pause is paid from that output allowance, its prompt
included, so `continuation_max_tokens` gives the next call only what is left of it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from django.utils import timezone

from billing.models import ModelPrice
from billing.usage import Usage

from .claude import ReplyRequest, ReplyStream
from .history import TURN_OVERHEAD_TOKENS

MAX_CONTINUATIONS = 5


@dataclass(frozen=True)
class PausedCall:
    """One call of a reply that ended with pause_turn (the next call continued it): its ledger row's
    id, request id and usage."""

    attempt_id: uuid.UUID
    request_id: str
    usage: Usage


def usage_total(usages: Iterable[Usage]) -> Usage:
    """The counts of several calls added up (their labels are the last one's)."""
    total = Usage()
    for usage in usages:
        total = Usage(
            input_tokens=total.input_tokens + usage.input_tokens,
            output_tokens=total.output_tokens + usage.output_tokens,
            cache_write_5m_tokens=total.cache_write_5m_tokens + usage.cache_write_5m_tokens,
            cache_write_1h_tokens=total.cache_write_1h_tokens + usage.cache_write_1h_tokens,
            cache_read_tokens=total.cache_read_tokens + usage.cache_read_tokens,
            thinking_tokens=total.thinking_tokens + usage.thinking_tokens,
            service_tier=usage.service_tier,
            inference_geo=usage.inference_geo,
            speed=usage.speed,
            web_search_requests=total.web_search_requests + usage.web_search_requests,
            web_fetch_requests=total.web_fetch_requests + usage.web_fetch_requests,
        )
    return total


@dataclass
class PausedTurn:
    """The calls of a reply's turn that Claude paused so far, and what the next call sends back."""

    # The request's messages before the turn (the continuation appends the turn's content to them),
    # and the `max_tokens` its first call was granted: the output every call of the turn shares.
    messages: list[dict]
    max_tokens: int
    # The turn's content so far, every paused call's blocks as the API returned them.
    blocks: list[dict] = field(default_factory=list)
    calls: list[PausedCall] = field(default_factory=list)
    # Their thinking: the signed blocks (kept with the reply's) and how long it took.
    thinking: list[dict] = field(default_factory=list)
    thinking_ms: int = 0

    def add(self, stream: ReplyStream, text: str) -> None:
        """Keep a paused call (`text`: the text it wrote) to send it back and bill it."""
        self.blocks += stream.content(text, paused=True)
        self.calls.append(PausedCall(uuid.uuid4(), stream.request_id, stream.billable_usage()))
        self.thinking += [block for block in stream.thinking_blocks if block["signature"]]
        self.thinking_ms += stream.thinking_elapsed_ms()

    def request(self, request: ReplyRequest, max_tokens: int) -> ReplyRequest:
        """The call that continues the turn: the same request, the turn so far as Claude's last message."""
        turn = {"role": "assistant", "content": list(self.blocks)}
        return replace(request, messages=[*self.messages, turn], max_tokens=max_tokens)

    def usage(self) -> Usage:
        return usage_total(call.usage for call in self.calls)


def continuation_max_tokens(
    *, model: str, max_tokens: int, first_prompt: Usage | None, calls: list[Usage]
) -> int:
    """`max_tokens` of the call that continues a paused turn, so that every call of the reply together
    stays within its one hold (see the module's docstring): what is left of the `max_tokens` output
    allowance, less the worst case of the next call's prompt (the last call's prompt and output, sent
    back, at the dearest prompt rate). 0 when nothing is left. `first_prompt` is the first call's prompt
    as message_start reported it (the hold was lowered to it); None when it never came."""
    tokens_left = max_tokens - sum(usage.output_tokens for usage in calls)
    price = ModelPrice.objects.in_effect(model, timezone.now())
    if price is None or tokens_left <= 0:
        return max(tokens_left, 0)
    first, _banded = price.rates_for(
        calls[0].prompt_tokens if first_prompt is None else first_prompt.prompt_tokens
    )
    allowance = max_tokens * first.output
    for number, usage in enumerate(calls):
        rates, _banded = price.rates_for(usage.prompt_tokens)
        spent = rates.cost(
            input=usage.input_tokens,
            output=usage.output_tokens,
            cache_write_5m=usage.cache_write_5m_tokens,
            cache_write_1h=usage.cache_write_1h_tokens,
            cache_read=usage.cache_read_tokens,
        )
        if number == 0:  # the first call's prompt, as far as message_start gave it, was held apart
            held = first_prompt or Usage()
            spent -= rates.cost(
                input=held.input_tokens,
                output=0,
                cache_write_5m=held.cache_write_5m_tokens,
                cache_write_1h=held.cache_write_1h_tokens,
                cache_read=held.cache_read_tokens,
            )
        allowance -= spent
    last = calls[-1]
    prompt = last.prompt_tokens + last.output_tokens + TURN_OVERHEAD_TOKENS
    rates, _banded = price.rates_for(prompt)
    allowance -= prompt * rates.max_prompt_rate
    if allowance <= 0:
        return 0
    return tokens_left if rates.output == 0 else min(tokens_left, allowance // rates.output)

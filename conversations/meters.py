"""Reads for the conversation header: its cost so far, what prompt caching saved, and the context in use."""

from __future__ import annotations

from dataclasses import dataclass

from billing.models import UsageRecord

from .catalog import context_window
from .models import Conversation, Message


@dataclass(frozen=True)
class Meter:
    """The header's figures: money in pico-dollars, tokens as the API last reported them."""

    conversation_id: int
    cost: int
    cache_savings: int
    context_tokens: int
    context_window: int

    @property
    def context_percent(self) -> int:
        return min(100, round(100 * self.context_tokens / self.context_window)) if self.context_window else 0


def meter_for(conversation: Conversation) -> Meter:
    """Cost and cache savings of every call in the conversation (every branch, titles included), and
    the tokens the active branch's latest reply used
    (prompt plus output) of the model's window."""
    totals = UsageRecord.objects.for_conversation(conversation.pk).sums("cost", "cache_savings")
    # Only the counts of the latest reply: its text and HTML may be long and are not shown here.
    latest = (
        conversation.messages.active()
        .filter(role=Message.Role.ASSISTANT)
        .exclude(status=Message.Status.STREAMING)
        .order_by("-pk")
        .values_list(
            "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens"
        )
        .first()
    )
    used = sum(latest) if latest else 0
    return Meter(
        conversation_id=conversation.pk,
        cost=totals["cost"],
        cache_savings=totals["cache_savings"],
        context_tokens=used,
        context_window=context_window(conversation.model),
    )

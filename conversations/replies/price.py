"""The price of sending the draft now, shown under the message box before anything is sent.

Nothing here makes a billed call. The prompt the draft would send (the conversation's history as the
next reply would send it, plus the draft) is counted exactly by the API's count_tokens (free),
once per distinct prompt: the count is kept in a small per-process table, so retyping a draft or a
repeated request costs no second count. Attachments count at their estimate (the one the budget hold
and the chip use), so their bytes are not sent to be counted on every pause in typing.

How that prompt would be billed follows from the cache the conversation's earlier calls left: each
reply's call writes one entry for its whole prompt (one rolling breakpoint at its end) with the
lifetime it chose, and a call that reads an entry renews it. Replaying the branch's calls (their start
times, prompt sizes and the lifetimes they wrote) tells which entry is still alive now: its tokens
are read (a tenth of the input rate), the rest of the prompt is written at the lifetime this call
would choose. Output is unknown before the reply: it is assumed to be as long as the median reply of
this conversation (else of the person's latest replies, else TYPICAL_REPLY_TOKENS), thinking
included, the way the ledger counts it.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core import signing
from django.utils import timezone

from billing.models import ModelPrice, Rates
from billing.money import format_money, format_money_together
from billing.services import HoldPreview, budget_status, hold_preview
from billing.usage import NO_SERVER_TOOLS, ServerToolCaps
from teams.access import allowed_models, team_of

from ..catalog import effort_for, model_info, reply_max_tokens
from ..inputs import model_choice
from ..models import Attachment, Conversation, Message
from ..web import web_tools_for
from . import history
from .caching import choose_cache_ttl
from .claude import ReplyRequest, count_prompt_tokens
from .context import prompt_bytes_bound

#: Output tokens assumed for a reply when neither the conversation nor its owner has one to go by.
TYPICAL_REPLY_TOKENS = 400
#: Replies whose length the assumption is the median of.
RECENT_REPLIES = 20
#: Earlier calls replayed against the cache (an entry renewed by reads may outlive many later calls).
CALLS_REPLAYED = 50
#: Another model is named when it would cost at most this share (percent) of the chosen one.
CHEAPER_PERCENT = 60
TTL_SECONDS = {"5m": 300, "1h": 3600}
#: How long the estimate a page was shown stays good for the Send that follows it.
ESTIMATE_MAX_AGE = 3600
_SALT = "conversations.price-estimate"


# --- The arithmetic (pure, exact) ----------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One earlier reply call, as the cache saw it: when it started, its prompt tokens, the lifetime
    of the entry it wrote ("" for none)."""

    at: datetime
    prompt_tokens: int
    wrote: str


@dataclass(frozen=True)
class CacheState:
    """The cached prefix a call made now would read (tokens), and whether the latest call's entry has
    expired (a prefix was cached and is read no more)."""

    read: int
    expired: bool


def cache_state(calls: list[Call], *, now: datetime, prompt_tokens: int) -> CacheState:
    """Replay `calls` (one model's, oldest first; each prompt extends the one before) against the
    cache: each reads the longest live entry (renewing it) and writes one for its whole prompt."""
    entries: list[list] = []  # [prompt tokens, expiry, lifetime in seconds]
    for call in calls:
        _read_and_renew(entries, call.at, call.prompt_tokens)
        if call.wrote:
            seconds = TTL_SECONDS[call.wrote]
            entries.append([call.prompt_tokens, call.at + timedelta(seconds=seconds), seconds])
    alive = [e for e in entries if e[1] > now and e[0] <= prompt_tokens]
    read = max((e[0] for e in alive), default=0)
    latest = calls[-1].prompt_tokens if calls and calls[-1].wrote else 0
    return CacheState(read=read, expired=bool(latest) and read < latest)


def _read_and_renew(entries: list[list], at: datetime, prompt_tokens: int) -> None:
    alive = [e for e in entries if e[1] > at and e[0] <= prompt_tokens]
    if alive:
        best = max(alive, key=lambda e: e[0])
        best[1] = at + timedelta(seconds=best[2])


@dataclass(frozen=True)
class Split:
    """How a prompt's tokens would be billed, and the output assumed."""

    read: int
    written: int
    ttl: str
    uncached: int
    output: int

    def cost(self, rates: Rates) -> int:
        """Exact pUSD at `rates`."""
        return rates.cost(
            input=self.uncached,
            output=self.output,
            cache_write_5m=self.written if self.ttl == "5m" else 0,
            cache_write_1h=self.written if self.ttl == "1h" else 0,
            cache_read=self.read,
        )


def split(*, prompt_tokens: int, read: int, ttl: str, output: int) -> Split:
    """`prompt_tokens` of which `read` come from the cache; the rest written for `ttl` (one breakpoint
    at the end of the prompt), or plain input when the call writes no cache (`ttl` "")."""
    read = min(read, prompt_tokens) if ttl else 0
    rest = prompt_tokens - read
    return Split(read, rest if ttl else 0, ttl, 0 if ttl else rest, output)


def price_of(model: str, tokens: Split, prompt_tokens: int, at: datetime) -> int | None:
    """Exact pUSD of `tokens` at the price of `model` in force at `at` (the long-prompt band where the
    prompt reaches it); None for a model without a price."""
    price = ModelPrice.objects.in_effect(model, at)
    if price is None:
        return None
    rates, _banded = price.rates_for(prompt_tokens)
    return tokens.cost(rates)


def assumed_output(lengths: list[int]) -> int:
    """The output tokens assumed: the median of `lengths` (earlier replies' output), else the typical."""
    lengths = [n for n in lengths if n > 0]
    return int(statistics.median(lengths)) if lengths else TYPICAL_REPLY_TOKENS


def model_label(model: str) -> str:
    """'claude-sonnet-5-5' → 'Sonnet 5.5' (an unknown shape is shown as it is)."""
    parts = model.removeprefix("claude-").split("-")
    name = [p for p in parts if not p.isdigit()]
    version = [p for p in parts if p.isdigit()]
    if not name or not version:
        return model
    return f"{' '.join(n.capitalize() for n in name)} {'.'.join(version)}"


# --- Counting (count_tokens, at most once per distinct prompt) -------------------------------------

_COUNTS: OrderedDict[str, int] = OrderedDict()
_COUNTS_KEPT = 512


def _prompt_key(request: ReplyRequest) -> str:
    body = json.dumps(
        [
            request.model,
            request.system,
            request.messages,
            request.summarize_thinking,
            request.effort,
            request.tools,
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


async def prompt_tokens(request: ReplyRequest) -> int:
    """count_tokens of `request`'s prompt, remembered per prompt (a repeat is not counted again)."""
    key = _prompt_key(request)
    if key in _COUNTS:
        _COUNTS.move_to_end(key)
        return _COUNTS[key]
    tokens = await count_prompt_tokens(request)
    _COUNTS[key] = tokens
    while len(_COUNTS) > _COUNTS_KEPT:
        _COUNTS.popitem(last=False)
    return tokens


# --- The draft's price ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Draft:
    """What pricing a draft needs from the database (read once, in the database thread)."""

    request: ReplyRequest
    media_tokens: int
    bound: int
    pauses: list[float]
    calls: dict[str, list[Call]]
    output: int
    models: list[str]
    owner: AbstractBaseUser
    text_hash: str
    # The web searches and fetches the reply may make (its hold covers them at their price).
    tool_caps: ServerToolCaps = NO_SERVER_TOOLS


@dataclass(frozen=True)
class Estimate:
    """The price of sending the draft now, and the words of the line under the box."""

    cost: int | None
    prompt_tokens: int
    tokens: Split
    model: str
    expired: bool
    cheaper: tuple[str, int] | None
    hold: HoldPreview | None
    near_budget: bool
    token: str

    @property
    def cached_percent(self) -> int:
        return self.tokens.read * 100 // self.prompt_tokens if self.prompt_tokens else 0


# Drafts priced per person in the last minute, in this process: each may need a count_tokens call, and
# those share the organisation's rate limit with everyone's Sends.
_asks: dict[int, deque[float]] = {}


def ask_allowed(user_id: int) -> bool:
    """Whether `user_id` may have another draft priced now (at most CHAT_PRICE_LINE_PER_MINUTE a minute,
    0: no limit); counts this one when it may."""
    limit = settings.CHAT_PRICE_LINE_PER_MINUTE
    if limit <= 0:
        return True
    now = time.monotonic()
    recent = _asks.setdefault(user_id, deque())
    while recent and recent[0] <= now - 60:
        recent.popleft()
    if len(recent) >= limit:
        return False
    recent.append(now)
    if len(_asks) > 10_000:  # people who stopped typing long ago
        for key in [key for key, times in _asks.items() if not times or times[-1] <= now - 60]:
            del _asks[key]
    return True


def text_hash(text: str) -> str:
    """The draft's identity, the same for the text priced and the text sent (as Send cleans it)."""
    return hashlib.sha256(text.replace("\r\n", "\n").strip().encode()).hexdigest()[:32]


def draft_read(conversation: Conversation, text: str, attachment_ids: list[int]) -> Draft:
    """The request the draft would send and what its price depends on. Sync: the database thread."""
    # The model the reply would go out on: the conversation's while the owner's team allows it.
    model = model_choice(conversation.owner_id).allowed_or_default(conversation.model)
    after_all = 2**62  # a reply placed after every message stored: the history a Send would send
    # The draft as the new user turn; files count at their estimate, so a draft of files alone is
    # counted with a one-character text in their place (the API refuses an empty text block).
    turn = history.Turn(Message.Role.USER, text.strip() or ".", after_all, after_all)
    sent = history.history_for(conversation, before=Message(pk=after_all), draft=turn)
    pending = list(
        Attachment.objects.filter(
            owner_id=conversation.owner_id,
            conversation=conversation,
            message__isnull=True,
            pk__in=attachment_ids,
        ).values_list("tokens", flat=True)
    )
    # As reply_context builds a reply's request (thinking, effort and tools change what is counted).
    web = web_tools_for(conversation)
    request = ReplyRequest(
        model=model,
        messages=sent.messages,
        max_tokens=1,
        system=sent.system,
        summarize_thinking=model_info(model).thinks_by_default,
        effort=effort_for(model, conversation.effort),
        drop_mismatched_thinking=conversation.thinking_drop_mismatched,
        tools=web.tools,
    )
    media = sum(pending)
    pauses = list(sent.pauses)
    replies = list(
        conversation.messages.active()
        .filter(role=Message.Role.ASSISTANT, status__in=history.FINAL_USAGE)
        .order_by("-pk")
        .only(
            "model", "created_at", "updated_at", "input_tokens", "output_tokens",
            "cache_creation_input_tokens", "cache_creation_1h_input_tokens", "cache_read_input_tokens",
        )[:CALLS_REPLAYED]
    )  # fmt: skip
    replies.reverse()
    if replies:
        pauses.append((timezone.now() - replies[-1].updated_at).total_seconds())
    calls: dict[str, list[Call]] = {}
    for reply in replies:
        if reply.prompt_tokens:
            wrote = (
                "1h"
                if reply.cache_creation_1h_input_tokens
                else ("5m" if reply.cache_creation_input_tokens else "")
            )
            calls.setdefault(reply.model, []).append(Call(reply.created_at, reply.prompt_tokens, wrote))
    lengths = [r.output_tokens for r in replies[-RECENT_REPLIES:]]
    if not any(lengths):
        lengths = list(
            Message.objects.filter(
                conversation__owner_id=conversation.owner_id,
                role=Message.Role.ASSISTANT,
                status=Message.Status.COMPLETE,
            )
            .order_by("-pk")
            .values_list("output_tokens", flat=True)[:RECENT_REPLIES]
        )
    return Draft(
        request=request,
        media_tokens=media,
        bound=prompt_bytes_bound(request) + media,
        pauses=pauses,
        calls=calls,
        output=assumed_output(lengths),
        models=allowed_models(team_of(conversation.owner_id)),
        owner=conversation.owner,
        text_hash=text_hash(text),
        tool_caps=web.caps,
    )


def draft_price(draft: Draft, tokens: int, conversation_id: int) -> Estimate:
    """The estimate for `draft` whose prompt counted `tokens` (attachments excluded). Sync: reads prices
    and the budget in the database thread."""
    now = timezone.now()
    model = draft.request.model
    total = tokens + draft.media_tokens
    ttl = choose_cache_ttl(settings.CHAT_PROMPT_CACHE_TTL, draft.pauses).ttl

    def priced(name: str) -> tuple[int | None, Split, bool]:
        state = cache_state(draft.calls.get(name, []), now=now, prompt_tokens=total)
        tokens_of = split(prompt_tokens=total, read=state.read, ttl=ttl, output=draft.output)
        return price_of(name, tokens_of, total, now), tokens_of, state.expired

    cost, tokens_split, expired = priced(model)
    cheaper = None
    if cost:
        for other in draft.models:
            if other == model:
                continue
            other_cost = priced(other)[0]
            if other_cost is not None and other_cost * 100 <= cost * CHEAPER_PERCENT:
                if cheaper is None or other_cost < cheaper[1]:
                    cheaper = (other, other_cost)
    status = budget_status(draft.owner)
    hold = hold_preview(
        status=status,
        model=model,
        prompt_tokens=draft.bound,
        max_tokens=reply_max_tokens(model),
        cache_ttl=ttl,
        tool_caps=draft.tool_caps,
    )
    near = bool(
        hold.level is not None
        and (hold.refusal or status.state != "ok" or hold.hold > hold.level.available // 2)
    )
    token = ""
    if cost is not None:
        token = signing.dumps(
            {"c": conversation_id, "h": draft.text_hash, "p": cost}, salt=_SALT, compress=True
        )
    return Estimate(cost, total, tokens_split, model, expired, cheaper, hold, near, token)


async def estimate(conversation: Conversation, text: str, attachment_ids: list[int]) -> Estimate:
    """The price of sending `text` (with the owner's pending attachments `attachment_ids`) in
    `conversation` now. Raises ClaudeError when the count fails."""
    draft = await database_sync_to_async(draft_read)(conversation, text, attachment_ids)
    tokens = await prompt_tokens(draft.request)
    return await database_sync_to_async(draft_price)(draft, tokens, conversation.pk)


def estimate_sent(token: object, *, conversation_id: int, text: object) -> int | None:
    """The estimate (pUSD) the page showed for exactly this message in this conversation, from the token
    that came with the Send; None when there is none, or it is forged, stale, or for another draft."""
    if not isinstance(token, str) or not token or not isinstance(text, str):
        return None
    try:
        data = signing.loads(token, salt=_SALT, max_age=ESTIMATE_MAX_AGE)
    except signing.BadSignature:
        return None
    if data.get("c") != conversation_id or data.get("h") != text_hash(text):
        return None
    amount = data.get("p")
    return amount if isinstance(amount, int) and amount >= 0 else None


def shown_estimate(message_pk: int, user_id: int) -> int | None:
    """The estimate kept on the reply `message_pk` of `user_id`'s (for its receipt), or None."""
    return (
        Message.objects.filter(pk=message_pk, conversation__owner_id=user_id)
        .values_list("price_estimate", flat=True)
        .first()
    )


# --- Words ---------------------------------------------------------------------------------------


def line(estimate: Estimate) -> list[str]:
    """The parts of the line under the box ('≈ $0.012', '92% from cache', 'Sonnet 5.5', …)."""
    label = model_label(estimate.model)
    hold = estimate.hold
    if hold is not None and hold.refusal:
        return [hold.refusal]
    if estimate.cost is None:
        return [f"{label} has no price set: this message would be recorded at $0.00"]
    shown = format_money(estimate.cost)
    if not estimate.expired:
        parts = [f"≈ {shown}"]
        if estimate.tokens.read:
            parts.append(f"{estimate.cached_percent}% from cache")
    elif estimate.tokens.read:  # the start of the conversation, kept an hour, is still cached
        parts = [f"the cache expired: ≈ {shown}, this once ({estimate.cached_percent}% still cached)"]
    else:
        parts = [f"the cache expired: ≈ {shown}, this once"]
    parts.append(label)
    if estimate.cheaper is not None:
        other, other_cost = estimate.cheaper
        parts.append(f"{model_label(other)}: ≈ {format_money(other_cost)}")
    if estimate.near_budget and hold is not None and hold.level is not None:
        level = hold.level
        left, most, limit = format_money_together(level.available, hold.hold, level.limit)
        shorter = " (a shorter reply)" if hold.max_tokens < reply_max_tokens(estimate.model) else ""
        return [
            f"{left} left of {WHOSE[level.scope]} {limit} budget: this message may cost at most {most}{shorter}",
            *parts,
        ]
    return parts


WHOSE = {"user": "your", "team": "your team's", "organisation": "the organisation's"}

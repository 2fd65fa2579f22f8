"""The rows of an on-demand compaction call: planning it (what it summarises, its request, its budget
hold) and recording it (its ledger row on the reply's receipt, and the summary kept on the last message
it stands for). The call itself is made by context.py."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from django.db import transaction

from billing.services import spend_reserve, usage_record
from billing.usage import LedgerLabels, Usage

from ..models import Message
from ..web import web_tools_for
from .claude import ReplyRequest
from .history import TURN_OVERHEAD_TOKENS, History, content_size, reply_request_history
from .store import ledger_labels_for

#: The longest summary an on-demand compaction may write.
COMPACTION_MAX_TOKENS = 8_000


@dataclass(frozen=True)
class CompactionJob:
    """A compaction call about to be made for the reply `reply_id`: its request, the last message it
    summarises, and the spend held for it under `hold_id`."""

    reply_id: int
    through: int
    hold_id: int
    attempt_id: uuid.UUID
    request: ReplyRequest
    labels: LedgerLabels


def compaction_start(
    *, reply_id: int, keep_tokens: int, tokens_per_byte: float, request: ReplyRequest, window: int
) -> CompactionJob | None:
    """Plan the compaction a reply's call needs: the newest turns that fit in about `keep_tokens` are kept
    (at least the latest), everything before them is to be summarised, ending with one of Claude's
    turns (so the kept turns, starting with the user's, keep their thinking); the compaction call
    itself fits a window of `window` tokens. Holds the call's spend (raises SpendRefused). None when
    there is nothing before the latest turn to summarise."""
    with transaction.atomic():
        message = Message.objects.select_related("conversation__owner").get(pk=reply_id)
        conversation = message.conversation
        history = reply_request_history(message)
        turns = history.turns
        sizes = [int(content_size(t.content) * tokens_per_byte) + TURN_OVERHEAD_TOKENS for t in turns]
        cuts = [
            c
            for c in range(1, len(turns))
            if turns[c - 1].role == Message.Role.ASSISTANT
            and turns[c].role == Message.Role.USER
            and turns[c].first_pk != turns[c - 1].last_pk
            and turns[c].first_pk < message.pk
        ]
        if not cuts:
            return None
        # The compaction call must fit the window itself: summarise what fits of the older turns now, and
        # the rest in a next round (fit_request asks again), each from the summary before it.
        max_tokens = min(COMPACTION_MAX_TOKENS, window // 4)
        lead = content_size([history.compaction]) + TURN_OVERHEAD_TOKENS if history.compaction else 0
        room = window - max_tokens - int((len(history.system.encode()) + lead) * tokens_per_byte)
        summarisable = [c for c in cuts if sum(sizes[:c]) <= room]
        if not summarisable:
            return None
        fitting = [c for c in summarisable if sum(sizes[c:]) <= keep_tokens]
        cut = fitting[0] if fitting else summarisable[-1]
        through = turns[cut - 1].last_pk
        summarised = History(
            system=history.system,
            turns=turns[:cut],
            changes=[c for c in history.changes if c["after"] < through],
            compaction=history.compaction,
            web_changes=history.web_changes,  # only those reaching a summarised turn are placed
        )
        compaction_request = replace(
            request,
            messages=summarised.messages,
            system=history.system,
            max_tokens=max_tokens,
            stop_sequences=(),
            cache_ttl="",
        )
        prompt_bound = len(history.system.encode()) + sum(
            content_size(m["content"]) + TURN_OVERHEAD_TOKENS for m in summarised.messages
        )
        hold_id = message.parent_id or message.pk
        granted = spend_reserve(
            user=conversation.owner,
            model=message.model,
            prompt_tokens=prompt_bound,
            max_tokens=max_tokens,
            message_id=hold_id,
            cache_ttl="",  # a compaction call writes no cache
            tool_caps=web_tools_for(conversation, message).caps,
        )
        compaction_request = replace(compaction_request, max_tokens=granted)
        labels = ledger_labels_for(conversation, model=message.model)
    return CompactionJob(message.pk, through, hold_id, uuid.uuid4(), compaction_request, labels)


def compaction_finish(
    *, job: CompactionJob, block: dict | None, summary: str, usage: Usage, request_id: str
) -> bool:
    """Record the compaction call's ledger row (purpose "compaction", on the reply's receipt) and, when it
    wrote a summary (`block`), keep it on the last message it summarises: later calls send it in place
    of everything up to there. Returns whether the summary was kept (the message may be gone)."""
    with transaction.atomic():
        usage_record(
            labels=job.labels,
            message_id=job.reply_id,
            hold_id=job.hold_id,
            request_id=request_id,
            usage=usage,
            estimated=False,
            attempt_id=job.attempt_id,
            purpose="compaction",
        )
        if block is None:
            return False
        return bool(
            Message.objects.filter(pk=job.through).update(compaction={"block": block, "summary": summary})
        )

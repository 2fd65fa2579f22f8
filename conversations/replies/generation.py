"""Server-owned generations: one asyncio task per streaming reply, independent of any socket.

A generation streams from Claude, appends deltas to its text, and a flusher publishes what
accumulated at most every CHAT_COALESCE_MS (wider under load, see relay.FramePace) as one htmx fragment to
the conversation's group.
One checkpointer per process saves the partial text of all streaming replies at most every
CHAT_CHECKPOINT_SECONDS; the final state and the ledger row are written once, at the end.
Each generation also listens on its own channel, joined to the conversation's control group
(see control.py), for Stop and for snapshot requests from sockets that (re)connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
from dataclasses import dataclass, replace

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from billing.services import budget_status
from billing.usage import Usage

from .. import fragments
from ..control import SNAPSHOT, STOP, control_group
from ..meters import meter_for
from ..models import Conversation, Message, conversation_group
from ..rendering import MarkdownStream
from ..sources import WebDisplay
from . import leases, store, tasks, titles
from .blocks import sendable
from .claude import (
    NOT_CONFIGURED,
    RETRY_REASONS,
    TEXT,
    THINKING,
    ClaudeError,
    ReplyRequest,
    ReplyStream,
    WebStep,
    count_prompt_tokens,
)
from .context import fit_request, prompt_bytes_bound
from .pause import MAX_CONTINUATIONS, PausedTurn, continuation_max_tokens, usage_total
from .relay import MEMBERS_MAX_AGE, frame_pace, layer_outage, relay
from .request import ReplyContext, load_context

logger = logging.getLogger(__name__)

# The generation tasks of this process, by assistant message id.
#: The server's tasks the drain waits for (see tasks.py).
DRAINED = ("generation", "title")
# Set once this process is shutting down: it starts no new generation.
_draining = False


# A stream whose events are already buffered is read without a pause in between: it hands the event loop
# back at least this often (seconds).
YIELD_EVERY = 0.005


@dataclass(frozen=True)
class Outcome:
    """The visible end state of a reply (Message.Status), with its stop reason or error line."""

    status: str
    stop_reason: str = ""
    stop_sequence: str = ""
    error: str = ""


@database_sync_to_async
def _after_reply(conversation_id: int) -> str:
    """What a finished reply changes besides itself: the header's meter, the owner's budget banner and
    the send button (enabled, unless that reply used up the budget)."""
    conversation = Conversation.objects.select_related("owner").get(pk=conversation_id)
    status = budget_status(conversation.owner)
    return (
        fragments.send_button(busy=False, budget_exhausted=status.state == "exhausted")
        + fragments.meter(meter_for(conversation))
        + fragments.budget(conversation.owner, status)
    )


class Generation:
    """One reply being written: its stream from Claude, its text so far and its control channel."""

    def __init__(self, context: ReplyContext, *, control_channel: str) -> None:
        self.message_id = context.message_id
        self.attempt_id = context.attempt_id
        self.conversation_id = context.conversation_id
        self.group = conversation_group(context.conversation_id)
        self.labels = context.labels
        self.context_window = context.context_window
        self.untitled = context.untitled
        self.model = context.request.model
        self._hold_tasks: list[asyncio.Task] = []
        # The web: the reply's steps, sources and citations so far, and the turn Claude paused, if it did.
        self.web = context.continued_web or WebDisplay()
        self._paused: PausedTurn | None = None
        self._first_prompt: Usage | None = None  # the first call's prompt counts (message_start)
        # Where the current call's text begins in the reply's text.
        self._call_start = len(context.continued)
        self.stream = self._new_stream(context.request)
        self.layer = get_channel_layer()
        self.control_channel = control_channel
        self.stop_requested = False
        # Text already published to sockets (a continued reply's earlier text is on the page already).
        self._sent: list[str] = [context.continued] if context.continued else []
        # The published text rendered incrementally: each frame carries only what changed.
        self.markdown = MarkdownStream(context.continued)
        self._pending: list[str] = []  # received, not yet published
        # Thinking, published the same way into the section above the answer (see _flush).
        self._earlier_thinking = context.continued_thinking or store.ReplyThinking()
        self._sent_thinking: list[str] = [self._earlier_thinking.text] if self._earlier_thinking.text else []
        self._pending_thinking: list[str] = []
        self._thinking_announced = False  # whether pages were told "Thought for N s"
        self._finishing = False
        self._send_lock = asyncio.Lock()
        self._has_pending = asyncio.Event()
        self._consume_task: asyncio.Task | None = None

    def _new_stream(self, request: ReplyRequest) -> ReplyStream:
        """A stream for one API call of this reply: once its prompt's counts are known, the budget hold
        shrinks to them (see billing.services.hold_prompt_known). A call continuing a paused turn leaves
        the hold as it is: it covers every call of the turn (pause.py)."""
        return ReplyStream(request, on_start=self._prompt_known if self._paused is None else None)

    def _prompt_known(self, usage: Usage) -> None:
        self._first_prompt = self._first_prompt or usage
        self._hold_tasks.append(
            asyncio.create_task(
                database_sync_to_async(store.reply_prompt_known)(
                    message_id=self.message_id, model=self.model, usage=usage
                )
            )
        )

    def sent_text(self) -> str:
        return "".join(self._sent)

    def text(self) -> str:
        return "".join(self._sent) + "".join(self._pending)

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen())
        flusher = asyncio.create_task(self._flush_periodically())
        self._consume_task = asyncio.create_task(self._consume())
        if self.stop_requested:  # Stop arrived before the stream was even asked for
            self._consume_task.cancel()
        try:
            await self._consume_task
            outcome = self._outcome_complete()
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self.stop_requested and not (current and current.cancelling()):
                outcome = Outcome(Message.Status.STOPPED, stop_reason="stopped_by_user")
            else:  # this task itself was cancelled: the server is shutting down
                outcome = Outcome(
                    Message.Status.INTERRUPTED, error="The server stopped while writing this reply."
                )
        except ClaudeError as exc:
            outcome = Outcome(
                Message.Status.ERROR,
                error=NOT_CONFIGURED if exc.kind == "not_configured" else exc.user_message,
            )
        except Exception:
            logger.exception("Generation of message %s failed", self.message_id)
            outcome = Outcome(Message.Status.ERROR, error="Something went wrong on the server. Please retry.")
        finally:
            # Let the flusher finish what it is sending (cancelling it mid-send would lose a frame on
            # Redis), then stop it; the control listener can simply go.
            self._finishing = True
            self._has_pending.set()
            await flusher
            listener.cancel()
            try:
                await self.layer.group_discard(control_group(self.conversation_id), self.control_channel)
            except Exception:  # the channel layer is unreachable (Redis restarting): the end comes first
                logger.warning(
                    "Reply %s could not leave its control group (channel layer unreachable)", self.message_id
                )
            relay.forget(self.group)
        try:
            await asyncio.shield(self._finish(outcome))
        except Exception:
            logger.exception("Could not save the end of reply %s", self.message_id)
            try:
                await database_sync_to_async(store.reply_mark_failed)(
                    message_id=self.message_id, text=self.text()
                )
            except Exception:
                logger.exception(
                    "Could not mark reply %s as failed either; its lease will expire", self.message_id
                )
        finally:
            leases.heartbeat.release(self.message_id)

    def _outcome_complete(self) -> Outcome:
        stop_reason = self.stream.stop_reason
        if stop_reason in ("max_tokens", "model_context_window_exceeded", "pause_turn"):
            # pause_turn here: Claude paused again and this reply could not go on (pause.py).
            return Outcome(Message.Status.CUT_OFF, stop_reason=stop_reason)
        if stop_reason == "refusal":
            # Claude's own explanation (stop_details), shown with the refusal, when it gave one.
            return Outcome(
                Message.Status.REFUSED, stop_reason=stop_reason, error=self.stream.refusal_explanation
            )
        if stop_reason == "stop_sequence":
            return Outcome(
                Message.Status.COMPLETE, stop_reason=stop_reason, stop_sequence=self.stream.stop_sequence
            )
        if stop_reason is None:
            # Clean end without message_delta: the reply is incomplete, its text kept.
            return Outcome(Message.Status.ERROR, error="Claude's reply ended early.")
        return Outcome(Message.Status.COMPLETE, stop_reason=stop_reason)

    async def _consume(self) -> None:
        await self._fit()
        attempt, waited, refitted = 1, 0.0, False
        loop = asyncio.get_running_loop()
        while True:
            try:
                next_yield = loop.time() + YIELD_EVERY
                async for kind, delta in self.stream.deltas():
                    if kind == TEXT:  # first: by far the most frequent, it pays for no other check
                        first_words = not self._sent and not self._pending
                        self._pending.append(delta)
                        if first_words:
                            # The answer's first words go out at once, like the first delta of all (the
                            # flusher may be waiting out a window begun by the thinking before them).
                            await self._flush()
                    elif kind == THINKING:
                        self._pending_thinking.append(delta)
                    else:
                        await self._web_step(delta)
                    self._has_pending.set()
                    if loop.time() >= next_yield:
                        # Events already read arrive without a pause: let the flusher and the other
                        # replies run, so a fast stream is relayed as it goes and starves nobody.
                        await asyncio.sleep(0)
                        next_yield = loop.time() + YIELD_EVERY
                if not await self._continue_paused_turn():
                    return
                attempt, waited = 1, 0.0  # the call continuing the turn retries on its own
            except ClaudeError as exc:
                if self.stream.opened:
                    raise  # it failed mid-stream: the text so far stands, Retry asks again
                if exc.kind == "prompt_too_long" and not refitted and self._paused is None:
                    # The model's window is smaller than we thought (the API named it, or halve ours):
                    # leave more out and ask again, rather than fail this and every later message.
                    refitted = True
                    self.context_window = min(
                        exc.window or self.context_window // 2, self.context_window // 2 + 1
                    )
                    self.stream = self._new_stream(self.stream.request)
                    await self._fit()
                    continue
                wait = exc.retry_after if exc.retry_after is not None else min(8.0, 0.5 * 2 ** (attempt - 1))
                if not exc.retryable or attempt > settings.CHAT_MAX_RETRIES:
                    raise
                if waited + wait > settings.CHAT_RETRY_MAX_WAIT_SECONDS:
                    raise  # past the cap on the total wait: an error with Retry, not a silent hour
                attempt += 1
                waited += wait
                notice = (
                    f"{RETRY_REASONS[exc.kind]} - retrying in {math.ceil(wait)} s "
                    f"(attempt {attempt} of {settings.CHAT_MAX_RETRIES + 1})"
                )
                await relay.publish(self.group, fragments.retrying(self.message_id, notice))
                await asyncio.sleep(wait)  # Stop cancels this wait like the stream
                self.stream = self._new_stream(self.stream.request)

    async def _continue_paused_turn(self) -> bool:
        """After a call Claude paused (stop_reason "pause_turn"), make the call that continues the turn:
        the same request with the turn so far sent back, within this reply and its hold (pause.py).
        False when the reply ends with the call that just ended."""
        stream = self.stream
        if stream.stop_reason != "pause_turn":
            return False
        paused = self._paused or PausedTurn(stream.request.messages, stream.request.max_tokens)
        if len(paused.calls) >= MAX_CONTINUATIONS:
            return False
        max_tokens = await database_sync_to_async(continuation_max_tokens)(
            model=self.model,
            max_tokens=paused.max_tokens,
            first_prompt=self._first_prompt,
            calls=[*(call.usage for call in paused.calls), stream.billable_usage()],
        )
        if max_tokens <= 0:
            return False  # the hold cannot cover another call: the reply ends paused, as it is
        text = self.text()
        paused.add(stream, text[self._call_start :])
        self.web.add_call(
            stream.blocks, text_start=self._call_start, text_length=len(text) - self._call_start
        )
        self._call_start = len(text)
        self._paused = paused
        self.stream = self._new_stream(paused.request(stream.request, max_tokens))
        return True

    async def _web_step(self, step: WebStep) -> None:
        """Show a server tool's step at once ("Searching: …", then its result): it may take seconds."""
        async with self._send_lock:
            number, new = self.web.step(step)
            html = fragments.web_step(self.message_id, number, self.web.steps[number], new=new)
            await relay.publish(self.group, html)

    async def _fit(self) -> None:
        """Shorten the request if it would not fit (summarise or leave out older turns); show where on
        every page."""
        request, shortened = await fit_request(
            self.stream.request,
            window=self.context_window,
            conversation_id=self.conversation_id,
            message_id=self.message_id,
        )
        self.stream.request = request
        if shortened is not None and shortened.through:
            await relay.publish(self.group, fragments.compaction_marker(shortened.through, shortened.summary))
        elif shortened is not None:
            await relay.publish(self.group, fragments.context_marker(shortened.left_out_before))

    async def _flush_periodically(self) -> None:
        """Publish pending text at most once per window (CHAT_COALESCE_MS, wider while this process is
        behind, see FramePace); the first delta goes out at once."""
        loop = asyncio.get_running_loop()
        last_flush = 0.0
        while not self._finishing:
            await self._has_pending.wait()
            due = last_flush + frame_pace.window()
            wait = due - loop.time()
            if wait > 0 and not self._finishing:
                await asyncio.sleep(wait)
                frame_pace.woke(loop.time() - due)
            self._has_pending.clear()
            last_flush = loop.time()
            await self._flush()

    async def _flush(self) -> None:
        async with self._send_lock:
            if not self._pending and not self._pending_thinking:
                return
            html = self._thinking_html()
            if self._pending:
                chunk = "".join(self._pending)
                self._pending.clear()
                self._sent.append(chunk)
                completed = self.markdown.feed(chunk)
                html += fragments.delta(self.message_id, chunk, completed, self.markdown.open_html())
            checkpointer.mark(self)  # once per frame, not per delta
            await relay.publish(self.group, html, max_age=MEMBERS_MAX_AGE)

    def _thinking_html(self) -> str:
        """The thinking that arrived since the last frame, and "Thought for N s" once the answer starts."""
        html = ""
        if self._pending_thinking:
            chunk = "".join(self._pending_thinking)
            self._pending_thinking.clear()
            self._sent_thinking.append(chunk)
            html += fragments.thinking_delta(self.message_id, chunk)
        if self._pending and self._sent_thinking and not self._thinking_announced:
            self._thinking_announced = True
            html += fragments.thinking_done(
                self.message_id, self._earlier_thinking.ms + self.stream.thinking_elapsed_ms()
            )
        return html

    def thinking(self) -> str:
        return "".join(self._sent_thinking) + "".join(self._pending_thinking)

    def checkpoint_values(self) -> tuple[str, Usage | None, str]:
        """The partial text to save (and the thinking so far), with the prompt counts (message_start's, billed already) and the
        output so far estimated from everything streamed, thinking included: if this worker dies, the
        reply is billed from these."""
        paused = [] if self._paused is None else [self._paused.usage()]
        if not self.stream.started:
            return self.text(), usage_total(paused) if paused else None, self.thinking()
        usage = self.stream.usage
        estimated = replace(usage, output_tokens=max(usage.output_tokens, self.stream.output_estimate()))
        # A sweep bills the reply from this: with the calls of a paused turn in it, if there were any.
        return self.text(), usage_total([*paused, estimated]) if paused else estimated, self.thinking()

    async def _listen(self) -> None:
        while True:
            try:
                event = await self.layer.receive(self.control_channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A channel-layer hiccup (e.g. Redis restarting) must not make Stop stop working: listen
                # again; one log line per outage for the whole process, not one per reply per try.
                layer_outage.failed()
                await asyncio.sleep(0.5)
                continue
            layer_outage.recovered()
            if event.get("message_id") != self.message_id:
                continue
            if event["type"] == STOP:
                self.stop()
            elif event["type"] == SNAPSHOT:
                await self.send_snapshot(event["reply_channel"])

    async def send_snapshot(self, reply_channel: str) -> None:
        """Send the text published so far to one socket that (re)joined; live deltas follow it."""
        async with self._send_lock:
            html = fragments.body_text(
                self.message_id,
                self.sent_text(),
                self.markdown.completed_html(),
                self.markdown.open_html(),
            )
            html += fragments.thinking_text(self.message_id, "".join(self._sent_thinking))
            if self.web.steps:
                html += fragments.web_steps(self.message_id, self.web.steps)
            await relay.send(reply_channel, html, group=self.group)

    def stop(self) -> None:
        """Close the upstream stream (ends billing) and finish the reply as stopped."""
        self.stop_requested = True
        if self._consume_task is not None:
            self._consume_task.cancel()

    async def _save_end(self, end: store.ReplyEnd) -> Message | None:
        """Write the reply's end and its ledger row; while the database cannot take it (unreachable,
        locked), keep it here and try again with a growing pause, for up to CHAT_END_SAVE_SECONDS (its
        lease is renewed meanwhile, so no other worker sweeps it as dead). Written once, under its
        attempt id, whoever ends it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.CHAT_END_SAVE_SECONDS
        pause = 0.25
        while True:
            try:
                return await database_sync_to_async(store.reply_finish)(
                    message_id=self.message_id, attempt_id=self.attempt_id, end=end, labels=self.labels
                )
            except Exception:
                if loop.time() + pause > deadline:
                    raise
                if pause == 0.25:
                    logger.warning(
                        "Could not save the end of reply %s; keeping it and trying again",
                        self.message_id,
                        exc_info=True,
                    )
                    await self._show_saving(end.status)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    async def _show_saving(self, status: str) -> None:
        """Tell the reply's pages how it ended while its end waits for the database."""
        try:
            await relay.publish(self.group, fragments.reply_saving(self.message_id, status))
        except Exception:
            logger.warning(
                "Could not tell the pages of reply %s that its end is being saved", self.message_id
            )

    def lost(self) -> None:
        """The heartbeat found this reply ended by another worker (it took this one for dead): stop the
        upstream call; the end already written stands."""
        if not self._finishing:
            logger.warning("Reply %s was ended elsewhere; stopping its call", self.message_id)
            self.stop()

    async def _finish(self, outcome: Outcome) -> None:
        await self._flush()
        for task in self._hold_tasks:  # a smaller hold only ever lets other calls through sooner
            try:
                await task
            except Exception:
                logger.exception("Could not lower the budget hold of reply %s", self.message_id)
        checkpointer.forget(self)
        stream = self.stream
        usage = stream.billable_usage()
        if stream.opened and not stream.started:
            # The API took the request but its message_start could not be read: the prompt is billed
            # all the same, so the row estimates it at its known size.
            usage = replace(usage, input_tokens=await _prompt_size(stream.request))
        text, paused = self.text(), self._paused or PausedTurn([], 0)
        call_text = text[self._call_start :]
        self.web.add_call(stream.blocks, text_start=self._call_start, text_length=len(call_text))
        self.web.ended()
        used_tools = stream.blocks.used or bool(paused.calls)
        end = store.ReplyEnd(
            content=text,
            status=outcome.status,
            stop_reason=outcome.stop_reason,
            stop_sequence=outcome.stop_sequence,
            error=outcome.error,
            request_id=stream.request_id,
            cache_note=stream.request.cache_note,
            usage=usage,
            usage_estimated=stream.usage_is_estimated,
            thinking=store.ReplyThinking(
                text=self.thinking(),
                blocks=self._earlier_thinking.blocks
                + paused.thinking
                + [block for block in stream.thinking_blocks if block["signature"]],
                ms=self._earlier_thinking.ms + paused.thinking_ms + stream.thinking_elapsed_ms(),
            ),
            paused_calls=tuple(paused.calls),
            blocks=sendable(paused.blocks + stream.content(call_text)) if used_tools else [],
            web=self.web,
        )
        message = await self._save_end(end)
        if message is None:
            return  # deleted meanwhile (its spend is in the ledger all the same), or ended by a sweep
        for html in fragments.message_frames(message, after=await _after_reply(self.conversation_id)):
            await relay.publish(self.group, html)
        if self.untitled and message.status == Message.Status.COMPLETE:
            titles.title_schedule(self.conversation_id)


async def _prompt_size(request: ReplyRequest) -> int:
    """The prompt's tokens: counted by the API (free), or its byte bound when that fails too."""
    try:
        return await count_prompt_tokens(request)
    except ClaudeError:
        return prompt_bytes_bound(request)


class Checkpointer:
    """Saves the partial text of every streaming reply of this process at most every
    CHAT_CHECKPOINT_SECONDS in one statement: DB writes per second stay O(1) in the number of replies
    and never hold up a stream. It runs while this process has replies running. (Their leases are
    the heartbeat's, in leases.py: a checkpoint may wait behind Sends on the database thread.)"""

    def __init__(self) -> None:
        self.running: dict[int, Generation] = {}
        self.dirty: set[int] = set()

    def track(self, generation: Generation) -> None:
        self.running[generation.message_id] = generation
        if tasks.get("checkpointer", "") is None:
            tasks.start("checkpointer", "", self._run())

    def mark(self, generation: Generation) -> None:
        self.dirty.add(generation.message_id)

    def forget(self, generation: Generation) -> None:
        self.running.pop(generation.message_id, None)
        self.dirty.discard(generation.message_id)

    async def _run(self) -> None:
        while self.running:
            await asyncio.sleep(settings.CHAT_CHECKPOINT_SECONDS)
            batch = {m: self.running[m].checkpoint_values() for m in self.dirty if m in self.running}
            self.dirty.clear()
            try:
                await database_sync_to_async(store.replies_checkpoint)(batch=batch, worker=leases.WORKER_ID)
            except Exception:
                logger.exception("Saving partial replies failed; they are saved at the end regardless")


checkpointer = Checkpointer()


async def generation_start(
    message_id: int, *, conversation_id: int, announce: str, context: ReplyContext | None = None
) -> None:
    """Show `announce` on every page of the conversation (the new reply's place, or the page with it),
    then generate the assistant message `message_id` (already committed as streaming) in a task of its
    own, from `context` when the caller read it (`reply_context`) along with starting the reply.

    The task is registered first, so generation_wait finds it from the moment any page hears of the
    reply; it does nothing until the pages were told. A message deleted before it starts is left alone
    (nothing was called, nothing to bill).
    """
    announced = asyncio.Event()
    tasks.start(
        "generation",
        message_id,
        _generate(message_id, announced, context),
        on_done=lambda _task: leases.heartbeat.release(message_id),
    )
    # Its lease is renewed from now on, apart from this event loop and the database thread: under a
    # burst, the steps before the first token (its context, the channel layer) may take longer than it.
    leases.heartbeat.hold(message_id, functools.partial(_lost, message_id))
    leases.sweeper_start()
    try:
        await relay.publish(conversation_group(conversation_id), announce)
    finally:
        announced.set()


async def _generate(message_id: int, announced: asyncio.Event, context: ReplyContext | None) -> None:
    await announced.wait()  # the reply's frames come after the placeholder they fill
    if context is None:
        try:
            context = await load_context(message_id)
        except Message.DoesNotExist:
            return
    layer = get_channel_layer()
    control_channel = await layer.new_channel()
    try:
        await layer.group_add(control_group(context.conversation_id), control_channel)
    except Exception:  # the layer is unreachable: Stop from this worker's pages still works (stop_here)
        layer_outage.failed()
    # Pages that opened elsewhere before this point are in the group; later ones ask for a snapshot.
    relay.forget(conversation_group(context.conversation_id))
    generation = Generation(context, control_channel=control_channel)
    checkpointer.track(generation)
    await generation.run()


def _lost(message_id: int) -> None:
    """The heartbeat found reply `message_id` ended by another worker: stop writing it here."""
    running = checkpointer.running.get(message_id)
    if running is not None:
        running.lost()
        return
    task = tasks.get("generation", message_id)
    if task is not None:
        task.cancel()  # not begun yet: nothing was called, the end written elsewhere stands


async def generation_wait(message_id: int, timeout: float = 30) -> None:
    """Wait until the generation of `message_id` in this process has finished (tests and shutdown)."""
    await tasks.wait("generation", message_id, timeout)


def stop_here(message_id: int) -> bool:
    """Stop the reply `message_id` if this process writes it (no channel layer needed); whether it did."""
    running = checkpointer.running.get(message_id)
    if running is None:
        return False
    running.stop()
    return True


async def snapshot_here(message_id: int, reply_channel: str) -> bool:
    """Send a socket the text so far of reply `message_id` if this process writes it; whether it did."""
    running = checkpointer.running.get(message_id)
    if running is None:
        return False
    await running.send_snapshot(reply_channel)
    return True


def writing_here(conversation_id: int) -> bool:
    """Whether this process is writing a reply of the conversation now."""
    return any(g.conversation_id == conversation_id for g in list(checkpointer.running.values()))


def draining() -> bool:
    """True once this process is shutting down (it takes no new replies)."""
    return _draining


# Replies accepted but whose generation is not registered yet (see `accepted`).
_accepted: set[object] = set()


@contextlib.contextmanager
def accepted():
    """Mark a reply being accepted (from the draining check to its `generation_start`): the drain waits
    for it."""
    token = object()
    _accepted.add(token)
    try:
        yield
    finally:
        _accepted.discard(token)


async def generations_drain(grace: float) -> None:
    """Shut this process's replies down cleanly: take no new ones, let the running ones finish for up
    to `grace` seconds, then end the rest as interrupted (text saved, ledger rows written).

    Titles being written are waited for too (a title call is short, and is billed like a reply).
    A reply accepted just before the drain began (its Send passed the check and is still storing it)
    starts its generation after that: the drain waits for those too, and for the generations they
    start, not only for the ones running when it began."""
    global _draining
    _draining = True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while True:
        running = tasks.running(DRAINED)
        if not running and not _accepted:
            return
        left = deadline - loop.time()
        if left <= 0:
            break
        if running:
            await asyncio.wait(running, timeout=min(left, 0.25))  # looks again for late starters
        else:
            await asyncio.sleep(min(left, 0.05))
    unfinished = tasks.running(DRAINED)
    for task in unfinished:
        task.cancel()
    if unfinished:
        # Each cancelled generation writes its end under a shield; give that time to land.
        await asyncio.wait(unfinished, timeout=max(grace, 5))

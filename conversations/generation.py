"""Server-owned generations: one asyncio task per streaming reply, independent of any socket.

A generation streams from Claude, appends deltas to its text, and a flusher publishes what
accumulated at most every CHAT_COALESCE_MS as one htmx fragment to the conversation's group.
One checkpointer per process saves the partial text of all streaming replies at most every
CHAT_CHECKPOINT_SECONDS; the final state and the ledger row are written once, at the end. Each generation also listens on its own channel, joined to the
conversation's control group, for Stop and for snapshot requests from sockets that (re)connect:
that works the same with the in-memory layer and with Redis across several daphne workers.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import dataclass
from html import escape

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.template.loader import render_to_string

from . import services
from .claude import NOT_CONFIGURED, ClaudeError, ReplyRequest, ReplyStream, Usage, opaque_user_id
from .models import Message
from .rendering import render_markdown

logger = logging.getLogger(__name__)

_running: dict[int, Generation] = {}


def control_group(conversation_id: int) -> str:
    return f"conversation-{conversation_id}-control"


async def request_stop(conversation_id: int, message_id: int) -> None:
    """Ask the generation of `message_id`, in whichever server process runs it, to stop."""
    await get_channel_layer().group_send(
        control_group(conversation_id), {"type": "reply.stop", "message_id": message_id}
    )


def delta_fragment(message_id: int, text: str) -> str:
    """Append `text` to a streaming message body. Same id as the `message` partial's body element;
    formatted directly because it is sent many times a second per reply (a template render is not)."""
    return f'<div id="msg-{message_id}-body" hx-swap-oob="beforeend">{escape(text, quote=False)}</div>'


def message_fragment(message: Message, *, oob: str = "outerHTML") -> str:
    """The whole message, from the page's own partial, as an out-of-band swap."""
    return render_to_string("conversations/conversation.html#message", {"message": message, "oob": oob})


def streaming_body_fragment(message_id: int, text: str) -> str:
    return f'<div id="msg-{message_id}-body" hx-swap-oob="innerHTML">{escape(text, quote=False)}</div>'


def send_button_fragment(*, busy: bool) -> str:
    return render_to_string("conversations/conversation.html#send_button", {"busy": busy, "oob": True})


@dataclass
class ReplyContext:
    """What a generation needs from the database, read once when it starts."""

    request: ReplyRequest
    conversation_id: int
    ledger_labels: dict


@database_sync_to_async
def _load_context(message_id: int) -> ReplyContext:
    message = Message.objects.select_related("conversation__owner").get(pk=message_id)
    conversation = message.conversation
    turns, _ = services.reply_history(conversation, before=message)
    request = ReplyRequest(
        model=message.model,
        messages=turns,
        max_tokens=settings.CHAT_MAX_TOKENS,
        system=conversation.system_prompt,
        user_id=opaque_user_id(conversation.owner_id),
    )
    labels = {**services.ledger_labels_for(conversation), "model": message.model}
    return ReplyContext(request, conversation.pk, labels)


class Generation:
    def __init__(self, message_id: int):
        self.message_id = message_id
        self.conversation_id: int | None = None
        self.sent: list[str] = []  # text already published to sockets
        self.pending: list[str] = []  # received, not yet published
        self.usage_checkpointed = False
        self._finishing = False
        self.stop_requested = False
        self.layer = get_channel_layer()
        self._send_lock = asyncio.Lock()
        self._has_pending = asyncio.Event()
        self.task: asyncio.Task | None = None

    @property
    def sent_text(self) -> str:
        if len(self.sent) > 1:
            self.sent[:] = ["".join(self.sent)]
        return self.sent[0] if self.sent else ""

    @property
    def text(self) -> str:
        return self.sent_text + "".join(self.pending)

    async def run(self) -> None:
        try:
            context = await _load_context(self.message_id)
        except Message.DoesNotExist:
            return  # deleted before it started: nothing was called, nothing to bill
        self.conversation_id = context.conversation_id
        self.ledger_labels = context.ledger_labels
        self.group = f"conversation-{self.conversation_id}"
        self.control_channel = await self.layer.new_channel()
        await self.layer.group_add(control_group(self.conversation_id), self.control_channel)
        listener = asyncio.create_task(self._listen())
        flusher = asyncio.create_task(self._flush_periodically())
        stream = ReplyStream(context.request)
        consume = asyncio.create_task(self._consume(stream))
        self._consume_task = consume
        outcome: dict = {}
        try:
            await consume
            outcome = self._outcome_complete(stream)
        except asyncio.CancelledError:
            # Either our Stop (consume was cancelled) or the server shutting down (we were).
            if self.stop_requested and not (self.task and self.task.cancelling()):
                outcome = {"status": Message.Status.STOPPED, "stop_reason": "stopped_by_user"}
            else:
                outcome = {
                    "status": Message.Status.INTERRUPTED,
                    "error": "The server stopped while writing this reply.",
                }
        except ClaudeError as exc:
            outcome = {"status": Message.Status.ERROR, "error": exc.user_message}
            if exc.kind == "not_configured":
                outcome["error"] = NOT_CONFIGURED
        except Exception:
            logger.exception("Generation of message %s failed", self.message_id)
            outcome = {
                "status": Message.Status.ERROR,
                "error": "Something went wrong on the server. Please retry.",
            }
        finally:
            # Let the flusher finish what it is sending (cancelling it mid-send would lose a frame on
            # Redis), then stop it; the control listener can simply go.
            self._finishing = True
            self._has_pending.set()
            await flusher
            listener.cancel()
            await self.layer.group_discard(control_group(self.conversation_id), self.control_channel)
        try:
            await asyncio.shield(self._finish(stream, outcome))
        except Exception:
            logger.exception("Could not save the end of reply %s", self.message_id)
            await database_sync_to_async(services.reply_mark_failed)(
                message_id=self.message_id, text=self.text
            )

    def _outcome_complete(self, stream: ReplyStream) -> dict:
        if stream.stop_reason == "max_tokens":
            return {"status": Message.Status.CUT_OFF, "stop_reason": "max_tokens"}
        if stream.stop_reason is None:
            # Clean end without message_delta: the reply is incomplete, its text kept.
            return {
                "status": Message.Status.ERROR,
                "error": "Claude's reply ended early. The text so far is kept.",
            }
        if stream.stop_reason == "refusal":
            return {"status": Message.Status.COMPLETE, "stop_reason": "refusal"}
        return {"status": Message.Status.COMPLETE, "stop_reason": stream.stop_reason}

    async def _consume(self, stream: ReplyStream) -> None:
        self.stream = stream
        async for delta in stream.deltas():
            self.pending.append(delta)
            self._has_pending.set()

    async def _flush_periodically(self) -> None:
        """Publish pending text at most every CHAT_COALESCE_MS; the first delta goes out at once."""
        loop = asyncio.get_running_loop()
        interval = settings.CHAT_COALESCE_MS / 1000
        last_flush = 0.0
        while not self._finishing:
            await self._has_pending.wait()
            wait = last_flush + interval - loop.time()
            if wait > 0 and not self._finishing:
                await asyncio.sleep(wait)
            self._has_pending.clear()
            last_flush = loop.time()
            await self._flush()

    async def _flush(self) -> None:
        async with self._send_lock:
            if not self.pending:
                return
            chunk = "".join(self.pending)
            self.pending.clear()
            self.sent.append(chunk)
            checkpointer.mark(self)  # once per frame, not per delta
            await self.layer.group_send(
                self.group, {"type": "chat.frame", "html": delta_fragment(self.message_id, chunk)}
            )

    def checkpoint_values(self) -> tuple[str, dict | None]:
        """The partial text to save, and the prompt counts once (message_start's, billed already)."""
        usage = None
        stream = getattr(self, "stream", None)
        if stream is not None and stream.started and not self.usage_checkpointed:
            usage = stream.usage.as_dict()
            self.usage_checkpointed = True
        return self.text, usage

    async def _listen(self) -> None:
        while True:
            try:
                event = await self.layer.receive(self.control_channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A channel-layer hiccup (e.g. Redis restarting) must not make Stop stop working.
                logger.exception("Control channel of reply %s failed; listening again", self.message_id)
                await asyncio.sleep(0.5)
                continue
            if event.get("message_id") != self.message_id:
                continue
            if event["type"] == "reply.stop":
                self.stop()
            elif event["type"] == "reply.snapshot":
                async with self._send_lock:
                    html = streaming_body_fragment(self.message_id, self.sent_text)
                    await self.layer.send(event["reply_channel"], {"type": "chat.frame", "html": html})

    def stop(self) -> None:
        """Close the upstream stream (ends billing) and finish the reply as stopped."""
        self.stop_requested = True
        self._consume_task.cancel()

    async def _finish(self, stream: ReplyStream, outcome: dict) -> None:
        await self._flush()
        checkpointer.forget(self)
        text = self.text
        usage = stream.billable_usage() if stream.started else Usage(output_tokens=0)
        message = await database_sync_to_async(services.reply_finish)(
            message_id=self.message_id,
            content=text,
            html=render_markdown(text),
            status=outcome["status"],
            stop_reason=outcome.get("stop_reason", ""),
            error=outcome.get("error", ""),
            request_id=stream.request_id,
            usage=usage.as_dict(),
            usage_estimated=stream.started and stream.usage_is_estimated,
            ledger_labels=self.ledger_labels,
        )
        if message is None:
            return  # the conversation was deleted meanwhile; its spend is in the ledger all the same
        await self.layer.group_send(self.group, {"type": "chat.frame", "html": message_fragment(message)})
        await self.layer.group_send(
            self.group, {"type": "chat.frame", "html": send_button_fragment(busy=False)}
        )


class Checkpointer:
    """Saves the partial text of every streaming reply of this process, at most every
    CHAT_CHECKPOINT_SECONDS, in one transaction: DB writes per second stay O(1) in the number of
    replies and never hold up a stream."""

    def __init__(self) -> None:
        self.dirty: dict[int, Generation] = {}
        self.task: asyncio.Task | None = None

    def mark(self, generation: Generation) -> None:
        self.dirty[generation.message_id] = generation
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(
                self._run(), name="reply-checkpointer", context=contextvars.Context()
            )

    def forget(self, generation: Generation) -> None:
        self.dirty.pop(generation.message_id, None)

    async def _run(self) -> None:
        while self.dirty:
            await asyncio.sleep(settings.CHAT_CHECKPOINT_SECONDS)
            batch = {message_id: g.checkpoint_values() for message_id, g in self.dirty.items()}
            self.dirty.clear()
            try:
                await database_sync_to_async(services.replies_checkpoint)(batch=batch)
            except Exception:
                logger.exception("Saving partial replies failed; they are saved at the end regardless")


checkpointer = Checkpointer()


def generation_start(message_id: int) -> Generation:
    """Start generating the assistant message `message_id` (already committed as streaming)."""
    generation = Generation(message_id)
    # A fresh context: the generation must not inherit the request's or socket's context (asgiref's
    # per-request thread executor ends with the request; the generation outlives it).
    task = asyncio.get_running_loop().create_task(
        generation.run(), name=f"generation-{message_id}", context=contextvars.Context()
    )
    generation.task = task
    _running[message_id] = generation
    task.add_done_callback(_forget)
    return generation


def _forget(task: asyncio.Task) -> None:
    generation = _running.pop(int(task.get_name().rsplit("-", 1)[1]), None)
    if not task.cancelled() and task.exception() is not None:
        logger.error(
            "Generation of message %s crashed",
            generation and generation.message_id,
            exc_info=task.exception(),
        )


async def generation_wait(message_id: int, timeout: float = 30) -> None:
    """Wait until the generation of `message_id` in this process has finished (tests and shutdown)."""
    generation = _running.get(message_id)
    if generation is not None and generation.task is not None:
        await asyncio.wait_for(asyncio.shield(generation.task), timeout)


async def generations_stop_all() -> None:
    for generation in list(_running.values()):
        generation.stop()

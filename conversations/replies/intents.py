"""One entry point per intent — send, regenerate (Retry), edit, switch branch, continue, stop — shared by the websocket and the form posts.

Each stores what it must (a service, one transaction), tells every page viewing the conversation
(fragments through `relay`) and starts the generation, so the steps of starting a reply are
written once. Callers authenticate and show errors: `inputs.InvalidInput` (with `NotFound` for
someone else's or a missing message) and billing's `SpendRefused` say what went wrong; nothing was
written then.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from channels.db import database_sync_to_async
from django.db import transaction

from billing.services import SpendRefused

from .. import attachments, fragments, inputs, services
from ..control import request_stop
from ..models import Conversation, Message, conversation_group
from . import branches, leases, price, store
from .generation import accepted, draining, generation_start, stop_here
from .relay import relay
from .request import ReplyContext, reply_context

RESTARTING = "The server is restarting. Your message is kept here: send it again in a moment."


@contextlib.contextmanager
def _accepting():
    """A new reply being accepted: refused once this process drains; while it runs (until its generation
    is registered), the drain waits for it too, so nothing accepted is left behind."""
    if draining():
        raise inputs.InvalidInput(RESTARTING)
    with accepted():
        yield


@database_sync_to_async
def _owned_message(user, message_id: int, conversation_id: int | None) -> Message:
    """One of `user`'s messages (in `conversation_id`, when given); anything else is NotFound."""
    query = Message.objects.owned_by(user).filter(pk=message_id)
    if conversation_id is not None:
        query = query.filter(conversation_id=conversation_id)
    message = query.first()
    if message is None:
        raise inputs.NotFound("No such message.")
    return message


@dataclass
class _Sent:
    """What Send did in the database: replies it ended (their worker died), then either the new turns
    and what the reply's call needs, or why nothing was stored."""

    ended: list[Message]
    user_message: Message | None = None
    assistant: Message | None = None
    context: ReplyContext | None = None
    refused: Exception | None = None


class SignedOut(Exception):
    """The sender's sign-in has ended: nothing was stored."""


@database_sync_to_async
def _send_in_database(
    conversation: Conversation,
    text: object,
    attachment_ids: object,
    signed_in: Callable[[], bool] | None,
    price_token: object = None,
) -> _Sent:
    """Send's database work in one trip to the database thread, not one per step: the thread is one,
    and under a burst of messages every trip waits behind the other replies' work. `signed_in` (the
    sender's session check) comes first: nothing is done for a sign-in that has ended."""
    if signed_in is not None and not signed_in():
        raise SignedOut
    sent = _Sent(ended=[])
    swept = False
    try:
        ids = attachments.clean_ids(attachment_ids)
        start = partial(
            store.reply_start,
            conversation=conversation,
            text=inputs.clean_message_text(text, allow_empty=bool(ids)),
            worker=leases.WORKER_ID,
            attachment_ids=ids,
            price_estimate=price.estimate_sent(price_token, conversation_id=conversation.pk, text=text),
        )
        try:
            sent.user_message, sent.assistant, max_tokens = start()
        except inputs.StillStreaming:
            # A reply is being written. If its worker died (its lease ran out) it must not block this
            # Send: end it, then send after all. Only then is that looked for, so a Send costs nothing.
            sent.ended, swept = store.replies_end_expired(conversation_id=conversation.pk), True
            if not sent.ended:
                raise
            sent.user_message, sent.assistant, max_tokens = start()
    except Exception as exc:  # refused (InvalidInput, SpendRefused) or failed: shown after the ended
        if isinstance(exc, attachments.AttachmentError):
            exc = inputs.InvalidInput(str(exc))
        else:
            store.budget_refusal_note(exc, owner_id=conversation.owner_id)  # its transaction rolled back
        sent.refused = exc
        if not swept:  # a page whose reply's worker died learns it here too, whatever was refused
            sent.ended = store.replies_end_expired(conversation_id=conversation.pk)
        return sent
    sent.context = reply_context(sent.assistant, max_tokens=max_tokens)
    return sent


async def send(
    *,
    conversation: Conversation,
    text: object,
    attachment_ids: object = (),
    signed_in: Callable[[], bool] | None = None,
    price_token: object = None,
) -> Message:
    """Store the user's turn (with its pending attachments `attachment_ids`) and start Claude's reply in
    `conversation` (the caller checked ownership; `signed_in`, when given, is checked first in the
    database thread, and SignedOut raised if it says no). `price_token`: the signed price the page
    showed for this draft (price.py), kept on the reply for its receipt.

    Returns the assistant message being written.
    """
    with _accepting():
        return await _started(
            await _send_in_database(conversation, text, attachment_ids, signed_in, price_token)
        )


@database_sync_to_async
def _start_in_database(
    owner, text: object, model: object, preset_id: object, attachment_ids: object, web: bool = False
) -> _Sent:
    """A new conversation of `owner` and its first turn (with the files `attachment_ids` uploaded in the
    home page's composer), in one transaction: if the message is refused (empty, too long, a model
    their team does not allow, over budget, a file gone), neither exists and the files stay pending."""
    sent = _Sent(ended=[])
    try:
        ids = attachments.clean_ids(attachment_ids)
        text = inputs.clean_message_text(text, allow_empty=bool(ids))
        models = inputs.model_choice(owner.pk)  # read once for the conversation and its first reply
        with transaction.atomic():
            preset = services.preset_offered(user=owner, preset_id=preset_id)
            conversation = services.conversation_create(
                owner=owner, model=models.clean_optional(model) or models.default, preset=preset, web=web
            )
            attachments.attachments_adopt(owner=owner, ids=ids, conversation=conversation)
            sent.user_message, sent.assistant, max_tokens = store.reply_start(
                conversation=conversation,
                text=text,
                worker=leases.WORKER_ID,
                attachment_ids=ids,
                models=models,
            )
    except attachments.AttachmentError as exc:
        sent.refused = inputs.InvalidInput(str(exc))
        return sent
    except Exception as exc:  # refused (InvalidInput, SpendRefused) or failed: nothing was written
        store.budget_refusal_note(exc, owner_id=owner.pk)  # outside the transaction that rolled back
        sent.refused = exc
        return sent
    sent.context = reply_context(sent.assistant, max_tokens=max_tokens)
    return sent


async def start_conversation(
    *,
    owner,
    text: object,
    model: object = None,
    preset_id: object = None,
    attachment_ids: object = (),
    web: bool = False,
) -> Message:
    """A new conversation of `owner` (on `model`, or from the preset `preset_id`, with the Web switch on
    when `web`) with `text` as its first message (and the files `attachment_ids` uploaded in the home
    page's composer), and Claude's reply to it started. Returns the reply being written (its
    conversation attached)."""
    with _accepting():
        return await _started(await _start_in_database(owner, text, model, preset_id, attachment_ids, web))


async def _started(sent: _Sent) -> Message:
    """After a Send's trip to the database: show the ends of replies it swept, raise its refusal, or
    start its reply's generation (announcing the new turns)."""
    await leases.show_ended(sent.ended)
    if sent.refused is not None:
        raise sent.refused
    await generation_start(
        sent.assistant.pk,
        conversation_id=sent.assistant.conversation_id,
        announce=fragments.new_turns([sent.user_message, sent.assistant]),
        context=sent.context,
    )
    return sent.assistant


@database_sync_to_async
def _conversation_page(conversation_id: int) -> str:
    """The active branch's latest messages in place of the page's (after the branch shown changed)."""
    conversation = Conversation.objects.get(pk=conversation_id)
    chat_messages, earlier_before = conversation.messages.page()
    return fragments.message_list(
        chat_messages,
        conversation=conversation,
        context_from=conversation.context_from,
        earlier_before=earlier_before,
    )


async def _show_page(conversation_id: int) -> None:
    await relay.publish(conversation_group(conversation_id), await _conversation_page(conversation_id))


def _starting_reply[T](write: Callable[..., T], owner_id: int) -> Callable[..., Awaitable[T]]:
    """`write` (a service that starts a reply in a transaction of its own) run in the database thread;
    when the budget refuses it, the alert is noted there too, once its transaction rolled back."""

    def run(**kwargs) -> T:
        try:
            return write(**kwargs)
        except SpendRefused as exc:
            store.budget_refusal_note(exc, owner_id=owner_id)
            raise

    return database_sync_to_async(run)


async def regenerate(
    *, user, message_id: int, conversation_id: int | None = None, model: str | None = None
) -> Message:
    """Write one of `user`'s replies again as a new version (Retry and Regenerate): the earlier one
    stays. With `model`, on that model (the conversation switches to it)."""
    with _accepting():
        message = await _owned_message(user, message_id, conversation_id)
        await leases.end_expired(message.conversation_id)
        reply = await _starting_reply(branches.reply_regenerate, user.pk)(
            message=message, worker=leases.WORKER_ID, model=model
        )
        page = await _conversation_page(message.conversation_id)
        await generation_start(reply.pk, conversation_id=message.conversation_id, announce=page)
        return reply


def _attachment_ids(value: object) -> list[int]:
    """Attachment ids from a frame or a form (one, or a list), or InvalidInput saying what is wrong."""
    try:
        return attachments.clean_ids(value)
    except attachments.AttachmentError as exc:
        raise inputs.InvalidInput(str(exc)) from None


async def edit(
    *,
    user,
    message_id: int,
    text: object,
    keep_ids: object = (),
    attachment_ids: object = (),
    conversation_id: int | None = None,
) -> Message:
    """Send an edited version of one of `user`'s messages and start Claude's reply to it (a new branch).

    The new version carries the earlier one's files named in `keep_ids` and the pending uploads
    `attachment_ids`, and nothing else (anything not the user's to attach is refused: InvalidInput)."""
    keep, added = _attachment_ids(keep_ids), _attachment_ids(attachment_ids)
    text = inputs.clean_message_text(text, allow_empty=bool(keep or added))
    with _accepting():
        message = await _owned_message(user, message_id, conversation_id)
        await leases.end_expired(message.conversation_id)
        _, reply = await _starting_reply(branches.message_edit, user.pk)(
            message=message, text=text, worker=leases.WORKER_ID, keep_ids=keep, attachment_ids=added
        )
        page = await _conversation_page(message.conversation_id)
        await generation_start(reply.pk, conversation_id=message.conversation_id, announce=page)
        return reply


async def branch(*, user, message_id: int, index: int, conversation_id: int | None = None) -> Message:
    """Show version `index` of one of `user`'s messages, and the branch below it."""
    message = await _owned_message(user, message_id, conversation_id)
    shown = await database_sync_to_async(branches.branch_switch)(message=message, index=index)
    await _show_page(message.conversation_id)
    return shown


async def reveal(*, user, message_id: int) -> tuple[Message, Message | None]:
    """Show the branch one of `user`'s messages is on (a search hit in another version). Returns the
    message and the version switched to above or at it (None when it was shown already)."""
    message = await _owned_message(user, message_id, None)
    switched = await database_sync_to_async(branches.branch_reveal)(message=message)
    if switched is not None:
        await _show_page(message.conversation_id)
    return message, switched


async def delete_version(*, user, message_id: int, conversation_id: int | None = None) -> Message:
    """Delete one version of one of `user`'s messages and what followed it (the ledger keeps its calls)."""
    message = await _owned_message(user, message_id, conversation_id)
    shown = await database_sync_to_async(branches.branch_delete)(message=message)
    await _show_page(message.conversation_id)
    return shown


async def continue_reply(*, user, message_id: int, conversation_id: int | None = None) -> Message:
    """Write the rest of one of `user`'s replies that was cut off by the length limit, into the same reply."""
    with _accepting():
        message = await _owned_message(user, message_id, conversation_id)
        await leases.end_expired(message.conversation_id)
        message = await _starting_reply(store.reply_continue, user.pk)(
            message=message, worker=leases.WORKER_ID
        )
        html = fragments.message(message) + fragments.send_button(busy=True)
        await generation_start(message.pk, conversation_id=message.conversation_id, announce=html)
        return message


async def stop(*, user, message_id: int, conversation_id: int | None = None) -> Message:
    """Stop one of `user`'s replies if it is still being written (a finished one is left as it is)."""
    message = await _owned_message(user, message_id, conversation_id)
    if message.is_streaming and not await leases.end_expired(message.conversation_id):
        if not stop_here(message.pk):  # written here: stopped at once, with no channel layer in between
            await request_stop(message.conversation_id, message.pk)  # its worker is alive: it stops it
    return message


def _as_sent(value: object) -> object:
    """A field its intent cleans itself (an edit's text may be empty when files go with it)."""
    return value


@dataclass(frozen=True)
class Intent:
    """What a person can do to one of their messages: the entry point, and which fields of a websocket
    frame or a form post it takes (keyword argument -> field name)."""

    run: Callable
    fields: tuple[tuple[str, str, Callable[[object], object]], ...] = ()

    def arguments(self, source) -> dict:
        """The intent's keyword arguments read from a frame (a dict) or a form post (a QueryDict), each
        cleaned (InvalidInput says which is wrong)."""
        return {argument: clean(source.get(field)) for argument, field, clean in self.fields}


#: The intents on one message, by the action name the websocket and the form posts use. Send (which
#: takes a conversation, not a message) is the one action outside it.
INTENTS: dict[str, Intent] = {
    "stop": Intent(stop),
    "retry": Intent(regenerate, (("model", "model", inputs.clean_optional_model),)),
    "regenerate": Intent(regenerate, (("model", "model", inputs.clean_optional_model),)),
    "continue": Intent(continue_reply),
    "edit": Intent(
        edit,
        (
            ("text", "message", _as_sent),
            ("keep_ids", "keep", _attachment_ids),
            ("attachment_ids", "attachments", _attachment_ids),
        ),
    ),
    "branch": Intent(branch, (("index", "index", inputs.clean_version),)),
    "delete_version": Intent(delete_version),
}
ACTIONS = frozenset({"send", *INTENTS})

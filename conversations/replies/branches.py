"""Versions of a turn: regenerate (Retry and Regenerate), edit a user's message (a new version), switch
the version shown, delete a version and what followed it. Each writes in one transaction; a new reply
is started through the store (lease and budget hold)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from billing.usage import Usage

from .. import attachments
from ..inputs import InvalidInput, model_choice, refuse_while_streaming
from ..models import (
    Conversation,
    Message,
    annotate_branches,
)
from .store import lease, new_reply, reply_model, reserve


def _show_branch(conversation: Conversation, *, leaving: Message | None, entering: Message) -> None:
    """Make `entering` the chosen version of its turn and the active branch run through it.

    `leaving` is the version shown until now (on the active branch), or None when `entering` is new.
    The active branch from `leaving` down is hidden; below `entering` it follows the chosen version at
    each turn. Nothing is deleted. A left-out cut (`context_from`) that is no longer on the active
    branch is dropped: the next reply fits the new branch afresh.
    """
    if leaving is not None:
        conversation.messages.active().filter(pk__gte=leaving.pk).update(active=False)
        Message.objects.filter(pk=leaving.pk).update(chosen=False)
    siblings = conversation.messages.filter(parent_id=entering.parent_id).exclude(pk=entering.pk)
    siblings.filter(chosen=True).update(chosen=False)
    path = [entering.pk]
    if entering.pk is not None:
        children: dict[int, list[tuple[int, bool]]] = {}
        below = conversation.messages.filter(pk__gt=entering.pk).order_by("pk")
        for pk, parent_id, chosen in below.values_list("pk", "parent_id", "chosen"):
            children.setdefault(parent_id, []).append((pk, chosen))
        node = entering.pk
        while node in children:
            versions = children[node]
            node = next((pk for pk, chosen in versions if chosen), versions[-1][0])
            path.append(node)
    Message.objects.filter(pk__in=path).update(active=True)
    Message.objects.filter(pk=entering.pk).update(chosen=True)
    entering.active = entering.chosen = True
    if (
        conversation.context_from
        and not conversation.messages.active().filter(pk=conversation.context_from).exists()
    ):
        Conversation.objects.filter(pk=conversation.pk).update(context_from=0)
        conversation.context_from = 0


def _locked_message(message: Message) -> Message:
    return Message.objects.select_for_update().select_related("conversation__owner").get(pk=message.pk)


RETRYABLE = {Message.Status.ERROR, Message.Status.INTERRUPTED, Message.Status.STOPPED, Message.Status.CUT_OFF}


def reply_regenerate(*, message: Message, worker: str, model: str | None = None) -> Message:
    """Write one of the active branch's replies again, as a new version of it (a new branch): the
    earlier version stays, with its text and its calls in the ledger, one "< 1 / 2 >" away.

    A failed reply with no text at all is written again in place instead (there is nothing to keep;
    its receipt then lists both calls). With `model` (one of the site's), the conversation switches to
    it first ("Try with <model>" after a refusal); a model the owner's team does not allow is refused
    (InvalidInput) with nothing written. Without, the reply is on the conversation's model while the
    owner may use it, else on their default (`reply_model`). Returns the reply being written.
    """
    with transaction.atomic():
        message = _locked_message(message)
        conversation = message.conversation
        models = model_choice(conversation.owner_id)
        if model is not None:
            model = models.clean(model)  # asked for by name: refused, never replaced
            if model != conversation.model:
                conversation.model = model
                conversation.prompt_changed_at = timezone.now()  # earlier calls' token counts no longer apply
                conversation.save(update_fields=["model", "prompt_changed_at"])
        reply_model(conversation, models)
        if message.role != Message.Role.ASSISTANT or message.is_streaming:
            raise InvalidInput("Only a finished reply can be written again.")
        if not message.active:
            raise InvalidInput("That version is not the one shown: switch to it first.")
        refuse_while_streaming(conversation, "retrying")
        if message.status in RETRYABLE and not message.content.strip():
            # stop_reason stays until the end: a reply cut by the window is retried in a smaller one.
            message.content = message.html = message.error = message.request_id = ""
            message.stop_sequence = ""
            message.thinking, message.thinking_blocks, message.thinking_ms = "", [], 0
            message.call_ends = []
            message.content_blocks, message.web_steps, message.sources, message.citations = [], [], [], []
            lease(message, worker)
            message.model = conversation.model  # an allowed one (`reply_model` above)
            message.set_usage(Usage())
            message.save()
            reserve(conversation=conversation, assistant=message)
            regenerated = message
        else:
            parent = message.parent
            regenerated = Message(
                conversation=conversation,
                role=Message.Role.ASSISTANT,
                model=conversation.model,
                parent=parent,
            )
            regenerated.starts_conversation = parent is None
            lease(regenerated, worker)
            regenerated.save()
            _show_branch(conversation, leaving=message, entering=regenerated)
            reserve(conversation=conversation, assistant=regenerated)
        conversation.save(update_fields=["updated_at"])
    return annotate_branches([regenerated])[0]


def message_edit(
    *,
    message: Message,
    text: str,
    worker: str,
    keep_ids: list[int] = (),
    attachment_ids: list[int] = (),
) -> tuple[Message, Message]:
    """Send an edited version of one of the active branch's user turns: a new version of that turn (a
    new branch from there, the earlier one kept) and a reply to it, with the spend reserved.

    The new version carries the files of the earlier one named in `keep_ids` and the pending uploads
    `attachment_ids` (the owner's, in this conversation): exactly those, and the reply's hold counts
    them. Returns (the new user turn, the reply being written). Raises InvalidInput or SpendRefused with
    nothing written. `text` and the ids are cleaned by the caller (`inputs.clean_message_text`,
    `attachments.clean_ids`)."""
    try:
        return _message_edit(
            message=message, text=text, worker=worker, keep_ids=keep_ids, attachment_ids=attachment_ids
        )
    except attachments.AttachmentError as exc:
        raise InvalidInput(str(exc)) from None


def _message_edit(*, message, text, worker, keep_ids, attachment_ids):
    with transaction.atomic():
        message = _locked_message(message)
        conversation = message.conversation
        if message.role != Message.Role.USER:
            raise InvalidInput("Only your own messages can be edited.")
        if not message.active:
            raise InvalidInput("That version is not the one shown: switch to it first.")
        refuse_while_streaming(conversation, "editing a message")
        edited = Message(
            conversation=conversation, role=Message.Role.USER, content=text, parent=message.parent
        )
        edited.starts_conversation = message.parent_id is None
        edited.save()
        claimed = attachments.attachments_claim(
            owner=conversation.owner, conversation=conversation, ids=attachment_ids, message=edited
        )
        attachments.attachments_carry(source=message, ids=keep_ids, message=edited, claimed=claimed)
        _show_branch(conversation, leaving=message, entering=edited)
        assistant, _max_tokens = new_reply(
            conversation, parent=edited, worker=worker
        )  # read again at its start
        conversation.save(update_fields=["updated_at"])
    return annotate_branches([edited])[0], assistant


def branch_switch(*, message: Message, index: int) -> Message:
    """Show version `index` (1-based) of the turn `message` is a version of, and the branch below it
    as it was last shown. Returns the version now shown. Raises InvalidInput (an index out of range,
    a reply being written) with nothing changed."""
    with transaction.atomic():
        message = _locked_message(message)
        conversation = message.conversation
        versions = list(
            conversation.messages.filter(parent_id=message.parent_id).order_by("pk")
            if message.parent_id is not None
            else conversation.messages.filter(parent__isnull=True).order_by("pk")
        )
        if not 1 <= index <= len(versions):
            raise InvalidInput(f"There is no version {index} of this message: it has {len(versions)}.")
        target = versions[index - 1]
        shown = next((v for v in versions if v.active), None)
        if shown is None:
            raise InvalidInput("That message is not on the branch shown.")
        if target.pk != shown.pk:
            refuse_while_streaming(conversation, "switching versions")
            _show_branch(conversation, leaving=shown, entering=target)
            conversation.save(update_fields=["updated_at"])
    return annotate_branches([target])[0]


def branch_reveal(*, message: Message) -> Message | None:
    """Show the branch `message` is on (a search hit in another version), as "<" ">" on the versions
    above it would: at each turn from the first one where the branch shown leaves the way to `message`,
    the version leading to it becomes the chosen one. Returns the version switched to at that turn
    (`message` itself or one above it, with its place among its versions), or None when `message` was
    shown already. Raises InvalidInput (a reply being written) with nothing changed."""
    with transaction.atomic():
        message = _locked_message(message)
        if message.active:
            return None
        conversation = message.conversation
        parents = dict(conversation.messages.filter(pk__lte=message.pk).values_list("pk", "parent_id"))
        path = [message.pk]
        while parents.get(path[-1]) is not None:
            path.append(parents[path[-1]])
        path.reverse()
        shown = set(conversation.messages.active().filter(pk__in=path).values_list("pk", flat=True))
        turn = next(index for index, pk in enumerate(path) if pk not in shown)
        refuse_while_streaming(conversation, "switching versions")
        entering = Message.objects.get(pk=path[turn])
        versions = conversation.messages.filter(parent_id=entering.parent_id)
        if entering.parent_id is None:
            versions = conversation.messages.filter(parent__isnull=True)
        leaving = versions.filter(active=True).first()
        below = path[turn + 1 :]
        if below:  # the branch below `entering` follows chosen versions: make them the way to `message`
            conversation.messages.filter(parent_id__in=[parents[pk] for pk in below]).exclude(
                pk__in=below
            ).update(chosen=False)
            Message.objects.filter(pk__in=below).update(chosen=True)
        _show_branch(conversation, leaving=leaving, entering=entering)
        conversation.save(update_fields=["updated_at"])
    return annotate_branches([entering])[0]


def branch_delete(*, message: Message) -> Message:
    """Delete one version of a turn and everything that followed it; when it is the version shown, the
    one before it (else the one after) is shown instead. Returns the version shown now. A turn's only
    version cannot be deleted this way. The ledger is untouched: its rows name messages by plain ids."""
    with transaction.atomic():
        message = _locked_message(message)
        conversation = message.conversation
        versions = list(conversation.messages.filter(parent_id=message.parent_id).order_by("pk"))
        if len(versions) < 2:
            raise InvalidInput("This is the only version of this message.")
        refuse_while_streaming(conversation, "deleting a version")
        position = versions.index(message)
        shown = next(v for v in versions if v.active or v.chosen)
        if message.active:
            shown = versions[position - 1] if position > 0 else versions[position + 1]
            _show_branch(conversation, leaving=message, entering=shown)
        elif message.chosen:  # not on the branch shown, but remembered as its turn's choice
            shown = versions[position - 1] if position > 0 else versions[position + 1]
            Message.objects.filter(pk=shown.pk).update(chosen=True)
        message.delete()  # with every message below it (parent cascades)
        conversation.save(update_fields=["updated_at"])
    return annotate_branches([shown])[0]

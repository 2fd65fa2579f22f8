"""Conversation housekeeping, presets and share links: create, change settings, rename, pin, archive and
delete a conversation; the presets offered and saved; share links made and revoked. Small
keyword-only functions, each atomic."""

from __future__ import annotations

import logging
import secrets

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .catalog import takes_effort
from .control import request_stop
from .inputs import (
    InvalidInput,
    NotFound,
    clean_id,
    model_choice,
    refuse_while_streaming,
)
from .models import (
    Conversation,
    Message,
    Preset,
    ShareLink,
    share_token_hash,
)
from .web import conversation_web_set

logger = logging.getLogger(__name__)


def preset_offered(*, user, preset_id: object) -> Preset | None:
    """The preset `user` picked to start a conversation from (their own or a published site-wide one),
    None for none; InvalidInput for any other id."""
    if preset_id in (None, ""):
        return None
    try:
        pk = clean_id(preset_id)
    except NotFound:
        raise InvalidInput("Choose one of the offered presets.") from None
    preset = Preset.objects.offered_to(user).filter(pk=pk).first()
    if preset is None:
        raise InvalidInput("Choose one of the offered presets.")
    return preset


def conversation_create(
    *, owner, model: str | None = None, preset: Preset | None = None, web: bool = False
) -> Conversation:
    """A new, empty conversation on `model` (cleaned by the caller among the owner's `ModelChoice`; the
    owner's default when None). With a preset (`preset_offered`), the conversation gets a copy of its
    system prompt: later changes to the preset do not reach it. With `web`, it starts with the Web
    switch on (InvalidInput where the site or the owner's team does not offer the web)."""
    conversation = Conversation.objects.create(
        owner=owner,
        model=model or model_choice(owner.pk).default,
        system_prompt=preset.system_prompt if preset is not None else "",
    )
    if web:
        return conversation_web_set(conversation=conversation, on=True)
    return conversation


def conversation_update_settings(
    *,
    conversation: Conversation,
    model: str,
    system_prompt: str,
    effort: str | None = None,
    stop_sequences: list[str] | None = None,
) -> None:
    """Change the model, system prompt and (when given) thinking effort and stop sequences of the
    conversation's next replies, all cleaned by the caller (`inputs.clean_settings`, the model among
    the owner's choice). Raises InvalidInput (a reply is being written) with nothing changed.

    `effort` is one of EFFORTS or "" for the model's default; a model that takes none keeps "".
    """
    sequences = conversation.stop_sequences if stop_sequences is None else stop_sequences
    fields = ["model", "system_prompt", "stop_sequences", "updated_at"]
    if (model, system_prompt) != (conversation.model, conversation.system_prompt):
        conversation.prompt_changed_at = timezone.now()  # earlier calls' token counts no longer apply
        fields.append("prompt_changed_at")
    if system_prompt != conversation.system_prompt:
        newest = conversation.messages.order_by("-pk").values_list("pk", flat=True).first()
        if newest is None:  # nothing sent yet: the conversation simply starts with this prompt
            conversation.base_system_prompt = system_prompt
            fields.append("base_system_prompt")
        else:
            # Earlier thinking is bound to the prompt it was written under: the edit goes to the end of
            # the history, as a system message from the next reply on (see reply_history).
            refuse_while_streaming(conversation, "changing the system prompt")
            conversation.system_messages = [
                *conversation.system_messages,
                {"after": newest, "text": system_prompt},
            ]
            fields.append("system_messages")
    conversation.model, conversation.system_prompt = model, system_prompt
    conversation.stop_sequences = sequences
    if effort is not None:
        conversation.effort = effort if takes_effort(model) else ""
        fields.append("effort")
    conversation.save(update_fields=fields)


def conversation_rename(*, conversation: Conversation, title: str) -> None:
    """Rename by hand (`title` cleaned by `inputs.clean_title`): this title wins over any Claude writes
    later."""
    conversation.title = title
    conversation.title_source = Conversation.TitleSource.USER
    conversation.save(update_fields=["title", "title_source", "updated_at"])


def conversation_pin(*, conversation: Conversation, pinned: bool) -> None:
    """Pin the conversation to the top of the sidebar, or unpin it (its place in time is unchanged)."""
    Conversation.objects.filter(pk=conversation.pk).update(pinned=pinned)
    conversation.pinned = pinned


def conversation_archive(*, conversation: Conversation, archived: bool) -> None:
    """Move the conversation out of the sidebar to the "Archived" list, or back. Archiving unpins it."""
    fields = {"archived": archived} | ({"pinned": False} if archived else {})
    Conversation.objects.filter(pk=conversation.pk).update(**fields)
    for name, value in fields.items():
        setattr(conversation, name, value)


def preset_create(*, owner, name: str, system_prompt: str) -> Preset:
    """Save a system prompt as one of `owner`'s presets (both cleaned by `inputs`)."""
    return Preset.objects.create(owner=owner, name=name, system_prompt=system_prompt)


def preset_delete(*, preset: Preset) -> None:
    """Delete one of a person's presets; conversations started from it keep their copy of the prompt."""
    preset.delete()


def share_create(*, conversation: Conversation) -> str:
    """A new read-only link token for the conversation, replacing any earlier link (which stops working).

    Only the token's hash is stored: the returned token is the one chance to show the link.
    """
    if not settings.CHAT_SHARING:
        raise InvalidInput("Sharing is turned off on this server.")
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        ShareLink.objects.filter(conversation=conversation).delete()
        ShareLink.objects.create(conversation=conversation, token_hash=share_token_hash(token))
    return token


def share_revoke(*, conversation: Conversation) -> bool:
    """Stop the conversation's read-only link from working. Returns whether there was one."""
    deleted, _ = ShareLink.objects.filter(conversation=conversation).delete()
    return bool(deleted)


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a conversation and its messages, stopping a reply still being written.

    Spend history lives in the ledger and is untouched; the stopped reply's call is recorded there too.
    """
    with transaction.atomic():
        streaming = list(
            conversation.messages.filter(status=Message.Status.STREAMING).values_list("pk", flat=True)
        )
        conversation_id = conversation.pk
        conversation.delete()
        for message_id in streaming:
            transaction.on_commit(lambda m=message_id: async_to_sync(request_stop)(conversation_id, m))

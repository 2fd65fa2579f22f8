"""Conversations and their messages."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse

from billing.usage import Usage


def conversation_group(conversation_id: int) -> str:
    """Channel-layer group every socket viewing the conversation joins."""
    return f"conversation-{conversation_id}"


def message_dom_id(message_id: int, part: str = "") -> str:
    """The page's element id of a message, or of one of its parts ("body", "status", "receipt")."""
    return f"msg-{message_id}-{part}" if part else f"msg-{message_id}"


class ConversationQuerySet(models.QuerySet):
    def owned_by(self, user) -> ConversationQuerySet:
        """Conversations of `user`, most recently active first."""
        return self.filter(owner=user).order_by("-updated_at", "-id")


class Conversation(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=100)
    system_prompt = models.TextField(blank=True)
    # Messages with a lower id are no longer sent to Claude: the conversation outgrew the model's
    # context window and its oldest turns were left out (the page shows a marker there). It only moves
    # forward, in large steps, so the cached prompt prefix stays the same for many turns.
    context_from = models.PositiveBigIntegerField(default=0)
    # When the model or system prompt last changed: token counts of earlier calls no longer bound the next.
    prompt_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Last activity: bumped by every new turn so the sidebar lists recent conversations first.
    updated_at = models.DateTimeField(auto_now=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["owner", "-updated_at"], name="conversation_owner_recent")]

    def __str__(self) -> str:
        return self.display_title

    def get_absolute_url(self) -> str:
        return reverse("conversation", args=[self.pk])

    @property
    def display_title(self) -> str:
        return self.title or "New conversation"

    @property
    def group_name(self) -> str:
        return conversation_group(self.pk)


# A page, and the frame a socket gets when it (re)connects, carry at most this many of the latest
# messages and about this much HTML (always at least one message): "Show earlier" loads the rest.
PAGE_MESSAGES = 50
PAGE_BYTES = 48 * 1024
_MESSAGE_MARKUP_BYTES = 700  # about what the article, its status line and action forms add (measured ~400-600)


class MessageQuerySet(models.QuerySet):
    def in_order(self) -> MessageQuerySet:
        """Messages oldest first, the order they are shown and sent to Claude."""
        return self.order_by("created_at", "id")

    def page(self, *, before: int | None = None) -> tuple[list[Message], int | None]:
        """The latest messages (older than message id `before`, when given), oldest first: at most
        PAGE_MESSAGES and about PAGE_BYTES of HTML, at least one. Also the id to pass as `before` for
        the messages earlier still, or None when there are none."""
        query = self.order_by("-id")
        if before is not None:
            query = query.filter(pk__lt=before)
        newest_first: list[Message] = []
        size = 0
        for message in query[:PAGE_MESSAGES]:
            weight = len((message.html or message.content).encode()) + _MESSAGE_MARKUP_BYTES
            if newest_first and size + weight > PAGE_BYTES:
                break
            newest_first.append(message)
            size += weight
        if not newest_first:
            return [], None
        oldest = newest_first[-1].pk
        earlier = oldest if query.filter(pk__lt=oldest).exists() else None
        return newest_first[::-1], earlier


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    class Status(models.TextChoices):
        STREAMING = "streaming", "Streaming"
        COMPLETE = "complete", "Complete"
        STOPPED = "stopped", "Stopped"
        CUT_OFF = "cut_off", "Cut off"
        ERROR = "error", "Error"
        INTERRUPTED = "interrupted", "Interrupted"
        REFUSED = "refused", "Refused"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    html = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    stop_reason = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=100, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    error = models.TextField(blank=True)
    # The API call a streaming reply is making (new on every start and retry): the ledger row of that
    # call carries the same id, unique, so a call is billed once whoever ends the reply.
    attempt_id = models.UUIDField(null=True, blank=True)
    # The lease of a streaming reply: the worker process writing it renews `lease_until` about once a
    # second; any worker may end a reply whose lease has expired (its worker died).
    worker = models.CharField(max_length=100, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_creation_input_tokens = models.PositiveIntegerField(default=0)
    # Of those, written for an hour (billed at the 1-hour rate, also when a sweep ends the reply).
    cache_creation_1h_input_tokens = models.PositiveIntegerField(default=0)
    cache_read_input_tokens = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="message_conversation_order"),
            models.Index(fields=["status"], name="message_status"),
            models.Index(fields=["status", "lease_until"], name="message_lease"),
        ]

    def __str__(self) -> str:
        return f"{self.role} #{self.pk} ({self.status})"

    @property
    def dom_id(self) -> str:
        return message_dom_id(self.pk)

    def set_usage(self, usage: Usage) -> None:
        """Copy the counts shown on the message (the ledger row keeps the whole `usage`)."""
        for name, value in usage_fields(usage).items():
            setattr(self, name, value)

    @property
    def prompt_tokens(self) -> int:
        """The prompt of this reply's call as the API reported it (uncached, cache written, cache read)."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    @property
    def is_streaming(self) -> bool:
        return self.status == self.Status.STREAMING

    @property
    def is_final(self) -> bool:
        return self.status != self.Status.STREAMING


def usage_fields(usage: Usage) -> dict[str, int]:
    """The Message columns for `usage`, for `set_usage` and for bulk updates of streaming replies."""
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_creation_1h_input_tokens": usage.cache_write_1h_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
    }

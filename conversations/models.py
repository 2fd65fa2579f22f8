"""Conversations and their messages."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse


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
        """Channel-layer group every socket viewing this conversation joins."""
        return f"conversation-{self.pk}"


class MessageQuerySet(models.QuerySet):
    def in_order(self) -> MessageQuerySet:
        """Messages oldest first, the order they are shown and sent to Claude."""
        return self.order_by("created_at", "id")


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

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    html = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    stop_reason = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=100, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    error = models.TextField(blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_creation_input_tokens = models.PositiveIntegerField(default=0)
    cache_read_input_tokens = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="message_conversation_order"),
            models.Index(fields=["status"], name="message_status"),
        ]

    def __str__(self) -> str:
        return f"{self.role} #{self.pk} ({self.status})"

    @property
    def dom_id(self) -> str:
        return f"msg-{self.pk}"

    @property
    def is_streaming(self) -> bool:
        return self.status == self.Status.STREAMING

    @property
    def is_final(self) -> bool:
        return self.status != self.Status.STREAMING

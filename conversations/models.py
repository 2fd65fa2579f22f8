"""Conversations and their messages, the system-prompt presets to start one from, and share links."""

from __future__ import annotations

import hashlib
import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
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
        """Conversations of `user`, most recently active first: the one way a person's conversations are
        looked up (with `get_object_or_404` / `aget_object_or_404` for one of them)."""
        return self.filter(owner=user).order_by("-updated_at", "-id")

    def in_sidebar(self, user) -> ConversationQuerySet:
        """`user`'s conversations that are not archived, most recently active first (pinned or not)."""
        return self.owned_by(user).filter(archived=False)

    def archived_by(self, user) -> ConversationQuerySet:
        """`user`'s archived conversations, most recently active first."""
        return self.owned_by(user).filter(archived=True)


class Conversation(models.Model):
    class TitleSource(models.TextChoices):
        NONE = "", "None yet"
        FIRST_LINE = "first_line", "First line of the first message"
        CLAUDE = "claude", "Written by Claude"
        USER = "user", "Renamed by hand"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    # Where the title came from: a title renamed by hand is never replaced by one Claude writes.
    title_source = models.CharField(max_length=16, choices=TitleSource.choices, blank=True, default="")
    model = models.CharField(max_length=100)
    system_prompt = models.TextField(blank=True)
    # The top-level `system` every call of this conversation sends: the system prompt as the first reply
    # was asked for. Later edits are not written here (that would change the prefix every earlier
    # thinking block is bound to) but added as `role: "system"` messages at the end (`system_messages`).
    base_system_prompt = models.TextField(blank=True)
    # Edits of the system prompt after the conversation started: [{"after": <newest message id then>,
    # "text": <the new prompt>}], oldest first. Each is sent as a system message after the first user
    # turn that came after it, every time from then on (append-only history, see services.history).
    system_messages = models.JSONField(default=list, blank=True)
    # Sent with `thinking.block_binding.prefix_mismatch_behavior: "drop_block"`: a conversation stored
    # before history was append-only (trimmed, system prompt edited, continued) whose signed thinking may
    # be bound to a prefix it no longer has; the API drops such blocks instead of refusing every call.
    thinking_drop_mismatched = models.BooleanField(default=False)
    # Thinking of replies with a lower id is not sent back: those replies were written before the oldest
    # turns were left out (`context_from`, on models without compaction), so their prefix is gone.
    thinking_from = models.PositiveBigIntegerField(default=0)
    # The API's `stop_sequences` for every reply in this conversation (a list of strings).
    stop_sequences = models.JSONField(default=list, blank=True)
    # How hard the model thinks (`output_config.effort`), for models that take it; "" is the model's default.
    effort = models.CharField(max_length=8, blank=True)
    # The Web switch: Claude may search the web and read pages in this conversation's next replies
    # (where the site and the owner's team offer it: conversations/web.py).
    web = models.BooleanField(default=False)
    # Each time the switch changed: [{"after": <newest message id then>, "on": bool}], oldest first. Sent
    # as a tool_addition / tool_removal system message after the first message the owner sent later, every
    # time from then on (the tools themselves never change: see replies/history.py).
    web_changes = models.JSONField(default=list, blank=True)
    # The web tools' definitions (max_uses, domains) this conversation declares, fixed once a reply was
    # asked with them: Claude's later thinking is bound to them, so changed site settings apply to
    # conversations that turn the Web on afterwards.
    web_tools = models.JSONField(default=list, blank=True)
    # Messages with a lower id are no longer sent to Claude: the conversation outgrew the model's
    # context window and its oldest turns were left out (the page shows a marker there). It only moves
    # forward, in large steps, so the cached prompt prefix stays the same for many turns.
    context_from = models.PositiveBigIntegerField(default=0)
    # Pinned conversations head the sidebar; archived ones leave it for the "Archived" page.
    pinned = models.BooleanField(default=False)
    archived = models.BooleanField(default=False)
    # When the model or system prompt last changed: token counts of earlier calls no longer bound the next.
    prompt_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Last activity: bumped by every new turn so the sidebar lists recent conversations first.
    updated_at = models.DateTimeField(auto_now=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["owner", "-updated_at"], name="conversation_owner_recent"),
            models.Index(fields=["owner", "archived", "-updated_at", "-id"], name="conversation_sidebar"),
        ]

    def __str__(self) -> str:
        return self.display_title

    def save(self, *args, **kwargs) -> None:
        # A new conversation's calls send the system prompt it starts with at the top.
        if self._state.adding and not self.base_system_prompt:
            self.base_system_prompt = self.system_prompt
        super().save(*args, **kwargs)

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
_MESSAGE_MARKUP_BYTES = (
    700  # about what the article, its status line and action forms add (measured ~400-600)
)


def known_none(instance: models.Model, related: str) -> None:
    """Mark `instance.<related>` (a reverse relation) as read and empty, as prefetch_related would, when
    the caller knows it has none: rendering it then runs no query."""
    empty = getattr(instance, related).all()
    empty._result_cache, empty._prefetch_done = [], True
    instance.__dict__.setdefault("_prefetched_objects_cache", {})[related] = empty


#: The stop reason of a call whose prompt and output filled the model's context window.
WINDOW_EXCEEDED = "model_context_window_exceeded"


def may_have(conversation, flag: str) -> bool:
    """False only when the query that read `conversation` said it has none of `flag` (an annotation such
    as `has_files` or `window_cut`, see replies.store.send_state): a look-up for them can be skipped."""
    return getattr(conversation, flag, True) is not False


class MessageQuerySet(models.QuerySet):
    def owned_by(self, user) -> MessageQuerySet:
        """Messages in `user`'s conversations (with their conversation, which callers show or check)."""
        return self.filter(conversation__owner=user).select_related("conversation")

    def active(self) -> MessageQuerySet:
        """Messages on the conversation's active branch: what the page shows and Claude receives."""
        return self.filter(active=True)

    def in_order(self) -> MessageQuerySet:
        """Messages oldest first, the order they are shown and sent to Claude."""
        return self.order_by("created_at", "id")

    def page(self, *, before: int | None = None) -> tuple[list[Message], int | None]:
        """The latest messages of the active branch (older than message id `before`, when given),
        oldest first, with their place among their versions (`annotate_branches`): at most
        PAGE_MESSAGES and about PAGE_BYTES of HTML, at least one. Also the id to pass as `before` for
        the messages earlier still, or None when there are none."""
        # A page shows what a reply stores for display, never the blocks it sends back (they can be large).
        query = self.active().order_by("-id").defer("content_blocks").prefetch_related("attachments")
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
        return annotate_branches(newest_first[::-1]), earlier


class Message(models.Model):
    """One turn of a conversation, a node of its tree of branches.

    Branch model: every message has a `parent` (the turn it answers or follows; None for a first
    message), so a conversation is a tree. Messages with the same parent are *versions* of one turn
    ("< 2 / 3 >" on the page), oldest first by id: editing a user turn adds a sibling user turn,
    regenerating a reply adds a sibling reply, and nothing is ever overwritten. Among siblings exactly
    one is `chosen` (the version last shown, remembered when another branch is shown). `active` marks
    the *active branch*: the path from a first message down through chosen children. A child is always
    newer than its parent, so the active branch in id order is the conversation as shown and sent to
    Claude, and every read of "the conversation" is `messages.active()`. Inactive messages are kept
    whole (export keeps every branch; search can mark hits outside the active one).
    """

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
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    chosen = models.BooleanField(default=True)
    active = models.BooleanField(default=True)
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    html = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    stop_reason = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=100, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    error = models.TextField(blank=True)
    # Claude's summarized thinking, shown above the reply, and the thinking blocks as the API sent them
    # ([{"thinking": ..., "signature": ...}], one per call): later requests send them back unmodified.
    thinking = models.TextField(blank=True)
    thinking_blocks = models.JSONField(default=list, blank=True)
    thinking_ms = models.PositiveIntegerField(default=0)
    # A reply continued after a cut-off was written by several calls: where each earlier call ended, as
    # [characters of text, thinking blocks] so far, so the history replays the calls as they were sent.
    call_ends = models.JSONField(default=list, blank=True)
    # A reply that used server tools (web search, web fetch), per call as in `call_ends` (a list per
    # call, [] for a call that used none): its content blocks as the API returned them (thinking,
    # server_tool_use, result blocks with their encrypted content, text with citations), sent back
    # verbatim in place of that call's text and thinking. Empty for a reply of text alone.
    content_blocks = models.JSONField(default=list, blank=True)
    # What such a reply shows (replies/sources.py): its steps ([{"tool", "target", "domain", "state",
    # "error", "reason", "results"}]), the sources it cites ([{"title", "url", "domain"}], numbered
    # from 1) and where each citation ends in `content` ([{"at", "source", "cited_text"}]).
    web_steps = models.JSONField(default=list, blank=True)
    sources = models.JSONField(default=list, blank=True)
    citations = models.JSONField(default=list, blank=True)
    # On the last message an on-demand compaction summarised: {"block": <the compaction block as the
    # API returned it>, "summary": <its text>}. Later calls send the block in place of everything up
    # to and including this message (on this branch); the messages themselves stay.
    compaction = models.JSONField(null=True, blank=True)
    # Estimated tokens of the images and PDFs in this reply's request (in its input counts too).
    media_tokens = models.PositiveIntegerField(default=0)
    # The API call a streaming reply is making (new on every start and retry): the ledger row of that
    # call carries the same id, unique, so a call is billed once whoever ends the reply.
    attempt_id = models.UUIDField(null=True, blank=True)
    # The stop sequence a reply ended on (stop_reason "stop_sequence"), as the API named it.
    stop_sequence = models.CharField(max_length=200, blank=True)
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
    # The price (pUSD) the page showed under the box for the message this reply answers, when it
    # showed one for exactly that text (replies/price.py); its receipt shows it beside the real cost.
    price_estimate = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="message_conversation_order"),
            models.Index(fields=["conversation", "active", "id"], name="message_active_branch"),
            models.Index(fields=["status"], name="message_status"),
            models.Index(fields=["status", "lease_until"], name="message_lease"),
        ]

    # Where this message stands among its versions (1-based) and how many there are: set for the
    # messages a page shows by `annotate_branches`; a lone version otherwise.
    branch_index = 1
    branch_count = 1
    # Set on an unsaved message that starts a new first turn: it gets no parent on save.
    starts_conversation = False

    def __str__(self) -> str:
        return f"{self.role} #{self.pk} ({self.status})"

    def save(self, *args, **kwargs) -> None:
        # A message added without a parent follows the active branch's latest message.
        if self._state.adding and self.parent_id is None and not self.starts_conversation:
            self.parent = (
                Message.objects.filter(conversation_id=self.conversation_id, active=True)
                .order_by("-pk")
                .first()
            )
        super().save(*args, **kwargs)

    @property
    def dom_id(self) -> str:
        return message_dom_id(self.pk)

    def set_usage(self, usage: Usage) -> None:
        """Copy the counts shown on the message (the ledger row keeps the whole `usage`)."""
        for name, value in usage_fields(usage).items():
            setattr(self, name, value)

    def usage(self) -> Usage:
        """The counts `set_usage` copied, as a Usage again (cache writes split by lifetime)."""
        write_1h = min(self.cache_creation_1h_input_tokens, self.cache_creation_input_tokens)
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_write_5m_tokens=self.cache_creation_input_tokens - write_1h,
            cache_write_1h_tokens=write_1h,
            cache_read_tokens=self.cache_read_input_tokens,
        )

    @property
    def prompt_tokens(self) -> int:
        """The prompt of this reply's call as the API reported it (uncached, cache written, cache read)."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    @property
    def thinking_seconds(self) -> int:
        """How long Claude thought before answering, in whole seconds (at least 1 once it thought)."""
        return max(1, round(self.thinking_ms / 1000)) if self.thinking_ms or self.thinking else 0

    @property
    def is_streaming(self) -> bool:
        return self.status == self.Status.STREAMING

    @property
    def fallback_model(self) -> str:
        """The offered model the page suggests trying after this reply was refused ("" for none)."""
        from .catalog import model_info

        fallback = model_info(self.model).fallback
        return fallback if fallback in settings.CHAT_MODELS else ""

    @property
    def is_final(self) -> bool:
        return self.status != self.Status.STREAMING

    @property
    def is_first_version(self) -> bool:
        """Whether this is the first of its turn's versions (no "<")."""
        return self.branch_index <= 1

    @property
    def is_last_version(self) -> bool:
        """Whether this is the last of its turn's versions (no ">")."""
        return self.branch_index >= self.branch_count

    @property
    def may_regenerate(self) -> bool:
        """A finished reply that can be written again as a new version (Regenerate)."""
        return self.status in (self.Status.COMPLETE, self.Status.REFUSED, self.Status.CUT_OFF)

    @property
    def cut_by_window(self) -> bool:
        """A reply cut off because the conversation filled the model's context window."""
        return self.status == self.Status.CUT_OFF and self.stop_reason == WINDOW_EXCEEDED


def usage_fields(usage: Usage) -> dict[str, int]:
    """The Message columns for `usage`, for `set_usage` and for bulk updates of streaming replies."""
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_creation_1h_input_tokens": usage.cache_write_1h_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
    }


def annotate_branches(messages: list[Message]) -> list[Message]:
    """Set `branch_index` and `branch_count` on `messages` (one query) and return them."""
    if not messages:
        return messages
    parents = {m.parent_id for m in messages if m.parent_id is not None}
    roots = {m.conversation_id for m in messages if m.parent_id is None}
    siblings = Message.objects.filter(
        models.Q(parent_id__in=parents) | models.Q(parent__isnull=True, conversation_id__in=roots)
    )
    groups: dict[tuple, list[int]] = {}
    for pk, parent_id, conversation_id in siblings.order_by("pk").values_list(
        "pk", "parent_id", "conversation_id"
    ):
        groups.setdefault((parent_id, conversation_id if parent_id is None else None), []).append(pk)
    for message in messages:
        key = (message.parent_id, message.conversation_id if message.parent_id is None else None)
        versions = groups.get(key, [message.pk])
        message.branch_count = len(versions)
        message.branch_index = versions.index(message.pk) + 1 if message.pk in versions else 1
    return messages


class PresetQuerySet(models.QuerySet):
    def offered_to(self, user) -> PresetQuerySet:
        """The presets `user` may start a conversation from: their own and the published site-wide
        ones, site-wide first, then by name."""
        return self.filter(models.Q(owner=user) | models.Q(owner__isnull=True, published=True)).order_by(
            models.F("owner").asc(nulls_first=True), "name", "id"
        )


class Preset(models.Model):
    """A saved system prompt. With an owner it is theirs alone; without one it is site-wide, made by
    staff in the admin and offered to everyone once published. A conversation started from a preset
    copies its text: changing or deleting the preset later leaves the conversation as it was."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="presets",
        help_text="Empty for a site-wide preset.",
    )
    name = models.CharField(max_length=100)
    system_prompt = models.TextField()
    published = models.BooleanField(
        default=False, help_text="Site-wide presets are offered to everyone only once published."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PresetQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["owner", "name"], name="preset_owner_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_site_wide(self) -> bool:
        return self.owner_id is None


#: The most searches (or fetches) one reply may be allowed: each is billed, and held before the call.
WEB_MAX_USES = 50
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def web_domain_errors(domains: list[str]) -> list[str]:
    """Why each of `domains` is no bare host name the web tools take ("example.com", "docs.example.org":
    no scheme, path, port or wildcard; a domain covers its subdomains), as sentences; [] when all are."""
    errors = []
    for domain in domains:
        labels = domain.split(".")
        if "://" in domain or "/" in domain:
            errors.append(f"“{domain}”: write the host name alone, without http:// or a path.")
        elif len(domain) > 253 or len(labels) < 2 or not all(_HOST_LABEL.match(label) for label in labels):
            errors.append(f"“{domain}” is not a host name such as example.com.")
    return errors


class WebSettings(models.Model):
    """Web search and web fetch for the whole site (a single row, pk=1): made from the CHAT_WEB… settings
    the first time it is read, then edited in the admin. Teams may turn the web off for their members."""

    offered = models.BooleanField(
        help_text="People may turn the Web on in their conversations (each search is billed to them)."
    )
    max_searches = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(WEB_MAX_USES)],
        help_text="The most web searches one reply may make (its budget hold covers them all).",
    )
    max_fetches = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(WEB_MAX_USES)],
        help_text="The most pages one reply may read.",
    )
    allowed_domains = models.JSONField(
        default=list, blank=True, help_text="Results only from these host names (and their subdomains)."
    )
    blocked_domains = models.JSONField(
        default=list, blank=True, help_text="Results never from these host names (and their subdomains)."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "web search and fetch"
        verbose_name_plural = "web search and fetch"

    def __str__(self) -> str:
        return "Web search and fetch"

    def clean(self) -> None:
        errors = web_domain_errors([*self.allowed_domains, *self.blocked_domains])
        if self.allowed_domains and self.blocked_domains:
            errors.append("Give allowed domains or blocked domains, not both: the API takes one list.")
        if errors:
            raise ValidationError(errors)

    @classmethod
    def load(cls) -> WebSettings:
        """The row, made from the settings when there is none yet."""
        return cls.objects.get_or_create(
            pk=1,
            defaults={
                "offered": settings.CHAT_WEB,
                "max_searches": settings.CHAT_WEB_MAX_SEARCHES,
                "max_fetches": settings.CHAT_WEB_MAX_FETCHES,
                "allowed_domains": list(settings.CHAT_WEB_ALLOWED_DOMAINS),
                "blocked_domains": list(settings.CHAT_WEB_BLOCKED_DOMAINS),
            },
        )[0]


def share_token_hash(token: str) -> str:
    """What is stored of a share link's token: its SHA-256 (the token itself is shown once)."""
    return hashlib.sha256(token.encode()).hexdigest()


class ShareLink(models.Model):
    """A read-only link to one conversation. Only the token's hash is stored; the owner revokes the
    link by deleting it (a new link gets a new token)."""

    conversation = models.OneToOneField(Conversation, on_delete=models.CASCADE, related_name="share_link")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Share link of conversation {self.conversation_id}"


def _attachment_storage():
    from django.core.files.storage import storages

    return storages[settings.CHAT_ATTACHMENT_STORAGE]


def attachment_path(attachment: Attachment, filename: str) -> str:
    # A random name: nothing about the person or the file's original name is in the path.
    import uuid

    return f"attachments/{attachment.owner_id}/{uuid.uuid4().hex}{filename[filename.rfind('.') :]}"


class Attachment(models.Model):
    """An image, PDF or text file a person attached to a message. Pending (no message) between upload
    and send; a pending one without a conversation was uploaded in the home page's composer, for the
    first message of a conversation not made yet (sending it gives it that conversation).

    Its file lives in the private attachment storage and is served only to its owner; it is deleted
    with its message or conversation (the ledger keeps what the calls cost).
    """

    class Kind(models.TextChoices):
        IMAGE = "image", "Image"
        PDF = "pdf", "PDF"
        TEXT = "text", "Text file"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, null=True, blank=True, related_name="attachments"
    )
    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, null=True, blank=True, related_name="attachments"
    )
    file = models.FileField(upload_to=attachment_path, storage=_attachment_storage, max_length=255)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    media_type = models.CharField(max_length=32)
    name = models.CharField(max_length=255)
    size = models.PositiveIntegerField()  # bytes stored (after scaling)
    original_width = models.PositiveIntegerField(default=0)
    original_height = models.PositiveIntegerField(default=0)
    width = models.PositiveIntegerField(default=0)  # as stored and sent
    height = models.PositiveIntegerField(default=0)
    pages = models.PositiveIntegerField(default=0)
    tokens = models.PositiveIntegerField()  # estimated input tokens
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["owner", "message"], name="attachment_owner_pending")]

    def __str__(self) -> str:
        return f"{self.kind} {self.name} ({self.pk})"

    def get_absolute_url(self) -> str:
        return reverse("attachment", args=[self.pk])

    @property
    def is_image(self) -> bool:
        return self.kind == self.Kind.IMAGE

    @property
    def is_text(self) -> bool:
        return self.kind == self.Kind.TEXT

    @property
    def size_label(self) -> str:
        """Its size as people read it: "820 bytes", "12 KB", "3.4 MB"."""
        if self.size < 1024:
            return f"{self.size} byte{'s' if self.size != 1 else ''}"
        if self.size < 1024 * 1024:
            return f"{-(-self.size // 1024):,} KB"  # rounded up: never "0 KB"
        return f"{self.size / (1024 * 1024):.1f} MB"


class ImportClaim(models.Model):
    """An import running for a person, on any worker: one at a time each (see
    conversations.transfer.conversation_import). A claim older than IMPORT_CLAIM_LIFETIME is a crashed
    worker's, and is taken over."""

    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    started_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"import by {self.owner_id} since {self.started_at:%H:%M:%S}"

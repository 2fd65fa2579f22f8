"""Export and import: a conversation as Markdown or JSON, all of a person's data as one zip, and import
of the JSON export as a new conversation.

The JSON format is versioned (`"format": FORMAT`). A reader of format N reads files of format N and
earlier and ignores fields it does not know, so a field can be added without a new format (a message's
`parent`, say, to keep branches); a file of a newer format is refused with a sentence saying so.
Each message carries its `id` inside the file, for such references. Money is not exported or
imported: the ledger belongs to the server, and an imported conversation has no calls of its own.

Sources (added within format 1): a reply that looked things up on the web carries `sources` (the pages
its answer cites, numbered from 1: `title`, `url`, `domain`) and `citations` (where in its `content`
each cited passage ends, `at` in characters, and which `source` it cites). Import keeps them, cleaned
as the app cleans its own (only http(s) addresses stay links).

Branches (added within format 1): each message also carries `parent` (the `id` of the message it
follows, earlier in the same file, or null for a first message), `chosen` (it is the version of its
turn that is shown; one per turn) and `active` (it is on the branch shown). Import rebuilds that tree
with new ids; `active` is worked out again from `chosen`. A file whose messages have no `parent` (an
export made before branches) is read as one branch in the file's order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from audit.services import audit_record

from .catalog import EFFORTS, takes_effort
from .inputs import InvalidInput, ModelChoice, model_choice, refuse_unstorable
from .models import Conversation, ImportClaim, Message, Preset
from .rendering import link_url, render_cited
from .sources import citations_from, sources_from

FORMAT = 1
KIND = "teamchat.conversation"
# An imported message may be longer than one a person types (a long reply); this bounds one row.
IMPORT_MESSAGE_CHARS = 1_000_000
IMPORT_MESSAGES = 20_000
# Characters of text (messages and thinking) one import may hold: rendering is bounded with it.
IMPORT_CHARS = 5_000_000


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def conversation_filename(conversation: Conversation, extension: str) -> str:
    """A download name: the conversation's id and its title, made safe for file systems."""
    return f"{conversation.pk}-{slugify(conversation.display_title)[:60] or 'conversation'}.{extension}"


def _messages(conversation: Conversation) -> Iterator[Message]:
    return conversation.messages.in_order().iterator(chunk_size=500)


def conversation_json(conversation: Conversation) -> dict:
    """The conversation as the JSON export's object (every message, oldest first; no money)."""
    return {
        "format": FORMAT,
        "kind": KIND,
        "exported_at": _iso(timezone.now()),
        "conversation": {
            "id": conversation.pk,
            "title": conversation.title,
            "model": conversation.model,
            "system_prompt": conversation.system_prompt,
            "effort": conversation.effort,
            "pinned": conversation.pinned,
            "archived": conversation.archived,
            "created_at": _iso(conversation.created_at),
            "updated_at": _iso(conversation.updated_at),
        },
        "messages": [
            {
                "id": message.pk,
                "parent": message.parent_id,
                "chosen": message.chosen,
                "active": message.active,
                "role": message.role,
                "content": message.content,
                "thinking": message.thinking,
                "status": message.status,
                "stop_reason": message.stop_reason,
                "error": message.error,
                "model": message.model,
                "created_at": _iso(message.created_at),
                **({"sources": message.sources, "citations": message.citations} if message.sources else {}),
            }
            for message in _messages(conversation)
        ],
    }


def conversation_json_text(conversation: Conversation) -> str:
    return json.dumps(conversation_json(conversation), ensure_ascii=False, indent=2) + "\n"


_STATUS_NOTES = {
    Message.Status.STREAMING: "still being written when exported",
    Message.Status.STOPPED: "stopped",
    Message.Status.CUT_OFF: "cut off at the length limit",
    Message.Status.ERROR: "failed",
    Message.Status.INTERRUPTED: "interrupted",
    Message.Status.REFUSED: "Claude declined to answer",
}


def conversation_markdown(conversation: Conversation) -> str:
    """The conversation's active branch as Markdown: a heading per turn, the text as it was written."""
    lines = [f"# {conversation.display_title}", ""]
    lines.append(f"Model: {conversation.model} · started {conversation.created_at:%Y-%m-%d %H:%M} UTC")
    lines.append("")
    if conversation.system_prompt:
        lines += ["## System prompt", "", conversation.system_prompt, ""]
    for message in conversation.messages.active().in_order().iterator(chunk_size=500):
        if message.role == Message.Role.USER:
            lines.append("## You")
        else:
            lines.append(f"## Claude ({message.model})" if message.model else "## Claude")
        lines += ["", message.content, ""]
        lines += _sources_markdown(message.sources)
        note = _STATUS_NOTES.get(message.status)
        if note:
            lines += [f"*({note}{': ' + message.error if message.error else ''})*", ""]
    return "\n".join(lines)


# Markdown's punctuation, escaped in text from a web page so it stays text in any Markdown viewer.
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~&])")


def _sources_markdown(sources: list[dict]) -> list[str]:
    """A reply's sources as a numbered Markdown list: titles escaped, links only to http(s) addresses."""
    if not sources:
        return []
    lines = ["Sources:", ""]
    for number, source in enumerate(sources, start=1):
        title = _MARKDOWN_PUNCTUATION.sub(r"\\\1", source.get("title", ""))
        url = link_url(source.get("url", ""))
        lines.append(f"{number}. [{title}](<{url}>)" if url else f"{number}. {title}")
    return [*lines, ""]


def user_archive(user) -> tempfile.SpooledTemporaryFile:
    """All of `user`'s data as a zip (rewound, ready to send): their account, presets, and every
    conversation as JSON (importable) and as Markdown. Built in a spooled temporary file, so a large
    archive goes to disk, not memory."""
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
    with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        account = {
            "format": FORMAT,
            "kind": "teamchat.account",
            "exported_at": _iso(timezone.now()),
            "username": user.get_username(),
            "email": user.email,
            "date_joined": _iso(user.date_joined),
        }
        archive.writestr("account.json", json.dumps(account, ensure_ascii=False, indent=2) + "\n")
        presets = [
            {"name": p.name, "system_prompt": p.system_prompt, "created_at": _iso(p.created_at)}
            for p in Preset.objects.filter(owner=user).order_by("name", "id")
        ]
        archive.writestr("presets.json", json.dumps(presets, ensure_ascii=False, indent=2) + "\n")
        for conversation in Conversation.objects.owned_by(user).iterator(chunk_size=200):
            archive.writestr(
                f"conversations/{conversation_filename(conversation, 'json')}",
                conversation_json_text(conversation),
            )
            archive.writestr(
                f"conversations/{conversation_filename(conversation, 'md')}",
                conversation_markdown(conversation),
            )
    spool.seek(0)
    return spool


@dataclass(frozen=True)
class _ImportedMessage:
    role: str
    content: str
    thinking: str
    status: str
    stop_reason: str
    error: str
    model: str
    sources: tuple = ()
    citations: tuple = ()
    # The message's place in the tree, as indexes into the file's messages (None: a first message).
    parent: int | None = None
    chosen: bool | None = None
    active: bool | None = None


def _text(value: object, what: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"The file is not a valid conversation export: {what} must be text.")
    if len(value) > limit:
        raise InvalidInput(f"The file is not a valid conversation export: {what} is too long.")
    return refuse_unstorable(value, f"The file's {what}")


def _parse(data: bytes, models: ModelChoice) -> tuple[dict, list[_ImportedMessage], bool]:
    """The conversation fields and messages of an export file (on one of the importer's `models`), and
    whether they carry branches (a `parent` on any message), or InvalidInput saying what is wrong."""
    foreign = "This is not a conversation exported from this app (choose a .json file from its Export menu)."
    if len(data) > settings.CHAT_IMPORT_MAX_BYTES:
        raise InvalidInput(
            f"The file is too large to import (the limit is {settings.CHAT_IMPORT_MAX_BYTES:,} bytes)."
        )
    if data.startswith(b"PK\x03\x04"):
        raise InvalidInput(
            "This is a zip archive: unpack it and import one conversation's .json file from its conversations folder."
        )
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise InvalidInput(foreign + " It is not valid JSON.") from None
    except ValueError:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise InvalidInput(foreign + " It holds a number too large to read.") from None
    if not isinstance(document, dict) or document.get("kind") != KIND:
        raise InvalidInput(foreign)
    version = document.get("format")
    if type(version) is not int or version < 1:
        raise InvalidInput(foreign + " It has no valid format version.")
    if version > FORMAT:
        raise InvalidInput(
            f"This file was exported by a newer version of the app (format {version}); "
            f"this server reads format {FORMAT} and earlier. Nothing was imported."
        )
    conversation = document.get("conversation")
    messages = document.get("messages")
    if not isinstance(conversation, dict) or not isinstance(messages, list):
        raise InvalidInput(foreign + " It lacks its conversation or its messages.")
    if len(messages) > IMPORT_MESSAGES:
        raise InvalidInput(
            f"The conversation has too many messages to import (the limit is {IMPORT_MESSAGES:,})."
        )
    characters = sum(
        len(m[key])
        for m in messages
        if isinstance(m, dict)
        for key in ("content", "thinking")
        if isinstance(m.get(key), str)
    )
    if characters > IMPORT_CHARS:
        raise InvalidInput(
            f"The conversation is too long to import ({characters:,} characters; the limit is {IMPORT_CHARS:,})."
        )
    # A model this server does not offer, or the importer's team does not allow: the conversation goes
    # on with their default (its messages keep naming the models that wrote them).
    model = models.allowed_or_default(_text(conversation.get("model"), "the model", 100))
    fields = {
        "title": imported_title(_text(conversation.get("title"), "the title", 200)),
        "model": model,
        "system_prompt": _text(
            conversation.get("system_prompt"), "the system prompt", settings.CHAT_MAX_SYSTEM_PROMPT_CHARS
        ),
    }
    effort = _text(conversation.get("effort"), "the effort", 8)
    fields["effort"] = effort if effort in EFFORTS and takes_effort(model) else ""
    statuses = set(Message.Status.values)
    parsed = []
    for number, item in enumerate(messages, start=1):
        what = f"message {number}"
        if not isinstance(item, dict) or item.get("role") not in Message.Role.values:
            raise InvalidInput(f"The file is not a valid conversation export: {what} has no valid role.")
        status = item.get("status", Message.Status.COMPLETE)
        if status not in statuses:
            raise InvalidInput(f"The file is not a valid conversation export: {what} has an unknown status.")
        if status == Message.Status.STREAMING:
            status = Message.Status.INTERRUPTED  # nothing is writing it here
        content = _text(item.get("content"), f"the text of {what}", IMPORT_MESSAGE_CHARS)
        sources = sources_from(item.get("sources")) if item["role"] == Message.Role.ASSISTANT else []
        parsed.append(
            _ImportedMessage(
                role=item["role"],
                content=content,
                thinking=_text(item.get("thinking"), f"the thinking of {what}", IMPORT_MESSAGE_CHARS),
                status=status if item["role"] == Message.Role.ASSISTANT else Message.Status.COMPLETE,
                stop_reason=_text(item.get("stop_reason"), f"the stop reason of {what}", 64),
                error=_text(item.get("error"), f"the error of {what}", 2000),
                model=_text(item.get("model"), f"the model of {what}", 100),
                sources=tuple(sources),
                citations=tuple(
                    citations_from(item.get("citations"), sources=len(sources), text_length=len(content))
                ),
            )
        )
    branched = any("parent" in item for item in messages)
    if branched:
        parsed = _tree(messages, parsed)
    return fields, parsed, branched


IMPORTED = " (imported)"


def imported_title(title: str) -> str:
    """The title an imported conversation gets: the file's, marked "(imported)" once (in 200 characters)."""
    title = title.strip() or "New conversation"
    if title.endswith(IMPORTED.strip()):
        return title
    return title[: 200 - len(IMPORTED)].rstrip() + IMPORTED


def _reference(value: object) -> int | str | None:
    """A message id as a file may write it: a whole number or a string (not true/false)."""
    if value is None or (type(value) is int) or (isinstance(value, str) and 0 < len(value) <= 100):
        return value
    return _NOT_AN_ID


_NOT_AN_ID = object()


def _tree(messages: list[dict], parsed: list[_ImportedMessage]) -> list[_ImportedMessage]:
    """`parsed` with each message's parent (an index into the file) and its `chosen`/`active` marks, or
    InvalidInput naming the message whose reference is wrong: a parent that is not an earlier message
    of the file (one later or itself would make a cycle; ids from elsewhere are never looked up), an id
    used twice, two chosen versions of one turn."""
    bad = "The file is not a valid conversation export:"
    place: dict[int | str, int] = {}
    tree = []
    for index, (item, message) in enumerate(zip(messages, parsed, strict=True)):
        number = index + 1
        own = _reference(item.get("id"))
        if own is None or own is _NOT_AN_ID:
            raise InvalidInput(f"{bad} message {number} has no valid id, which its branches need.")
        if own in place:
            raise InvalidInput(f"{bad} messages {place[own] + 1} and {number} have the same id ({own}).")
        parent = _reference(item.get("parent"))
        if parent is _NOT_AN_ID:
            raise InvalidInput(f"{bad} the parent of message {number} is not a message id.")
        if parent is not None and parent not in place:
            if parent == own or any(_reference(later.get("id")) == parent for later in messages[index + 1 :]):
                raise InvalidInput(
                    f"{bad} message {number} names itself or a later message ({parent}) as its parent, "
                    "so its branches would go round in a cycle."
                )
            raise InvalidInput(
                f"{bad} the parent of message {number} ({parent}) is not a message of this conversation's file."
            )
        marks = {}
        for mark in ("chosen", "active"):
            value = item.get(mark)
            if value is not None and type(value) is not bool:
                raise InvalidInput(f"{bad} “{mark}” of message {number} must be true or false.")
            marks[mark] = value
        place[own] = index
        tree.append(dataclasses.replace(message, parent=None if parent is None else place[parent], **marks))
    versions: dict[int | None, list[int]] = {}
    for index, message in enumerate(tree):
        versions.setdefault(message.parent, []).append(index)
    for group in versions.values():
        chosen = [index for index in group if tree[index].chosen]
        if len(chosen) > 1:
            raise InvalidInput(
                f"{bad} messages {chosen[0] + 1} and {chosen[1] + 1} are both marked as the chosen version "
                "of one turn; only one can be."
            )
    return tree


def _branch_marks(parsed: list[_ImportedMessage]) -> list[tuple[int | None, bool, bool]]:
    """(parent index, chosen, active) for each message of a tree read by `_tree`. In a turn with no
    version marked chosen, the one marked active is chosen, else the newest; the active branch then
    runs from the chosen first message down through chosen versions, as on the page."""
    versions: dict[int | None, list[int]] = {}
    for index, message in enumerate(parsed):
        versions.setdefault(message.parent, []).append(index)
    chosen = set()
    for group in versions.values():
        pick = next((i for i in group if parsed[i].chosen), None)
        if pick is None:
            pick = next((i for i in group if parsed[i].active), group[-1])
        chosen.add(pick)
    active = set()
    node = None
    while node in versions:
        node = next(i for i in versions[node] if i in chosen)
        active.add(node)
    return [(m.parent, i in chosen, i in active) for i, m in enumerate(parsed)]


#: Longer than any import runs (bounded by IMPORT_MAX_CHARS): a claim this old was left by a crashed worker.
IMPORT_CLAIM_LIFETIME = timedelta(minutes=10)


@contextlib.contextmanager
def _one_import_at_a_time(user_id: int):
    """One import per person at a time, on any number of workers (a row in ImportClaim, the person's id
    its primary key): a second is refused with a sentence."""
    now = timezone.now()
    try:
        with transaction.atomic():
            ImportClaim.objects.filter(owner_id=user_id, started_at__lt=now - IMPORT_CLAIM_LIFETIME).delete()
            ImportClaim.objects.create(owner_id=user_id, started_at=now)
    except IntegrityError:
        raise InvalidInput(
            "An import of yours is still running: wait for it to finish, then try again."
        ) from None
    try:
        yield
    finally:
        ImportClaim.objects.filter(owner_id=user_id, started_at=now).delete()


def conversation_import(*, owner, data: bytes) -> Conversation:
    """A new conversation of `owner` from a JSON export, in one transaction: everything or nothing.

    Ids in the file are never looked up (whose they were does not matter); the conversation and its
    messages get new ones. No usage is imported and the ledger is not touched.
    """
    with _one_import_at_a_time(owner.pk):
        fields, parsed, tree = _parse(data, model_choice(owner.pk))
        # Rendered before the write transaction: on SQLite that transaction holds the whole database,
        # so it must only write.
        htmls = [
            render_cited(m.content, list(m.citations), list(m.sources))
            if m.role == Message.Role.ASSISTANT
            else ""
            for m in parsed
        ]
        return _store(owner, fields, parsed, tree, htmls)


def _store(owner, fields: dict, parsed: list[_ImportedMessage], tree: bool, htmls: list[str]) -> Conversation:
    with transaction.atomic():
        conversation = Conversation.objects.create(owner=owner, **fields)
        Message.objects.bulk_create(
            [
                Message(
                    conversation=conversation,
                    role=m.role,
                    content=m.content,
                    # The summarized thinking is shown; its signed blocks are not imported, so it is
                    # never sent back to the API (a signature belongs to the call that made it).
                    thinking=m.thinking,
                    html=html,
                    status=m.status,
                    stop_reason=m.stop_reason,
                    error=m.error,
                    model=m.model,
                    sources=list(m.sources),
                    citations=list(m.citations),
                )
                for m, html in zip(parsed, htmls, strict=True)
            ],
            batch_size=500,
        )
        # Rows were inserted in the file's order, so ids ascend with it: a child is newer than its parent.
        linked = list(conversation.messages.order_by("pk").only("pk", "parent", "chosen", "active"))
        if tree:
            for message, (parent, chosen, active) in zip(linked, _branch_marks(parsed), strict=True):
                message.parent = None if parent is None else linked[parent]
                message.chosen, message.active = chosen, active
            Message.objects.bulk_update(linked, ["parent", "chosen", "active"], batch_size=500)
        else:
            # An export without branches: one branch, in the file's order.
            for previous, message in zip(linked, linked[1:], strict=False):
                message.parent = previous
            Message.objects.bulk_update(linked, ["parent"], batch_size=500)
        audit_record(
            action="import.conversation",
            obj=conversation,
            object_label=f"conversation #{conversation.pk}",
            after={"messages": len(linked)},
        )
    return conversation

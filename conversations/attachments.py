"""Images, PDFs and text files attached to messages: checking, scaling, storing and sending them.

An upload is checked before anything is stored: its bytes must be what its name says (Pillow decodes
an image whole, a PDF must start with %PDF- and its pages be countable), within the API's limits and the
site's (settings CHAT_MAX_*). Images larger than the model uses are scaled down here, so the bytes sent
and the tokens billed are no more than needed: ceil(width x height / 750) tokens each; a PDF is
estimated at PDF_PAGE_TOKENS per page. The offline Claude applies the same rule (offline_claude/media.py;
tests hold the two together). A text file (plain text, Markdown, CSV, JSON, source code: TEXT_EXTENSIONS)
must be valid UTF-8 without NUL bytes; it is sent as a plain-text `document` block and estimated at
TEXT_BYTES_PER_TOKEN bytes a token (shown on its chip), while the budget hold counts each of its bytes as a
token, as it does for message text (a token is at least one byte).

An upload first becomes a pending attachment of its conversation (no message); sending a message claims
the pending ones it names, in the same transaction as the message.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Case, Count, F, Sum, When
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone

from .inputs import parse_int
from .models import Attachment

logger = logging.getLogger(__name__)

IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
EXTENSIONS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".gif": "GIF",
    ".webp": "WEBP",
    ".pdf": "PDF",
}
# Text files by extension (the content is checked too: UTF-8, no NUL). A file without an extension is
# not guessed at.
TEXT_EXTENSIONS = frozenset(
    ".txt .text .md .markdown .rst .csv .tsv .json .jsonl .ndjson .xml .yaml .yml .toml .ini .cfg .conf "
    ".log .tex .srt .vtt .html .htm .css .scss .js .mjs .cjs .ts .tsx .jsx .py .pyi .rb .go .rs .java .kt "
    ".kts .scala .swift .c .h .cc .cpp .cxx .hpp .hh .cs .m .php .pl .pm .lua .r .jl .dart .ex .exs .erl "
    ".hs .ml .clj .el .vim .sh .bash .zsh .fish .ps1 .bat .sql .graphql .proto .gradle .cmake .mk .diff "
    ".patch .env .properties .svelte .vue .sol .tf .nix .zig .hcl .ipynb".split()
)
#: The file picker's `accept`: every extension taken, and the media types of images and PDFs.
ACCEPT = ",".join(
    [*EXTENSIONS, *sorted(TEXT_EXTENSIONS), *IMAGE_TYPES.values(), "application/pdf", "text/plain"]
)
TEXT_MEDIA_TYPE = "text/plain"
TEXT_BYTES_PER_TOKEN = 4  # the estimate shown: English prose and code are about four bytes a token
IMAGE_MAX_DIMENSION = 8000  # the API refuses larger images, either side
IMAGE_MAX_PIXELS = 1_150_000  # about what the model uses; larger images are scaled down
TOKENS_PER_PIXEL_DIVISOR = 750
PDF_PAGE_TOKENS = 3000
# The API takes requests of up to 32 MB; base64 makes files a third larger. One message's files stay
# under this, so a message with its text always fits (a long history of large files may not: the API's
# 413 then reads "This conversation is too long for the model").
MESSAGE_MAX_BYTES = 24 * 1024 * 1024
ACCEPTED = (
    "PNG, JPEG, GIF and WebP images, PDFs and text files (plain text, Markdown, CSV, JSON, source code)"
)


class AttachmentError(ValueError):
    """An upload that cannot be used; str(exc) says why, naming the file. Nothing was stored."""


def image_tokens(width: int, height: int) -> int:
    return math.ceil(width * height / TOKENS_PER_PIXEL_DIVISOR)


def scaled_size(width: int, height: int) -> tuple[int, int]:
    """The size the model uses: at most CHAT_IMAGE_MAX_EDGE on the long edge and IMAGE_MAX_PIXELS."""
    factor = min(
        1.0,
        settings.CHAT_IMAGE_MAX_EDGE / max(width, height),
        math.sqrt(IMAGE_MAX_PIXELS / (width * height)),
    )
    if factor >= 1.0:
        return width, height
    return max(1, math.floor(width * factor)), max(1, math.floor(height * factor))


@dataclass(frozen=True)
class Checked:
    """An upload that passed every check, ready to store."""

    name: str
    kind: str
    media_type: str
    extension: str
    content: bytes
    original_width: int = 0
    original_height: int = 0
    width: int = 0
    height: int = 0
    pages: int = 0

    @property
    def tokens(self) -> int:
        if self.kind == Attachment.Kind.PDF:
            return self.pages * PDF_PAGE_TOKENS
        if self.kind == Attachment.Kind.TEXT:
            return text_tokens(len(self.content))
        return image_tokens(self.width, self.height)


def text_tokens(size: int) -> int:
    """The estimated tokens of a text file of `size` UTF-8 bytes (what its chip shows)."""
    return math.ceil(size / TEXT_BYTES_PER_TOKEN)


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB" if size >= 1024 * 1024 else f"{size / 1024:.0f} KB"


def check_upload(upload) -> Checked:
    """Check one uploaded file (a Django UploadedFile) and scale an image down; AttachmentError if unusable."""
    full = (upload.name or "file").rsplit("/", 1)[-1]
    dot = full.rfind(".")
    extension = full[dot:].lower() if dot >= 0 else ""
    # A long name is shortened before its extension, which says what the file is.
    name = full if len(full) <= 200 else full[: 200 - len(extension[:20])] + extension[:20]
    expected = "TEXT" if extension in TEXT_EXTENSIONS else EXTENSIONS.get(extension)
    if expected is None:
        raise AttachmentError(f"“{name}”: only {ACCEPTED} can be attached.")
    limit = {
        "PDF": settings.CHAT_MAX_PDF_BYTES,
        "TEXT": settings.CHAT_MAX_TEXT_BYTES,
    }.get(expected, settings.CHAT_MAX_IMAGE_BYTES)
    if upload.size == 0:
        raise AttachmentError(f"“{name}” is empty.")
    if upload.size > limit:
        raise AttachmentError(f"“{name}” is too large ({_mb(upload.size)}; the limit is {_mb(limit)}).")
    content = upload.read()
    if expected == "PDF":
        return _check_pdf(name, content)
    if expected == "TEXT":
        return check_text(name, extension, content)
    return _check_image(name, expected, extension, content)


def _check_pdf(name: str, content: bytes) -> Checked:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    if not content.startswith(b"%PDF-"):
        raise AttachmentError(f"“{name}” is not a PDF (its content does not start like one).")
    try:
        reader = PdfReader(io.BytesIO(content))
        if reader.is_encrypted:
            raise AttachmentError(f"“{name}” is password-protected; Claude cannot read it.")
        pages = len(reader.pages)
    except AttachmentError:
        raise
    except (PyPdfError, OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise AttachmentError(f"“{name}” is damaged: its pages cannot be read.") from None
    if pages < 1:
        raise AttachmentError(f"“{name}” has no pages.")
    if pages > settings.CHAT_MAX_PDF_PAGES:
        raise AttachmentError(f"“{name}” has {pages} pages; the limit is {settings.CHAT_MAX_PDF_PAGES}.")
    return Checked(name, Attachment.Kind.PDF, "application/pdf", ".pdf", content, pages=pages)


def check_text(name: str, extension: str, content: bytes) -> Checked:
    """A text file's bytes: valid UTF-8 (a leading byte order mark is dropped), no NUL byte (binary data
    under a text name), not blank, within CHAT_MAX_TEXT_TOKENS estimated tokens. Line ends become \n."""
    if b"\x00" in content:
        raise AttachmentError(f"“{name}” is not a text file (it holds binary data).")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise AttachmentError(
            f"“{name}” is not UTF-8 text: save it as UTF-8 (or it is not a text file) and attach it again."
        ) from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    if not text.strip():
        raise AttachmentError(f"“{name}” has no text in it.")
    stored = text.encode("utf-8")
    tokens = text_tokens(len(stored))
    if tokens > settings.CHAT_MAX_TEXT_TOKENS:
        raise AttachmentError(
            f"“{name}” is about {tokens:,} tokens; a text file can hold at most {settings.CHAT_MAX_TEXT_TOKENS:,}."
        )
    return Checked(name, Attachment.Kind.TEXT, TEXT_MEDIA_TYPE, extension, stored)


# Images decoded at once in this process (each may take hundreds of MB at the largest size allowed).
_decoding = threading.BoundedSemaphore(2)


def _check_image(name: str, expected: str, extension: str, content: bytes) -> Checked:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(content)) as image:  # reads the header only
            found = image.format
            width, height = image.size
            if width * height > settings.CHAT_MAX_IMAGE_MEGAPIXELS * 1_000_000:
                # A small file can hold a huge image (a "decompression bomb"): refused before decoding.
                raise AttachmentError(
                    f"“{name}” is {width}×{height} pixels ({width * height / 1e6:.0f} megapixels); the limit is "
                    f"{settings.CHAT_MAX_IMAGE_MEGAPIXELS} megapixels (Claude sees at most about 1.15)."
                )
            if found == expected and max(width, height) <= IMAGE_MAX_DIMENSION:
                with _decoding:  # a few decodes at a time: their memory is bounded per worker
                    if found == "JPEG":
                        image.draft("RGB", scaled_size(width, height))  # decode at a reduced size
                    image.load()  # decode it all: a truncated or corrupt body fails here
                    scaled = _scaled(image, expected)
    except AttachmentError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise AttachmentError(f"“{name}” is not an image Claude can read.") from None
    except (OSError, SyntaxError, ValueError):
        raise AttachmentError(f"“{name}” is damaged: the image cannot be decoded.") from None
    if found != expected:
        raise AttachmentError(
            f"“{name}” is not a {expected.title() if expected == 'WEBP' else expected} image "
            f"(its content is {found or 'something else'})."
        )
    if max(width, height) > IMAGE_MAX_DIMENSION:
        raise AttachmentError(
            f"“{name}” is {width}×{height} pixels; the limit is {IMAGE_MAX_DIMENSION} on either side."
        )
    stored, (new_width, new_height) = scaled if scaled else (content, (width, height))
    return Checked(
        name,
        Attachment.Kind.IMAGE,
        IMAGE_TYPES[expected],
        extension,
        stored,
        original_width=width,
        original_height=height,
        width=new_width,
        height=new_height,
    )


def _scaled(image, image_format: str) -> tuple[bytes, tuple[int, int]] | None:
    """The image re-encoded at the size the model uses, or None when it is no larger than that."""
    from PIL import Image

    size = scaled_size(*image.size)
    if size == image.size:
        return None
    frame = image.convert("RGBA" if image.mode in ("P", "LA", "RGBA", "PA") else "RGB")
    frame = frame.resize(size, Image.Resampling.LANCZOS)
    if image_format == "JPEG":
        frame = frame.convert("RGB")
    out = io.BytesIO()
    options = {"quality": 90} if image_format in ("JPEG", "WEBP") else {}
    frame.save(out, format=image_format, **options)  # a GIF keeps its first frame
    return out.getvalue(), size


#: Files uploaded but never sent are deleted after this long.
UNSENT_FOR = timedelta(days=1)


def attachment_add(*, owner, conversation, checked: Checked) -> Attachment:
    """Store a checked upload (`check_upload`) as a pending attachment of `conversation` (the caller
    checked ownership). AttachmentError, with nothing stored, if the composer is full or the person's
    files not sent yet (in all conversations) reach CHAT_MAX_PENDING_FILES or CHAT_MAX_PENDING_MB.

    The counts are taken under a write lock on the person's row, so concurrent uploads, on any number
    of workers, are counted one after another."""
    with transaction.atomic():
        get_user_model().objects.filter(pk=owner.pk).update(last_login=F("last_login"))  # the lock
        unsent_delete(owner=owner)
        pending = Attachment.objects.filter(owner=owner, message__isnull=True)
        if pending.filter(conversation=conversation).count() >= settings.CHAT_MAX_ATTACHMENTS:
            raise AttachmentError(
                f"At most {settings.CHAT_MAX_ATTACHMENTS} files can be attached to a message."
            )
        totals = pending.aggregate(files=Count("pk"), size=Sum("size"))
        if totals["files"] >= settings.CHAT_MAX_PENDING_FILES:
            raise AttachmentError(
                f"You have {totals['files']} files uploaded but not sent yet (the limit is "
                f"{settings.CHAT_MAX_PENDING_FILES}): send or remove some first."
            )
        if (totals["size"] or 0) + len(checked.content) > settings.CHAT_MAX_PENDING_MB * 1024 * 1024:
            raise AttachmentError(
                f"Your files not sent yet would pass {settings.CHAT_MAX_PENDING_MB} MB: send or remove some first."
            )
        return attachment_store(owner=owner, conversation=conversation, checked=checked)


def unsent_delete(*, owner=None) -> int:
    """Delete attachments uploaded more than UNSENT_FOR ago and never sent (of `owner`, or everyone's);
    their files go with them. Returns how many."""
    stale = Attachment.objects.filter(message__isnull=True, created_at__lt=timezone.now() - UNSENT_FOR)
    if owner is not None:
        stale = stale.filter(owner=owner)
    deleted = 0
    for attachment in stale.only("pk", "file", "conversation"):
        attachment.delete()
        deleted += 1
    return deleted


def attachment_store(*, owner, conversation, checked: Checked) -> Attachment:
    """Store a checked upload as a pending attachment; the file goes if the row cannot be written."""
    attachment = Attachment(
        owner=owner,
        conversation=conversation,
        kind=checked.kind,
        media_type=checked.media_type,
        name=checked.name,
        size=len(checked.content),
        original_width=checked.original_width,
        original_height=checked.original_height,
        width=checked.width,
        height=checked.height,
        pages=checked.pages,
        tokens=checked.tokens,
    )
    attachment.file.save(f"upload{checked.extension}", ContentFile(checked.content), save=False)
    try:
        attachment.save()
    except Exception:
        attachment.file.delete(save=False)
        raise
    return attachment


def attachment_discard(*, owner, attachment_id: int) -> bool:
    """Remove one of `owner`'s pending attachments (a chip's remove button). Whether it existed."""
    attachment = Attachment.objects.filter(pk=attachment_id, owner=owner, message__isnull=True).first()
    if attachment is None:
        return False
    attachment.delete()  # its file goes after the commit (below)
    return True


GONE = "One of the attachments is no longer available: remove it and attach it again."


def _clean_id(value: object) -> int:
    parsed = parse_int(value)
    if parsed is None:
        raise AttachmentError(GONE)
    return parsed


def clean_ids(value: object) -> list[int]:
    """Attachment ids from a websocket frame or form: a list of positive integers (or their digits)."""
    if value is None or value == "":
        return []
    if isinstance(value, str | int):
        value = [value]
    if isinstance(value, tuple):
        value = list(value)
    if not value:
        return []
    if not isinstance(value, list) or len(value) > settings.CHAT_MAX_ATTACHMENTS:
        raise AttachmentError(f"At most {settings.CHAT_MAX_ATTACHMENTS} files can be attached to a message.")
    return list(dict.fromkeys(_clean_id(item) for item in value))


def attachments_claim(*, owner, conversation, ids: object, message) -> list[Attachment]:
    """Attach the pending attachments `ids` to `message` (inside the caller's transaction).

    Each must be `owner`'s, uploaded to `conversation` and not yet sent; otherwise AttachmentError
    (which never says whether someone else's exists) and the caller's transaction rolls back.
    """
    wanted = clean_ids(ids)
    if not wanted:
        return []
    found = list(
        Attachment.objects.select_for_update().filter(
            pk__in=wanted, owner=owner, conversation=conversation, message__isnull=True
        )
    )
    if len(found) != len(wanted):
        raise AttachmentError(GONE)
    size = sum(a.size for a in found)
    if size > MESSAGE_MAX_BYTES:
        raise AttachmentError(
            f"The files are {_mb(size)} together; a message can carry at most {_mb(MESSAGE_MAX_BYTES)}."
        )
    pages = sum(a.pages for a in found)
    if pages > settings.CHAT_MAX_PDF_PAGES:
        raise AttachmentError(
            f"The PDFs have {pages} pages together; a message can carry at most {settings.CHAT_MAX_PDF_PAGES}."
        )
    Attachment.objects.filter(pk__in=[a.pk for a in found]).update(message=message)
    return found


def attachments_adopt(*, owner, ids: list[int], conversation) -> None:
    """Give `conversation` (just made for its first message) the files `ids` that `owner` uploaded in the
    home page's composer, inside the caller's transaction; `attachments_claim` then checks that every
    one named is there."""
    if ids:
        Attachment.objects.filter(
            pk__in=ids, owner=owner, conversation__isnull=True, message__isnull=True
        ).update(conversation=conversation)


def attachments_carry(*, source, ids: object, message, claimed: list[Attachment] = ()) -> list[Attachment]:
    """Give `message` (a new version of `source`, inside the caller's transaction) the attachments `ids`
    of `source` that the edit kept: new rows sharing their stored files (a file goes only with the
    last row naming it). `claimed` are the new files going with them, counted in the message's limits.

    An id that is not one of `source`'s attachments is AttachmentError (never saying whose it is),
    and the caller's transaction rolls back."""
    wanted = clean_ids(ids)
    found = list(Attachment.objects.filter(pk__in=wanted, message=source)) if wanted else []
    if len(found) != len(wanted):
        raise AttachmentError(GONE)
    every = found + list(claimed)
    if len(every) > settings.CHAT_MAX_ATTACHMENTS:
        raise AttachmentError(f"At most {settings.CHAT_MAX_ATTACHMENTS} files can be attached to a message.")
    if sum(a.size for a in every) > MESSAGE_MAX_BYTES:
        raise AttachmentError(
            f"The files are too large together; a message can carry at most {_mb(MESSAGE_MAX_BYTES)}."
        )
    if sum(a.pages for a in every) > settings.CHAT_MAX_PDF_PAGES:
        raise AttachmentError(
            f"The PDFs have too many pages together; a message can carry at most {settings.CHAT_MAX_PDF_PAGES}."
        )
    for attachment in found:
        attachment.pk = None  # a copy of the row; its file is shared, not copied
        attachment.message = message
        attachment.created_at = None
    return Attachment.objects.bulk_create(found)


def tokens_before(conversation, *, before) -> int:
    """Estimated tokens of the attachments still sent to Claude for a reply at message `before`: on the
    active branch only (other versions of a turn, with their files, are not sent)."""
    total = Attachment.objects.filter(
        message__conversation=conversation,
        message__active=True,
        message_id__lt=before.pk,
        message_id__gte=conversation.context_from,
    ).aggregate(total=Sum("tokens"))["total"]
    return total or 0


def tokens_by_message(message_ids: list[int]) -> dict[int, int]:
    """Tokens the prompt bound counts for the attachments of each of these messages (those that have
    any): images and PDFs at their estimate, text files at one token a byte (an upper bound)."""
    bound = Case(When(kind=Attachment.Kind.TEXT, then=F("size")), default=F("tokens"))
    rows = (
        Attachment.objects.filter(message_id__in=message_ids)
        .values("message_id")
        .annotate(total=Sum(bound))
        .values_list("message_id", "total")
    )
    return dict(rows)


def content_block(attachment: Attachment) -> dict:
    """The API content block of an attachment: a base64 image or PDF document, or a plain-text document
    titled with the file's name."""
    with attachment.file.open("rb") as handle:
        raw = handle.read()
    if attachment.kind == Attachment.Kind.TEXT:
        source = {"type": "text", "media_type": TEXT_MEDIA_TYPE, "data": raw.decode("utf-8")}
        return {"type": "document", "source": source, "title": attachment.name}
    data = base64.b64encode(raw).decode("ascii")
    kind = "image" if attachment.is_image else "document"
    return {"type": kind, "source": {"type": "base64", "media_type": attachment.media_type, "data": data}}


def blocks_by_message(message_ids: list[int]) -> dict[int, list[dict]]:
    """The content blocks of the attachments of each of these messages (those that have any)."""
    found: dict[int, list[dict]] = defaultdict(list)
    for attachment in Attachment.objects.filter(message_id__in=message_ids).order_by("id"):
        found[attachment.message_id].append(content_block(attachment))
    return dict(found)


@lru_cache(maxsize=128)
def _data_tokens(kind: str, data: str) -> int:
    raw = base64.b64decode(data)
    if kind == "document":
        from pypdf import PdfReader

        return len(PdfReader(io.BytesIO(raw)).pages) * PDF_PAGE_TOKENS
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as image:
        return image_tokens(*scaled_size(*image.size))


def block_tokens(block: dict) -> int:
    """Estimated tokens of an image or document block built by `content_block` (a text document: its
    UTF-8 bytes, the bound message text gets too)."""
    if block["source"]["type"] == "text":
        return len(block["source"]["data"].encode())
    return _data_tokens(block["type"], block["source"]["data"])


@receiver(post_delete, sender=Attachment)
def _delete_file(sender, instance: Attachment, **kwargs) -> None:
    # Also on cascades (a deleted conversation or message): the file goes once the rows are gone.
    name, storage, conversation_id = instance.file.name, instance.file.storage, instance.conversation_id
    if name:
        transaction.on_commit(lambda: _remove(storage, name, conversation_id))


def _remove(storage, name: str, conversation_id: int) -> None:
    # Another version of the message may still show it (`attachments_carry`: always in the same
    # conversation, whose index keeps this check small).
    if Attachment.objects.filter(conversation_id=conversation_id, file=name).exists():
        return
    try:
        storage.delete(name)
    except Exception:
        logger.exception("Could not delete attachment file %s", name)

"""Image and PDF content blocks: what the offline Claude accepts, how it reads them and what they cost.

Like the real API it takes base64 images (JPEG, PNG, GIF, WebP) and base64 PDFs, checks that the bytes
are what the block says they are, and refuses oversized or unreadable ones with a 400. Token rule
(input and count_tokens alike, documented in docs/offline-claude.md):

- an image is first scaled down, as the API does, to at most IMAGE_MAX_EDGE pixels on its long edge and
  IMAGE_MAX_PIXELS pixels in all; it then costs ceil(width x height / 750) tokens;
- a PDF costs PDF_PAGE_TOKENS per page (text and page image together: the upper end of Anthropic's
  1,500-3,000 tokens per page for text alone would undercount, the flat figure keeps it predictable);
- a plain-text document (source type "text") costs its text's tokens.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from dataclasses import dataclass
from functools import lru_cache

from .tokenizer import count_tokens

IMAGE_MEDIA_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WEBP"}
IMAGE_MAX_BYTES = 5 * 1024 * 1024  # per image, decoded
IMAGE_MAX_DIMENSION = 8000  # pixels, either side
IMAGE_MAX_EDGE = 1568  # the API scales larger images down to this long edge...
IMAGE_MAX_PIXELS = 1_150_000  # ...and to about this many pixels
MAX_IMAGES = 100  # per request
PDF_MAX_BYTES = 32 * 1024 * 1024
PDF_MAX_PAGES = 100  # per request, all PDFs together
PDF_PAGE_TOKENS = 3000
TOKENS_PER_PIXEL_DIVISOR = 750


class MediaError(ValueError):
    """The block cannot be used; the message is the API's sentence (the caller adds where)."""


@dataclass(frozen=True)
class ImageInfo:
    media_type: str
    width: int  # as received
    height: int
    bytes: int

    @property
    def scaled(self) -> tuple[int, int]:
        """The size the model sees (the API scales larger images down, keeping the aspect ratio)."""
        return scaled_size(self.width, self.height)

    @property
    def tokens(self) -> int:
        width, height = self.scaled
        return math.ceil(width * height / TOKENS_PER_PIXEL_DIVISOR)


@dataclass(frozen=True)
class PdfInfo:
    pages: int
    bytes: int

    @property
    def tokens(self) -> int:
        return self.pages * PDF_PAGE_TOKENS


def scaled_size(width: int, height: int) -> tuple[int, int]:
    """`width` x `height` scaled down (never up) to the long edge and pixel count the model uses."""
    factor = min(1.0, IMAGE_MAX_EDGE / max(width, height), math.sqrt(IMAGE_MAX_PIXELS / (width * height)))
    if factor >= 1.0:
        return width, height
    return max(1, math.floor(width * factor)), max(1, math.floor(height * factor))


def _decode(data: object) -> bytes:
    if not isinstance(data, str) or not data:
        raise MediaError("source.data: Field required")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise MediaError("source.data: Invalid base64 data") from None


def _source(block: dict) -> dict:
    source = block.get("source")
    if not isinstance(source, dict):
        raise MediaError("source: Field required")
    return source


@lru_cache(maxsize=256)
def _image_info(data: str, media_type: str) -> ImageInfo:
    from PIL import Image, UnidentifiedImageError

    raw = _decode(data)
    if len(raw) > IMAGE_MAX_BYTES:
        raise MediaError(f"image exceeds 5 MB maximum: {len(raw)} bytes > {IMAGE_MAX_BYTES} bytes")
    try:
        with Image.open(io.BytesIO(raw)) as image:
            found = image.format
            width, height = image.size
            if found == IMAGE_MEDIA_TYPES.get(media_type) and max(width, height) <= IMAGE_MAX_DIMENSION:
                image.load()  # a truncated or corrupt body fails here, not just a bad header
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise MediaError("Could not process image") from None
    if found != IMAGE_MEDIA_TYPES[media_type]:
        raise MediaError(f"Image does not match the provided media type {media_type}")
    if max(width, height) > IMAGE_MAX_DIMENSION:
        raise MediaError(f"image dimensions exceed max allowed size: {IMAGE_MAX_DIMENSION} pixels")
    return ImageInfo(media_type, width, height, len(raw))


def image_info(block: dict) -> ImageInfo:
    """The checked size of an image block, or MediaError."""
    source = _source(block)
    if source.get("type") != "base64":
        raise MediaError("source.type: only 'base64' image sources are supported by the offline Claude")
    media_type = source.get("media_type")
    if media_type not in IMAGE_MEDIA_TYPES:
        raise MediaError(
            "source.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
        )
    return _image_info(source.get("data"), media_type)


@lru_cache(maxsize=64)
def _pdf_info(data: str) -> PdfInfo:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    raw = _decode(data)
    if len(raw) > PDF_MAX_BYTES:
        raise MediaError(f"PDF exceeds 32 MB maximum: {len(raw)} bytes > {PDF_MAX_BYTES} bytes")
    if not raw.startswith(b"%PDF-"):
        raise MediaError("The PDF specified was not valid.")
    try:
        pages = len(PdfReader(io.BytesIO(raw)).pages)
    except (PyPdfError, OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise MediaError("The PDF specified was not valid.") from None
    if pages < 1:
        raise MediaError("The PDF specified was not valid.")
    return PdfInfo(pages, len(raw))


def document_info(block: dict) -> PdfInfo | str:
    """A PDF document block's page count, or the text of a plain-text document; MediaError if unusable."""
    source = _source(block)
    if source.get("type") == "text":
        if source.get("media_type") != "text/plain" or not isinstance(source.get("data"), str):
            raise MediaError("source: a text document needs media_type 'text/plain' and data")
        return source["data"]
    if source.get("type") != "base64":
        raise MediaError("source.type: only 'base64' and 'text' document sources are supported")
    if source.get("media_type") != "application/pdf":
        raise MediaError("source.media_type: Input should be 'application/pdf'")
    return _pdf_info(source.get("data"))


def describe(blocks: list[dict]) -> str:
    """One deterministic sentence saying what media the blocks hold ("" when none)."""
    parts = []
    for block in blocks:
        try:
            if block.get("type") == "image":
                info = image_info(block)
                width, height = info.scaled
                seen = f" (seen at {width}×{height})" if (width, height) != (info.width, info.height) else ""
                parts.append(
                    f"an image ({info.media_type}, {info.width}×{info.height} pixels{seen}, {info.tokens:,} tokens)"
                )
            elif block.get("type") == "document":
                info = document_info(block)
                if isinstance(info, str):
                    title = block.get("title")
                    named = f"“{title}”, " if isinstance(title, str) and title else ""
                    parts.append(f"a text document ({named}{count_tokens(info):,} tokens)")
                else:
                    pages = "1 page" if info.pages == 1 else f"{info.pages} pages"
                    parts.append(f"a PDF ({pages}, {info.tokens:,} tokens)")
        except MediaError:
            continue
    if not parts:
        return ""
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"I received {listed}."

"""Small images and PDFs made in memory for attachment tests."""

from __future__ import annotations

import io

from django.core.files.uploadedfile import SimpleUploadedFile


def image_bytes(width: int = 80, height: int = 60, image_format: str = "PNG", color=(200, 40, 40)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format=image_format)
    return out.getvalue()


def pdf_bytes(pages: int = 2) -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def upload(name: str, content: bytes, content_type: str = "application/octet-stream") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type=content_type)

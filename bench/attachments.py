"""What scaling images on upload saves, and what checking an upload costs.

For photos of common sizes (JPEG, as a phone takes them) and a screenshot (PNG), it runs the app's own
upload check (`conversations.attachments.check_upload`: decode whole, scale to the size the model uses,
re-encode) and prints the time it took, the bytes before and after, and the tokens an image costs at
its original size (ceil(w x h / 750), were the API not to scale it) against what it costs as sent.
Also the check of a 50-page PDF (header, page count).

    .venv/bin/python bench/attachments.py
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

import django  # noqa: E402

django.setup()

from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402
from PIL import Image  # noqa: E402
from pypdf import PdfWriter  # noqa: E402

from conversations.attachments import check_upload, image_tokens  # noqa: E402


def photo(width: int, height: int, image_format: str) -> bytes:
    # A smooth gradient compresses far better than a real photo: the byte figures are low; the time
    # (decoding and resizing every pixel) and the tokens are what this measures.
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    out = io.BytesIO()
    image.save(out, format=image_format, **({"quality": 92} if image_format == "JPEG" else {}))
    return out.getvalue()


def timed(name: str, content: bytes, repeats: int = 3):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        checked = check_upload(SimpleUploadedFile(name, content))
        best = min(best, time.perf_counter() - start)
    return checked, best


def main() -> None:
    print(
        f"{'upload':<28}{'check+scale ms':>15}{'bytes in':>12}{'bytes out':>12}{'tokens full':>13}{'tokens sent':>13}"
    )
    for name, width, height, image_format in [
        ("photo 12 MP.jpg", 4000, 3000, "JPEG"),
        ("photo 3 MP.jpg", 2048, 1536, "JPEG"),
        ("screenshot 1920x1080.png", 1920, 1080, "PNG"),
        ("small 800x600.png", 800, 600, "PNG"),
    ]:
        content = photo(width, height, image_format)
        checked, seconds = timed(name.replace(" ", "_"), content)
        print(
            f"{name:<28}{seconds * 1000:>15.0f}{len(content):>12,}{len(checked.content):>12,}"
            f"{image_tokens(width, height):>13,}{checked.tokens:>13,}"
        )
    writer = PdfWriter()
    for _ in range(50):
        writer.add_blank_page(width=595, height=842)
    out = io.BytesIO()
    writer.write(out)
    checked, seconds = timed("report.pdf", out.getvalue())
    print(
        f"{'PDF, 50 pages':<28}{seconds * 1000:>15.0f}{len(out.getvalue()):>12,}{len(checked.content):>12,}{'':>13}{checked.tokens:>13,}"
    )


if __name__ == "__main__":
    main()

"""The offline Claude takes image and PDF blocks as the API does and signs thinking it can check later,
driven through the real anthropic SDK."""

from __future__ import annotations

import base64
import math

import anthropic
import pytest

from offline_claude.testing import sync_client
from tests.media_factories import image_bytes, pdf_bytes

MODEL = "claude-sonnet-5-5"


def image_block(data: bytes, media_type: str = "image/png") -> dict:
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": media_type, "data": base64.b64encode(data).decode()},
    }


def pdf_block(data: bytes) -> dict:
    return {
        "type": "document",
        "source": {
            "type": "base64",
            "media_type": "application/pdf",
            "data": base64.b64encode(data).decode(),
        },
    }


def test_an_image_costs_width_times_height_over_750_and_the_reply_describes_it(offline_claude):
    client = sync_client(offline_claude)
    content = [image_block(image_bytes(800, 600)), {"type": "text", "text": "What is this?"}]
    counted = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": content}])
    text_only = client.messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": "What is this?"}]
    )
    assert counted.input_tokens - text_only.input_tokens == math.ceil(800 * 600 / 750) == 640
    reply = client.messages.create(
        model=MODEL, max_tokens=4000, messages=[{"role": "user", "content": content}]
    )
    assert reply.usage.input_tokens == counted.input_tokens
    text = reply.content[-1].text
    assert "I received an image (image/png, 800×600 pixels, 640 tokens)" in text


def test_a_large_image_is_counted_at_the_size_the_model_sees(offline_claude):
    client = sync_client(offline_claude)
    content = [image_block(image_bytes(3000, 2000, "JPEG"), "image/jpeg"), {"type": "text", "text": "Hi"}]
    counted = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": content}])
    # 1.15 megapixels at 3:2 is about 1313x875; never the 8,000 tokens of the full size.
    assert 1400 < counted.input_tokens < 1600


def test_a_pdf_costs_3000_tokens_a_page_and_the_reply_counts_its_pages(offline_claude):
    client = sync_client(offline_claude)
    content = [pdf_block(pdf_bytes(3)), {"type": "text", "text": "Summarise"}]
    counted = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": content}])
    assert counted.input_tokens == 9000 + 1
    reply = client.messages.create(
        model=MODEL, max_tokens=4000, messages=[{"role": "user", "content": content}]
    )
    assert "a PDF (3 pages, 9,000 tokens)" in reply.content[-1].text


def text_document(text: str, **extra) -> dict:
    return {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}, **extra}


def test_a_plain_text_document_costs_its_texts_tokens_and_the_reply_names_it(offline_claude):
    client = sync_client(offline_claude)
    notes = "Herons wait, then strike: patience, precision.\n" * 10  # 10 tokens a line
    content = [text_document(notes, title="notes.md"), {"type": "text", "text": "Summarise"}]
    counted = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": content}])
    assert counted.input_tokens == 100 + 1
    reply = client.messages.create(
        model=MODEL, max_tokens=4000, messages=[{"role": "user", "content": content}]
    )
    assert reply.usage.input_tokens == counted.input_tokens
    assert "I received a text document (“notes.md”, 100 tokens)" in reply.content[-1].text


@pytest.mark.parametrize(
    "block, words",
    [
        (image_block(image_bytes(10, 10, "JPEG"), "image/png"), "does not match the provided media type"),
        (image_block(image_bytes(10, 10)[:40]), "Could not process image"),
        (image_block(b"not an image at all"), "Could not process image"),
        (image_block(image_bytes(10, 10), "image/bmp"), "media_type"),
        ({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "%%%"}}, "base64"),
        (pdf_block(b"hello, not a pdf"), "PDF specified was not valid"),
        (pdf_block(b"%PDF-1.7 garbage"), "PDF specified was not valid"),
        (
            text_document("hello") | {"source": {"type": "text", "media_type": "text/csv", "data": "a"}},
            "text/plain",
        ),
        ({"type": "document", "source": {"type": "text", "media_type": "text/plain"}}, "text/plain"),
    ],
)
def test_bad_media_blocks_are_a_400_with_the_apis_sentence(offline_claude, block, words):
    client = sync_client(offline_claude)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model=MODEL,
            max_tokens=100,
            messages=[{"role": "user", "content": [block, {"type": "text", "text": "Look"}]}],
        )
    assert words in caught.value.message


def test_too_many_pdf_pages_in_one_request_are_refused(offline_claude):
    client = sync_client(offline_claude)
    content = [pdf_block(pdf_bytes(60)), pdf_block(pdf_bytes(41)), {"type": "text", "text": "Read"}]
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": content}])
    assert "100 PDF pages" in caught.value.message


def _thinking_reply(client, text: str, **extra):
    return client.messages.create(
        model=MODEL,
        max_tokens=4000,
        thinking={"type": "adaptive", "display": "summarized"},
        messages=[{"role": "user", "content": text}],
        **extra,
    )


def test_thinking_blocks_sent_back_unmodified_are_accepted_and_altered_ones_refused(offline_claude):
    client = sync_client(offline_claude)
    first = _thinking_reply(client, "Tell me about owls")
    thinking, answer = first.content[0], first.content[-1]
    assert thinking.type == "thinking" and thinking.thinking and thinking.signature

    def follow_up(block: dict):
        return client.messages.create(
            model=MODEL,
            max_tokens=4000,
            messages=[
                {"role": "user", "content": "Tell me about owls"},
                {"role": "assistant", "content": [block, {"type": "text", "text": answer.text}]},
                {"role": "user", "content": "And bats?"},
            ],
        )

    unmodified = {"type": "thinking", "thinking": thinking.thinking, "signature": thinking.signature}
    assert follow_up(unmodified).stop_reason == "end_turn"
    with pytest.raises(anthropic.BadRequestError) as caught:
        follow_up({**unmodified, "thinking": thinking.thinking + " (edited)"})
    assert "Invalid `signature` in `thinking` block" in caught.value.message


def test_higher_effort_thinks_longer(offline_claude):
    client = sync_client(offline_claude)
    low = _thinking_reply(client, "Plan a garden", output_config={"effort": "low"})
    high = _thinking_reply(client, "Plan a garden", output_config={"effort": "max"})
    assert low.usage.output_tokens_details.thinking_tokens < high.usage.output_tokens_details.thinking_tokens
    assert len(low.content[0].thinking) < len(high.content[0].thinking)

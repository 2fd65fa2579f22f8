"""Text files as attachments (plain text, Markdown, CSV, JSON, source code): known by extension and
checked by content (UTF-8, no NUL byte), within a size and a token limit, sent to Claude as plain-text
document blocks; and files on the first message of a new conversation, from the home page's composer."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.urls import reverse

from conversations import attachments
from conversations.models import Attachment, Conversation, Message
from conversations.replies import claude
from offline_claude.tokenizer import count_tokens
from tests.conversations.replies.test_chat_streaming import final_frame_for, latest_assistant, reload
from tests.conversations.test_attachments import _setup_with_upload, post_file, stored_files
from tests.helpers import make_conversation, make_user, open_socket
from tests.media_factories import image_bytes, upload

pytestmark = pytest.mark.django_db(transaction=True)

NOTES = "# Notes\n\nThe heron stands in the shallows.\n" * 300  # 12,900 bytes


@pytest.fixture(autouse=True)
def _media_of_this_test(private_media):
    """Every test here stores attachments in a directory of its own (conftest's `private_media`)."""


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post_new(client: Client, name: str, content: bytes):
    """An upload from the home page's composer (no conversation yet)."""
    return client.post(reverse("attachment_upload_new"), {"file": upload(name, content)})


@pytest.mark.parametrize(
    "name, content",
    [
        ("notes.md", NOTES.encode()),
        ("table.csv", b"city,people\nOslo,709000\nBergen,291000\n"),
        ("data.json", '{"name": "Zoë", "tags": ["ü", "日本"]}'.encode()),
        ("script.py", b"def hello():\n    return 'hi'\n"),
        ("README.TXT", "\ufeffWindows text\r\nwith CRLF\r\n".encode()),
    ],
)
def test_a_utf8_text_file_is_accepted_as_text_and_estimated_at_four_bytes_a_token(name, content):
    checked = attachments.check_upload(upload(name, content))
    assert checked.kind == Attachment.Kind.TEXT and checked.media_type == "text/plain"
    text = checked.content.decode("utf-8")
    assert "\r" not in text and not text.startswith("\ufeff")  # line ends and a BOM normalised
    assert checked.tokens == -(-len(checked.content) // 4)


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("photo.txt", image_bytes(), "is not a text file (it holds binary data)"),
        ("latin.txt", "café crème".encode("latin-1"), "is not UTF-8 text"),
        ("blank.md", b" \n\t\n", "has no text in it"),
        ("empty.csv", b"", "is empty"),
        ("noext", b"hello", "only PNG, JPEG, GIF and WebP images, PDFs and text files"),
        ("archive.zip", b"PK\x03\x04", "only PNG, JPEG, GIF and WebP images, PDFs and text files"),
    ],
)
def test_a_file_that_is_not_usable_text_is_refused_with_a_sentence_and_nothing_stored(
    private_media, name, content, words
):
    user = make_user()
    conversation = make_conversation(owner=user)
    response = post_file(logged_in(user), conversation, name, content)
    assert response.status_code == 400 and words in response.text, response.text
    assert name in response.text
    assert not Attachment.objects.exists() and stored_files(private_media) == []


def test_the_size_and_token_limits_are_stated_when_refusing(settings, private_media):
    settings.CHAT_MAX_TEXT_BYTES = 10 * 1024
    settings.CHAT_MAX_TEXT_TOKENS = 1000
    user = make_user()
    conversation = make_conversation(owner=user)
    client = logged_in(user)
    big = post_file(client, conversation, "big.txt", b"a" * (11 * 1024))
    assert big.status_code == 400 and "“big.txt” is too large (11 KB; the limit is 10 KB)" in big.text
    wordy = post_file(client, conversation, "wordy.txt", b"word " * 1000)  # 5,000 bytes: 1,250 tokens
    assert wordy.status_code == 400
    assert "“wordy.txt” is about 1,250 tokens; a text file can hold at most 1,000" in wordy.text
    fits = post_file(client, conversation, "fits.txt", b"word " * 800)  # 4,000 bytes: 1,000 tokens
    assert fits.status_code == 200
    assert not Attachment.objects.exclude(name="fits.txt").exists()


def test_the_chip_shows_the_name_the_size_and_the_estimated_tokens():
    user = make_user()
    conversation = make_conversation(owner=user)
    response = post_file(logged_in(user), conversation, "notes.md", NOTES.encode())
    assert response.status_code == 200
    attachment = Attachment.objects.get()
    assert attachment.kind == "text" and attachment.size == len(NOTES.encode()) == 12_900
    assert "notes.md" in response.text and "13 KB · ≈ 3,225 tokens" in response.text
    # Served to its owner only, as a download (never rendered on this origin).
    served = logged_in(user).get(attachment.get_absolute_url())
    assert served.status_code == 200 and served["Content-Disposition"].startswith("attachment")
    assert logged_in(make_user()).get(attachment.get_absolute_url()).status_code == 404


@pytest.mark.usefixtures("offline_claude")
async def test_a_text_file_goes_to_claude_as_a_plain_text_document_and_the_hold_counts_its_bytes(monkeypatch):
    sent: list[dict] = []
    build = claude.build_params
    monkeypatch.setattr(claude, "build_params", lambda request: sent.append(build(request)) or sent[-1])
    content = "date,amount\n2026-01-01,12.50\n2026-01-02,7.25\n"
    user, conversation, attachment = await _setup_with_upload("spend.csv", content.encode())
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(message="Total it", attachments=[attachment.pk])
    frames = await socket.receive_until(lambda f: "status-streaming" in f)
    assert "spend.csv" in frames[-1]  # the file in the new user turn
    assistant = await latest_assistant(conversation)
    await socket.receive_until(final_frame_for(assistant.pk))
    await socket.close()
    assistant = await reload(assistant)
    [document, text] = sent[-1]["messages"][-1]["content"]
    assert document == {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": content},
        "title": "spend.csv",
    }
    assert text == {"type": "text", "text": "Total it"}
    # The offline Claude counts the text with its tokenizer (a word or a punctuation mark a token).
    assert count_tokens(content) == 21
    assert "I received a text document (“spend.csv”, 21 tokens)" in assistant.content
    assert assistant.status == Message.Status.COMPLETE
    counted = await sync_to_async(attachments.tokens_by_message)([assistant.pk - 1])
    assert counted == {assistant.pk - 1: len(content)}  # the budget hold: a token a byte


def test_files_uploaded_on_the_home_page_go_with_the_first_message():
    user = make_user()
    client = logged_in(user)
    chip = post_new(client, "notes.md", NOTES.encode())
    assert chip.status_code == 200 and "notes.md" in chip.text
    home = client.get(reverse("home"))  # a reload keeps the chip, and the picker uploads to the home's URL
    assert "notes.md" in home.text and reverse("attachment_upload_new") in home.text
    attachment = Attachment.objects.get()
    assert attachment.conversation_id is None and attachment.message_id is None
    # Another person's page shows none of it, and they cannot send it.
    other = logged_in(make_user())
    assert "notes.md" not in other.get(reverse("home")).text
    refused = other.post(reverse("conversation_create"), {"message": "Mine?", "attachments": [attachment.pk]})
    assert refused.status_code == 400 and "no longer available" in refused.text
    assert "Mine?" in refused.text  # the draft kept
    assert not Conversation.objects.exists()


@pytest.mark.usefixtures("offline_claude")
def test_a_first_message_with_a_file_makes_the_conversation_and_claims_the_file():
    user = make_user()
    client = logged_in(user)
    post_new(client, "notes.md", NOTES.encode())
    attachment = Attachment.objects.get()
    response = client.post(
        reverse("conversation_create"), {"message": "Summarise", "attachments": [attachment.pk]}
    )
    conversation = Conversation.objects.get()
    assert response.status_code == 302 and response.url == conversation.get_absolute_url()
    attachment.refresh_from_db()
    first = Message.objects.get(role="user")
    assert attachment.conversation == conversation and attachment.message == first
    assert first.content == "Summarise" and conversation.title == "Summarise"
    assert "notes.md" in client.get(conversation.get_absolute_url()).text
    assert "notes.md" not in client.get(reverse("home")).text  # no longer pending on the home page


@pytest.mark.usefixtures("offline_claude")
def test_without_javascript_the_home_form_posts_files_and_a_file_alone_starts_a_conversation(private_media):
    user = make_user()
    client = logged_in(user)
    url = reverse("conversation_create")
    bad = client.post(
        url, {"message": "Read", "files": [upload("a.txt", b"fine"), upload("b.txt", b"\x00\x01")]}
    )
    assert bad.status_code == 400 and "“b.txt” is not a text file" in bad.text and "Read" in bad.text
    assert not Attachment.objects.exists() and stored_files(private_media) == []
    assert not Conversation.objects.exists()
    good = client.post(url, {"message": "", "files": [upload("plan.md", b"# Plan\n\nShip it.\n")]})
    assert good.status_code == 302
    conversation = Conversation.objects.get()
    attachment = Attachment.objects.get()
    assert attachment.message.conversation == conversation and attachment.message.content == ""
    assert conversation.title == "plan.md"


def test_a_message_over_the_limit_is_refused_with_a_sentence_and_kept_whole(settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 100
    user = make_user()
    client = logged_in(user)
    text = "x" * 150
    response = client.post(reverse("conversation_create"), {"message": text})
    assert response.status_code == 400
    assert "The message is too long (150 characters; the limit is 100)." in response.text
    assert f">{text}</textarea>" in response.text  # all of it, nothing cut
    assert 'maxlength="' not in response.text.split('id="composer-input"')[1].split(">")[0]
    assert not Conversation.objects.exists()

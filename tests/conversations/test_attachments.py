"""Images and PDFs on a message: checked before anything is stored, private to their owner, sent to
Claude as content blocks (through the real SDK to the offline Claude), gone with their conversation."""

from __future__ import annotations

import math

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.urls import reverse

from conversations.models import Attachment, Message
from conversations.replies import claude
from tests.conversations.replies.test_chat_streaming import final_frame_for, latest_assistant, reload
from tests.helpers import make_conversation, make_user, open_socket
from tests.media_factories import image_bytes, pdf_bytes, upload

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _media_of_this_test(private_media):
    """Every test here stores attachments in a directory of its own (conftest's `private_media`)."""


def stored_files(root) -> list:
    return [p for p in root.rglob("*") if p.is_file()]


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post_file(client: Client, conversation, name: str, content: bytes):
    return client.post(reverse("attachment_upload", args=[conversation.pk]), {"file": upload(name, content)})


def test_an_uploaded_image_is_scaled_to_what_the_model_uses_and_stored_privately(private_media):
    from PIL import Image

    user = make_user()
    conversation = make_conversation(owner=user)
    client = logged_in(user)
    response = post_file(client, conversation, "photo.jpg", image_bytes(4000, 3000, "JPEG"))
    assert response.status_code == 200
    attachment = Attachment.objects.get()
    assert f'name="attachments" value="{attachment.pk}"' in response.text and "photo.jpg" in response.text
    assert (attachment.original_width, attachment.original_height) == (4000, 3000)
    assert (
        max(attachment.width, attachment.height) <= 1568 and attachment.width * attachment.height <= 1_150_000
    )
    assert attachment.tokens == math.ceil(attachment.width * attachment.height / 750)
    [path] = stored_files(private_media)
    assert "photo" not in path.name  # a random name, not the person's
    with Image.open(path) as stored:
        assert stored.size == (attachment.width, attachment.height) and stored.format == "JPEG"
    # Served to its owner only; to anyone else it does not exist.
    served = client.get(attachment.get_absolute_url())
    assert served.status_code == 200 and served["Content-Type"] == "image/jpeg"
    assert "private" in served["Cache-Control"]
    assert logged_in(make_user()).get(attachment.get_absolute_url()).status_code == 404
    assert Client().get(attachment.get_absolute_url()).status_code == 302  # to the login page


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("cat.png", image_bytes(20, 20, "JPEG"), "is not a PNG image (its content is JPEG)"),
        ("cat.webp", image_bytes(20, 20, "PNG"), "is not a Webp image"),
        ("cat.png", image_bytes(20, 20)[:60], "damaged"),
        ("cat.gif", b"GIF89a nonsense", "not an image Claude can read"),
        ("empty.png", b"", "is empty"),
        ("program.exe", b"MZ hello", "only PNG, JPEG, GIF and WebP images, PDFs and text files"),
        ("paper.pdf", b"not really a pdf", "is not a PDF"),
        ("paper.pdf", b"%PDF-1.7\nbroken", "damaged"),
        ("huge.png", image_bytes(8001, 10), "the limit is 8000"),
    ],
)
def test_bad_files_are_refused_with_a_clear_error_and_nothing_stored(private_media, name, content, words):
    user = make_user()
    conversation = make_conversation(owner=user)
    response = post_file(logged_in(user), conversation, name, content)
    assert response.status_code == 400 and words in response.text, response.text
    assert not Attachment.objects.exists() and stored_files(private_media) == []


def test_size_page_and_count_limits(settings, private_media):
    settings.CHAT_MAX_IMAGE_BYTES = 1000
    settings.CHAT_MAX_PDF_PAGES = 3
    settings.CHAT_MAX_ATTACHMENTS = 2
    user = make_user()
    conversation = make_conversation(owner=user)
    client = logged_in(user)
    too_big = post_file(client, conversation, "big.png", image_bytes(400, 400, color=None) + b"x" * 2000)
    assert too_big.status_code == 400 and "too large" in too_big.text
    pages = post_file(client, conversation, "long.pdf", pdf_bytes(4))
    assert pages.status_code == 400 and "has 4 pages; the limit is 3" in pages.text
    assert post_file(client, conversation, "a.pdf", pdf_bytes(1)).status_code == 200
    assert post_file(client, conversation, "b.pdf", pdf_bytes(1)).status_code == 200
    third = post_file(client, conversation, "c.pdf", pdf_bytes(1))
    assert third.status_code == 400 and "At most 2 files" in third.text
    assert Attachment.objects.count() == 2 and len(stored_files(private_media)) == 2


def test_uploading_to_someone_elses_conversation_is_a_404_and_removing_is_owner_only(private_media):
    owner, other = make_user(), make_user()
    conversation = make_conversation(owner=owner)
    assert post_file(logged_in(other), conversation, "x.png", image_bytes()).status_code == 404
    assert post_file(logged_in(owner), conversation, "x.png", image_bytes()).status_code == 200
    attachment = Attachment.objects.get()
    remove = reverse("attachment_discard", args=[attachment.pk])
    assert logged_in(other).post(remove).status_code == 404
    assert logged_in(owner).post(remove).status_code == 200
    assert not Attachment.objects.exists() and stored_files(private_media) == []


def test_uploads_need_the_csrf_token(private_media):
    user = make_user()
    conversation = make_conversation(owner=user)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert post_file(client, conversation, "x.png", image_bytes()).status_code == 403
    assert not Attachment.objects.exists()


def test_deleting_the_conversation_deletes_its_files_but_not_the_ledger(private_media):
    from billing.models import UsageRecord
    from billing.usage import LedgerLabels, Usage

    user = make_user()
    conversation = make_conversation(owner=user)
    client = logged_in(user)
    post_file(client, conversation, "x.png", image_bytes())
    post_file(client, conversation, "y.pdf", pdf_bytes(1))
    message = Message.objects.create(conversation=conversation, role="user", content="Look")
    Attachment.objects.filter(pk=Attachment.objects.first().pk).update(
        message=message
    )  # one sent, one pending
    from billing.services import usage_record

    usage_record(
        labels=LedgerLabels(user.pk, user.username, conversation.pk, "t", "claude-sonnet-5-5"),
        message_id=message.pk,
        request_id="req_1",
        usage=Usage(input_tokens=700, output_tokens=10),
        estimated=False,
    )
    assert len(stored_files(private_media)) == 2
    client.post(reverse("conversation_delete", args=[conversation.pk]))
    assert not Attachment.objects.exists() and stored_files(private_media) == []
    assert UsageRecord.objects.get().input_tokens == 700


@sync_to_async
def _setup_with_upload(name: str, content: bytes):
    user = make_user()
    conversation = make_conversation(owner=user)
    response = post_file(logged_in(user), conversation, name, content)
    assert response.status_code == 200, response.text
    return user, conversation, Attachment.objects.get(conversation=conversation)


@pytest.mark.usefixtures("offline_claude")
async def test_a_message_with_an_image_goes_to_claude_as_an_image_block_and_is_billed_for_it(monkeypatch):
    sent: list[dict] = []
    build = claude.build_params
    monkeypatch.setattr(claude, "build_params", lambda request: sent.append(build(request)) or sent[-1])
    user, conversation, attachment = await _setup_with_upload("chart.png", image_bytes(300, 200))
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(message="What does this chart show?", attachments=[attachment.pk])
    frames = await socket.receive_until(lambda f: "status-streaming" in f)
    assert attachment.get_absolute_url() in frames[-1]  # the thumbnail in the new user turn
    assistant = await latest_assistant(conversation)
    await socket.receive_until(final_frame_for(assistant.pk))
    await socket.close()
    assistant = await reload(assistant)
    [image, text] = sent[-1]["messages"][-1]["content"]
    assert image["type"] == "image" and image["source"]["media_type"] == "image/png"
    assert text == {"type": "text", "text": "What does this chart show?"}
    assert "I received an image (image/png, 300×200 pixels, 80 tokens)" in assistant.content
    assert assistant.media_tokens == 80 == math.ceil(300 * 200 / 750)
    assert assistant.prompt_tokens >= 80 + 5
    attachment = await Attachment.objects.aget(pk=attachment.pk)
    assert attachment.message_id == assistant.pk - 1  # now the user turn's


@pytest.mark.usefixtures("offline_claude")
async def test_someone_elses_or_a_used_attachment_is_refused_and_the_draft_kept():
    user, conversation, attachment = await _setup_with_upload("a.png", image_bytes())
    other, other_conversation, theirs = await _setup_with_upload("b.png", image_bytes())
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(message="Look", attachments=[theirs.pk])
    frame = await socket.receive()
    assert "no longer available" in frame and 'id="composer-input"' not in frame  # the draft stays
    assert not await Message.objects.filter(conversation=conversation).aexists()
    await socket.send(message="Look", attachments=[attachment.pk])
    assistant_frames = await socket.receive_until(lambda f: "status-streaming" in f)
    assistant = await latest_assistant(conversation)
    await socket.receive_until(final_frame_for(assistant.pk))
    await socket.send(message="Again", attachments=[attachment.pk])  # already sent once
    frame = await socket.receive()
    assert "no longer available" in frame and assistant_frames
    await socket.close()


@pytest.mark.usefixtures("offline_claude")
def test_without_javascript_the_form_posts_the_files_and_a_bad_one_stores_nothing(private_media):
    user = make_user()
    conversation = make_conversation(owner=user)
    client = logged_in(user)
    url = reverse("message_send", args=[conversation.pk])
    bad = client.post(
        url, {"message": "Read these", "files": [upload("a.pdf", pdf_bytes(2)), upload("b.png", b"junk")]}
    )
    assert bad.status_code == 400 and "b.png" in bad.text and "Read these" in bad.text
    assert not Attachment.objects.exists() and stored_files(private_media) == []
    assert not Message.objects.exists()
    good = client.post(url, {"message": "Read this", "files": [upload("a.pdf", pdf_bytes(2))]})
    assert good.status_code == 302
    attachment = Attachment.objects.get()
    assert attachment.pages == 2 and attachment.tokens == 6000 and attachment.message.content == "Read this"
    assistant = Message.objects.get(role="assistant")
    assert assistant.media_tokens == 6000


def test_the_estimates_match_the_offline_claudes_rule():
    from conversations import attachments
    from offline_claude import media

    assert attachments.PDF_PAGE_TOKENS == media.PDF_PAGE_TOKENS
    assert attachments.IMAGE_MAX_PIXELS == media.IMAGE_MAX_PIXELS
    for size in [(300, 200), (4000, 3000), (1568, 100), (2000, 2000)]:
        assert attachments.scaled_size(*size) == media.scaled_size(*size)


def test_a_pending_chip_survives_a_reload(private_media):
    user = make_user()
    conversation = make_conversation(owner=user)
    client = logged_in(user)
    post_file(client, conversation, "keep.png", image_bytes())
    page = client.get(conversation.get_absolute_url())
    assert "keep.png" in page.text and 'name="attachments"' in page.text


def test_the_budget_hold_includes_the_attachments_estimated_tokens(private_media):
    from django.core.management import call_command

    from billing.models import SpendReservation
    from tests.conversations.replies.test_chat_budget import PRICES

    call_command("load_prices", str(PRICES), verbosity=0)
    user = make_user()
    plain = make_conversation(owner=user)
    with_pdf = make_conversation(owner=user)
    client = logged_in(user)
    post_file(client, with_pdf, "a.pdf", pdf_bytes(10))
    from conversations.replies import store

    _, without, _ = store.reply_start(conversation=plain, text="Read this", worker="w")
    _, withfile, _ = store.reply_start(
        conversation=with_pdf, text="Read this", worker="w", attachment_ids=[Attachment.objects.get().pk]
    )
    held = {r.message_id: r.amount for r in SpendReservation.objects.all()}
    # 30,000 tokens more prompt at Sonnet 5.5's highest prompt rate ($4 per million cache writes 1h).
    assert held[withfile.pk] - held[without.pk] == 30_000 * 4_000_000
    assert Message.objects.get(pk=withfile.pk).media_tokens == 30_000


def test_files_too_large_together_for_one_request_are_refused(private_media, monkeypatch):
    from conversations import attachments, inputs
    from conversations.replies import store

    monkeypatch.setattr(attachments, "MESSAGE_MAX_BYTES", 100)
    user = make_user()
    conversation = make_conversation(owner=user)
    client = logged_in(user)
    post_file(client, conversation, "a.pdf", pdf_bytes(1))
    post_file(client, conversation, "b.pdf", pdf_bytes(1))
    ids = list(Attachment.objects.values_list("pk", flat=True))
    with pytest.raises(inputs.InvalidInput, match="together; a message can carry at most"):
        store.reply_start(conversation=conversation, text="Read", worker="w", attachment_ids=ids)
    assert not Message.objects.exists() and Attachment.objects.filter(message__isnull=True).count() == 2


@pytest.mark.usefixtures("offline_claude")
async def test_an_image_alone_is_a_message_and_an_empty_message_alone_is_not(monkeypatch):
    sent: list[dict] = []
    build = claude.build_params
    monkeypatch.setattr(claude, "build_params", lambda request: sent.append(build(request)) or sent[-1])
    user, conversation, attachment = await _setup_with_upload("receipt.png", image_bytes(150, 100))
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(message="   ")
    assert "The message is empty." in await socket.receive()
    await socket.send(message="", attachments=[attachment.pk])
    await socket.receive_until(lambda f: "status-streaming" in f)
    assistant = await latest_assistant(conversation)
    await socket.receive_until(final_frame_for(assistant.pk))
    await socket.close()
    assistant = await reload(assistant)
    assert (
        assistant.status == "complete"
        and "I received an image (image/png, 150×100 pixels" in assistant.content
    )
    [image] = sent[-1]["messages"][-1]["content"]  # no empty text block: the API refuses those
    assert image["type"] == "image"
    await conversation.arefresh_from_db()
    assert conversation.title == "receipt.png"

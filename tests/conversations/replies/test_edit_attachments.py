"""Editing a message that carried files: the editor shows them, the new version carries exactly the ones
kept and the ones added (and Claude's reply sees those), the earlier version keeps its own, and nobody
can attach someone else's file this way."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse

from conversations.models import Attachment, Message
from conversations.replies import branches, claude
from conversations.replies.generation import generation_wait
from tests.conversations.replies.test_chat_streaming import final_frame_for, latest_assistant
from tests.helpers import make_conversation, make_user, open_socket
from tests.media_factories import image_bytes, pdf_bytes, upload

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("offline_claude")]

QUESTION = "What is in these? [[offline reply_tokens=40]]"


@pytest.fixture(autouse=True)
def _media_of_this_test(private_media):
    """Attachments stored in a directory of this test's own (conftest's `private_media`)."""


@pytest.fixture
def requests_to_claude(monkeypatch) -> list[dict]:
    """The parameters of every request the replies make (as built for the SDK)."""
    sent: list[dict] = []
    build = claude.build_params
    monkeypatch.setattr(claude, "build_params", lambda request: sent.append(build(request)) or sent[-1])
    return sent


def _uploaded(user, conversation, name: str, content: bytes) -> Attachment:
    from django.test import Client

    client = Client()
    client.force_login(user)
    response = client.post(
        reverse("attachment_upload", args=[conversation.pk]), {"file": upload(name, content)}
    )
    assert response.status_code == 200, response.text
    return Attachment.objects.filter(conversation=conversation).latest("pk")


@sync_to_async
def turn_with_files(user=None):
    """A user turn carrying an image and a PDF, with a reply below it; returns (user, turn, image, pdf)."""
    user = user or make_user()
    conversation = make_conversation(owner=user)
    image = _uploaded(user, conversation, "chart.png", image_bytes(300, 200))
    pdf = _uploaded(user, conversation, "notes.pdf", pdf_bytes(1))
    turn = Message.objects.create(conversation=conversation, role="user", content=QUESTION)
    Attachment.objects.filter(pk__in=[image.pk, pdf.pk]).update(message=turn)
    Message.objects.create(
        conversation=conversation, role="assistant", content="A chart", html="<p>A chart</p>", parent=turn
    )
    return user, turn, image, pdf


@sync_to_async
def files_of(message_id: int) -> list[tuple[str, str]]:
    return list(Attachment.objects.filter(message_id=message_id).values_list("name", "file"))


@sync_to_async
def snapshot(conversation_id: int) -> list[tuple]:
    messages = list(
        Message.objects.filter(conversation_id=conversation_id).values_list("pk", "active", "content")
    )
    files = list(
        Attachment.objects.filter(conversation_id=conversation_id)
        .order_by("pk")
        .values_list("pk", "message_id")
    )
    return messages + files


async def newest_turn_and_reply(conversation_id: int) -> tuple[Message, Message]:
    reply = await latest_assistant(await _conversation(conversation_id))
    await generation_wait(reply.pk)
    reply = await Message.objects.aget(pk=reply.pk)
    return await Message.objects.aget(pk=reply.parent_id), reply


@sync_to_async
def _conversation(conversation_id: int):
    from conversations.models import Conversation

    return Conversation.objects.get(pk=conversation_id)


def kinds_sent(request: dict) -> list[str]:
    """The kinds of blocks of the request's last user turn."""
    content = request["messages"][-1]["content"]
    return ["text"] if isinstance(content, str) else [block["type"] for block in content]


async def test_the_editor_shows_the_files_and_the_new_version_carries_those_kept(
    async_client, requests_to_claude
):
    user, turn, image, pdf = await turn_with_files()
    await async_client.aforce_login(user)
    url = reverse("message_edit", args=[turn.pk])

    form = (await async_client.get(url)).content.decode()
    assert "chart.png" in form and "notes.pdf" in form
    assert f'name="keep" value="{image.pk}"' in form and f'name="keep" value="{pdf.pk}"' in form
    assert 'aria-label="Remove notes.pdf"' in form

    # The PDF's chip removed: the new version has the image only, and the reply was written seeing it.
    response = await async_client.post(url, {"message": QUESTION, "keep": [str(image.pk)]})
    assert response.status_code == 302
    edited, reply = await newest_turn_and_reply(turn.conversation_id)
    assert edited.pk != turn.pk and edited.parent_id == turn.parent_id
    assert await files_of(edited.pk) == [("chart.png", image.file.name)]  # the same stored file
    # The earlier version keeps its own.
    assert [name for name, _ in await files_of(turn.pk)] == ["chart.png", "notes.pdf"]
    assert kinds_sent(requests_to_claude[-1]) == ["image", "text"]
    assert "I received an image (image/png, 300×200 pixels, 80 tokens)" in reply.content
    assert reply.media_tokens == 80

    # Every chip removed: the next version has no file, and Claude gets the text alone.
    response = await async_client.post(reverse("message_edit", args=[edited.pk]), {"message": QUESTION})
    assert response.status_code == 302
    bare, reply = await newest_turn_and_reply(turn.conversation_id)
    assert bare.pk != edited.pk and await files_of(bare.pk) == []
    assert kinds_sent(requests_to_claude[-1]) == ["text"] and "I received" not in reply.content


async def test_someone_elses_files_are_refused_with_a_sentence_and_nothing_is_written(async_client):
    user, turn, image, _ = await turn_with_files()
    stranger, their_turn, theirs, _ = await turn_with_files()
    their_pending = await sync_to_async(_uploaded)(
        stranger, await _conversation(their_turn.conversation_id), "secret.png", image_bytes()
    )
    await async_client.aforce_login(user)
    url = reverse("message_edit", args=[turn.pk])
    before, theirs_before = await snapshot(turn.conversation_id), await snapshot(their_turn.conversation_id)
    for fields in ({"keep": [str(image.pk), str(theirs.pk)]}, {"attachments": [str(their_pending.pk)]}):
        response = await async_client.post(url, {"message": "Typed with care", **fields})
        assert response.status_code == 400
        page = response.content.decode()
        assert (
            "One of the attachments is no longer available" in page and "Typed with care</textarea>" in page
        )
        assert "secret.png" not in page and f'value="{theirs.pk}"' not in page
    assert await snapshot(turn.conversation_id) == before
    assert await snapshot(their_turn.conversation_id) == theirs_before
    # Another of one's own messages is no source either: only the message edited lends its files.
    _, other_turn, other_image, _ = await turn_with_files(user)
    response = await async_client.post(url, {"message": "Mine", "keep": [str(other_image.pk)]})
    assert response.status_code == 400 and await snapshot(turn.conversation_id) == before


async def test_over_the_websocket_the_edit_carries_the_kept_and_the_new_files(requests_to_claude):
    user, turn, image, pdf = await turn_with_files()
    conversation = await _conversation(turn.conversation_id)
    added = await sync_to_async(_uploaded)(user, conversation, "photo.png", image_bytes(90, 60))
    _, _, theirs, _ = await turn_with_files()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(action="edit", message_id=turn.pk, message="Look", keep=[theirs.pk])
    assert "One of the attachments is no longer available" in await socket.receive()

    await socket.send(action="edit", message_id=turn.pk, message="", keep=str(pdf.pk), attachments=[added.pk])
    edited, reply = await _sent_edit(socket, conversation)
    assert sorted(await files_of(edited.pk)) == [("notes.pdf", pdf.file.name), ("photo.png", added.file.name)]
    assert sorted(kinds_sent(requests_to_claude[-1])) == ["document", "image"]  # files alone are a message
    assert "an image (image/png, 90×60 pixels" in reply.content
    assert "a PDF (1 page, 3,000 tokens)" in reply.content
    await socket.close()


async def _sent_edit(socket, conversation) -> tuple[Message, Message]:
    await socket.receive_until(lambda f: "status-streaming" in f)
    reply = await latest_assistant(conversation)
    await socket.receive_until(final_frame_for(reply.pk))
    return await newest_turn_and_reply(conversation.pk)


async def test_without_javascript_a_chip_is_removed_and_files_added_by_posting_the_form(async_client):
    user, turn, image, pdf = await turn_with_files()
    await async_client.aforce_login(user)
    url = reverse("message_edit", args=[turn.pk])
    before = await snapshot(turn.conversation_id)
    fields = {"message": "Only the chart, please", "keep": [str(image.pk), str(pdf.pk)]}
    response = await async_client.post(url, {**fields, "drop": str(pdf.pk)})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Only the chart, please</textarea>" in page
    assert f'name="keep" value="{image.pk}"' in page and "notes.pdf" not in page
    assert await snapshot(turn.conversation_id) == before  # nothing sent yet

    added = upload("second.pdf", pdf_bytes(2))
    response = await async_client.post(url, {"message": "Both", "keep": [str(image.pk)], "files": [added]})
    assert response.status_code == 302
    edited, _ = await newest_turn_and_reply(turn.conversation_id)
    assert sorted(name for name, _ in await files_of(edited.pk)) == ["chart.png", "second.pdf"]


async def test_a_file_shared_by_two_versions_stays_until_the_last_one_goes(private_media):
    user, turn, image, pdf = await turn_with_files()
    _, reply = await sync_to_async(branches.message_edit)(
        message=turn, text="Again", worker="w", keep_ids=[image.pk]
    )
    await Message.objects.filter(pk=reply.pk).aupdate(status=Message.Status.STOPPED)
    stored = private_media / image.file.name
    assert stored.exists()
    await sync_to_async(branches.branch_delete)(message=turn)  # the earlier version and its files
    assert stored.exists() and not (private_media / pdf.file.name).exists()
    edited = await Message.objects.aget(pk=reply.parent_id)
    await sync_to_async(edited.delete)()
    assert not stored.exists()

"""Heavy or odd input from one user gets a sentence, stores nothing, and costs the worker little: a
decompression bomb, NUL characters and lone surrogates in any text, numbers too large to read."""

from __future__ import annotations

import time

import pytest
from django.urls import reverse

from conversations import attachments, inputs, transfer
from conversations.models import Attachment, Conversation, Preset
from tests.conversations.test_attachments import logged_in, post_file, stored_files
from tests.helpers import make_conversation, make_user
from tests.media_factories import image_bytes

pytestmark = pytest.mark.django_db


def test_an_image_that_decodes_to_too_many_pixels_is_refused_before_it_is_decoded(private_media):
    bomb = image_bytes(8000, 8000)  # a few hundred KB that would decode to 64 megapixels
    assert len(bomb) < 1_000_000
    user = make_user()
    conversation = make_conversation(owner=user)
    started = time.perf_counter()
    response = post_file(logged_in(user), conversation, "bomb.png", bomb)
    elapsed = time.perf_counter() - started
    assert response.status_code == 400 and "64 megapixels" in response.text and "limit is 36" in response.text
    assert not Attachment.objects.exists() and stored_files(private_media) == []
    assert elapsed < 2  # the header is read, not the pixels (a decode took about 5 s here)


def test_a_large_jpeg_within_the_budget_is_decoded_reduced_and_stored_at_the_models_size(private_media):
    user = make_user()
    conversation = make_conversation(owner=user)
    response = post_file(logged_in(user), conversation, "photo.jpg", image_bytes(6000, 4000, "JPEG"))
    assert response.status_code == 200, response.text
    stored = Attachment.objects.get()
    assert (stored.width, stored.height) == attachments.scaled_size(6000, 4000)


@pytest.mark.parametrize("bad", ["nul\x00here", "lone \ud800 surrogate"])
def test_text_no_database_can_store_is_refused_with_a_sentence_everywhere(bad):
    user = make_user()
    conversation = make_conversation(owner=user, system_prompt="Be brief.")
    client = logged_in(user)
    htmx = {"HX-Request": "true"}
    settings_url = reverse("conversation_settings", args=[conversation.pk])
    posts = {  # each form as a browser posts it: refused at the edge, with a sentence
        "system prompt": (settings_url, {"model": conversation.model, "system_prompt": bad}),
        "stop sequences": (
            settings_url,
            {"model": conversation.model, "system_prompt": "Be brief.", "stop_sequences": bad},
        ),
        "title": (reverse("conversation_rename", args=[conversation.pk]), {"title": bad}),
        "preset": (reverse("presets"), {"name": bad, "system_prompt": "Be kind."}),
    }
    for what, (url, form) in posts.items():
        if bad.isascii():  # a NUL: a browser's form post can carry it
            page = client.post(url, form, headers=htmx).content.decode()
        else:  # a lone surrogate reaches the server only in JSON (a frame, an import): the same cleaners
            page = _refusal(what, form)
        assert "NUL character" in page or "not valid text" in page, what
    with pytest.raises(inputs.InvalidInput) as caught:  # a message (the websocket's and the form's path)
        inputs.clean_message_text(bad)
    assert "NUL character" in str(caught.value) or "not valid text" in str(caught.value)
    conversation.refresh_from_db()
    assert (
        conversation.system_prompt == "Be brief."
        and conversation.title == ""
        and conversation.stop_sequences == []
        and not Preset.objects.exists()
    )


def _refusal(what: str, form: dict) -> str:
    """What the edge's cleaner for `what` says about `form` ("" if it takes it)."""
    clean = {
        "system prompt": lambda form: inputs.clean_settings(form, inputs.model_choice(None)),
        "stop sequences": lambda form: inputs.clean_settings(form, inputs.model_choice(None)),
        "title": lambda form: inputs.clean_title(form.get("title")),
        "preset": lambda form: inputs.clean_preset_name(form.get("name")),
    }[what]
    try:
        clean(form)
    except inputs.InvalidInput as exc:
        return str(exc)
    return ""


def test_an_import_with_a_nul_a_lone_surrogate_or_a_huge_number_is_refused_with_a_sentence():
    user = make_user()
    original = make_conversation(owner=user, system_prompt="Be brief.")
    good = transfer.conversation_json_text(original)
    for data, words in (
        (good.replace('"Be brief."', '"Be \\u0000brief."'), "NUL character"),
        (good.replace('"Be brief."', '"Be \\ud800brief."'), "not valid text"),
        (good.replace('"format": ', '"huge": ' + "9" * 5000 + ', "format": '), "number too large"),
    ):
        assert data != good
        with pytest.raises(inputs.InvalidInput) as caught:
            transfer.conversation_import(owner=user, data=data.encode())
        assert words in str(caught.value)
    assert Conversation.objects.count() == 1


def test_an_import_too_long_to_render_is_refused_before_anything_is_rendered_or_written():
    user = make_user()
    original = make_conversation(owner=user)
    from tests.helpers import make_message

    make_message(original, content="x" * 1_000)
    data = transfer.conversation_json_text(original).replace("x" * 1_000, "x" * 5_000_001).encode()
    with pytest.raises(inputs.InvalidInput) as caught:
        transfer.conversation_import(owner=user, data=data)
    assert "too long to import" in str(caught.value) and "5,000,000" in str(caught.value)
    assert Conversation.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_second_import_of_the_same_person_while_one_runs_is_refused(monkeypatch):
    import threading

    user = make_user()
    data = transfer.conversation_json_text(make_conversation(owner=user, system_prompt="Be brief.")).encode()
    started, release = threading.Event(), threading.Event()
    real_store = transfer._store

    def slow_store(*args):
        started.set()
        release.wait(5)
        return real_store(*args)

    monkeypatch.setattr(transfer, "_store", slow_store)
    outcome = {}
    first = threading.Thread(target=lambda: outcome.setdefault("first", _import_in_thread(user, data)))
    first.start()
    assert started.wait(5)
    with pytest.raises(inputs.InvalidInput) as caught:
        transfer.conversation_import(owner=user, data=data)
    assert "still running" in str(caught.value)
    release.set()
    first.join(10)
    assert isinstance(outcome["first"], Conversation)


@pytest.mark.django_db(transaction=True)
def test_an_import_running_on_another_worker_refuses_a_second_but_a_crashed_ones_claim_expires():
    from datetime import timedelta

    from django.utils import timezone

    from conversations.models import ImportClaim

    user, other = make_user(), make_user()
    data = transfer.conversation_json_text(make_conversation(owner=user, system_prompt="Be brief.")).encode()
    ImportClaim.objects.create(owner=user, started_at=timezone.now())  # another worker is importing for them
    with pytest.raises(inputs.InvalidInput, match="still running"):
        transfer.conversation_import(owner=user, data=data)
    assert transfer.conversation_import(owner=other, data=data).owner == other  # others are not held up
    ImportClaim.objects.filter(owner=user).update(
        started_at=timezone.now() - transfer.IMPORT_CLAIM_LIFETIME - timedelta(seconds=1)
    )
    assert transfer.conversation_import(owner=user, data=data).owner == user  # that worker crashed
    assert not ImportClaim.objects.exists()  # a finished import lets go of its claim


def _import_in_thread(user, data):
    from django.db import connection

    try:
        return transfer.conversation_import(owner=user, data=data)
    finally:
        connection.close()


def test_a_long_file_name_keeps_its_extension_and_a_pdf_is_served_as_a_download(private_media):
    from django.urls import reverse

    from tests.media_factories import pdf_bytes

    user = make_user()
    conversation = make_conversation(owner=user)
    client = logged_in(user)
    response = post_file(client, conversation, "a" * 300 + ".pdf", pdf_bytes(1))
    assert response.status_code == 200, response.text
    stored = Attachment.objects.get()
    assert stored.name.endswith(".pdf") and len(stored.name) == 200
    served = client.get(reverse("attachment", args=[stored.pk]))
    assert served["Content-Disposition"].startswith("attachment;")
    post_file(client, conversation, "cat.png", image_bytes(40, 30))
    image = Attachment.objects.get(kind=Attachment.Kind.IMAGE)
    assert client.get(reverse("attachment", args=[image.pk]))["Content-Disposition"].startswith("inline;")


def test_the_search_markers_never_come_from_what_a_person_typed():
    assert inputs.clean_message_text("find \ue000me\ue001 here") == "find me here"


def test_files_never_sent_have_a_quota_per_person_and_go_after_a_day(
    private_media, settings, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    settings.CHAT_MAX_PENDING_FILES = 4
    user = make_user()
    client = logged_in(user)
    chats = [make_conversation(owner=user) for _ in range(3)]
    codes = [
        post_file(client, chats[n % 3], f"cat{n}.png", image_bytes(40, 30)).status_code for n in range(6)
    ]
    assert codes == [200, 200, 200, 200, 400, 400]
    refused = post_file(client, chats[0], "more.png", image_bytes(40, 30))
    assert "not sent yet" in refused.text and "the limit is 4" in refused.text
    assert Attachment.objects.count() == 4 and len(stored_files(private_media)) == 4
    # A day later the unsent files are gone (rows and files), and uploads work again.
    Attachment.objects.update(created_at=timezone.now() - timedelta(days=1, minutes=1))
    with django_capture_on_commit_callbacks(
        execute=True
    ):  # files are removed once the rows' deletion commits
        assert post_file(client, chats[0], "fresh.png", image_bytes(40, 30)).status_code == 200
    assert Attachment.objects.count() == 1 and len(stored_files(private_media)) == 1


def test_files_posted_without_javascript_count_in_the_quota_and_none_stays_when_one_is_refused(
    private_media, settings, django_capture_on_commit_callbacks
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.CHAT_MAX_PENDING_FILES = 2
    user = make_user()
    client = logged_in(user)
    chat = make_conversation(owner=user)
    assert post_file(client, chat, "waiting.png", image_bytes(40, 30)).status_code == 200  # 1 of 2
    files = [
        SimpleUploadedFile(f"cat{n}.png", image_bytes(40, 30), content_type="image/png") for n in range(2)
    ]
    # A refused edit or message keeps nothing it stored: the second file passes the quota.
    with django_capture_on_commit_callbacks(
        execute=True
    ):  # files are removed once the rows' deletion commits
        refused = client.post(reverse("message_send", args=[chat.pk]), {"message": "Look", "files": files})
    assert refused.status_code == 400 and "not sent yet" in refused.content.decode()
    assert Attachment.objects.filter(owner=user).count() == 1
    assert len(stored_files(private_media)) == 1

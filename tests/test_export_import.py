"""Export (Markdown, JSON, everything as a zip) and import of the JSON export; bad files change nothing."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from billing.models import UsageRecord
from conversations import services, transfer
from conversations.models import Conversation, Message
from tests.helpers import make_conversation, make_message, make_user

pytestmark = pytest.mark.django_db


def a_conversation(owner=None):
    conversation = make_conversation(owner=owner or make_user(), title="Rust & <lifetimes>", system_prompt="Be brief.")
    make_message(conversation, content="What is 'a?")
    make_message(
        conversation, role="assistant", content="A **lifetime** name.\n\n```rust\nfn f<'a>() {}\n```",
        html="<p>A <strong>lifetime</strong> name.</p>", model="claude-sonnet-5-5",
    )
    make_message(conversation, content="And <script>?")
    make_message(conversation, role="assistant", content="Half an ans", status="stopped", model="claude-sonnet-5-5")
    return conversation


def upload(data: bytes | str, name="conversation.json"):
    return SimpleUploadedFile(name, data.encode() if isinstance(data, str) else data, content_type="application/json")


def test_json_export_is_versioned_and_has_every_message_with_an_id():
    conversation = a_conversation()
    document = json.loads(transfer.conversation_json_text(conversation))
    assert document["format"] == transfer.FORMAT == 1 and document["kind"] == "teamchat.conversation"
    assert document["conversation"]["title"] == "Rust & <lifetimes>"
    assert document["conversation"]["system_prompt"] == "Be brief."
    messages = document["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert [m["id"] for m in messages] == list(conversation.messages.in_order().values_list("pk", flat=True))
    assert messages[3]["status"] == "stopped" and messages[1]["content"].startswith("A **lifetime**")
    assert not any("cost" in key or "tokens" in key for m in messages for key in m)


def test_markdown_export_has_a_heading_per_turn_and_the_text_as_written():
    text = transfer.conversation_markdown(a_conversation())
    assert text.startswith("# Rust & <lifetimes>\n")
    assert "## System prompt\n\nBe brief." in text
    assert "## You\n\nWhat is 'a?" in text
    assert "## Claude (claude-sonnet-5-5)\n\nA **lifetime** name.\n\n```rust\nfn f<'a>() {}\n```" in text
    assert "*(stopped)*" in text


def test_export_downloads_and_someone_elses_conversation_is_404(client):
    me = make_user()
    conversation = a_conversation(owner=me)
    client.force_login(me)
    md = client.get(reverse("export_md", args=[conversation.pk]))
    assert md.status_code == 200 and md["Content-Type"].startswith("text/markdown")
    assert f'filename="{conversation.pk}-rust-lifetimes.md"' in md["Content-Disposition"]
    js = client.get(reverse("export_json", args=[conversation.pk]))
    assert json.loads(js.content)["conversation"]["title"] == "Rust & <lifetimes>"
    other = a_conversation()
    for name in ("export_md", "export_json"):
        assert client.get(reverse(name, args=[other.pk])).status_code == 404
    client.logout()
    assert client.get(reverse("export_json", args=[conversation.pk])).status_code == 302


def test_the_archive_holds_all_my_conversations_and_presets_and_nothing_of_others(client):
    me = make_user()
    first, second = a_conversation(owner=me), make_conversation(owner=me, title="Second")
    services.preset_create(owner=me, name="Reviewer", system_prompt="Review code.")
    a_conversation()  # someone else's
    client.force_login(me)
    response = client.get(reverse("export_all"))
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    names = set(archive.namelist())
    assert {"account.json", "presets.json"} <= names
    assert {f"conversations/{transfer.conversation_filename(c, ext)}" for c in (first, second) for ext in ("json", "md")} <= names
    assert len([n for n in names if n.startswith("conversations/")]) == 4
    assert json.loads(archive.read("account.json"))["username"] == me.username
    assert json.loads(archive.read("presets.json"))[0]["name"] == "Reviewer"
    # Each JSON in the archive imports as it is.
    imported = transfer.conversation_import(
        owner=me, data=archive.read(f"conversations/{transfer.conversation_filename(first, 'json')}")
    )
    assert imported.messages.count() == 4


def test_import_makes_a_new_conversation_of_the_importer_and_never_touches_the_ledger():
    owner, importer = make_user(), make_user()
    original = a_conversation(owner=owner)
    data = transfer.conversation_json_text(original).encode()
    ledger_before = UsageRecord.objects.count()
    imported = transfer.conversation_import(owner=importer, data=data)
    assert imported.pk != original.pk and imported.owner == importer
    assert imported.title == original.title and imported.system_prompt == "Be brief."
    rows = list(imported.messages.in_order().values_list("role", "content", "status"))
    assert rows == list(original.messages.in_order().values_list("role", "content", "status"))
    reply = imported.messages.in_order()[1]
    assert "<strong>lifetime</strong>" in reply.html and reply.output_tokens == 0
    assert UsageRecord.objects.count() == ledger_before
    # The original, someone else's, is as it was: the ids in the file are never looked up.
    assert original.messages.count() == 4 and Conversation.objects.get(pk=original.pk).owner == owner


def test_an_imported_streaming_reply_arrives_interrupted():
    conversation = make_conversation()
    make_message(conversation, content="hi")
    make_message(conversation, role="assistant", content="par", status="streaming")
    data = transfer.conversation_json_text(conversation).encode()
    imported = transfer.conversation_import(owner=make_user(), data=data)
    assert imported.messages.in_order()[1].status == Message.Status.INTERRUPTED


def document(**changes) -> bytes:
    base = json.loads(transfer.conversation_json_text(a_conversation()))
    base.update(changes)
    return json.dumps(base).encode()


@pytest.mark.parametrize(
    "data, says",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not valid JSON"),
        (b"PK\x03\x04\x14\x00", "This is a zip archive: unpack it"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2, 3]", "not a conversation exported from this app"),
        (json.dumps({"title": "ChatGPT export", "mapping": {}}).encode(), "not a conversation exported from this app"),
        (lambda: document(format=2), "newer version of the app (format 2)"),
        (lambda: document(format="1"), "no valid format version"),
        (lambda: document(messages=[{"role": "system", "content": "x"}]), "message 1 has no valid role"),
        (lambda: document(messages=[{"role": "user", "content": 5}]), "the text of message 1 must be text"),
        (lambda: document(messages=[{"role": "assistant", "status": "exploded"}]), "unknown status"),
        (lambda: document(conversation="x"), "lacks its conversation or its messages"),
    ],
)
def test_a_bad_file_is_a_clear_error_and_nothing_is_created(data, says):
    data = data() if callable(data) else data
    importer = make_user()
    before = (Conversation.objects.count(), Message.objects.count(), UsageRecord.objects.count())
    with pytest.raises(services.InvalidInput, match=says.replace("(", r"\(").replace(")", r"\)")):
        transfer.conversation_import(owner=importer, data=data)
    assert (Conversation.objects.count(), Message.objects.count(), UsageRecord.objects.count()) == before


def test_a_file_over_the_size_limit_is_refused(settings):
    settings.CHAT_IMPORT_MAX_BYTES = 100
    with pytest.raises(services.InvalidInput, match="too large"):
        transfer.conversation_import(owner=make_user(), data=document())


def test_an_unknown_model_falls_back_to_the_default():
    data = json.loads(document())
    data["conversation"]["model"] = "gpt-9"
    imported = transfer.conversation_import(owner=make_user(), data=json.dumps(data).encode())
    assert imported.model == "claude-sonnet-5-5"


def test_import_form_without_javascript(client):
    me = make_user()
    client.force_login(me)
    assert b'enctype="multipart/form-data"' in client.get(reverse("conversation_import")).content
    response = client.post(reverse("conversation_import"), {"file": upload(document())})
    imported = Conversation.objects.get(owner=me)
    assert response.status_code == 302 and response.url == imported.get_absolute_url()
    bad = client.post(reverse("conversation_import"), {"file": upload(document(format=7))})
    assert bad.status_code == 400 and "newer version of the app (format 7)" in bad.content.decode()
    missing = client.post(reverse("conversation_import"), {})
    assert missing.status_code == 400 and b"Choose a conversation file" in missing.content
    assert Conversation.objects.filter(owner=me).count() == 1


def test_import_needs_login_and_csrf(client):
    assert client.post(reverse("conversation_import"), {"file": upload(document())}).status_code == 302
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    person = make_user()
    strict.force_login(person)
    assert strict.post(reverse("conversation_import"), {"file": upload(document())}).status_code == 403
    assert not Conversation.objects.filter(owner=person).exists()


def test_deleting_a_conversation_keeps_its_ledger_rows():
    from billing.services import usage_record
    from billing.usage import LedgerLabels, Usage

    conversation = a_conversation()
    reply = conversation.messages.filter(role="assistant").first()
    usage_record(
        labels=LedgerLabels(
            user_id=conversation.owner_id, username="x", conversation_id=conversation.pk,
            conversation_title="t", model="claude-sonnet-5-5",
        ),
        message_id=reply.pk, request_id="req", usage=Usage(input_tokens=10, output_tokens=5),
        estimated=False, attempt_id=None,
    )
    before = list(UsageRecord.objects.values_list("pk", "cost", "message_id"))
    services.conversation_delete(conversation=conversation)
    assert list(UsageRecord.objects.values_list("pk", "cost", "message_id")) == before


def test_thinking_and_effort_travel_with_the_json_but_not_the_signed_blocks():
    conversation = make_conversation(effort="high")
    make_message(conversation, content="Think first")
    make_message(
        conversation, role="assistant", content="Done.", thinking="Let me weigh it.",
        thinking_blocks=[{"thinking": "Let me weigh it.", "signature": "sig"}],
    )
    imported = transfer.conversation_import(owner=make_user(), data=transfer.conversation_json_text(conversation).encode())
    reply = imported.messages.in_order()[1]
    assert imported.effort == "high" and reply.thinking == "Let me weigh it." and reply.thinking_blocks == []

"""Export (Markdown, JSON, everything as a zip) and import of the JSON export; bad files change nothing."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from billing.models import UsageRecord
from conversations import inputs, services, transfer
from conversations.models import Conversation, Message
from conversations.replies import branches
from tests.helpers import make_conversation, make_message, make_user

pytestmark = pytest.mark.django_db


def a_conversation(owner=None):
    conversation = make_conversation(
        owner=owner or make_user(), title="Rust & <lifetimes>", system_prompt="Be brief."
    )
    make_message(conversation, content="What is 'a?")
    make_message(
        conversation,
        role="assistant",
        content="A **lifetime** name.\n\n```rust\nfn f<'a>() {}\n```",
        html="<p>A <strong>lifetime</strong> name.</p>",
        model="claude-sonnet-5-5",
    )
    make_message(conversation, content="And <script>?")
    make_message(
        conversation, role="assistant", content="Half an ans", status="stopped", model="claude-sonnet-5-5"
    )
    return conversation


def upload(data: bytes | str, name="conversation.json"):
    return SimpleUploadedFile(
        name, data.encode() if isinstance(data, str) else data, content_type="application/json"
    )


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
    assert {
        f"conversations/{transfer.conversation_filename(c, ext)}"
        for c in (first, second)
        for ext in ("json", "md")
    } <= names
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
    assert imported.title == "Rust & <lifetimes> (imported)" and imported.system_prompt == "Be brief."
    rows = list(imported.messages.in_order().values_list("role", "content", "status"))
    assert rows == list(original.messages.in_order().values_list("role", "content", "status"))
    reply = imported.messages.in_order()[1]
    assert "<strong>lifetime</strong>" in reply.html and reply.output_tokens == 0
    assert UsageRecord.objects.count() == ledger_before
    # The original, someone else's, is as it was: the ids in the file are never looked up.
    assert original.messages.count() == 4 and Conversation.objects.get(pk=original.pk).owner == owner


def test_an_imported_title_says_imported_once_and_fits_the_title_field():
    original = a_conversation()
    once = transfer.conversation_import(
        owner=make_user(), data=transfer.conversation_json_text(original).encode()
    )
    twice = transfer.conversation_import(
        owner=make_user(), data=transfer.conversation_json_text(once).encode()
    )
    assert twice.title == "Rust & <lifetimes> (imported)"
    long = make_conversation(title="x" * 200)
    imported = transfer.conversation_import(
        owner=make_user(), data=transfer.conversation_json_text(long).encode()
    )
    assert len(imported.title) <= 200 and imported.title.endswith("x (imported)")
    untitled = make_conversation(title="")
    imported = transfer.conversation_import(
        owner=make_user(), data=transfer.conversation_json_text(untitled).encode()
    )
    assert imported.title == "New conversation (imported)"


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
        (
            json.dumps({"title": "ChatGPT export", "mapping": {}}).encode(),
            "not a conversation exported from this app",
        ),
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
    with pytest.raises(inputs.InvalidInput, match=says.replace("(", r"\(").replace(")", r"\)")):
        transfer.conversation_import(owner=importer, data=data)
    assert (Conversation.objects.count(), Message.objects.count(), UsageRecord.objects.count()) == before


def test_a_file_over_the_size_limit_is_refused(settings):
    settings.CHAT_IMPORT_MAX_BYTES = 100
    with pytest.raises(inputs.InvalidInput, match="too large"):
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
            user_id=conversation.owner_id,
            username="x",
            conversation_id=conversation.pk,
            conversation_title="t",
            model="claude-sonnet-5-5",
        ),
        message_id=reply.pk,
        request_id="req",
        usage=Usage(input_tokens=10, output_tokens=5),
        estimated=False,
        attempt_id=None,
    )
    before = list(UsageRecord.objects.values_list("pk", "cost", "message_id"))
    services.conversation_delete(conversation=conversation)
    assert list(UsageRecord.objects.values_list("pk", "cost", "message_id")) == before


def test_thinking_and_effort_travel_with_the_json_but_not_the_signed_blocks():
    conversation = make_conversation(effort="high")
    make_message(conversation, content="Think first")
    make_message(
        conversation,
        role="assistant",
        content="Done.",
        thinking="Let me weigh it.",
        thinking_blocks=[{"thinking": "Let me weigh it.", "signature": "sig"}],
    )
    imported = transfer.conversation_import(
        owner=make_user(), data=transfer.conversation_json_text(conversation).encode()
    )
    reply = imported.messages.in_order()[1]
    assert imported.effort == "high" and reply.thinking == "Let me weigh it." and reply.thinking_blocks == []


# Branches: the JSON carries the tree, and import rebuilds it.


def a_branched_conversation(owner=None):
    """A conversation with versions at three turns, built as edit/regenerate leave it: the first
    message edited once (the edit shown), the first reply regenerated (the newer one shown, the older
    one with a follow-up of its own, remembered as chosen there), and the second message edited."""
    conversation = make_conversation(owner=owner or make_user(), title="Branches")
    first = make_message(conversation, content="Name a river", active=False, chosen=False)
    old_reply = make_message(
        conversation, role="assistant", content="The Nile", parent=first, active=False, chosen=False
    )
    longer = make_message(conversation, content="Longer?", parent=old_reply, active=False)
    make_message(conversation, role="assistant", content="Yes", parent=longer, active=False)
    reply = make_message(conversation, role="assistant", content="The Rhine", parent=first, active=False)
    where = make_message(conversation, content="Where is it?", parent=reply, active=False, chosen=False)
    make_message(conversation, role="assistant", content="Europe", parent=where, active=False)
    edited = Message(conversation=conversation, role="user", content="Name a long river")
    edited.starts_conversation = True
    edited.save()
    answer = make_message(conversation, role="assistant", content="The Amazon", parent=edited)
    how = make_message(conversation, content="How long?", parent=answer)
    make_message(conversation, role="assistant", content="About 6,400 km", parent=how)
    # Under "The Rhine", the later edit "Where in Europe?" is the version chosen there.
    again = make_message(conversation, content="Where in Europe?", parent=reply, active=False)
    make_message(conversation, role="assistant", content="Central", parent=again, active=False)
    return conversation


def tree_of(conversation) -> list[tuple]:
    """Each message as (content, parent's content, chosen, active), in the conversation's order."""
    messages = list(conversation.messages.in_order().select_related("parent"))
    return [(m.content, m.parent.content if m.parent else None, m.chosen, m.active) for m in messages]


def shown(conversation) -> list[tuple[str, int, int]]:
    """The page: the active branch with each message's "k / N"."""
    messages, _ = conversation.messages.page()
    return [(m.content, m.branch_index, m.branch_count) for m in messages]


def test_the_json_export_carries_the_tree():
    conversation = a_branched_conversation()
    messages = json.loads(transfer.conversation_json_text(conversation))["messages"]
    by_id = {m["id"]: m for m in messages}
    rhine = next(m for m in messages if m["content"] == "The Rhine")
    assert by_id[rhine["parent"]]["content"] == "Name a river"
    assert rhine["chosen"] is True and rhine["active"] is False
    assert [m["content"] for m in messages if m["parent"] is None] == ["Name a river", "Name a long river"]
    assert [m["content"] for m in messages if m["active"]] == [
        "Name a long river",
        "The Amazon",
        "How long?",
        "About 6,400 km",
    ]
    # Every parent is an earlier message of the same file.
    seen = set()
    for message in messages:
        assert message["parent"] is None or message["parent"] in seen
        seen.add(message["id"])


def test_a_branched_conversation_round_trips_with_its_versions_and_active_branch():
    conversation = a_branched_conversation()
    assert shown(conversation) == [
        ("Name a long river", 2, 2),
        ("The Amazon", 1, 1),
        ("How long?", 1, 1),
        ("About 6,400 km", 1, 1),
    ]
    ledger_before = list(UsageRecord.objects.values_list("pk", "cost"))
    imported = transfer.conversation_import(
        owner=make_user(), data=transfer.conversation_json_text(conversation).encode()
    )
    assert imported.messages.count() == conversation.messages.count() == 13
    assert tree_of(imported) == tree_of(conversation)
    assert shown(imported) == shown(conversation)
    assert not set(imported.messages.values_list("pk", flat=True)) & set(
        conversation.messages.values_list("pk", flat=True)
    )
    assert list(UsageRecord.objects.values_list("pk", "cost")) == ledger_before

    # Switching to the other first message shows the branch remembered under it, on both.
    for each in (conversation, imported):
        first = each.messages.active().in_order().first()
        branches.branch_switch(message=first, index=1)
    assert (
        shown(imported)
        == shown(conversation)
        == [
            ("Name a river", 1, 2),
            ("The Rhine", 2, 2),
            ("Where in Europe?", 2, 2),
            ("Central", 1, 1),
        ]
    )
    # And one more level down: the older reply's own follow-up was kept as chosen there.
    reply = imported.messages.active().in_order()[1]
    branches.branch_switch(message=reply, index=1)
    assert shown(imported) == [("Name a river", 1, 2), ("The Nile", 1, 2), ("Longer?", 1, 1), ("Yes", 1, 1)]
    # Markdown stays the active branch.
    assert "Where in Europe" not in transfer.conversation_markdown(
        imported
    ) and "Longer?" in transfer.conversation_markdown(imported)


def test_an_export_from_before_branches_imports_as_one_branch():
    old = json.loads(transfer.conversation_json_text(a_conversation()))
    for message in old["messages"]:
        for key in ("parent", "chosen", "active"):
            del message[key]
    imported = transfer.conversation_import(owner=make_user(), data=json.dumps(old).encode())
    assert shown(imported) == [
        ("What is 'a?", 1, 1),
        ("A **lifetime** name.\n\n```rust\nfn f<'a>() {}\n```", 1, 1),
        ("And <script>?", 1, 1),
        ("Half an ans", 1, 1),
    ]
    rows = list(imported.messages.order_by("pk"))
    assert rows[0].parent_id is None and all(
        m.parent_id == p.pk for p, m in zip(rows, rows[1:], strict=False)
    )
    assert all(m.active and m.chosen for m in rows)


def test_a_minimal_hand_written_old_file_without_ids_still_imports():
    data = json.dumps(
        {
            "format": 1,
            "kind": "teamchat.conversation",
            "conversation": {"title": "Old"},
            "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        }
    ).encode()
    imported = transfer.conversation_import(owner=make_user(), data=data)
    assert shown(imported) == [("hi", 1, 1), ("hello", 1, 1)]


def branched_document(change) -> bytes:
    document = json.loads(transfer.conversation_json_text(a_branched_conversation()))
    change(document["messages"])
    return json.dumps(document).encode()


def _set(index, **fields):
    return lambda messages: messages[index].update(fields)


def _parent_is(index, other):
    return lambda messages: messages[index].update(parent=messages[other]["id"])


def _two_cycle(messages):
    messages[1]["parent"] = messages[2]["id"]
    messages[2]["parent"] = messages[1]["id"]


def _same_id(messages):
    messages[3]["id"] = messages[1]["id"]


@pytest.mark.parametrize(
    "change, says",
    [
        (
            _set(2, parent=987654321),
            "the parent of message 3 (987654321) is not a message of this conversation's file",
        ),
        (_set(2, parent=True), "the parent of message 3 is not a message id"),
        (_parent_is(1, 4), "message 2 names itself or a later message"),
        (_parent_is(1, 1), "message 2 names itself or a later message"),
        (_two_cycle, "message 2 names itself or a later message"),
        (_same_id, "messages 2 and 4 have the same id"),
        (_set(0, id=None), "message 1 has no valid id"),
        (_set(1, chosen=True), "messages 2 and 5 are both marked as the chosen version of one turn"),
        (_set(0, chosen=True), "messages 1 and 8 are both marked as the chosen version of one turn"),
        (_set(1, chosen="yes"), "“chosen” of message 2 must be true or false"),
    ],
)
def test_a_bad_reference_between_messages_is_a_clear_error_and_nothing_is_created(change, says):
    data = branched_document(change)
    before = (Conversation.objects.count(), Message.objects.count(), UsageRecord.objects.count())
    with pytest.raises(inputs.InvalidInput, match=re.escape(says)):
        transfer.conversation_import(owner=make_user(), data=data)
    assert (Conversation.objects.count(), Message.objects.count(), UsageRecord.objects.count()) == before


def test_a_parent_in_another_conversation_is_refused_and_never_looked_up():
    importer = make_user()
    mine = a_conversation(owner=importer)
    elsewhere = mine.messages.in_order().first()
    document = json.loads(transfer.conversation_json_text(a_branched_conversation()))
    document["messages"][2]["parent"] = elsewhere.pk
    before = (Conversation.objects.count(), Message.objects.count())
    with pytest.raises(
        inputs.InvalidInput, match=f"the parent of message 3 \\({elsewhere.pk}\\) is not a message"
    ):
        transfer.conversation_import(owner=importer, data=json.dumps(document).encode())
    assert (Conversation.objects.count(), Message.objects.count()) == before
    assert list(elsewhere.children.values_list("content", flat=True)) == [
        "A **lifetime** name.\n\n```rust\nfn f<'a>() {}\n```"
    ]


def test_a_bad_reference_is_shown_on_the_import_form(client):
    me = make_user()
    client.force_login(me)
    data = branched_document(_parent_is(1, 1)).decode()
    before = Conversation.objects.count()
    response = client.post(reverse("conversation_import"), {"file": upload(data)})
    assert response.status_code == 400 and "names itself or a later message" in response.content.decode()
    assert Conversation.objects.count() == before

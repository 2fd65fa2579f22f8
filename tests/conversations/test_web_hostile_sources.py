"""What a web result or a crafted file can put on the page: addresses and names carrying invisible or
direction-changing characters (a right-to-left override makes "elpmaxe.knab" read "bank.example") never
become links or shown domains; an error code Claude's API did not document is shown cut to size; and
an imported file's sources with script, `javascript:` addresses or such characters are inert on the
owner's page, the shared page and the Markdown export."""

from __future__ import annotations

import json

import pytest
from django.template.loader import render_to_string
from django.test import Client

from conversations import services, transfer
from conversations.models import Message
from conversations.rendering import host_of, link_url, render_cited
from conversations.replies.blocks import CallBlocks, WebStep
from conversations.sources import WebDisplay
from tests.conversations.replies.test_web_replies import _ActiveMarkup
from tests.helpers import make_conversation, make_message, make_user

RLO, ZWSP, NBSP = "\u202e", "\u200b", "\u00a0"
SPOOFED = f"https://{RLO}elpmaxe.knab/login"  # shows as "https://bank.example/login" backwards


@pytest.mark.parametrize(
    "url",
    [
        SPOOFED,
        f"https://bank{ZWSP}.example/",
        f"https://bank.example/{RLO}fdp.exe",
        f"https://a.example/{NBSP}x",
    ],
)
def test_an_address_with_an_invisible_or_direction_changing_character_is_no_link_and_no_domain(url):
    assert link_url(url) == ""
    assert host_of(url) in ("", "bank.example", "a.example")  # only a host that reads as itself
    assert RLO not in host_of(url) and ZWSP not in host_of(url)

    blocks = CallBlocks()
    citation = {
        "type": "web_search_result_location",
        "url": url,
        "title": f"Your {RLO}knab",
        "cited_text": "x",
    }
    blocks.started({"type": "text", "text": "", "citations": [citation]}, text_at=0, thinking_at=-1)
    blocks.stopped(text_at=5)
    display = WebDisplay()
    display.add_call(blocks, text_start=0, text_length=5)
    [source] = display.sources
    assert source["url"] == "" and source["domain"] == "" and source["title"] == "Your knab"
    assert "<a " not in render_cited("Text.", display.citations, display.sources)
    assert link_url("https://bank.example/münchen") == "https://bank.example/münchen"  # letters are fine


def test_a_page_read_at_a_spoofed_address_shows_no_such_domain_and_no_hidden_characters():
    step = WebStep(id="srvtoolu_1", tool="web_fetch", target=SPOOFED).shown()
    assert step["domain"] == "" and RLO not in step["target"]
    message = Message(pk=7, role="assistant", status=Message.Status.STREAMING, web_steps=[step])
    shown = render_to_string("conversations/_web.html#web_steps", {"message": message})
    assert "Reading https:// elpmaxe.knab/login" in shown and RLO not in shown
    searched = WebStep(id="srvtoolu_2", tool="web_search", target=f"bank{ZWSP} login\n{RLO}now").shown()
    assert searched["target"] == "bank login now"


def test_an_undocumented_error_code_is_shown_in_words_cut_to_size():
    step = WebStep(id="s", tool="web_search", target="tides", state="failed", error="quota_" + "x" * 5000)
    shown = step.shown()
    assert shown["reason"].startswith("quota x") and len(shown["reason"]) == 64
    assert len(shown["error"]) == 64


@pytest.mark.django_db
def test_an_imported_file_with_hostile_sources_is_inert_on_the_page_the_shared_page_and_in_markdown(settings):
    settings.CHAT_SHARING = True
    owner = make_user()
    original = make_conversation(owner=owner, title="Crafted")
    asked = make_message(original, content="Question")
    make_message(original, role="assistant", content="An answer worth citing.", parent=asked)
    document = transfer.conversation_json(original)
    document["messages"][-1]["sources"] = [
        {"title": "<script>alert(1)</script> first", "url": "javascript:alert(2)", "domain": "x"},
        {"title": '<img src=x onerror="alert(3)">', "url": SPOOFED, "domain": "bank.example"},
        {"title": "Fine", "url": "https://fine.example/page", "domain": "evil.example"},
    ]
    document["messages"][-1]["citations"] = [
        {"at": 9, "source": 1, "cited_text": "<script>alert(4)</script>"},
        {"at": 23, "source": 2, "cited_text": ""},
        {"at": 23, "source": 3, "cited_text": ""},
    ]
    imported = transfer.conversation_import(owner=owner, data=json.dumps(document).encode())
    reply = imported.messages.get(role="assistant")
    # Cleaned as new sources are: no link but to http(s), the domain taken from the address itself.
    assert [(s["url"], s["domain"]) for s in reply.sources] == [
        ("", ""),
        ("", ""),
        ("https://fine.example/page", "fine.example"),
    ]

    client = Client()
    client.force_login(owner)
    page = client.get(imported.get_absolute_url()).content.decode()
    token = services.share_create(conversation=imported)
    shared = Client().get(f"/s/{token}/").content.decode()
    for shown in (page, shared):
        assert _ActiveMarkup(shown).found == []
        assert "&lt;script&gt;alert(1)&lt;/script&gt; first" in shown and RLO not in shown
        assert 'href="https://fine.example/page" target="_blank" rel="noopener noreferrer"' in shown
        assert "evil.example" not in shown
    markdown = transfer.conversation_markdown(imported)
    assert "1. \\<script\\>alert\\(1\\)\\</script\\> first\n" in markdown and "javascript:" not in markdown
    assert "3. [Fine](<https://fine.example/page>)" in markdown and RLO not in markdown

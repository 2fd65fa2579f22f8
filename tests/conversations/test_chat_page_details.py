"""The chat page's smaller promises, without a browser: renames in place, empty sends, the streaming
markup, the favicon and code colours that pass WCAG AA."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import reverse

from conversations.models import Conversation
from tests.helpers import make_conversation, make_message, make_user

pytestmark = pytest.mark.django_db
APP_CSS = Path(__file__).resolve().parents[2] / "static" / "conversations" / "app.css"


def test_a_rename_of_only_spaces_is_an_inline_error_in_the_sidebar_item(client):
    me = make_user()
    conversation = make_conversation(owner=me, title="Trip")
    client.force_login(me)
    response = client.post(
        reverse("conversation_rename", args=[conversation.pk]),
        {"title": "   "},
        HTTP_HX_REQUEST="true",
        HTTP_HX_CURRENT_URL=f"http://testserver/c/{conversation.pk}/",
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith(f'<li id="conversation-{conversation.pk}"')  # the item, not a page
    assert 'role="alert">The title cannot be empty.</p>' in html
    assert '<details class="item-actions" open>' in html and "current" in html
    conversation.refresh_from_db()
    assert conversation.title == "Trip"


def test_a_rename_of_only_spaces_without_javascript_shows_the_page_with_the_error(client):
    me = make_user()
    conversation = make_conversation(owner=me, title="Trip")
    make_message(conversation, role="user", content="Where to?")
    client.force_login(me)
    url = f"http://testserver/c/{conversation.pk}/"
    response = client.post(
        reverse("conversation_rename", args=[conversation.pk]), {"title": "  "}, HTTP_REFERER=url
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert "The title cannot be empty." in html and 'id="composer-input"' in html and "Where to?" in html
    assert 'aria-invalid="true"' in html


def test_a_rename_updates_the_heading_and_tab_title_of_the_open_conversation_only(client):
    me = make_user()
    open_one, other = make_conversation(owner=me, title="Open"), make_conversation(owner=me, title="Other")
    client.force_login(me)
    current = f"http://testserver/c/{open_one.pk}/"
    html = client.post(
        reverse("conversation_rename", args=[open_one.pk]), {"title": "Renamed"},
        HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL=current,
    ).content.decode()  # fmt: skip
    assert '<h1 id="conversation-title" hx-swap-oob="true">Renamed</h1>' in html
    assert "<title>Renamed · Team chat</title>" in html
    assert re.search(rf'<li id="conversation-{open_one.pk}" class="conversation-item current">', html)
    html = client.post(
        reverse("conversation_rename", args=[other.pk]), {"title": "Also renamed"},
        HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL=current,
    ).content.decode()  # fmt: skip
    assert "conversation-title" not in html and "<title>" not in html


@pytest.mark.django_db(transaction=True)  # the async view reaches the database from its own threads
def test_a_send_of_only_spaces_on_the_home_page_makes_no_conversation(client):
    me = make_user()
    client.force_login(me)
    response = client.post(reverse("conversation_create"), {"message": "   \n "})
    assert response.status_code == 400 and "Type a message first." in response.content.decode()
    assert not Conversation.objects.filter(owner=me).exists()


def test_a_streaming_reply_is_served_as_rendered_markdown_with_its_text_kept_alongside(client):
    me = make_user()
    conversation = make_conversation(owner=me)
    make_message(conversation, role="user", content="Hi")
    reply = make_message(
        conversation, role="assistant", status="streaming", content="Para **one**.\n\n- **Meas"
    )
    client.force_login(me)
    html = client.get(conversation.get_absolute_url()).content.decode()
    assert f'<div id="msg-{reply.pk}-blocks"><p>Para <strong>one</strong>.</p>' in html
    assert f'<div id="msg-{reply.pk}-tail" class="tail"><ul>\n<li><strong>Meas</strong></li>' in html
    assert f'<div id="msg-{reply.pk}-body" class="source" hidden>Para **one**.' in html


def test_copy_and_receipt_are_not_offered_on_an_empty_error_reply(client):
    me = make_user()
    conversation = make_conversation(owner=me)
    make_message(conversation, role="user", content="Hi")
    make_message(conversation, role="assistant", status="error", content="", error="Claude is overloaded.")
    client.force_login(me)
    html = client.get(conversation.get_absolute_url()).content.decode()
    assert "Claude is overloaded." in html and "data-copy-message" not in html and ">Receipt<" not in html


def test_every_page_names_an_icon_and_favicon_ico_is_not_a_404(client):
    me = make_user()
    client.force_login(me)
    assert 'rel="icon"' in client.get(reverse("home")).content.decode()
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response.url.endswith("conversations/favicon.svg")


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _code_colours(css: str) -> list[str]:
    return re.findall(r"\.markdown \.\w+[^{]*\{ color: (#[0-9a-f]{6});", css)


def test_contrast_formula_matches_known_values():
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert round(contrast("#777777", "#ffffff"), 2) == 4.48


def test_code_colours_pass_wcag_aa_on_the_code_background_in_both_schemes():
    css = APP_CSS.read_text()
    light_root, dark_block = css.split("@media (prefers-color-scheme: dark)", 1)
    light_bg = re.search(r"--code-bg: (#[0-9a-f]{6})", light_root).group(1)
    dark_bg = re.search(r"--code-bg: (#[0-9a-f]{6})", dark_block).group(1)
    code_css = css[css.index("/* Code colours") :]
    light_part, dark_part = code_css.split("@media (prefers-color-scheme: dark)", 1)
    light, dark = _code_colours(light_part), _code_colours(dark_part.split("@media", 1)[0])
    assert len(light) == len(dark) >= 5
    for colour in light:
        assert contrast(colour, light_bg) >= 4.5, (colour, light_bg, contrast(colour, light_bg))
    for colour in dark:
        assert contrast(colour, dark_bg) >= 4.5, (colour, dark_bg, contrast(colour, dark_bg))

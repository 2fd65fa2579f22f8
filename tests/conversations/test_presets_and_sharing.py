"""Presets (a person's own and staff's site-wide ones) and read-only share links."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from conversations import inputs, services
from conversations.models import Conversation, Preset, ShareLink, share_token_hash
from tests.helpers import make_conversation, make_message, make_user

pytestmark = pytest.mark.django_db


# Presets


def test_a_conversation_started_from_a_preset_copies_its_prompt():
    me = make_user()
    preset = services.preset_create(owner=me, name="Terse", system_prompt="Answer in one line.")
    chosen = services.preset_offered(user=me, preset_id=str(preset.pk))  # as the home page's form names it
    conversation = services.conversation_create(owner=me, preset=chosen)
    assert conversation.system_prompt == "Answer in one line."
    preset.system_prompt = "Changed later"
    preset.save()
    services.preset_delete(preset=preset)
    conversation.refresh_from_db()
    assert conversation.system_prompt == "Answer in one line."


def test_only_my_presets_and_published_site_wide_ones_are_offered():
    me, other = make_user(), make_user()
    mine = services.preset_create(owner=me, name="Mine", system_prompt="m")
    theirs = services.preset_create(owner=other, name="Theirs", system_prompt="t")
    published = Preset.objects.create(name="Everyone", system_prompt="e", published=True)
    draft = Preset.objects.create(name="Draft", system_prompt="d", published=False)
    assert list(Preset.objects.offered_to(me)) == [published, mine]
    for preset in (theirs, draft):
        with pytest.raises(inputs.InvalidInput, match="Choose one of the offered presets"):
            services.preset_offered(user=me, preset_id=preset.pk)
    for bad in ("abc", "-1", "99999999999999999999999"):
        with pytest.raises(inputs.InvalidInput):
            services.preset_offered(user=me, preset_id=bad)
    assert not Conversation.objects.filter(owner=me).exists()
    chosen = services.preset_offered(user=me, preset_id=published.pk)
    assert services.conversation_create(owner=me, preset=chosen).system_prompt == "e"


@pytest.mark.parametrize(
    "name, prompt, says",
    [
        ("", "x", "Give the preset a name"),
        ("n", "   ", "is empty"),
        ("n" * 101, "x", "at most 100"),
        ("n", "x" * 16001, "at most 16,000"),
    ],
)
def test_a_bad_preset_is_a_clear_error(client, name, prompt, says):
    client.force_login(make_user())
    page = client.post(reverse("presets"), {"name": name, "system_prompt": prompt})
    assert says in page.content.decode()
    assert not Preset.objects.exists()


@pytest.mark.django_db(transaction=True)  # conversation_create is an async view
def test_presets_page_and_the_home_composer_without_javascript(client):
    me = make_user()
    Preset.objects.create(name="Site style", system_prompt="Use British spelling.", published=True)
    client.force_login(me)
    response = client.post(reverse("presets"), {"name": "Reviewer", "system_prompt": "Review my code."})
    assert response.status_code == 302
    page = client.get(reverse("presets")).content.decode()
    assert "Reviewer" in page and "Site style" in page
    bad = client.post(reverse("presets"), {"name": "", "system_prompt": "kept text"})
    assert (
        bad.status_code == 400
        and "Give the preset a name" in bad.content.decode()
        and "kept text" in bad.content.decode()
    )
    home = client.get(reverse("home")).content.decode()
    mine = Preset.objects.get(owner=me)
    assert f'<option value="{mine.pk}">Reviewer</option>' in home and "Site style (everyone)" in home
    response = client.post(
        reverse("conversation_create"), {"model": "claude-sonnet-5-5", "preset": mine.pk, "message": ""}
    )
    conversation = Conversation.objects.get(owner=me)
    assert response.url == conversation.get_absolute_url() and conversation.system_prompt == "Review my code."
    other = services.preset_create(owner=make_user(), name="x", system_prompt="y")
    refused = client.post(reverse("conversation_create"), {"preset": other.pk, "message": "hello"})
    assert refused.status_code == 400 and "Choose one of the offered presets" in refused.content.decode()
    assert "hello" in refused.content.decode() and Conversation.objects.filter(owner=me).count() == 1
    assert client.post(reverse("preset_delete", args=[other.pk])).status_code == 404
    assert client.post(reverse("preset_delete", args=[mine.pk])).status_code == 302
    assert not Preset.objects.filter(pk=mine.pk).exists() and Preset.objects.filter(pk=other.pk).exists()


def test_staff_publish_site_wide_presets_in_the_admin(client):
    staff = make_user(is_staff=True, is_superuser=True)
    client.force_login(staff)
    response = client.post(
        reverse("admin:conversations_preset_add"),
        {"name": "Support tone", "system_prompt": "Be kind.", "published": "on", "owner": ""},
    )
    assert response.status_code == 302
    preset = Preset.objects.get(name="Support tone")
    assert preset.is_site_wide and preset.published
    assert preset in Preset.objects.offered_to(make_user())


# Share links


@pytest.fixture
def sharing_on(settings):
    settings.CHAT_SHARING = True


def shared_conversation():
    me = make_user()
    conversation = make_conversation(owner=me, title="Shared <title>")
    make_message(conversation, content="my question <b>")
    make_message(conversation, role="assistant", content="**answer**", html="<p><strong>answer</strong></p>")
    make_conversation(owner=me, title="Private other conversation")
    return me, conversation


def test_sharing_is_off_by_default(client):
    me, conversation = shared_conversation()
    with pytest.raises(inputs.InvalidInput, match="Sharing is turned off"):
        services.share_create(conversation=conversation)
    client.force_login(me)
    assert "Share</summary>" not in client.get(conversation.get_absolute_url()).content.decode()
    response = client.post(reverse("share_create", args=[conversation.pk]))
    assert response.status_code == 400 and not ShareLink.objects.exists()


@pytest.mark.usefixtures("sharing_on")
def test_a_share_link_shows_the_messages_only_without_login_and_is_stored_hashed(client):
    me, conversation = shared_conversation()
    token = services.share_create(conversation=conversation)
    link = ShareLink.objects.get(conversation=conversation)
    assert len(token) >= 40 and link.token_hash == share_token_hash(token) and token not in link.token_hash
    page = Client().get(f"/s/{token}/")
    html = page.content.decode()
    assert page.status_code == 200 and page["X-Robots-Tag"] == "noindex, nofollow"
    assert (
        "Shared &lt;title&gt;" in html
        and "my question &lt;b&gt;" in html
        and "<strong>answer</strong>" in html
    )
    assert "Private other conversation" not in html and me.username not in html
    assert "Receipt" not in html and "$" not in html and "Cost" not in html and "ws-connect" not in html
    assert "csrfmiddlewaretoken" not in html and "<form" not in html


@pytest.mark.usefixtures("sharing_on")
def test_a_revoked_replaced_or_unknown_link_is_404(client, settings):
    me, conversation = shared_conversation()
    first = services.share_create(conversation=conversation)
    second = services.share_create(conversation=conversation)
    anonymous = Client()
    assert anonymous.get(f"/s/{first}/").status_code == 404
    assert anonymous.get(f"/s/{second}/").status_code == 200
    assert anonymous.get("/s/not-a-token/").status_code == 404
    settings.CHAT_SHARING = False
    assert anonymous.get(f"/s/{second}/").status_code == 404  # turning sharing off closes every link
    settings.CHAT_SHARING = True
    assert services.share_revoke(conversation=conversation)
    assert anonymous.get(f"/s/{second}/").status_code == 404


@pytest.mark.usefixtures("sharing_on")
def test_share_and_revoke_as_plain_form_posts_and_with_htmx(client):
    me, conversation = shared_conversation()
    client.force_login(me)
    assert "Share</summary>" in client.get(conversation.get_absolute_url()).content.decode()
    html = client.post(reverse("share_create", args=[conversation.pk])).content.decode()
    token = re.search(
        r'id="share-url" type="text" readonly value="http://testserver/s/([^"/]+)/"', html
    ).group(1)
    assert Client().get(f"/s/{token}/").status_code == 200
    assert (
        "A read-only link to this conversation is active."
        in client.get(conversation.get_absolute_url()).content.decode()
    )
    fragment = client.post(
        reverse("share_revoke", args=[conversation.pk]), headers={"HX-Request": "true"}
    ).content.decode()
    assert fragment.startswith('<details class="share"') and "The link no longer works." in fragment
    assert Client().get(f"/s/{token}/").status_code == 404


@pytest.mark.usefixtures("sharing_on")
def test_someone_elses_conversation_cannot_be_shared_or_revoked(client):
    _, conversation = shared_conversation()
    token = services.share_create(conversation=conversation)
    client.force_login(make_user())
    assert client.post(reverse("share_create", args=[conversation.pk])).status_code == 404
    assert client.post(reverse("share_revoke", args=[conversation.pk])).status_code == 404
    assert Client().get(f"/s/{token}/").status_code == 200
    assert Client().post(reverse("share_create", args=[conversation.pk])).status_code == 302  # login first


@pytest.mark.usefixtures("sharing_on")
def test_the_shared_page_is_bounded_like_the_chat_page():
    me = make_user()
    conversation = make_conversation(owner=me)
    for n in range(120):
        make_message(conversation, content=f"turn {n}")
    token = services.share_create(conversation=conversation)
    html = Client().get(f"/s/{token}/").content.decode()
    assert "turn 119" in html and "turn 0<" not in html and "Show earlier messages" in html


@pytest.mark.usefixtures("sharing_on")
def test_staff_see_share_links_in_the_admin_and_can_revoke_them(client):
    _, conversation = shared_conversation()
    token = services.share_create(conversation=conversation)
    link = ShareLink.objects.get()
    client.force_login(make_user(is_staff=True, is_superuser=True))
    listing = client.get(reverse("admin:conversations_sharelink_changelist")).content.decode()
    assert "Shared &lt;title&gt;" in listing and token not in listing and link.token_hash not in listing
    assert client.get(reverse("admin:conversations_sharelink_add")).status_code == 403
    client.post(reverse("admin:conversations_sharelink_delete", args=[link.pk]), {"post": "yes"})
    assert Client().get(f"/s/{token}/").status_code == 404

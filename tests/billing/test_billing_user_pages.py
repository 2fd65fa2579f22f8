from __future__ import annotations

import pytest
from billing_factories import make_conversation, make_message, make_user, record_call

pytestmark = pytest.mark.django_db


def test_usage_page_requires_login(client):
    response = client.get("/usage/")
    assert response.status_code == 302
    assert "login" in response["Location"]


def test_usage_page_shows_only_the_users_own_spend(client, settings):
    settings.CHAT_DEFAULT_MONTHLY_BUDGET_USD = "20"
    me, other = make_user("me"), make_user("other")
    mine = make_conversation(me, title="My secret plan")
    theirs = make_conversation(other, title="Their secret plan")
    record_call(me, conversation=mine, input_tokens=1000, output_tokens=500)
    record_call(other, conversation=theirs, model="claude-opus-5", input_tokens=9_999)
    client.force_login(me)
    response = client.get("/usage/")
    assert response.status_code == 200
    assert b"My secret plan" in response.content
    assert b"Their secret plan" not in response.content
    assert b"claude-opus-5" not in response.content
    assert response.context["totals"]["cost"] == 7_000_000_000
    assert b"$0.007" in response.content
    assert b"$20.00" in response.content


def test_receipt_shows_tokens_times_rate_per_call(client):
    me = make_user("me")
    chat = make_conversation(me, title="Budget talk")
    message = make_message(chat)
    record_call(me, conversation=chat, message=message, input_tokens=1000, output_tokens=500)
    record_call(me, conversation=chat, message=message, model="claude-opus-5", output_tokens=4)
    client.force_login(me)
    page = client.get(f"/usage/receipt/{message.pk}/")
    assert page.status_code == 200
    assert b"<html" in page.content
    # Sonnet 5.5: 1,000 input × $2/MTok = $0.002, 500 output × $10/MTok = $0.005; Opus 5: 4 × $25/MTok.
    for text in (b"1,000", b"$2.00", b"500", b"$10.00", b"$0.002", b"$0.005", b"$0.007", b"$0.0001"):
        assert text in page.content, text
    assert b"Total for this message: $0.0071" in page.content
    assert b"Budget talk" in page.content
    assert f'href="{chat.get_absolute_url()}"'.encode() in page.content


def test_receipt_is_a_fragment_for_htmx(client):
    me = make_user("me")
    chat = make_conversation(me)
    message = make_message(chat)
    record_call(me, conversation=chat, message=message, input_tokens=1000, output_tokens=500)
    client.force_login(me)
    fragment = client.get(f"/usage/receipt/{message.pk}/", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert b"<html" not in fragment.content
    assert fragment.content.lstrip().startswith(
        f'<section class="receipt" id="receipt-{message.pk}"'.encode()
    )
    assert b"$0.007" in fragment.content


def test_receipt_of_another_users_message_is_404(client):
    owner, intruder = make_user("owner"), make_user("intruder")
    chat = make_conversation(owner)
    message = make_message(chat)
    record_call(owner, conversation=chat, message=message, input_tokens=10)
    client.force_login(intruder)
    assert client.get(f"/usage/receipt/{message.pk}/").status_code == 404
    assert client.get("/usage/receipt/999999/").status_code == 404
    client.force_login(owner)
    assert client.get(f"/usage/receipt/{message.pk}/").status_code == 200
    client.logout()
    assert client.get(f"/usage/receipt/{message.pk}/").status_code == 302


def test_receipt_outlives_the_conversation(client):
    me = make_user("me")
    chat = make_conversation(me, title="Gone soon")
    message = make_message(chat)
    message_id = message.pk
    record_call(me, conversation=chat, message=message, input_tokens=1000, output_tokens=500)
    chat.delete()
    client.force_login(me)
    page = client.get(f"/usage/receipt/{message_id}/")
    assert page.status_code == 200
    assert b"Gone soon" in page.content
    assert b"$0.007" in page.content


def test_usage_page_links_the_users_own_conversations_and_not_deleted_ones(client):
    me = make_user("linker")
    kept = make_conversation(me, title="Kept chat")
    gone = make_conversation(me, title="Gone chat")
    record_call(me, conversation=kept, input_tokens=100)
    record_call(me, conversation=gone, input_tokens=200)
    record_call(me, input_tokens=5)  # a call outside any conversation
    gone_id = gone.pk
    gone.delete()
    client.force_login(me)
    html = client.get("/usage/").content.decode()
    assert f'<a href="/c/{kept.pk}/">Kept chat</a>' in html
    assert f"/c/{gone_id}/" not in html
    assert "Gone chat <span" in html and "(deleted)" in html
    assert "(other)" in html


def test_usage_page_never_links_someone_elses_conversation(client):
    from billing.views import open_conversation_ids

    me, other = make_user("mine"), make_user("theirs")
    theirs = make_conversation(other, title="Theirs")
    mine = make_conversation(me, title="Mine")
    assert open_conversation_ids(me, [theirs.pk, mine.pk, None]) == {mine.pk}

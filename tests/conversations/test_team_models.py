"""The models a team may use: the picker offers only those, and every path that names or uses a model
(the home form, the settings, the websocket's model switch, presets, import, replies, titles) keeps to
them. And a team budget that refuses calls is alerted once, however many calls it refuses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.urls import reverse

from billing.levels import TEAM
from billing.models import BudgetAlert, SpendReservation, UsageRecord
from billing.services import BudgetExceeded, RateLimited
from conversations import services, transfer
from conversations.models import Conversation, Message, Preset
from conversations.replies import store, titles
from conversations.replies.generation import generation_wait
from teams.models import Membership, Team
from tests.conversations.replies.test_chat_streaming import latest_assistant, send_and_finish
from tests.helpers import make_conversation, make_message, make_user, open_socket

# The async views and the websocket reach the database from threads of their own.
pytestmark = pytest.mark.django_db(transaction=True)

PRICES = Path(__file__).resolve().parents[2] / "billing" / "prices" / "anthropic-2026-11.json"
SONNET, OPUS, HAIKU = "claude-sonnet-5-5", "claude-opus-5-5", "claude-haiku-5-5"
NOT_OPUS = f"Your team may not use {OPUS}; choose one of {SONNET}, {HAIKU}."


@pytest.fixture(autouse=True)
def _site_models(settings):
    settings.CHAT_MODELS = [SONNET, OPUS, HAIKU]
    settings.CHAT_DEFAULT_MODEL = SONNET
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    settings.CHAT_DEFAULT_MONTHLY_BUDGET_USD = "unlimited"  # only a team's budget binds here


def make_member(models=(SONNET, HAIKU), default=HAIKU, **team_fields):
    """A user in a team of their own that may use `models`, starting new conversations on `default`."""
    user = make_user()
    team = Team.objects.create(
        name=f"Team of {user.username}", allowed_models=list(models), default_model=default, **team_fields
    )
    Membership.objects.create(user=user, team=team)
    return user, team


def picker(page: str) -> tuple[list[str], list[str]]:
    """The options of the page's model picker, and the ones selected."""
    [options] = re.findall(r'<select name="model">(.*?)</select>', page, re.S)
    found = re.findall(r'<option value="([^"]+)"( selected)?>', options)
    return [value for value, _ in found], [value for value, selected in found if selected]


# The picker


def test_the_home_picker_offers_only_the_teams_models_with_its_default_selected(client):
    member, _ = make_member()
    client.force_login(member)
    assert picker(client.get(reverse("home")).content.decode()) == ([SONNET, HAIKU], [HAIKU])


def test_someone_outside_any_team_is_offered_the_sites_models(client):
    client.force_login(make_user())
    assert picker(client.get(reverse("home")).content.decode()) == ([SONNET, OPUS, HAIKU], [SONNET])


def test_a_conversation_on_a_model_the_team_dropped_shows_the_teams_default_selected(client):
    member, _ = make_member()
    conversation = make_conversation(owner=member, model=OPUS)
    client.force_login(member)
    page = client.get(reverse("conversation", args=[conversation.pk])).content.decode()
    assert picker(page) == ([SONNET, HAIKU], [HAIKU])
    assert f"<summary>{HAIKU}" in page and OPUS not in page
    conversation.refresh_from_db()
    assert conversation.model == OPUS  # showing the page changes nothing; the next reply does


# Replies


@pytest.mark.usefixtures("offline_claude")
async def test_a_conversation_on_a_model_the_team_dropped_replies_on_the_teams_default():
    member, _ = await sync_to_async(make_member)()
    conversation = await sync_to_async(make_conversation)(owner=member, model=OPUS)
    socket, connected, _ = await open_socket(member, conversation.pk)
    assert connected
    await socket.receive()
    reply, _ = await send_and_finish(socket, conversation, "Hello [[offline reply_tokens=5]]")
    await socket.close()
    assert reply.status == Message.Status.COMPLETE and reply.model == HAIKU
    await conversation.arefresh_from_db()
    assert conversation.model == HAIKU  # switched, so the page and later replies agree
    assert [row.model async for row in UsageRecord.objects.filter(message_id=reply.pk)] == [HAIKU]


@pytest.mark.usefixtures("offline_claude")
async def test_asking_for_a_model_the_team_may_not_use_over_the_websocket_is_refused_and_writes_nothing():
    member, _ = await sync_to_async(make_member)()
    conversation = await sync_to_async(make_conversation)(owner=member, model=SONNET)
    question = await sync_to_async(make_message)(conversation, content="Hi")
    reply = await sync_to_async(make_message)(
        conversation, role="assistant", content="Hello", status="complete", model=SONNET, parent=question
    )
    socket, _, _ = await open_socket(member, conversation.pk)
    await socket.receive()

    await socket.send(action="retry", message_id=reply.pk, model=OPUS)
    refused = await socket.receive()
    assert NOT_OPUS in refused
    await conversation.arefresh_from_db()
    assert conversation.model == SONNET
    assert await conversation.messages.acount() == 2
    assert not await SpendReservation.objects.filter(user_id=member.pk).aexists()

    # A model the team allows is taken the same way (the refusal above was the model's, nothing else).
    await socket.send(action="retry", message_id=reply.pk, model=HAIKU)
    await socket.receive_until(lambda f: "status-streaming" in f)
    retried = await latest_assistant(conversation)
    await generation_wait(retried.pk)
    await socket.close()
    assert retried.model == HAIKU


# Forms, presets, import


def test_the_plain_form_posts_refuse_a_model_the_team_may_not_use(client):
    member, _ = make_member()
    client.force_login(member)
    for message in ("Plan my week", ""):  # with a first message, and an empty conversation
        refused = client.post(reverse("conversation_create"), {"model": OPUS, "message": message})
        assert refused.status_code == 400 and NOT_OPUS in refused.content.decode()
        assert message in refused.content.decode()  # the draft is kept
    assert not Conversation.objects.filter(owner=member).exists()

    conversation = make_conversation(owner=member, model=SONNET, system_prompt="Be brief.")
    url = reverse("conversation_settings", args=[conversation.pk])
    page = client.post(url, {"model": OPUS, "system_prompt": "Changed"}, headers={"HX-Request": "true"})
    assert NOT_OPUS in page.content.decode()
    conversation.refresh_from_db()
    assert (conversation.model, conversation.system_prompt) == (SONNET, "Be brief.")

    reply = make_message(conversation, role="assistant", content="Hi", status="complete", model=SONNET)
    response = client.post(reverse("reply_retry", args=[reply.pk]), {"model": OPUS}, follow=True)
    assert NOT_OPUS in response.content.decode()
    assert conversation.messages.count() == 1 and not SpendReservation.objects.exists()

    client.post(reverse("conversation_create"), {"model": SONNET, "message": ""})
    started = Conversation.objects.filter(owner=member).exclude(pk=conversation.pk).get()
    assert started.model == SONNET  # an allowed one is taken


def test_starting_from_a_preset_keeps_to_the_teams_models(client):
    """A preset carries a system prompt, not a model: the model picked beside it is checked, and none
    picked means the team's default."""
    member, _ = make_member()
    preset = services.preset_create(owner=member, name="Terse", system_prompt="One line.")
    client.force_login(member)
    refused = client.post(
        reverse("conversation_create"), {"preset": preset.pk, "model": OPUS, "message": "Hello"}
    )
    assert refused.status_code == 400 and NOT_OPUS in refused.content.decode()
    assert not Conversation.objects.filter(owner=member).exists()

    client.post(reverse("conversation_create"), {"preset": preset.pk, "message": ""})
    started = Conversation.objects.get(owner=member)
    assert (started.model, started.system_prompt) == (HAIKU, "One line.")
    site_wide = Preset.objects.create(name="Everyone", system_prompt="e", published=True)
    chosen = services.preset_offered(user=member, preset_id=site_wide.pk)
    assert services.conversation_create(owner=member, preset=chosen).model == HAIKU


def test_an_import_naming_a_model_the_team_may_not_use_goes_on_with_the_teams_default():
    member, _ = make_member()
    original = make_conversation(model=OPUS, title="Trip")
    make_message(original, content="Where to?")
    make_message(original, role="assistant", content="Lisbon.", model=OPUS)
    data = transfer.conversation_json_text(original).encode()
    assert json.loads(data)["conversation"]["model"] == OPUS

    imported = transfer.conversation_import(owner=member, data=data)
    assert imported.model == HAIKU
    # Its messages still say which model wrote them; only the next reply is the team's.
    assert list(imported.messages.filter(role="assistant").values_list("model", flat=True)) == [OPUS]
    assert transfer.conversation_import(owner=make_user(), data=data).model == OPUS  # outside any team


# Titles


@pytest.mark.usefixtures("offline_claude")
async def test_a_title_never_runs_on_a_model_the_team_may_not_use(settings):
    settings.CHAT_TITLE_MODEL = HAIKU
    await sync_to_async(call_command)("load_prices", str(PRICES), verbosity=0)
    member, _ = await sync_to_async(make_member)(models=(SONNET, OPUS), default=SONNET)
    conversation = await sync_to_async(make_conversation)(owner=member, model=SONNET)
    socket, _, _ = await open_socket(member, conversation.pk)
    await socket.receive()
    await send_and_finish(socket, conversation, "Plan a weekend in Lisbon [[offline reply_tokens=10]]")
    await titles.title_wait(conversation.pk)
    await socket.close()

    rows = [(r.purpose, r.model) async for r in UsageRecord.objects.filter(user_id=member.pk).order_by("pk")]
    assert rows == [("reply", SONNET), ("title", SONNET)]  # the conversation's own model, not HAIKU
    await conversation.arefresh_from_db()
    assert conversation.title_source == Conversation.TitleSource.CLAUDE
    # Outside a team, or in one that allows it, the site's title model is used.
    outsider = await sync_to_async(make_conversation)(model=SONNET)
    assert await sync_to_async(titles.title_model)(outsider) == HAIKU


# Budget alerts


@pytest.mark.usefixtures("offline_claude")
async def test_a_team_budget_refusal_is_alerted_once_however_many_calls_it_refuses(client, mailoutbox):
    @sync_to_async
    def team_without_budget():
        member, team = make_member(monthly_limit=0)
        manager = make_user(email="manager@example.com")
        team.managers.add(manager)
        return member, team, make_conversation(owner=member, model=SONNET)

    member, team, conversation = await team_without_budget()
    socket, _, _ = await open_socket(member, conversation.pk)
    await socket.receive()
    for _ in range(2):
        await socket.send(message="Hello")
        assert "budget" in await socket.receive()
    await socket.close()

    alerts = [a async for a in BudgetAlert.objects.all()]
    assert [(a.scope, a.subject_id, a.percent) for a in alerts] == [(TEAM, team.pk, 100)]
    assert [m.to for m in mailoutbox] == [["manager@example.com"]]
    assert not await Message.objects.filter(conversation__owner=member).aexists()  # nothing was written

    # Starting a conversation with its first message is another path to the same alert.
    await BudgetAlert.objects.all().adelete()
    await sync_to_async(client.force_login)(member)
    refused = await sync_to_async(client.post)(
        reverse("conversation_create"), {"model": SONNET, "message": "Hi"}
    )
    assert refused.status_code == 400 and "budget" in refused.content.decode()
    assert await BudgetAlert.objects.filter(scope=TEAM, subject_id=team.pk, percent=100).acount() == 1
    assert await Conversation.objects.filter(owner=member).acount() == 1  # only the one made above


def test_a_rate_limit_or_a_refusal_without_a_level_stores_no_alert():
    user = make_user()
    store.budget_refusal_note(RateLimited("Too fast."), owner_id=user.pk)
    store.budget_refusal_note(BudgetExceeded("Used up."), owner_id=user.pk)
    assert not BudgetAlert.objects.exists()


@pytest.mark.usefixtures("offline_claude")
async def test_a_retry_or_a_title_the_team_budget_refuses_is_alerted_too(settings):
    @sync_to_async
    def answered_conversation_of_a_team_without_budget():
        member, team = make_member(monthly_limit=0)
        conversation = make_conversation(
            owner=member, model=SONNET, title="Hi", title_source=Conversation.TitleSource.FIRST_LINE
        )
        question = make_message(conversation, content="Hi")
        reply = make_message(
            conversation, role="assistant", content="Hello", status="complete", model=SONNET, parent=question
        )
        return member, team, conversation, reply

    member, team, conversation, reply = await answered_conversation_of_a_team_without_budget()
    socket, _, _ = await open_socket(member, conversation.pk)
    await socket.receive()
    await socket.send(action="retry", message_id=reply.pk)
    assert "budget" in await socket.receive()
    await socket.close()
    assert await BudgetAlert.objects.filter(scope=TEAM, subject_id=team.pk).acount() == 1
    assert await conversation.messages.acount() == 2

    await BudgetAlert.objects.all().adelete()
    settings.CHAT_TITLE_MODEL = HAIKU
    assert await titles.title_write(conversation.pk) is None  # refused: the first-line title stays
    assert await BudgetAlert.objects.filter(scope=TEAM, subject_id=team.pk).acount() == 1

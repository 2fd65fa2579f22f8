"""Titles written by a small model after the first exchange, and stop sequences per conversation."""

from __future__ import annotations

from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.urls import reverse

from conversations import services
from conversations.models import Conversation, Message
from conversations.rendering import clean_title
from conversations.replies import store, titles
from conversations.replies.generation import generation_wait
from tests.conversations.replies.test_chat_streaming import (
    final_frame_for,
    latest_assistant,
    reload,
    send_and_finish,
)
from tests.helpers import make_conversation, make_user, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("offline_claude")]

PRICES = Path(__file__).resolve().parents[3] / "billing" / "prices" / "anthropic-2026-11.json"
TITLE_MODEL = "claude-haiku-5-5"


@sync_to_async
def priced_chat(**fields):
    call_command("load_prices", str(PRICES), verbosity=0)
    user = make_user()
    return user, make_conversation(owner=user, **fields)


@sync_to_async
def ledger(conversation_id: int) -> list:
    from billing.models import UsageRecord

    return list(UsageRecord.objects.filter(conversation_id=conversation_id).order_by("pk"))


@sync_to_async
def spent(user) -> int:
    from billing.services import budget_status

    return budget_status(user).spent


@sync_to_async
def open_holds(user) -> int:
    from billing.models import SpendReservation

    return SpendReservation.objects.filter(user_id=user.pk, settled_at__isnull=True).count()


async def test_claude_titles_the_conversation_after_its_first_exchange_in_one_more_ledgered_call(settings):
    settings.CHAT_TITLE_MODEL = TITLE_MODEL
    user, conversation = await priced_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    first_line = "Plan a **weekend** in Lisbon [[offline reply_tokens=20]]"
    await send_and_finish(socket, conversation, first_line + "\nwith museums")

    await titles.title_wait(conversation.pk)
    frames = await socket.receive_until(lambda f: 'id="conversation-title" hx-swap-oob="true"' in f)
    await socket.close()
    conversation = await reload(conversation)
    assert conversation.title_source == Conversation.TitleSource.CLAUDE
    assert conversation.title and conversation.title == clean_title(conversation.title)
    assert not any(mark in conversation.title for mark in "*_`#[]|\n")
    assert conversation.title in frames[-1] and f'id="conversation-{conversation.pk}-title"' in frames[-1]

    reply_row, title_row = await ledger(conversation.pk)
    assert (reply_row.purpose, title_row.purpose) == ("reply", "title")
    assert title_row.model == TITLE_MODEL and title_row.user_id == user.pk and title_row.message_id is None
    assert title_row.input_tokens > 0 and title_row.output_tokens > 0 and title_row.cost > 0
    assert await spent(user) == reply_row.cost + title_row.cost  # it counts toward the budget
    assert await open_holds(user) == 0  # its hold was settled by its ledger row

    # Only once: later replies write no more titles.
    again, _ = await _second_reply(user, conversation)
    assert [r.purpose for r in await ledger(conversation.pk)] == ["reply", "title", "reply"]


async def _second_reply(user, conversation):
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    result = await send_and_finish(socket, conversation, "Thanks [[offline reply_tokens=5]]")
    await titles.title_wait(conversation.pk)
    await socket.close()
    return result


async def test_a_first_reply_that_failed_and_was_retried_as_a_new_version_still_gets_its_title(settings):
    settings.CHAT_TITLE_MODEL = TITLE_MODEL
    user, conversation = await priced_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    failed, _ = await send_and_finish(
        socket,
        conversation,
        "Plan a trip to Porto [[offline fault=error fault_after=30 fault_times=1 reply_tokens=40]]",
    )
    assert failed.status == Message.Status.ERROR and failed.content  # text kept: Retry makes a new version
    await socket.send(action="retry", message_id=failed.pk)
    await socket.receive_until(lambda f: "status-streaming" in f)
    retried = await latest_assistant(conversation)
    assert retried.pk != failed.pk
    await socket.receive_until(final_frame_for(retried.pk))
    await generation_wait(retried.pk)
    await titles.title_wait(conversation.pk)
    await socket.close()
    conversation = await reload(conversation)
    assert conversation.title_source == Conversation.TitleSource.CLAUDE
    assert [r.purpose for r in await ledger(conversation.pk)] == ["reply", "reply", "title"]


async def test_a_title_renamed_by_hand_wins(settings, async_client):
    user, conversation = await priced_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await send_and_finish(socket, conversation, "Explain tides [[offline reply_tokens=10]]")
    await socket.close()
    await async_client.aforce_login(user)
    await async_client.post(reverse("conversation_rename", args=[conversation.pk]), {"title": "My tides"})
    settings.CHAT_TITLE_MODEL = TITLE_MODEL
    assert await titles.title_write(conversation.pk) is None
    conversation = await reload(conversation)
    assert (conversation.title, conversation.title_source) == ("My tides", "user")
    assert [r.purpose for r in await ledger(conversation.pk)] == ["reply"]  # no call was made


async def test_renaming_while_the_title_is_written_still_wins(settings):
    settings.CHAT_TITLE_MODEL = TITLE_MODEL
    user, conversation = await priced_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await send_and_finish(socket, conversation, "Explain tides [[offline reply_tokens=10]]")
    await titles.title_wait(conversation.pk)
    await socket.close()
    # A second title call made before a rename landed: its answer is billed but does not replace it.
    await Conversation.objects.filter(pk=conversation.pk).aupdate(title_source="first_line")
    job = await sync_to_async(titles.title_start)(conversation_id=conversation.pk)
    await sync_to_async(services.conversation_rename)(conversation=await reload(conversation), title="Mine")
    from conversations.replies.claude import complete

    assert await sync_to_async(titles.title_finish)(job=job, completion=await complete(job.request)) is None
    conversation = await reload(conversation)
    assert (conversation.title, conversation.title_source) == ("Mine", "user")
    assert [r.purpose for r in await ledger(conversation.pk)] == ["reply", "title", "title"]


async def test_a_failed_title_call_keeps_the_first_line_title_and_is_still_ledgered(settings):
    settings.CHAT_TITLE_MODEL = "claude-no-such-model"  # the API answers 404
    user, conversation = await priced_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await send_and_finish(socket, conversation, "What is a **fjord**? [[offline reply_tokens=10]]\nThanks")
    await titles.title_wait(conversation.pk)
    await socket.close()
    conversation = await reload(conversation)
    # The first line, without markdown or control words.
    assert (conversation.title, conversation.title_source) == ("What is a fjord?", "first_line")
    rows = await ledger(conversation.pk)
    assert [r.purpose for r in rows] == ["reply", "title"]
    assert rows[1].input_tokens == rows[1].output_tokens == 0
    assert await open_holds(user) == 0


async def test_a_title_the_budget_refuses_is_not_called_and_the_first_line_title_stays(settings):
    from billing.models import BudgetPolicy, UserBudget

    user, conversation = await priced_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await send_and_finish(socket, conversation, "What is a fjord? [[offline reply_tokens=10]]")
    await socket.close()
    [reply_row] = await ledger(conversation.pk)
    await UserBudget.objects.aupdate_or_create(
        user=user, defaults={"policy": BudgetPolicy.LIMIT, "monthly_limit": reply_row.cost}
    )
    settings.CHAT_TITLE_MODEL = TITLE_MODEL
    assert await titles.title_write(conversation.pk) is None
    conversation = await reload(conversation)
    assert conversation.title == "What is a fjord?"
    assert len(await ledger(conversation.pk)) == 1 and await open_holds(user) == 0


def test_titles_are_plain_text():
    assert clean_title("## **Lisbon** trip [[offline tps=5]]\nmore") == "Lisbon trip"
    assert clean_title('"Title: A `weekend` plan."') == "A weekend plan"
    assert clean_title("[[offline fault=500]]") == ""
    long = clean_title("word " * 40)
    assert len(long) <= 61 and long.endswith("…")


# Stop sequences


async def test_a_reply_ends_on_a_stop_sequence_and_says_so_with_its_ledger_row():
    user, conversation = await priced_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    text = "Describe a lighthouse [[offline reply_tokens=60]]"
    full, _ = await send_and_finish(socket, conversation, text)
    words = full.content.split()
    stop = next(w for w in words[len(words) // 2 :] if w.isalpha() and len(w) > 3)
    await sync_to_async(services.conversation_update_settings)(
        conversation=conversation, model=conversation.model, system_prompt="", stop_sequences=[stop]
    )

    # The same request again (Regenerate), now with the stop sequence: it ends just before it.
    await socket.send(action="regenerate", message_id=full.pk)
    await socket.receive_until(lambda f: "status-streaming" in f)
    stopped = await latest_assistant(conversation)
    frames = await socket.receive_until(final_frame_for(stopped.pk))
    from conversations.replies.generation import generation_wait

    await generation_wait(stopped.pk)
    await socket.close()
    stopped = await reload(stopped)
    assert stopped.status == Message.Status.COMPLETE
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", stop)
    assert full.content.startswith(stopped.content) and stop not in stopped.content
    assert f"Ended at the stop sequence “{stop}”." in frames[-1]
    rows = await ledger(conversation.pk)
    assert [r.message_id for r in rows] == [full.pk, stopped.pk]
    assert 0 < rows[1].output_tokens < rows[0].output_tokens and rows[1].cost > 0


@sync_to_async
def _settings_post(client_user, conversation, stop_sequences: str):
    from django.test import Client

    client = Client()
    client.force_login(client_user)
    return client.post(
        reverse("conversation_settings", args=[conversation.pk]),
        {"model": conversation.model, "system_prompt": "", "stop_sequences": stop_sequences},
        follow=True,
    )


async def test_stop_sequences_are_validated_in_the_settings_and_bad_ones_change_nothing():
    user, conversation = await priced_chat()
    response = await _settings_post(user, conversation, "END\n\\n\\nUser:\nEND\n")
    assert response.status_code == 200
    conversation = await reload(conversation)
    assert conversation.stop_sequences == ["END", "\n\nUser:"]
    assert "\\n\\nUser:" in response.content.decode()  # shown as typed

    for bad, error in (
        ("\\n", "A stop sequence must contain something other than spaces"),
        ("x" * 201, "at most 200 characters"),
        ("\n".join(f"s{i}" for i in range(9)), "At most 8 stop sequences (9 given)."),
    ):
        response = await _settings_post(user, conversation, bad)
        assert error in response.content.decode()
        assert (await reload(conversation)).stop_sequences == ["END", "\n\nUser:"]


async def test_stop_sequences_go_to_the_api_with_every_reply():
    from conversations.replies.request import load_context

    user, conversation = await priced_chat(stop_sequences=["###"])
    _, reply, _ = await sync_to_async(store.reply_start)(conversation=conversation, text="Hi", worker="w")
    context = await load_context(reply.pk)
    from conversations.replies.claude import build_params

    assert build_params(context.request)["stop_sequences"] == ["###"]
    await Message.objects.filter(pk=reply.pk).aupdate(status=Message.Status.STOPPED)

"""Edit and branch: editing a sent message or regenerating a reply makes a new version (a branch); the
earlier one stays, "< 2 / 3 >" switches between them, and the page and Claude get the active branch only."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse

from conversations import services
from conversations.models import Message
from conversations.replies import branches, history
from conversations.replies.generation import generation_wait
from tests.conversations.replies.test_chat_streaming import (
    final_frame_for,
    latest_assistant,
    reload,
    send_and_finish,
)
from tests.helpers import make_conversation, make_user, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("offline_claude")]


@sync_to_async
def setup_chat():
    user = make_user()
    return user, make_conversation(owner=user)


@sync_to_async
def active_path(conversation) -> list[tuple[str, str]]:
    return list(conversation.messages.active().in_order().values_list("role", "content"))


@sync_to_async
def sent_to_claude(conversation, reply: Message) -> list[dict]:
    """The `messages` the reply's request carries (its history, as context building makes it)."""
    conversation.refresh_from_db()
    return history.reply_history(conversation, before=reply)[0]


@sync_to_async
def ledger_snapshot(conversation) -> list[tuple]:
    from billing.models import UsageRecord

    return list(
        UsageRecord.objects.filter(conversation_id=conversation.pk)
        .order_by("pk")
        .values_list("pk", "message_id", "purpose", "input_tokens", "output_tokens", "cost")
    )


@sync_to_async
def tree_snapshot(conversation) -> list[tuple]:
    return list(
        conversation.messages.order_by("pk").values_list(
            "pk", "parent_id", "active", "chosen", "content", "status"
        )
    )


async def finish_reply(socket, reply_id: int) -> Message:
    await socket.receive_until(final_frame_for(reply_id))
    await generation_wait(reply_id)
    return await Message.objects.aget(pk=reply_id)


async def test_regenerate_keeps_the_earlier_reply_and_claude_gets_only_the_active_branch():
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    first, _ = await send_and_finish(socket, conversation, "Name three rivers [[offline reply_tokens=12]]")

    await socket.send(action="regenerate", message_id=first.pk)
    await socket.receive_until(lambda f: "status-streaming" in f)
    second = await latest_assistant(conversation)
    assert second.pk != first.pk
    frames = await socket.receive_until(final_frame_for(second.pk))
    await generation_wait(second.pk)
    second = await reload(second)
    first = await reload(first)

    # The earlier version is kept whole, off the active branch; the new one shows "2 / 2".
    assert first.content and first.status == Message.Status.COMPLETE and not first.active
    assert second.status == Message.Status.COMPLETE and second.active
    assert second.parent_id == first.parent_id
    assert "2 / 2" in frames[-1] and 'aria-label="Previous version"' in frames[-1]
    # One ledger row per call, each on its own reply (receipts stay per call).
    rows = await ledger_snapshot(conversation)
    assert [(r[1], r[2]) for r in rows] == [(first.pk, "reply"), (second.pk, "reply")]

    # The next message goes on from the active branch only.
    follow_up, _ = await send_and_finish(socket, conversation, "And a fourth?")
    await socket.close()
    ids = [
        pk
        for pk, _, _ in await sync_to_async(history.context_sizes)(
            conversation_id=conversation.pk, before_id=follow_up.pk
        )
    ]
    assert second.pk in ids and first.pk not in ids
    assert len(await sent_to_claude(conversation, follow_up)) == 3  # user, the active reply, user


async def test_edit_branches_and_switching_versions_restores_each_branch_whole():
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await send_and_finish(socket, conversation, "Tell me about owls [[offline reply_tokens=10]]")
    await send_and_finish(socket, conversation, "And their eyes? [[offline reply_tokens=10]]")
    original = await active_path(conversation)
    first_turn = await conversation.messages.active().in_order().afirst()
    ledger_before = await ledger_snapshot(conversation)

    await socket.send(action="edit", message_id=first_turn.pk, message="Tell me about herons instead")
    frames = await socket.receive_until(lambda f: "Tell me about herons instead" in f)
    assert "2 / 2" in frames[-1]  # the list is replaced with the new branch, its navigation shown
    reply = await latest_assistant(conversation)
    await finish_reply(socket, reply.pk)

    edited = await active_path(conversation)
    assert [role for role, _ in edited] == ["user", "assistant"]
    assert edited[0][1] == "Tell me about herons instead"
    assert await sent_to_claude(conversation, reply) == [
        {"role": "user", "content": "Tell me about herons instead"}
    ]
    # The old branch is untouched, and no ledger row changed.
    assert await ledger_snapshot(conversation) == ledger_before + (await ledger_snapshot(conversation))[-1:]

    edited_turn = await conversation.messages.active().in_order().afirst()
    await socket.send(action="branch", message_id=edited_turn.pk, index=1)
    frames = await socket.receive_until(lambda f: "And their eyes?" in f)
    assert "1 / 2" in frames[-1]
    assert await active_path(conversation) == original  # both turns below it came back, text intact

    await socket.send(action="branch", message_id=first_turn.pk, index="2")
    await socket.receive_until(lambda f: "Tell me about herons instead" in f)
    assert await active_path(conversation) == edited
    await socket.close()

    page = await sync_to_async(page_for)(user, conversation)
    assert "Tell me about herons instead" in page and "And their eyes?" not in page
    assert "2 / 2" in page


def page_for(user, conversation) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.get(conversation.get_absolute_url()).content.decode()


async def test_bad_branch_input_is_refused_clearly_and_changes_nothing():
    user, conversation = await setup_chat()
    stranger, strangers = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    reply, _ = await send_and_finish(socket, conversation, "Hello [[offline reply_tokens=8]]")
    their_socket, _, _ = await open_socket(stranger, strangers.pk)
    await their_socket.receive()
    theirs, _ = await send_and_finish(their_socket, strangers, "Mine [[offline reply_tokens=8]]")
    their_turn = await strangers.messages.filter(role="user").afirst()
    my_turn = await conversation.messages.filter(role="user").afirst()
    before = (
        await tree_snapshot(conversation),
        await tree_snapshot(strangers),
        await ledger_snapshot(conversation),
    )

    cases = [
        ({"action": "edit", "message_id": their_turn.pk, "message": "hijack"}, "No such message"),
        ({"action": "regenerate", "message_id": theirs.pk}, "No such message"),
        ({"action": "branch", "message_id": their_turn.pk, "index": 1}, "No such message"),
        (
            {"action": "branch", "message_id": my_turn.pk, "index": 2},
            "There is no version 2 of this message: it has 1.",
        ),
        (
            {"action": "branch", "message_id": my_turn.pk, "index": 0},
            "There is no version 0 of this message: it has 1.",
        ),
        ({"action": "branch", "message_id": my_turn.pk, "index": "two"}, "Choose a version by its number."),
        ({"action": "edit", "message_id": reply.pk, "message": "x"}, "Only your own messages can be edited."),
        ({"action": "edit", "message_id": my_turn.pk, "message": "   "}, "The message is empty."),
        ({"action": "regenerate", "message_id": my_turn.pk}, "Only a finished reply can be written again."),
    ]
    for frame, error in cases:
        await socket.send(**frame)
        answer = await socket.receive()
        assert error in answer, (frame, answer)
    await socket.close()
    await their_socket.close()
    assert (
        await tree_snapshot(conversation),
        await tree_snapshot(strangers),
        await ledger_snapshot(conversation),
    ) == before


async def test_a_branch_action_is_refused_while_a_reply_is_written():
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await send_and_finish(socket, conversation, "Hello [[offline reply_tokens=8]]")
    first_turn = await conversation.messages.filter(role="user").afirst()
    await socket.send(message="Long one [[offline tps=30 reply_tokens=400]]", conversation=conversation.pk)
    await socket.receive_until(lambda f: "status-streaming" in f)
    streaming = await latest_assistant(conversation)
    await socket.send(action="edit", message_id=first_turn.pk, message="Changed my mind")
    errors = await socket.receive_until(lambda f: "Wait for the current reply to finish" in f)
    assert "before editing a message" in errors[-1]
    await socket.send(action="stop", message_id=streaming.pk)
    await finish_reply(socket, streaming.pk)
    await socket.close()
    assert not await conversation.messages.filter(content="Changed my mind").aexists()


@sync_to_async
def _branchy_conversation():
    """A conversation with one edited first turn: (user, conversation, old turn, new turn)."""
    user = make_user()
    conversation = make_conversation(owner=user)
    old_turn = Message.objects.create(conversation=conversation, role="user", content="Old question")
    Message.objects.create(
        conversation=conversation, role="assistant", content="Old answer", html="<p>Old answer</p>"
    )
    return user, conversation, old_turn


async def test_edit_regenerate_and_switch_work_as_plain_form_posts(async_client):
    user, conversation, old_turn = await _branchy_conversation()
    await async_client.aforce_login(user)

    form = await async_client.get(reverse("message_edit", args=[old_turn.pk]))
    assert form.status_code == 200 and "Old question</textarea>" in form.content.decode()

    response = await async_client.post(
        reverse("message_edit", args=[old_turn.pk]), {"message": "New question [[offline reply_tokens=6]]"}
    )
    assert response.status_code == 302
    reply = await latest_assistant(conversation)
    await generation_wait(reply.pk)
    assert [c for _, c in await active_path(conversation)][0] == "New question [[offline reply_tokens=6]]"

    response = await async_client.post(reverse("reply_retry", args=[reply.pk]))
    assert response.status_code == 302
    regenerated = await latest_assistant(conversation)
    assert regenerated.pk != reply.pk
    await generation_wait(regenerated.pk)

    new_turn = await conversation.messages.active().filter(role="user").afirst()
    response = await async_client.post(reverse("message_branch", args=[new_turn.pk]), {"index": "1"})
    assert response.status_code == 302
    assert await active_path(conversation) == [("user", "Old question"), ("assistant", "Old answer")]

    page = (await async_client.get(conversation.get_absolute_url())).content.decode()
    assert "Old answer" in page and "1 / 2" in page

    # Out of range: a clear error on the page, nothing changed.
    response = await async_client.post(
        reverse("message_branch", args=[new_turn.pk]), {"index": "9"}, follow=True
    )
    assert "There is no version 9 of this message: it has 2." in response.content.decode()
    assert await active_path(conversation) == [("user", "Old question"), ("assistant", "Old answer")]

    # Someone else's message: 404, on every action.
    stranger = await sync_to_async(make_user)()
    await async_client.aforce_login(stranger)
    for name, data in (
        ("message_edit", {"message": "x"}),
        ("message_branch", {"index": "2"}),
        ("reply_retry", {}),
    ):
        target = old_turn.pk if name != "reply_retry" else regenerated.pk
        assert (await async_client.post(reverse(name, args=[target]), data)).status_code == 404
    assert (await async_client.get(reverse("message_edit", args=[old_turn.pk]))).status_code == 404


async def test_an_edit_refused_by_the_budget_keeps_what_was_typed(async_client):
    from billing.models import BudgetPolicy, UserBudget

    user, conversation, old_turn = await _branchy_conversation()
    await UserBudget.objects.aupdate_or_create(
        user=user, defaults={"policy": BudgetPolicy.LIMIT, "monthly_limit": 0}
    )
    await async_client.aforce_login(user)
    before = await tree_snapshot(conversation)
    response = await async_client.post(
        reverse("message_edit", args=[old_turn.pk]), {"message": "Typed with care"}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "monthly budget" in page and "Typed with care</textarea>" in page
    assert await tree_snapshot(conversation) == before


@sync_to_async
def _deletable():
    from billing.models import UsageRecord

    user = make_user()
    conversation = make_conversation(owner=user)
    turn = Message.objects.create(conversation=conversation, role="user", content="Q")
    reply = Message.objects.create(conversation=conversation, role="assistant", content="A")
    UsageRecord.objects.create(
        user_id=user.pk,
        username=user.username,
        conversation_id=conversation.pk,
        message_id=reply.pk,
        model="claude-sonnet-5-5",
        output_tokens=7,
        cost=123,
    )
    return conversation, turn


async def test_deleting_messages_or_their_conversation_never_touches_the_ledger():
    conversation, turn = await _deletable()
    before = await ledger_snapshot(conversation)
    await Message.objects.filter(pk=turn.pk).adelete()  # the turn and every version below it
    assert not await conversation.messages.aexists()
    conversation_id = conversation.pk
    await sync_to_async(services.conversation_delete)(conversation=conversation)
    conversation.pk = conversation_id  # delete() cleared it; the ledger still names it
    assert await ledger_snapshot(conversation) == before and before


async def test_an_edit_above_the_left_out_cut_sends_the_new_branch_whole():
    user, conversation, old_turn = await _branchy_conversation()
    later = await Message.objects.acreate(conversation=conversation, role="user", content="Later")
    await conversation.__class__.objects.filter(pk=conversation.pk).aupdate(context_from=later.pk)
    _, reply = await sync_to_async(branches.message_edit)(
        message=old_turn, text="Again from the top", worker="w"
    )
    await sync_to_async(conversation.refresh_from_db)()
    assert conversation.context_from == 0  # the cut was on the branch left behind
    assert await sent_to_claude(conversation, reply) == [{"role": "user", "content": "Again from the top"}]
    await Message.objects.filter(pk=reply.pk).aupdate(status=Message.Status.STOPPED)


async def test_deleting_a_version_shows_its_neighbour_and_keeps_the_ledger(async_client):
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    first, _ = await send_and_finish(socket, conversation, "Name a bird [[offline reply_tokens=8]]")
    await socket.send(action="regenerate", message_id=first.pk)
    await socket.receive_until(lambda f: "status-streaming" in f)
    second = await latest_assistant(conversation)
    await finish_reply(socket, second.pk)
    turn = await conversation.messages.filter(role="user").afirst()
    ledger_before = await ledger_snapshot(conversation)
    assert len(ledger_before) == 2

    # Over the websocket: delete the version shown; the one before it is shown instead.
    await socket.send(action="delete_version", message_id=second.pk)
    frames = await socket.receive_until(lambda f: f'id="msg-{first.pk}"' in f)
    assert f'id="msg-{second.pk}"' not in frames[-1]
    assert not await Message.objects.filter(pk=second.pk).aexists()
    assert await active_path(conversation) == [("user", turn.content), ("assistant", first.content)]
    # The last version left cannot be deleted; someone else's cannot either.
    await socket.send(action="delete_version", message_id=first.pk)
    assert "This is the only version of this message." in await socket.receive()
    await socket.close()
    assert await ledger_snapshot(conversation) == ledger_before  # the deleted version's call stays billed

    # As a plain form post, for an edited first turn (a version with everything below it).
    await sync_to_async(branches.message_edit)(message=turn, text="Name a fish", worker="w")
    await Message.objects.filter(status=Message.Status.STREAMING).aupdate(status=Message.Status.STOPPED)
    edited = await conversation.messages.active().in_order().afirst()
    stranger = await sync_to_async(make_user)()
    await async_client.aforce_login(stranger)
    assert (await async_client.post(reverse("message_delete_version", args=[turn.pk]))).status_code == 404
    await async_client.aforce_login(user)
    response = await async_client.post(reverse("message_delete_version", args=[turn.pk]))
    assert response.status_code == 302
    assert not await Message.objects.filter(pk__in=[turn.pk, first.pk]).aexists()
    assert await active_path(conversation) == [("user", "Name a fish"), ("assistant", "")]
    assert (await conversation.messages.active().in_order().afirst()).pk == edited.pk
    assert await ledger_snapshot(conversation) == ledger_before


async def test_search_marks_hits_in_versions_off_the_active_branch(async_client):
    user, conversation, old_turn = await _branchy_conversation()
    await sync_to_async(branches.message_edit)(
        message=old_turn, text="Newer question about pelicans", worker="w"
    )
    await Message.objects.filter(status=Message.Status.STREAMING).aupdate(status=Message.Status.STOPPED)
    await async_client.aforce_login(user)
    page = (await async_client.get(reverse("search"), {"q": "question"})).content.decode()
    hits = page.split('class="search-hit')[1:]
    old_hit = next(h for h in hits if "Old" in h)
    new_hit = next(h for h in hits if "pelicans" in h)
    assert "Other version" in old_hit and "Other version" not in new_hit

"""The Web switch in a conversation that goes on: turning it on and off between replies (and regenerating
a reply after turning it off) keeps every call of a 5.5 model accepted by the offline Claude's prefix
check, through the real SDK; each reply's budget hold, and the price line's, cover the searches and
fetches the reply may make."""

from __future__ import annotations

import anthropic
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from billing.usage import NO_SERVER_TOOLS, ServerToolCaps
from conversations.models import Conversation, Message, WebSettings
from conversations.replies import claude, price, store
from conversations.replies.generation import generation_wait
from conversations.replies.leases import WORKER_ID
from conversations.web import conversation_web_set
from offline_claude import corpus
from offline_claude.testing import sync_client
from tests.conversations.replies.test_append_only_history import next_history
from tests.conversations.replies.test_chat_streaming import (
    final_frame_for,
    latest_assistant,
    reload,
    send_and_finish,
    setup_chat,
)
from tests.helpers import make_conversation, make_message, make_user, open_socket

SONNET = "claude-sonnet-5-5"
QUESTION = "How do I brew green tea?"


@pytest.fixture
def sent(monkeypatch):
    """Every reply request, as built for the SDK (`build_params`)."""
    params: list[dict] = []
    build = claude.build_params

    def recording(req):
        built = build(req)
        params.append(built)
        return built

    monkeypatch.setattr(claude, "build_params", recording)
    return params


def _searches(params: dict) -> bool:
    """Whether the web tools are on at the end of the request's messages (the last change says)."""
    on = False
    for message in params["messages"]:
        if message["role"] == "system" and isinstance(message["content"], list):
            for block in message["content"]:
                if block.get("type") in ("tool_addition", "tool_removal"):
                    on = block["type"] == "tool_addition"
    return on


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("offline_claude")
async def test_turning_the_web_on_and_off_mid_conversation_keeps_every_call_accepted(sent, offline_claude):
    user, conversation = await setup_chat(model=SONNET)
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    replies = [(await send_and_finish(socket, conversation, "Tell me about owls"))[0]]
    await sync_to_async(conversation_web_set)(conversation=conversation, on=True)
    replies.append((await send_and_finish(socket, conversation, QUESTION))[0])
    replies.append((await send_and_finish(socket, conversation, "And black tea?"))[0])
    await sync_to_async(conversation_web_set)(conversation=conversation, on=False)
    replies.append((await send_and_finish(socket, conversation, "And owls again?"))[0])
    # Regenerating the last reply keeps the switch its message was sent with (off here).
    await sync_to_async(conversation_web_set)(conversation=conversation, on=True)
    await socket.send(action="regenerate", message_id=replies[-1].pk)
    await socket.receive_until(lambda f: "status-streaming" in f)
    regenerated = await latest_assistant(conversation)
    await socket.receive_until(final_frame_for(regenerated.pk))
    await generation_wait(regenerated.pk)
    replies.append(await reload(regenerated))
    replies.append((await send_and_finish(socket, conversation, QUESTION))[0])
    await socket.close()

    assert [r.status for r in replies] == [Message.Status.COMPLETE] * 6, [r.error for r in replies]
    # A reply with the web on quotes the pages Claude found (the offline web's).
    quoted = [any(page.text.split(". ")[0] in r.content for page in corpus.PAGES) for r in replies]
    assert quoted == [False, True, True, False, False, True]
    replies_sent = [p for p in sent if p["max_tokens"] > 1]
    assert [_searches(p) for p in replies_sent] == [False, True, True, False, False, True]
    first_web = replies_sent[1]
    assert first_web["extra_headers"]["anthropic-beta"] == claude.TOOL_CHANGES_BETA
    assert [t["name"] for t in first_web["tools"]] == ["web_search", "web_fetch"]
    assert all(t["defer_loading"] for t in first_web["tools"])
    # The same tools every time, and every request extends the one before it.
    assert all(p["tools"] == first_web["tools"] for p in replies_sent[1:])
    for earlier, later in zip(replies_sent, replies_sent[1:], strict=False):
        assert later["messages"][: len(earlier["messages"])] == earlier["messages"]
    assert replies_sent[4]["messages"] == replies_sent[3]["messages"]  # regenerated: asked the same

    # The next request passes the prefix check; editing `tools` instead of switching them would not.
    system, messages = await next_history(conversation)
    tools = list(first_web["tools"])
    client = sync_client(offline_claude)
    ask = {
        "model": SONNET,
        "max_tokens": 2000,
        "system": system,
        "thinking": {"type": "adaptive", "display": "summarized"},
    }
    headers = {"anthropic-beta": claude.TOOL_CHANGES_BETA}
    more = [
        *messages,
        {"role": "assistant", "content": replies[-1].content},
        {"role": "user", "content": "Thanks"},
    ]
    assert (
        client.messages.create(**ask, messages=more, tools=tools, extra_headers=headers).stop_reason
        == "end_turn"
    )
    plain = [m for m in more if m["role"] != "system"]
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(**ask, messages=plain, tools=[{**t, "defer_loading": False} for t in tools])
    assert "bound to a different conversation" in caught.value.message


@pytest.fixture
def holds(monkeypatch):
    """What each budget hold was asked to cover: spend_reserve's server-tool caps."""
    asked: list[ServerToolCaps] = []
    reserve = store.spend_reserve

    def recording(**kwargs):
        asked.append(kwargs["tool_caps"])
        return reserve(**kwargs)

    monkeypatch.setattr(store, "spend_reserve", recording)
    return asked


@pytest.mark.django_db
def test_a_reply_hold_covers_the_web_caps_while_the_web_is_on(holds):
    row = WebSettings.load()
    row.max_searches, row.max_fetches = 4, 2
    row.save()
    conversation = make_conversation(owner=make_user())
    store.reply_start(conversation=conversation, text="Owls?", worker=WORKER_ID)
    _finish_latest(conversation)
    conversation_web_set(conversation=conversation, on=True)
    store.reply_start(conversation=conversation, text=QUESTION, worker=WORKER_ID)
    _finish_latest(conversation)
    conversation_web_set(conversation=conversation, on=False)
    store.reply_start(conversation=conversation, text="And owls?", worker=WORKER_ID)
    # With the uses, what their results may add: 4 searches at the per-search allowance, 2 fetches at
    # the `max_content_tokens` each is sent with.
    results = 4 * settings.CHAT_WEB_SEARCH_RESULT_TOKENS + 2 * settings.CHAT_WEB_FETCH_MAX_TOKENS
    assert holds == [NO_SERVER_TOOLS, ServerToolCaps(4, 2, result_tokens=results), NO_SERVER_TOOLS]


@pytest.mark.django_db
def test_the_price_line_holds_the_web_caps_too(monkeypatch):
    previews: list[ServerToolCaps] = []
    preview = price.hold_preview

    def recording(**kwargs):
        previews.append(kwargs["tool_caps"])
        return preview(**kwargs)

    monkeypatch.setattr(price, "hold_preview", recording)
    conversation = make_conversation(owner=make_user())
    make_message(conversation, content="Owls?")
    make_message(conversation, role="assistant", content="Owls hoot.")
    price.draft_price(price.draft_read(conversation, QUESTION, []), 100, conversation.pk)
    conversation = conversation_web_set(conversation=conversation, on=True)
    draft = price.draft_read(conversation, QUESTION, [])
    assert [t["name"] for t in draft.request.tools] == ["web_search", "web_fetch"]
    assert draft.request.messages[-1]["role"] == "system"  # the draft is counted as the Send would send it
    price.draft_price(draft, 100, conversation.pk)
    results = 5 * settings.CHAT_WEB_SEARCH_RESULT_TOKENS + 5 * settings.CHAT_WEB_FETCH_MAX_TOKENS
    assert previews == [NO_SERVER_TOOLS, ServerToolCaps(5, 5, result_tokens=results)]


def _finish_latest(conversation: Conversation) -> None:
    """End the streaming reply as complete, with text (no generation runs in these tests)."""
    reply = conversation.messages.filter(role=Message.Role.ASSISTANT).order_by("-pk").first()
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.COMPLETE, content="An answer.")

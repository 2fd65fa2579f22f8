"""The request sent to Claude follows API 2026-10-21: it ends with a user turn, has no sampling knobs,
and identifies the person only by an opaque id."""

from __future__ import annotations

import pytest

from conversations import services
from conversations.claude import ReplyRequest, build_params, opaque_user_id
from conversations.models import Message
from tests.helpers import make_conversation, make_message, make_user

pytestmark = pytest.mark.django_db


def test_history_skips_empty_turns_merges_same_role_and_ends_with_the_user():
    conversation = make_conversation(system_prompt="Be brief.")
    make_message(conversation, content="First question")
    make_message(conversation, role="assistant", content="", status=Message.Status.ERROR)  # failed, no text
    make_message(conversation, content="Asked again")
    make_message(conversation, role="assistant", content="Partial answer", status=Message.Status.STOPPED)
    make_message(conversation, content="Go on")
    placeholder = make_message(conversation, role="assistant", content="", status=Message.Status.STREAMING)

    turns, prompt_bytes = services.reply_history(conversation, before=placeholder)

    assert turns == [
        {"role": "user", "content": "First question\n\nAsked again"},
        {"role": "assistant", "content": "Partial answer"},
        {"role": "user", "content": "Go on"},
    ]
    assert prompt_bytes == len("Be brief.") + sum(len(t["content"].encode()) for t in turns)


def test_params_have_no_sampling_knobs_and_an_opaque_user_id():
    user = make_user("grace.hopper@example.org")
    params = build_params(
        ReplyRequest(
            model="claude-sonnet-5-5",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=10,
            system="s",
            user_id=opaque_user_id(user.pk),
        )
    )
    assert not {"temperature", "top_p", "top_k"} & set(params)
    user_id = params["metadata"]["user_id"]
    assert "grace" not in user_id and str(user.pk) != user_id and len(user_id) == 32
    assert opaque_user_id(user.pk) == user_id  # stable per person
    assert opaque_user_id(user.pk + 1) != user_id

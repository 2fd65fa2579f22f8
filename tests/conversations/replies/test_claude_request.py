"""The request sent to Claude follows API 2026-10-21: it ends with a user turn, has no sampling knobs,
and identifies the person only by an opaque id."""

from __future__ import annotations

import pytest

from conversations.models import Message
from conversations.replies import history
from conversations.replies.claude import ReplyRequest, build_params, opaque_user_id
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

    turns, prompt_bytes = history.reply_history(conversation, before=placeholder)

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


def test_api_usage_is_normalised_once_at_the_boundary():
    from types import SimpleNamespace as Obj

    from conversations.replies.claude import usage_from_api

    start = usage_from_api(
        Obj(
            input_tokens=12,
            output_tokens=1,
            cache_creation_input_tokens=300,
            cache_creation=Obj(ephemeral_5m_input_tokens=0, ephemeral_1h_input_tokens=200),
            cache_read_input_tokens=None,
            service_tier="standard",
        )
    )
    # The 100 cache-write tokens the TTL split leaves unexplained are billed as 5-minute writes.
    assert (start.cache_write_5m_tokens, start.cache_write_1h_tokens) == (100, 200)
    assert start.cache_read_tokens == 0 and start.service_tier == "standard"
    # message_delta's counts are cumulative: they overwrite; what it leaves out stays.
    end = usage_from_api(Obj(output_tokens=57, output_tokens_details=Obj(thinking_tokens=20)), start)
    assert (end.input_tokens, end.output_tokens, end.thinking_tokens) == (12, 57, 20)
    assert end.cache_write_tokens == 300 and end.service_tier == "standard"
    assert usage_from_api(Obj(input_tokens=-5)).input_tokens == 0  # nonsense never becomes a credit


def test_usage_of_raw_json_events_is_read_like_the_sdks_objects():
    """The stream's events are read as plain JSON: the same usage comes out as from the SDK's models."""
    from types import SimpleNamespace as Obj

    from conversations.replies.claude import usage_from_api

    start_json = {
        "input_tokens": 12,
        "output_tokens": 1,
        "cache_creation_input_tokens": 300,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 200},
        "cache_read_input_tokens": None,
        "service_tier": "standard",
    }
    start_obj = Obj(**{**start_json, "cache_creation": Obj(**start_json["cache_creation"])})
    assert usage_from_api(start_json) == usage_from_api(start_obj)
    delta_json = {"output_tokens": 57, "output_tokens_details": {"thinking_tokens": 20}}
    end = usage_from_api(delta_json, usage_from_api(start_json))
    assert (end.input_tokens, end.output_tokens, end.thinking_tokens, end.cache_write_1h_tokens) == (
        12,
        57,
        20,
        200,
    )
    assert usage_from_api(None, end) == end  # an event without usage changes nothing

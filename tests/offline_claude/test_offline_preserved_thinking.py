"""The offline Claude checks preserved thinking as the API does (the docs' "Preserved thinking", "Prefix
checks on thinking blocks", "Fix a thinking block bound to a different conversation", "Mid-conversation
system messages", "Compaction on demand"), driven through the real anthropic SDK, so the app's tests
catch any change to a history that was already sent."""

from __future__ import annotations

import anthropic
import pytest

from offline_claude.testing import sync_client

MODEL = "claude-sonnet-5-5"
BINDING_BETA = "thinking-binding-controls-2026-08-01"
COMPACTION_BETA = "compact-2026-09-04"
SUMMARIZED = {"type": "adaptive", "display": "summarized"}


def _turn(reply) -> dict:
    """An assistant turn exactly as the API returned it."""
    return {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in reply.content]}


def _ask(client, messages: list[dict], *, system: str = "Be brief.", **extra):
    return client.messages.create(
        model=extra.pop("model", MODEL),
        max_tokens=4000,
        system=system,
        thinking=extra.pop("thinking", SUMMARIZED),
        messages=messages,
        **extra,
    )


def _three_turns(client, system: str = "Be brief.") -> list[dict]:
    history: list[dict] = []
    for question in ("Tell me about owls", "And bats?", "Which of them sleeps longer?"):
        history.append({"role": "user", "content": question})
        history.append(_turn(_ask(client, history, system=system)))
    return history


def test_an_append_only_history_passes_the_prefix_check(offline_claude):
    client = sync_client(offline_claude)
    history = _three_turns(client)
    # Strings and one-text-block lists are the same content; cache_control markers do not count.
    history[0] = {
        "role": "user",
        "content": [{"type": "text", "text": "Tell me about owls", "cache_control": {"type": "ephemeral"}}],
    }
    reply = _ask(client, [*history, {"role": "user", "content": "Thanks!"}])
    assert reply.stop_reason == "end_turn"


@pytest.mark.parametrize(
    "change",
    ["system prompt edited", "earlier message trimmed", "earlier text edited", "middle thinking left out"],
)
def test_a_changed_prefix_is_refused_with_the_documented_400(offline_claude, change):
    client = sync_client(offline_claude)
    history = _three_turns(client)
    system = "Be brief."
    if change == "system prompt edited":
        system = "Be very brief."
    elif change == "earlier message trimmed":
        history = history[2:]
    elif change == "earlier text edited":
        history[0] = {"role": "user", "content": "Tell me about barn owls"}
    else:
        history[3]["content"] = [b for b in history[3]["content"] if b["type"] != "thinking"]
    with pytest.raises(anthropic.BadRequestError) as caught:
        _ask(client, [*history, {"role": "user", "content": "Thanks!"}], system=system)
    message = caught.value.message
    assert (
        "Invalid `signature` in `thinking` block. The block is bound to a different conversation." in message
    )
    assert 'prefix_mismatch_behavior` to "drop_block"' in message
    # Sending the same request again cannot help: the history still carries the change.
    with pytest.raises(anthropic.BadRequestError):
        _ask(client, [*history, {"role": "user", "content": "Thanks!"}], system=system)


def test_thinking_may_be_removed_from_all_old_turns_or_dropped_from_the_start(offline_claude):
    client = sync_client(offline_claude)
    history = _three_turns(client)
    without_thinking = [
        {**m, "content": [b for b in m["content"] if b["type"] != "thinking"]}
        if m["role"] == "assistant"
        else m
        for m in history
    ]
    assert _ask(client, [*without_thinking, {"role": "user", "content": "Thanks!"}]).stop_reason == "end_turn"
    oldest_dropped = [dict(m) for m in history]
    oldest_dropped[1] = {
        **history[1],
        "content": [b for b in history[1]["content"] if b["type"] != "thinking"],
    }
    assert _ask(client, [*oldest_dropped, {"role": "user", "content": "Thanks!"}]).stop_reason == "end_turn"


def test_drop_block_drops_the_failing_block_and_every_later_one_and_says_so(offline_claude):
    client = sync_client(offline_claude)
    history = _three_turns(client)
    history[2] = {"role": "user", "content": "And bats, briefly?"}  # changes the prefix of turns 2 and 3
    with pytest.raises(anthropic.BadRequestError) as caught:  # without the beta header the setting is unknown
        _ask(
            client,
            [*history, {"role": "user", "content": "Thanks!"}],
            thinking={**SUMMARIZED, "block_binding": {"prefix_mismatch_behavior": "drop_block"}},
        )
    assert "block_binding: Extra inputs are not permitted" in caught.value.message
    raw = client.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=4000,
        system="Be brief.",
        thinking={**SUMMARIZED, "block_binding": {"prefix_mismatch_behavior": "drop_block"}},
        messages=[*history, {"role": "user", "content": "Thanks!"}],
        extra_headers={"anthropic-beta": BINDING_BETA},
    )
    body = raw.http_response.json()
    assert body["stop_reason"] == "end_turn"
    assert body["input_transformations"] == [
        {"type": "thinking_dropped", "path": "messages.3.content.0", "reason": "prefix_binding_mismatch"},
        {"type": "thinking_dropped", "path": "messages.5.content.0", "reason": "prefix_binding_mismatch"},
    ]
    # What the dropped blocks would have cost is not billed.
    counted_without = client.messages.count_tokens(
        model=MODEL,
        system="Be brief.",
        messages=[
            {**m, "content": [b for b in m["content"] if b["type"] != "thinking"]} if i in (3, 5) else m
            for i, m in enumerate([*history, {"role": "user", "content": "Thanks!"}])
        ],
    )
    assert body["usage"]["input_tokens"] == counted_without.input_tokens


def test_a_system_message_at_the_end_keeps_earlier_thinking_valid(offline_claude):
    client = sync_client(offline_claude)
    history = _three_turns(client)
    history += [
        {"role": "user", "content": "Now about frogs"},
        {"role": "system", "content": "From now on, answer in French."},
    ]
    reply = _ask(client, history)
    history.append(_turn(reply))
    assert _ask(client, [*history, {"role": "user", "content": "Merci"}]).stop_reason == "end_turn"


@pytest.mark.parametrize(
    "messages, error",
    [
        (
            [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"}],
            "cannot be the first message",
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "system", "content": "x"},
            ],
            "must immediately follow a user message",
        ),
    ],
)
def test_system_messages_must_follow_a_user_turn(offline_claude, messages, error):
    client = sync_client(offline_claude)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=MODEL, max_tokens=100, messages=messages)
    assert error in caught.value.message


def test_system_messages_are_refused_where_the_model_has_none(offline_claude):
    client = sync_client(offline_claude)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="claude-sonnet-5",
            max_tokens=100,
            messages=[{"role": "user", "content": "hi"}, {"role": "system", "content": "Be kind."}],
        )
    assert "system messages are not supported" in caught.value.message


def _compact(client, messages: list[dict], **extra):
    return client.messages.create(
        model=MODEL,
        max_tokens=4000,
        system="Be brief.",
        messages=messages,
        extra_body={"compaction": {"type": "summarize"}},
        extra_headers={"anthropic-beta": COMPACTION_BETA},
        **extra,
    )


def test_compaction_on_demand_summarises_and_the_kept_turns_keep_their_thinking(offline_claude):
    client = sync_client(offline_claude)
    history = _three_turns(client)
    raw = client.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=4000,
        system="Be brief.",
        messages=history[:4],
        extra_body={"compaction": {"type": "summarize"}},
        extra_headers={"anthropic-beta": COMPACTION_BETA},
    )
    body = raw.http_response.json()
    assert body["stop_reason"] == "compaction"
    [block] = body["content"]
    assert block["type"] == "compaction" and "Tell me about owls" in block["content"] and block["signature"]
    usage = body["usage"]
    assert usage["input_tokens"] == usage["output_tokens"] == 0
    [iteration] = usage["iterations"]
    assert (
        iteration["type"] == "compaction" and iteration["input_tokens"] > 0 and iteration["output_tokens"] > 0
    )
    # The block replaces the turns it summarises; the kept turn's thinking still checks out.
    compacted = [
        {"role": "assistant", "content": [block]},
        *history[4:],
        {"role": "user", "content": "Thanks!"},
    ]
    reply = _ask(client, compacted, extra_headers={"anthropic-beta": COMPACTION_BETA})
    assert reply.stop_reason == "end_turn"
    # And it keeps going from there (thinking written after the block is bound to the block).
    compacted = [*compacted, _turn(reply), {"role": "user", "content": "Bye"}]
    assert (
        _ask(client, compacted, extra_headers={"anthropic-beta": COMPACTION_BETA}).stop_reason == "end_turn"
    )
    counted = client.messages.count_tokens(
        model=MODEL, system="Be brief.", messages=compacted, extra_headers={"anthropic-beta": COMPACTION_BETA}
    )
    full = client.messages.count_tokens(
        model=MODEL, system="Be brief.", messages=[*history, {"role": "user", "content": "x"}]
    )
    assert counted.input_tokens < full.input_tokens + 200


def test_compaction_blocks_are_checked(offline_claude):
    client = sync_client(offline_claude)
    history = _three_turns(client)
    block = _compact(client, history[:4]).content[0].model_dump(exclude_none=True)
    altered = {**block, "content": block["content"] + " (edited)"}
    for messages, error in (
        ([{"role": "assistant", "content": [altered]}, *history[4:]], "compaction_signature_invalid"),
        (
            [*history[:2], {"role": "assistant", "content": [block]}, *history[4:]],
            "compaction_block_misplaced",
        ),
    ):
        with pytest.raises(anthropic.BadRequestError) as caught:
            _ask(
                client,
                [*messages, {"role": "user", "content": "Thanks!"}],
                extra_headers={"anthropic-beta": COMPACTION_BETA},
            )
        assert error in caught.value.message
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model=MODEL,
            max_tokens=100,
            messages=history[:4],
            extra_body={"compaction": {"type": "summarize"}},
        )
    assert COMPACTION_BETA in caught.value.message
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="claude-haiku-5-5",
            max_tokens=100,
            messages=history[:4],
            extra_body={"compaction": {"type": "summarize"}},
            extra_headers={"anthropic-beta": COMPACTION_BETA},
        )
    assert "not supported on claude-haiku-5-5" in caught.value.message


def test_another_models_thinking_is_dropped_without_an_error(offline_claude):
    client = sync_client(offline_claude)
    history = _three_turns(client)
    raw = client.messages.with_raw_response.create(
        model="claude-opus-5-5",
        max_tokens=4000,
        system="Be brief.",
        messages=[*history, {"role": "user", "content": "Thanks!"}],
        extra_headers={"anthropic-beta": BINDING_BETA},
    )
    body = raw.http_response.json()
    assert body["stop_reason"] == "end_turn"
    assert {t["reason"] for t in body["input_transformations"]} == {"model_binding_mismatch"}
    assert len(body["input_transformations"]) == 3


def test_refusals_carry_stop_details(offline_claude):
    client = sync_client(offline_claude)
    reply = client.messages.create(
        model=MODEL,
        max_tokens=200,
        messages=[{"role": "user", "content": "Refuse this [[offline refuse=1]]"}],
    )
    assert reply.stop_reason == "refusal"
    assert reply.stop_details.type == "refusal" and reply.stop_details.explanation


THRESHOLD_BETA = "compact-2026-01-12"


def _long_history(turns: int = 12, words: int = 4_500) -> list[dict]:
    history = []
    for n in range(turns):
        history.append(
            {"role": "user", "content": f"Question {n}: " + " ".join(f"w{n}x{k}" for k in range(words))}
        )
        history.append({"role": "assistant", "content": f"Answer {n}."})
    return [*history, {"role": "user", "content": "And now?"}]


def _threshold(client, messages, **edit):
    raw = client.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=2000,
        system="Be brief.",
        messages=messages,
        extra_body={
            "context_management": {
                "edits": [
                    {"type": "compact_20260112", "trigger": {"type": "input_tokens", "value": 50_000}, **edit}
                ]
            }
        },
        extra_headers={"anthropic-beta": THRESHOLD_BETA},
    )
    return raw.http_response.json()


def test_compaction_at_a_threshold_summarises_first_and_later_requests_start_from_the_block(offline_claude):
    client = sync_client(offline_claude)
    history = _long_history()
    full = client.messages.count_tokens(model=MODEL, system="Be brief.", messages=history).input_tokens
    assert full > 50_000
    body = _threshold(client, history)
    blocks = body["content"]
    assert blocks[0]["type"] == "compaction" and "Question 11" in blocks[0]["content"]
    assert blocks[-1]["type"] == "text" and body["stop_reason"] == "end_turn"
    compaction, message = body["usage"]["iterations"]
    assert (
        compaction["type"] == "compaction"
        and compaction["input_tokens"] == full
        and compaction["output_tokens"] > 0
    )
    assert message["type"] == "message" and body["usage"]["input_tokens"] == message["input_tokens"] < 1_000
    # The reply is appended as usual; the API drops everything before the block from then on.
    later = [*history, {"role": "assistant", "content": blocks}, {"role": "user", "content": "Thanks"}]
    again = _threshold(client, later)
    assert again["content"][0]["type"] != "compaction" and again["usage"]["input_tokens"] < 2_000


def test_compaction_at_a_threshold_can_pause_and_is_checked(offline_claude):
    client = sync_client(offline_claude)
    history = _long_history()
    paused = _threshold(client, history, pause_after_compaction=True)
    assert paused["stop_reason"] == "compaction" and [b["type"] for b in paused["content"]] == ["compaction"]
    below = _threshold(client, [{"role": "user", "content": "Short"}])
    assert [b["type"] for b in below["content"]] != ["compaction"] and "iterations" not in below["usage"]
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model=MODEL,
            max_tokens=100,
            messages=history,
            extra_body={
                "context_management": {
                    "edits": [
                        {"type": "compact_20260112", "trigger": {"type": "input_tokens", "value": 1_000}}
                    ]
                }
            },
            extra_headers={"anthropic-beta": THRESHOLD_BETA},
        )
    assert "greater than or equal to 50000" in caught.value.message
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model=MODEL,
            max_tokens=100,
            messages=history,
            extra_body={"context_management": {"edits": [{"type": "compact_20260112"}]}},
        )
    assert THRESHOLD_BETA in caught.value.message

"""Changing tools mid-conversation the documented way (the docs' "Mid-conversation system messages and
tool changes", "Change tools or instructions without failing the prefix check"): the full tool set in
`tools` from the start, a tool withheld with `defer_loading` until a `tool_addition` in a system message
surfaces it, a `tool_removal` to withdraw it, behind the beta header `mid-conversation-tool-changes-
2026-07-01`. Editing `tools` instead breaks every thinking block already sent; the offline Claude
enforces both, through the real SDK."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from offline_claude.testing import sync_client

MODEL = "claude-sonnet-5-5"
TOOL_CHANGES = "mid-conversation-tool-changes-2026-07-01"
BINDING_BETA = "thinking-binding-controls-2026-08-01"
COMPACTION_BETA = "compact-2026-09-04"
SUMMARIZED = {"type": "adaptive", "display": "summarized"}
SEARCH = {"type": "web_search_20260318", "name": "web_search", "max_uses": 3, "allowed_callers": ["direct"]}
DEFERRED = {**SEARCH, "defer_loading": True}
QUESTION = "How do I brew green tea?"


def _turn(reply) -> dict:
    return {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in reply.content]}


def _change(kind: str, name: str = "web_search") -> dict:
    return {"type": kind, "tool": {"type": "tool_reference", "name": name}}


def _system(*blocks: dict) -> dict:
    return {"role": "system", "content": list(blocks)}


def _ask(
    client, messages: list[dict], *, tools: list[dict] | None = None, betas: tuple[str, ...] = (TOOL_CHANGES,)
):
    extra: dict[str, Any] = {"extra_headers": {"anthropic-beta": ",".join(betas)}} if betas else {}
    return client.messages.create(
        model=MODEL,
        max_tokens=4000,
        system="Be brief.",
        thinking=SUMMARIZED,
        messages=messages,
        **({"tools": tools} if tools is not None else {}),
        **extra,
    )


def _searched(reply) -> bool:
    return any(block.type == "server_tool_use" for block in reply.content)


def _two_turns(client, tools: list[dict] | None) -> list[dict]:
    history: list[dict] = []
    for question in ("Tell me about owls", "And bats?"):
        history.append({"role": "user", "content": question})
        history.append(_turn(_ask(client, history, tools=tools)))
    return history


def test_editing_tools_breaks_earlier_thinking_and_a_tool_addition_does_not(offline_claude):
    client = sync_client(offline_claude)
    history = _two_turns(client, tools=None)
    asked = [*history, {"role": "user", "content": QUESTION}]
    # The tool added to `tools` changes the prefix every earlier thinking block is bound to.
    with pytest.raises(anthropic.BadRequestError) as caught:
        _ask(client, asked, tools=[SEARCH])
    assert "bound to a different conversation" in caught.value.message
    # Declared deferred, it is not part of the prefix, and not offered either.
    quiet = _ask(client, asked, tools=[DEFERRED])
    assert quiet.stop_reason == "end_turn" and not _searched(quiet)
    # Surfaced by a system message after the user's turn: Claude searches, earlier thinking holds.
    reply = _ask(client, [*asked, _system(_change("tool_addition"))], tools=[DEFERRED])
    assert _searched(reply) and reply.usage.server_tool_use.web_search_requests == 1


def test_the_web_can_be_turned_on_and_off_again_and_the_conversation_goes_on(offline_claude):
    client = sync_client(offline_claude)
    tools = [DEFERRED]
    history = _two_turns(client, tools=tools)
    history += [{"role": "user", "content": QUESTION}, _system(_change("tool_addition"))]
    on = _ask(client, history, tools=tools)
    assert _searched(on)
    history += [_turn(on), {"role": "user", "content": "And black tea?"}]
    still_on = _ask(client, history, tools=tools)
    assert _searched(still_on)
    history += [_turn(still_on), {"role": "user", "content": "And oolong?"}]
    history.append(_system(_change("tool_removal"), {"type": "text", "text": "The web is off from here."}))
    off = _ask(client, history, tools=tools)
    assert not _searched(off) and off.stop_reason == "end_turn"
    history += [_turn(off), {"role": "user", "content": QUESTION}, _system(_change("tool_addition"))]
    again = _ask(client, history, tools=tools)  # re-offered: every thinking block so far still checks out
    assert _searched(again)


def test_a_surfaced_tool_is_part_of_the_prefix_from_its_addition_on(offline_claude):
    client = sync_client(offline_claude)
    history = _two_turns(client, tools=[DEFERRED])
    history += [{"role": "user", "content": QUESTION}, _system(_change("tool_addition"))]
    history += [_turn(_ask(client, history, tools=[DEFERRED])), {"role": "user", "content": "Thanks!"}]
    edited = [{**DEFERRED, "max_uses": 5}]
    with pytest.raises(anthropic.BadRequestError) as caught:
        _ask(client, history, tools=edited)
    assert "messages.6.content.0: Invalid `signature`" in caught.value.message
    # Only the thinking written after the addition is bound to the definition: drop_block drops that one.
    raw = client.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=4000,
        system="Be brief.",
        thinking={**SUMMARIZED, "block_binding": {"prefix_mismatch_behavior": "drop_block"}},
        messages=history,
        tools=edited,
        extra_headers={"anthropic-beta": f"{TOOL_CHANGES},{BINDING_BETA}"},
    )
    assert raw.http_response.json()["input_transformations"] == [
        {"type": "thinking_dropped", "path": "messages.6.content.0", "reason": "prefix_binding_mismatch"}
    ]


@pytest.mark.parametrize(
    ("messages", "tools", "betas", "error"),
    [
        (
            [{"role": "user", "content": QUESTION}, _system(_change("tool_addition"))],
            [DEFERRED],
            (),
            f"require `anthropic-beta: {TOOL_CHANGES}`",
        ),
        (
            [{"role": "user", "content": QUESTION}, _system(_change("tool_addition", "web_fetch"))],
            [DEFERRED],
            (TOOL_CHANGES,),
            "'web_fetch' is not declared in `tools`",
        ),
        (
            [{"role": "user", "content": [{"type": "text", "text": QUESTION}, _change("tool_addition")]}],
            [DEFERRED],
            (TOOL_CHANGES,),
            "only allowed in messages with role 'system'",
        ),
        (
            [
                {"role": "user", "content": QUESTION},
                _system({"type": "tool_addition", "tool": {"type": "tool_definition", "definition": SEARCH}}),
            ],
            [DEFERRED],
            (TOOL_CHANGES,),
            "does not match any of the expected tags: 'tool_reference'",
        ),
    ],
    ids=["without the beta", "an undeclared tool", "in a user turn", "a definition by value"],
)
def test_tool_changes_are_checked(offline_claude, messages, tools, betas, error):
    with pytest.raises(anthropic.BadRequestError) as caught:
        _ask(sync_client(offline_claude), messages, tools=tools, betas=betas)
    assert error in caught.value.message


def _compact(client, messages: list[dict], tools: list[dict]) -> dict:
    raw = client.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=4000,
        system="Be brief.",
        messages=messages,
        tools=tools,
        extra_body={"compaction": {"type": "summarize"}},
        extra_headers={"anthropic-beta": f"{TOOL_CHANGES},{COMPACTION_BETA}"},
    )
    [block] = raw.http_response.json()["content"]
    return block


def test_a_compaction_block_carries_the_tool_changes_it_summarises_and_they_are_checked(offline_claude):
    client = sync_client(offline_claude)
    tools = [DEFERRED]
    history = [{"role": "user", "content": QUESTION}, _system(_change("tool_addition"))]
    history += [_turn(_ask(client, history, tools=tools))]
    history += [{"role": "user", "content": "And black tea?"}]
    history += [_turn(_ask(client, history, tools=tools))]
    block = _compact(client, history, tools)
    assert block["tool_changes"] == [_change("tool_addition")]
    compacted = [{"role": "assistant", "content": [block]}, {"role": "user", "content": "And oolong?"}]
    betas = (TOOL_CHANGES, COMPACTION_BETA)
    # The web stays on after the block, without another tool_addition.
    assert _searched(_ask(client, compacted, tools=tools, betas=betas))
    altered = {**block, "tool_changes": []}
    with pytest.raises(anthropic.BadRequestError) as caught:
        _ask(client, [{"role": "assistant", "content": [altered]}, *compacted[1:]], tools=tools, betas=betas)
    assert "compaction_tool_changes_mismatch" in caught.value.message
    # A range that changed no tool says so.
    assert _compact(client, [{"role": "user", "content": "Tell me about owls"}], tools)["tool_changes"] == []

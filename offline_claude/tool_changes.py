"""Mid-conversation tool changes (beta ``mid-conversation-tool-changes-2026-07-01``), as the API has them.

The docs ("Mid-conversation system messages and tool changes"; "Change tools or instructions without
failing the prefix check"): the request declares its full tool set in ``tools`` and never edits it;
``tool_addition`` and ``tool_removal`` content blocks in a ``role: "system"`` message offer a tool to
Claude, or withdraw it, from that point of the conversation on::

    {"role": "system", "content": [
        {"type": "tool_addition", "tool": {"type": "tool_reference", "name": "web_search"}},
        {"type": "text", "text": "…"}]}

- Every tool in ``tools`` is offered from the start, unless it is declared with ``defer_loading: true``:
  then it is withheld until a ``tool_addition`` surfaces it. ``tool_addition`` also re-offers a tool
  an earlier ``tool_removal`` withdrew.
- A reference must name a tool declared in ``tools`` (else 400). The blocks belong in system messages
  only, which follow the usual placement rules; without the beta header they are refused.
- The prefix that preserved thinking checks: an unreferenced deferred tool is not part of it (declaring
  one is safe); a deferred tool's definition enters the prefix where a ``tool_addition`` surfaces it,
  so editing it afterwards invalidates the thinking written after that point, as editing any other
  part of the prefix does.
- A compaction block carries ``tool_changes``: the additions and removals that take ``tools`` to the
  tool set in effect at the end of the range it summarises (``[]`` when nothing changed). It is sent
  back unchanged (its signature covers it) and counts as those changes.
"""

from __future__ import annotations

from typing import Any

TOOL_CHANGES_BETA = "mid-conversation-tool-changes-2026-07-01"
CHANGE_TYPES = ("tool_addition", "tool_removal")


class ToolChangeError(ValueError):
    """A tool change the API refuses (the caller answers it as a 400 invalid_request_error)."""


def _blocks(message: dict[str, Any]) -> list[Any]:
    content = message.get("content")
    return list(content) if isinstance(content, list) else []


def _declared(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    tools = body.get("tools") or []
    return {
        tool["name"]: tool for tool in tools if isinstance(tool, dict) and isinstance(tool.get("name"), str)
    }


def is_change(block: Any) -> bool:
    return isinstance(block, dict) and block.get("type") in CHANGE_TYPES


def _check_change(block: dict[str, Any], where: str, declared: dict[str, dict[str, Any]]) -> None:
    extra = sorted(set(block) - {"type", "tool", "cache_control"})
    if extra:
        raise ToolChangeError(f"{where}.{extra[0]}: Extra inputs are not permitted")
    tool = block.get("tool")
    if not isinstance(tool, dict):
        raise ToolChangeError(f"{where}.tool: Field required")
    if tool.get("type") != "tool_reference":
        raise ToolChangeError(
            f"{where}.tool.type: Input tag {tool.get('type')!r} found using 'type' does not match any of the "
            "expected tags: 'tool_reference'"
        )
    if set(tool) - {"type", "name"}:
        raise ToolChangeError(
            f"{where}.tool.{sorted(set(tool) - {'type', 'name'})[0]}: Extra inputs are not permitted"
        )
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise ToolChangeError(f"{where}.tool.name: Field required")
    if name not in declared:
        raise ToolChangeError(f"{where}.tool.name: the tool {name!r} is not declared in `tools`")


def check(body: dict[str, Any], betas: set[str]) -> None:
    """Refuse misplaced or malformed tool changes, and any without the beta header (ToolChangeError)."""
    declared = _declared(body)
    for i, message in enumerate(body.get("messages") or []):
        for j, block in enumerate(_blocks(message)):
            where = f"messages.{i}.content.{j}"
            if is_change(block):
                if message.get("role") != "system":
                    raise ToolChangeError(
                        f"{where}: {block['type']} blocks are only allowed in messages with role 'system'"
                    )
                if TOOL_CHANGES_BETA not in betas:
                    raise ToolChangeError(
                        f"{where}: {block['type']} blocks require `anthropic-beta: {TOOL_CHANGES_BETA}`"
                    )
                _check_change(block, where, declared)
            elif isinstance(block, dict) and block.get("type") == "compaction":
                for k, change in enumerate(block.get("tool_changes") or []):
                    if not is_change(change):
                        raise ToolChangeError(
                            f"{where}.tool_changes.{k}.type: Input should be 'tool_addition' or 'tool_removal'"
                        )
                    _check_change(change, f"{where}.tool_changes.{k}", declared)
            elif message.get("role") == "system" and isinstance(block, dict) and block.get("type") != "text":
                raise ToolChangeError(
                    f"{where}.type: a system message takes text, tool_addition and tool_removal blocks"
                )


def _apply(change: dict[str, Any], offered: dict[str, bool]) -> None:
    name = change["tool"]["name"]
    if name in offered:
        offered[name] = change["type"] == "tool_addition"


def offered(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tools Claude may use in its reply: ``tools`` less the deferred ones, with every change in
    ``messages`` (a leading compaction block's ``tool_changes``, then the system messages') applied."""
    declared = _declared(body)
    state = {name: not tool.get("defer_loading") for name, tool in declared.items()}
    for message in body.get("messages") or []:
        for block in _blocks(message):
            if isinstance(block, dict) and block.get("type") == "compaction":
                for change in block.get("tool_changes") or []:
                    _apply(change, state)
            elif message.get("role") == "system" and is_change(block):
                _apply(block, state)
    return [declared[name] for name, on in state.items() if on]


def bound_blocks(blocks: list[Any], body: dict[str, Any]) -> list[Any]:
    """A system message's blocks as the prefix digest takes them: a ``tool_addition`` of a deferred tool
    carries that tool's definition (from then on it is part of the prefix)."""
    declared = _declared(body)
    out: list[Any] = []
    for block in blocks:
        if isinstance(block, dict) and block.get("type") == "tool_addition":
            tool = declared.get((block.get("tool") or {}).get("name"), {})
            if tool.get("defer_loading"):
                definition = {k: v for k, v in tool.items() if k != "cache_control"}
                block = {**block, "definition": definition}
        out.append(block)
    return out


def compaction_changes(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``tool_changes`` of a compaction block summarising ``body``'s messages: the additions and
    removals that take ``tools`` to the tool set in effect at their end (``[]``: nothing changed)."""
    declared = _declared(body)
    now = {tool["name"] for tool in offered(body)}
    changes = []
    for name, tool in declared.items():
        start = not tool.get("defer_loading")
        if (name in now) != start:
            kind = "tool_addition" if name in now else "tool_removal"
            changes.append({"type": kind, "tool": {"type": "tool_reference", "name": name}})
    return changes


def definition_tokens_of(block: Any, body: dict[str, Any], count: Any) -> int | None:
    """Tokens a ``tool_addition`` of a deferred tool loads into the prompt (the tool's definition, with
    the ``count`` rule for JSON), or None for any other block."""
    if not (isinstance(block, dict) and block.get("type") == "tool_addition"):
        return None
    tool = _declared(body).get((block.get("tool") or {}).get("name"), {})
    if not tool.get("defer_loading"):
        return None
    return count({k: v for k, v in tool.items() if k != "cache_control"})

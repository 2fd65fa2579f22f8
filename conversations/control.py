"""Control messages to a running generation, wherever it runs: stop it, or ask it for the text so far.

Each generation listens on its own channel, joined to its conversation's control group, so this works
the same with the in-memory layer in one process and with Redis across several daphne workers.
"""

from __future__ import annotations

from channels.layers import get_channel_layer

STOP = "reply.stop"
SNAPSHOT = "reply.snapshot"


def control_group(conversation_id: int) -> str:
    """The group every generation of `conversation_id` listens on for control messages."""
    return f"conversation-{conversation_id}-control"


async def request_stop(conversation_id: int, message_id: int) -> None:
    """Ask the generation of `message_id`, in whichever server process runs it, to stop."""
    await get_channel_layer().group_send(
        control_group(conversation_id), {"type": STOP, "message_id": message_id}
    )


async def request_snapshot(conversation_id: int, message_id: int, reply_channel: str) -> None:
    """Ask the generation of `message_id` to send the text it has published so far to `reply_channel`."""
    await get_channel_layer().group_send(
        control_group(conversation_id),
        {"type": SNAPSHOT, "message_id": message_id, "reply_channel": reply_channel},
    )

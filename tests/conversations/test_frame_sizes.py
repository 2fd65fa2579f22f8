"""No websocket frame of a finished reply exceeds the frame bound, however long the reply."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from conversations import fragments
from conversations.models import Message
from conversations.rendering import render_markdown
from tests.conversations.replies.test_chat_streaming import final_frame_for, reload, setup_chat
from tests.helpers import open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("offline_claude")]

CODE = (
    "def handler(request, pk):\n    items = [x for x in range(pk) if x % 3]\n    return {'sum': sum(items)}\n"
)


def long_reply_markdown(sections: int) -> str:
    parts = []
    for n in range(sections):
        parts.append(
            f"## Part {n}\n\nSome **bold** prose about part {n}, with `code` and a [link](https://example.org/{n})."
        )
        parts.append(f"- item one of {n}\n- item two of {n}\n  - nested under {n}")
        parts.append(f"```python\n{CODE * 3}```")
        parts.append(f"| a | b |\n|---|---|\n| {n} | {n * 2} |")
    return "\n\n".join(parts)


def test_a_long_finished_reply_goes_out_in_frames_under_the_bound_that_add_up_to_its_body():
    html = render_markdown(long_reply_markdown(120))
    assert len(html.encode()) > 4 * fragments.FRAME_BYTES
    reply = Message(
        pk=7, role=Message.Role.ASSISTANT, status=Message.Status.COMPLETE, content="x", html=html, model="m"
    )
    frames = fragments.message_frames(reply, after=fragments.send_button(busy=False))
    assert len(frames) >= 4
    assert all(len(f.encode()) <= fragments.FRAME_BYTES for f in frames)
    pieces = [frames[0]] + frames[1:]
    assert 'id="send-button"' in pieces[0]  # what the end changes besides the reply comes at once
    # Cut only between top-level blocks: every piece is whole markup.
    for frame in frames[1:]:
        inner = frame.split('hx-swap-oob="beforeend">', 1)[1][: -len("</div>")]
        assert inner.count("<pre") == inner.count("</pre>") and inner.count("<ul") == inner.count("</ul>")


def test_a_short_reply_is_one_frame():
    reply = Message(
        pk=8, role=Message.Role.ASSISTANT, status=Message.Status.COMPLETE, content="hi", html="<p>hi</p>"
    )
    assert fragments.message_frames(reply) == [fragments.message(reply)]


async def test_a_long_reply_over_the_websocket_ends_in_frames_under_the_bound(settings, offline_claude):
    settings.CHAT_MAX_TOKENS = 24_000
    user, conversation = await setup_chat()
    socket, _, _ = await open_socket(user, conversation.pk)
    await socket.receive()
    await socket.send(message="Write at length [[offline reply_tokens=20000]]")
    await socket.receive_until(lambda f: "status-streaming" in f)
    assistant = await sync_to_async(lambda: Message.objects.filter(role="assistant").latest("pk"))()
    frames = await socket.receive_until(final_frame_for(assistant.pk), timeout=60)
    # The end: the final frame and the pieces appended after it (the offline Claude streams unpaced
    # here, so a delta frame may carry far more text than the ~40 ms of a real reply would).
    frames = frames[-1:]
    assistant = await reload(assistant)
    html = assistant.html
    assert len(html.encode()) > fragments.FRAME_BYTES
    final, appended = frames[-1], ""
    prefix = f'<div id="msg-{assistant.pk}-body" hx-swap-oob="beforeend">'
    # The page ends with the first frame's part of the body and the pieces appended after it.
    while not (html.endswith(appended) and html[: len(html) - len(appended)] in final):
        frame = await socket.receive()
        assert frame.startswith(prefix) and frame.endswith("</div>"), frame[:200]
        frames.append(frame)
        appended += frame[len(prefix) : -len("</div>")]
    await socket.close()
    assert appended, "a reply this long goes out in more than one frame"
    assert all(len(f.encode()) <= 64 * 1024 for f in frames)

"""A 1,000-message conversation: how long its page takes to open, and the largest websocket frame.

Builds a throwaway SQLite database, a user and a conversation of 1,000 code-heavy messages (the
replies carry highlighted code, about 5x their source as HTML), then measures with Django's test
client the page's time to open (median of 30) and renders the frames a socket gets: the connect /
catch-up frame, the "Show earlier" batch, and the end-of-reply frame of the latest reply.

    .venv/bin/python bench/long_conversation.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB = Path(tempfile.mkdtemp()) / "bench.sqlite3"
os.environ["DATABASE_URL"] = f"sqlite:///{DB}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
os.environ.pop("REDIS_URL", None)

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

MESSAGES = 1_000
CODE = (
    "def handler(request, pk):\n    items = [x for x in range(pk) if x % 3]\n    return {'sum': sum(items)}\n"
    * 12
)


def build():
    from django.contrib.auth import get_user_model

    from conversations.models import Conversation, Message
    from conversations.rendering import render_markdown

    user = get_user_model().objects.create_user("bench", password="pw-bench-123")
    conversation = Conversation.objects.create(
        owner=user, model=settings.CHAT_DEFAULT_MODEL, title="Long one"
    )
    reply = f"Here is the code:\n\n```python\n{CODE}```\n\nIt sums the items."
    reply_html = render_markdown(reply)
    Message.objects.bulk_create(
        Message(
            conversation=conversation,
            role="user" if i % 2 == 0 else "assistant",
            content=f"Question {i}: please write the handler again" if i % 2 == 0 else reply,
            html="" if i % 2 == 0 else reply_html,
            model=conversation.model,
        )
        for i in range(MESSAGES)
    )
    linked = list(conversation.messages.order_by("pk"))  # one branch: each follows the one before
    for previous, message in zip(linked, linked[1:], strict=False):
        message.parent = previous
    Message.objects.bulk_update(linked, ["parent"], batch_size=500)
    return user, conversation


def main() -> None:
    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)
    user, conversation = build()
    from conversations import fragments

    client = Client()
    client.force_login(user)
    url = conversation.get_absolute_url()
    client.get(url)  # warm up templates and connections
    timings = []
    for _ in range(30):
        start = time.perf_counter()
        response = client.get(url)
        timings.append((time.perf_counter() - start) * 1000)
    assert response.status_code == 200
    latest, earlier_before = conversation.messages.page()
    connect = fragments.message_list(latest, conversation=conversation, earlier_before=earlier_before)
    batch = client.get(
        f"/c/{conversation.pk}/earlier/?before={earlier_before}", headers={"HX-Request": "true"}
    ).content
    last = latest[-1]
    end_frame = fragments.message(last) + fragments.send_button(busy=False)
    # The longest reply a call can write (16,000 tokens of code and prose, about 5x as HTML) ends in
    # frames cut between its top-level blocks.
    from conversations.models import Message
    from conversations.rendering import render_markdown

    long_source = "\n\n".join(
        f"Step {n}: the handler again, with **notes**.\n\n```python\n{CODE}```" for n in range(40)
    )
    long_reply = Message(
        pk=last.pk,
        role="assistant",
        status="complete",
        content=long_source,
        html=render_markdown(long_source),
        model=conversation.model,
    )
    long_frames = fragments.message_frames(long_reply, after=fragments.send_button(busy=False))
    total_html = sum(len((m.html or m.content).encode()) for m in conversation.messages.all())
    print(f"{MESSAGES:,}-message conversation, {total_html / 1e6:.1f} MB of message HTML in all")
    print(
        f"page open: median {statistics.median(timings):.1f} ms, p90 {sorted(timings)[26]:.1f} ms "
        f"(30 requests, Django test client, SQLite), page {len(response.content) / 1024:.1f} KB "
        f"with {len(latest)} messages"
    )
    print(
        f"connect/catch-up frame: {len(connect.encode()) / 1024:.1f} KB; 'Show earlier' batch "
        f"{len(batch) / 1024:.1f} KB; end-of-reply frame {len(end_frame.encode()) / 1024:.1f} KB"
    )
    print(
        f"end of a {len(long_source) / 1024:.0f} KB reply ({len(long_reply.html.encode()) / 1024:.0f} KB as HTML): "
        f"{len(long_frames)} frames, largest {max(len(f.encode()) for f in long_frames) / 1024:.1f} KB"
    )
    largest = max(
        len(connect.encode()), len(batch), len(end_frame.encode()), *(len(f.encode()) for f in long_frames)
    )
    print(f"largest frame: {largest / 1024:.1f} KB (limit 64 KB)")


if __name__ == "__main__":
    main()

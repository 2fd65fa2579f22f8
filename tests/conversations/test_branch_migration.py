"""Existing conversations become one branch each when the branch model arrives (migration 0009)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("conversations", "0008_message_search_index")]
AFTER = [("conversations", "0009_branches_titles_stop_sequences")]


@pytest.mark.django_db(transaction=True)
def test_existing_messages_are_linked_in_order_and_stay_on_the_active_branch():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    User = old.get_model("auth", "User")
    Conversation = old.get_model("conversations", "Conversation")
    Message = old.get_model("conversations", "Message")
    owner = User.objects.create(username="before-branches")
    conversations = [
        Conversation.objects.create(owner=owner, model="claude-sonnet-5-5", title=t) for t in ("Old", "")
    ]
    ids = {c.pk: [] for c in conversations}
    for i in range(3):  # interleaved, so neighbours by id belong to different conversations
        for c in conversations:
            ids[c.pk].append(
                Message.objects.create(
                    conversation=c, role="user" if i % 2 == 0 else "assistant", content=f"m{i}"
                ).pk
            )

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps
    Message = new.get_model("conversations", "Message")
    Conversation = new.get_model("conversations", "Conversation")
    for conversation_id, message_ids in ids.items():
        rows = list(
            Message.objects.filter(conversation_id=conversation_id)
            .order_by("pk")
            .values_list("pk", "parent_id", "active", "chosen")
        )
        assert rows == [
            (pk, parent, True, True)
            for pk, parent in zip(message_ids, [None, *message_ids[:-1]], strict=True)
        ]
    assert dict(Conversation.objects.values_list("title", "title_source")) == {"Old": "first_line", "": ""}
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

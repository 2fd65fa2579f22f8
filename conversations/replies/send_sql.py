"""The first statement of a Send, written by hand (issue 28: a lean Send).

It locks the conversation (and its owner's row, as before) and reads with it everything the Send
decides on: whether a reply streams, the active branch's tip (the new turn's parent), whether the
conversation has files or a reply cut by the window at all, the owner's team (their model choice),
and, where the hold may read them ahead (SQLite: billing/hold_state.py), the rows its budget hold
decides on. The ORM can express this query, but building it from a dozen subqueries cost about half of
a Send's time in Python, every Send: here its text is built once per process and only the values
change. Rows come back as model instances through the fields' own database converters, as the ORM
would make them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache

from django.contrib.auth import get_user_model
from django.db import connection

from billing.hold_state import HoldState, hold_state_columns, hold_state_from, hold_state_params, read_ahead
from billing.models import UserBudget
from teams.models import Membership, Team

from ..models import WINDOW_EXCEEDED, Attachment, Conversation, Message


class _Part:
    """One model's columns in the SELECT, and turning them back into an instance (None for a row an
    outer join did not find)."""

    def __init__(self, model, alias: str) -> None:
        self.model = model
        self.fields = list(model._meta.concrete_fields)
        self.names = [f.attname for f in self.fields]
        self.pk_index = self.fields.index(model._meta.pk)
        quote = connection.ops.quote_name
        self.columns = [f"{alias}.{quote(f.column)}" for f in self.fields]
        self.converters = []  # per column: the expression and the converters the ORM would apply
        for field in self.fields:
            col = field.get_col(alias)
            self.converters.append(
                (col, connection.ops.get_db_converters(col) + col.get_db_converters(connection))
            )

    def build(self, values: list):
        if values[self.pk_index] is None:
            return None
        converted = []
        for value, (col, converters) in zip(values, self.converters, strict=True):
            for convert in converters:
                value = convert(value, col, connection)
            converted.append(value)
        return self.model.from_db(connection.alias, self.names, converted)


@dataclass(frozen=True)
class SendState:
    """What the Send's first statement read."""

    conversation: Conversation  # with its owner attached
    team: Team | None
    streaming: bool
    tip_id: int | None
    has_files: bool
    window_cut: bool
    hold: HoldState | None  # None: the hold reads (and locks) its rows itself


@cache
def _statement(vendor: str, ahead: bool) -> tuple[str, list[_Part]]:
    """The statement's text and its parts, built once per process (per database and mode)."""
    quote = connection.ops.quote_name
    parts = [
        _Part(Conversation, "c"),
        _Part(get_user_model(), "u"),
        _Part(Team, "t"),
        *([_Part(UserBudget, "b")] if ahead else []),
    ]
    message, attachment = quote(Message._meta.db_table), quote(Attachment._meta.db_table)
    state = [
        f"EXISTS (SELECT 1 FROM {message} m WHERE m.conversation_id = c.id AND m.status = %s)",
        f"(SELECT m.id FROM {message} m WHERE m.conversation_id = c.id AND m.active = %s"
        " ORDER BY m.id DESC LIMIT 1)",
        f"EXISTS (SELECT 1 FROM {attachment} a WHERE a.conversation_id = c.id)",
        f"EXISTS (SELECT 1 FROM {message} m WHERE m.conversation_id = c.id AND m.stop_reason = %s)",
    ]
    hold = hold_state_columns("c.owner_id") if ahead else []
    user = quote(get_user_model()._meta.db_table)
    joins = [
        f"FROM {quote(Conversation._meta.db_table)} c",
        f"JOIN {user} u ON u.id = c.owner_id",
        f"LEFT JOIN {quote(Membership._meta.db_table)} ms ON ms.user_id = u.id",
        f"LEFT JOIN {quote(Team._meta.db_table)} t ON t.id = ms.team_id",
        *([f"LEFT JOIN {quote(UserBudget._meta.db_table)} b ON b.user_id = u.id"] if ahead else []),
    ]
    columns = [column for part in parts for column in part.columns] + state + hold
    sql = f"SELECT {', '.join(columns)} {' '.join(joins)} WHERE c.id = %s"
    if connection.features.has_select_for_update:
        sql += " FOR UPDATE OF c, u"  # the conversation and its owner, as the ORM's lock did
    return sql, parts


def send_state(conversation_id: int, now: datetime) -> SendState:
    """Lock conversation `conversation_id` and read what a Send decides on (call in its transaction);
    Conversation.DoesNotExist if it is gone."""
    ahead = read_ahead()
    sql, parts = _statement(connection.vendor, ahead)
    params = [Message.Status.STREAMING, True, WINDOW_EXCEEDED]
    if ahead:
        params += hold_state_params(now)
    params.append(conversation_id)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        raise Conversation.DoesNotExist("No such conversation.")
    row = list(row)
    built = []
    for part in parts:
        built.append(part.build(row[: len(part.fields)]))
        row = row[len(part.fields) :]
    conversation, owner, team, *budget = built
    conversation.owner = owner
    streaming, tip_id, has_files, window_cut, *hold = row
    return SendState(
        conversation=conversation,
        team=team,
        streaming=bool(streaming),
        tip_id=tip_id,
        has_files=bool(has_files),
        window_cut=bool(window_cut),
        hold=hold_state_from(hold, budget[0] if budget else None, now) if ahead else None,
    )

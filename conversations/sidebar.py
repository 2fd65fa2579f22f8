"""Reads for the sidebar: pinned conversations on top, the rest grouped by when they were last active
(Today / Previous 7 days / Older), a page at a time with a cursor for the next page."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from .inputs import parse_int
from .models import Conversation

TODAY, WEEK, OLDER = "Today", "Previous 7 days", "Older"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


@dataclass(frozen=True)
class SidebarItem:
    conversation: Conversation
    heading: str  # the group's heading when this item starts a group, else ""


@dataclass(frozen=True)
class SidebarPage:
    pinned: list[Conversation]
    items: list[SidebarItem]
    next_cursor: str  # "" when there is nothing more


def group_of(moment: datetime, now: datetime) -> str:
    """The sidebar group of a conversation last active at `moment` (days in the site's time zone)."""
    midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    if moment >= midnight:
        return TODAY
    if moment >= midnight - timedelta(days=7):
        return WEEK
    return OLDER


def _cursor(conversation: Conversation) -> str:
    # Exact microseconds (a float timestamp could round onto a neighbour and skip or repeat one).
    return f"{(conversation.updated_at - _EPOCH) // _MICRO}.{conversation.pk}"


def current_conversation(request) -> Conversation | None:
    """The person's conversation the request was made from (htmx's current URL, or the referring page):
    to mark it in a sidebar rendered again, or to update its heading."""
    url = (request.htmx.current_url_abs_path if request.htmx else None) or request.headers.get("Referer", "")
    match = re.search(r"/c/(\d+)/", url or "")
    pk = parse_int(match.group(1)) if match else None
    return Conversation.objects.owned_by(request.user).filter(pk=pk).first() if pk else None


def parse_cursor(value: object) -> tuple[datetime, int] | None:
    """(updated_at, id) of the last conversation a page showed, or None for a missing or bad cursor."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    micros, _, pk = value.partition(".")
    micros_n, pk_n = parse_int(micros), parse_int(pk)
    if micros_n is None or pk_n is None:
        return None
    try:
        moment = _EPOCH + micros_n * _MICRO
    except (OverflowError, OSError, ValueError):
        return None
    return moment, pk_n


def sidebar_page(
    user, *, after: object = None, archived: bool = False, now: datetime | None = None
) -> SidebarPage:
    """One page of `user`'s conversations for the sidebar (or, with `archived`, for the Archived list).

    The first page (no `after`) starts with every pinned conversation; the unpinned ones follow, most
    recently active first, CHAT_SIDEBAR_PAGE at a time; `after` is the `next_cursor` of the page before.
    """
    now = now or timezone.now()
    size = settings.CHAT_SIDEBAR_PAGE
    base = Conversation.objects.archived_by(user) if archived else Conversation.objects.in_sidebar(user)
    cursor = parse_cursor(after)
    pinned: list[Conversation] = []
    if not archived:
        if cursor is None:
            pinned = list(base.filter(pinned=True))
        base = base.filter(pinned=False)
    previous_group = ""
    if cursor is not None:
        moment, pk = cursor
        base = base.filter(Q(updated_at__lt=moment) | Q(updated_at=moment, pk__lt=pk))
        previous_group = group_of(moment, now)
    rows = list(base[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    items = []
    for conversation in rows:
        group = group_of(conversation.updated_at, now)
        items.append(SidebarItem(conversation, group if group != previous_group else ""))
        previous_group = group
    return SidebarPage(pinned=pinned, items=items, next_cursor=_cursor(rows[-1]) if more else "")

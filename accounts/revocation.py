"""Tell a user's open chat sockets when their sign-in may have ended, and check whether it has.

Every chat socket joins `user_group(user_id)`. This module only sends events to that group (it does
not know what a socket does with them):

- "auth.session_ended" with `session`, the `session_digest` of a session that was logged out: the
  sockets opened with that session close. Other browsers of the same user stay signed in.
- "auth.recheck" after the user's row was saved (a password or `is_active` change, from any view or
  the admin) or deleted: each socket checks with `session_is_current` and closes if its session no
  longer authenticates an active user. A password change thereby closes every socket of the user,
  including the changing browser's, whose session key Django rotates (its pages reconnect at once).

Events travel on the channel layer: with Redis they reach every worker; with the in-memory layer only
the process that made the change. Changes that bypass signals (`QuerySet.update`, another process on
the in-memory layer) are caught by the socket's own check before it acts on a frame.
"""

from __future__ import annotations

import hashlib
import logging
from importlib import import_module

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
    user_logged_out,
)
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.utils.crypto import constant_time_compare

logger = logging.getLogger(__name__)

SESSION_ENDED = "auth.session_ended"
RECHECK = "auth.recheck"
# Saving only these fields cannot end a sign-in (a login saves last_login).
HARMLESS_FIELDS = frozenset({"last_login"})


def user_group(user_id: int) -> str:
    """Channel-layer group every chat socket of the user joins."""
    return f"user-{user_id}"


def session_digest(session_key: str) -> str:
    """How a session is named on the channel layer (never the key itself)."""
    return hashlib.sha256(session_key.encode()).hexdigest()


def session_is_current(session_key: str | None, user_id: int) -> bool:
    """Whether the session still exists and still authenticates the active user `user_id`.

    The same test as `django.contrib.auth.get_user`, but read-only: it never flushes or rotates the
    session (the browser owning it may be in the middle of a request).
    """
    if not session_key:
        return False
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    backend_path = session.get(BACKEND_SESSION_KEY)
    if session.get(SESSION_KEY) != str(user_id) or backend_path not in settings.AUTHENTICATION_BACKENDS:
        return False
    user = load_backend(backend_path).get_user(user_id)  # None for an inactive or deleted user
    if user is None:
        return False
    session_hash = session.get(HASH_SESSION_KEY) or ""
    return bool(session_hash) and any(
        constant_time_compare(session_hash, known)
        for known in (user.get_session_auth_hash(), *user.get_session_auth_fallback_hash())
    )


def _send(user_id: int, event: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(user_group(user_id), event)
    except Exception:
        # Revocation must never break a logout or an admin save; each socket still checks its session
        # before it acts on a frame.
        logger.exception("Could not tell user %s's sockets about %s", user_id, event["type"])


def _on_logged_out(sender, request, user, **kwargs) -> None:
    session_key = request.session.session_key
    if user is not None and session_key:
        _send(user.pk, {"type": SESSION_ENDED, "session": session_digest(session_key)})


def _on_user_saved(sender, instance, created, update_fields, **kwargs) -> None:
    if created or (update_fields is not None and set(update_fields) <= HARMLESS_FIELDS):
        return
    user_id = instance.pk
    transaction.on_commit(lambda: _send(user_id, {"type": RECHECK}))


def _on_user_deleted(sender, instance, **kwargs) -> None:
    user_id = instance.pk
    transaction.on_commit(lambda: _send(user_id, {"type": RECHECK}))


def connect_signals() -> None:
    user_model = get_user_model()
    user_logged_out.connect(_on_logged_out, dispatch_uid="accounts.revocation.logged_out")
    post_save.connect(_on_user_saved, sender=user_model, dispatch_uid="accounts.revocation.saved")
    post_delete.connect(_on_user_deleted, sender=user_model, dispatch_uid="accounts.revocation.deleted")

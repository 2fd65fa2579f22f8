"""Signal receivers that record administrative changes made through any path (admin, views, shell).

Each tracked model lists the fields whose before/after values an entry keeps. A save that changes none
of them writes nothing (the budget rows the spend holds create with default values, a login's
`last_login`), so the hot paths pay one primary-key read at most. Actions whose meaning the signals
cannot see (exports, imports, retention runs, erasure) are recorded by the code that performs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from axes.signals import user_locked_out
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_login_failed
from django.db.models.signals import m2m_changed, post_delete, post_migrate, post_save, pre_save
from django.dispatch import receiver

from accounts.clients import client_address
from billing.signals import usage_reconciled

from .services import SYSTEM, Actor, audit_record

_muted: ContextVar[bool] = ContextVar("audit_muted", default=False)


@contextmanager
def audit_muted() -> Iterator[None]:
    """Per-object entries are not written inside (a bulk action records one entry of its own)."""
    token = _muted.set(True)
    try:
        yield
    finally:
        _muted.reset(token)


@dataclass(frozen=True)
class Tracked:
    prefix: str  # "budget.user" → actions budget.user.created / .changed / .deleted
    fields: tuple[str, ...]
    create_if_default: bool = True  # False: a row created with default values is not an action


TRACKED: dict[str, Tracked] = {
    "billing.modelprice": Tracked(
        "price",
        (
            "model",
            "effective_from",
            "input_rate",
            "output_rate",
            "cache_write_5m_rate",
            "cache_write_1h_rate",
            "cache_read_rate",
            "band_threshold_tokens",
            "band_input_rate",
            "band_output_rate",
            "band_cache_write_5m_rate",
            "band_cache_write_1h_rate",
            "band_cache_read_rate",
            "note",
        ),
    ),
    "billing.userbudget": Tracked(
        "budget.user", ("policy", "monthly_limit", "personal_limit", "warning_percent"), False
    ),
    "billing.sitebudget": Tracked("budget.site", ("policy", "monthly_limit"), False),
    "billing.organisationbudget": Tracked("budget.organisation", ("monthly_limit", "warning_percent"), False),
    "teams.team": Tracked(
        "team", ("name", "monthly_limit", "warning_percent", "allowed_models", "default_model")
    ),
    "teams.membership": Tracked("membership", ("team",)),
    "accounts.invite": Tracked("invite", ("note", "email", "max_uses", "expires_at")),
    # Conversations by id only: a title is what someone wrote, and the log keeps entries for good.
    "conversations.sharelink": Tracked("share_link", ("conversation_id",)),
    "privacy.retentionpolicy": Tracked("retention.policy", ("enabled", "days", "pinned_exempt"), False),
    "privacy.teamretention": Tracked("retention.team", ("team", "days", "pinned_exempt")),
    "privacy.legalhold": Tracked("legal_hold", ("user", "conversation_id", "reason")),
    # Which provider group places people in which team (single sign-on, sso/).
    "sso.groupteam": Tracked("sso.group_team", ("group", "team")),
    # Append-only: only ever created (booked by staff against a reconciliation).
    "billing.adjustment": Tracked("adjustment", ("day", "amount", "reason", "staff_name", "reconciliation")),
}
USER_FIELDS = ("username", "is_active", "is_staff", "is_superuser")
USER_FLAGS = {
    "is_active": ("user.activated", "user.deactivated"),
    "is_staff": ("user.staff_granted", "user.staff_revoked"),
    "is_superuser": ("user.superuser_granted", "user.superuser_revoked"),
}
ACTION_NAMES = {"share_link.deleted": "share_link.revoked"}


def snapshot(instance, fields: tuple[str, ...]) -> dict:
    """The fields' values; a foreign key as "<label> (#id)"."""
    values = {}
    for name in fields:
        if name.endswith("_id"):  # a plain id, without its object's label
            values[name] = getattr(instance, name)
            continue
        field = instance._meta.get_field(name)
        if field.is_relation:
            related_id = getattr(instance, field.attname)
            values[name] = f"{getattr(instance, name)} (#{related_id})" if related_id is not None else None
        else:
            values[name] = getattr(instance, name)
    return values


def _default_snapshot(model, fields: tuple[str, ...]) -> dict:
    return snapshot(model(), fields)


def _action(name: str) -> str:
    return ACTION_NAMES.get(name, name)


def _tracked(sender) -> Tracked | None:
    if sender._meta.apps is not apps:  # a migration's historical model: not an action, no audit table yet
        return None
    return TRACKED.get(sender._meta.label_lower)


def _skip(update_fields, fields) -> bool:
    return _muted.get() or (update_fields is not None and not set(update_fields) & set(fields))


@receiver(pre_save)
def _remember_before(sender, instance, raw=False, update_fields=None, **kwargs) -> None:
    is_user = sender is get_user_model() and sender._meta.apps is apps
    tracked = _tracked(sender)
    if raw or (tracked is None and not is_user):
        return
    fields = USER_FIELDS if is_user else tracked.fields
    if _skip(update_fields, fields) or instance.pk is None:
        instance._audit_before = None
        return
    # Also for an instance not loaded from the database but given an existing primary key: its save
    # updates that row, whose values are the "before".
    old = sender._default_manager.filter(pk=instance.pk).first()
    instance._audit_before = snapshot(old, fields) if old is not None else None


@receiver(post_save)
def _record_save(sender, instance, created, raw=False, update_fields=None, **kwargs) -> None:
    is_user = sender is get_user_model() and sender._meta.apps is apps
    tracked = _tracked(sender)
    if raw or (tracked is None and not is_user):
        return
    fields = USER_FIELDS if is_user else tracked.fields
    if _skip(update_fields, fields):
        return
    after = snapshot(instance, fields)
    if is_user:
        _record_user(instance, created, after)
        return
    if created:
        if tracked.create_if_default or after != _default_snapshot(sender, fields):
            audit_record(action=_action(f"{tracked.prefix}.created"), obj=instance, after=after)
        return
    before = getattr(instance, "_audit_before", None)
    if before != after:
        audit_record(action=_action(f"{tracked.prefix}.changed"), obj=instance, before=before, after=after)


def _record_user(user, created: bool, after: dict) -> None:
    if created:
        audit_record(action="user.created", obj=user, after=after)
        return
    before = getattr(user, "_audit_before", None)
    if before is None or before == after:
        return
    for flag, (granted, revoked) in USER_FLAGS.items():
        if before[flag] != after[flag]:
            audit_record(
                action=granted if after[flag] else revoked,
                obj=user,
                before={flag: before[flag]},
                after={flag: after[flag]},
            )
    if before["username"] != after["username"]:
        audit_record(
            action="user.renamed",
            obj=user,
            before={"username": before["username"]},
            after={"username": after["username"]},
        )


@receiver(post_delete)
def _record_delete(sender, instance, **kwargs) -> None:
    if _muted.get():
        return
    if sender is get_user_model() and sender._meta.apps is apps:
        audit_record(action="user.deleted", obj=instance, before=snapshot(instance, USER_FIELDS))
        return
    tracked = _tracked(sender)
    if tracked is not None:
        audit_record(
            action=_action(f"{tracked.prefix}.deleted"),
            obj=instance,
            before=snapshot(instance, tracked.fields),
        )


@receiver(m2m_changed)
def _record_managers(sender, instance, action, reverse, pk_set, **kwargs) -> None:
    """Manager rights given or taken: one entry per team changed, with its managers before and after."""
    team_model = apps.get_model("teams", "Team")
    if _muted.get() or sender is not team_model.managers.through:
        return
    if action.startswith("pre_"):
        if not reverse:
            teams = [instance]
        elif action == "pre_clear":
            teams = list(instance.managed_teams.all())
        else:
            teams = list(team_model.objects.filter(pk__in=pk_set or ()))
        instance._audit_managers = {team.pk: (team, _manager_names(team)) for team in teams}
        return
    for team, before in getattr(instance, "_audit_managers", {}).values():
        after = _manager_names(team)
        if before != after:
            audit_record(
                action="team.managers_changed",
                obj=team,
                before={"managers": before},
                after={"managers": after},
            )
    instance._audit_managers = {}


def _manager_names(team) -> list[str]:
    return sorted(team.managers.values_list("username", flat=True))


@receiver(user_login_failed)
def _record_failed_login(sender, credentials, request=None, **kwargs) -> None:
    username = str((credentials or {}).get("username", ""))[:150]
    audit_record(
        action="login.failed",
        object_type="login",
        object_label=username,
        after={"username": username, "client": client_address(request) if request is not None else ""},
        actor=Actor(None, SYSTEM),
    )


@receiver(user_locked_out)
def _record_lockout(sender, request=None, username=None, ip_address=None, **kwargs) -> None:
    audit_record(
        action="login.locked",
        object_type="login",
        object_label=str(username or "")[:150],
        after={"username": username or "", "client": ip_address or ""},
        actor=Actor(None, SYSTEM),
    )


@receiver(usage_reconciled)
def _record_reconciliation(sender, days, differences: int, **kwargs) -> None:
    audit_record(
        action="reconciliation.run",
        object_type="billing.reconciliation",
        object_label=f"{days[0]:%Y-%m-%d} to {days[-1]:%Y-%m-%d}",
        after={"days": [f"{day:%Y-%m-%d}" for day in days], "differences": differences},
    )


@receiver(post_migrate)
def _record_signup_mode(sender, using: str = "default", **kwargs) -> None:
    """The sign-up mode is an environment setting: the deploy's `migrate` notes when it changed."""
    if sender.name != "audit":
        return
    from .models import AuditEntry

    mode = settings.CHAT_SIGNUP
    domains = sorted(settings.CHAT_SIGNUP_DOMAINS) if mode == "domains" else []
    last = AuditEntry.objects.using(using).filter(action="signup_mode.changed").order_by("-seq").first()
    now = {"mode": mode, "domains": domains}
    if last is None or last.after != now:
        audit_record(
            action="signup_mode.changed",
            object_type="setting",
            object_id="CHAT_SIGNUP",
            object_label="Sign-up mode",
            before=last.after if last is not None else None,
            after=now,
            actor=Actor(None, SYSTEM),
        )

"""A budget changed (staff in the admin, the person's own cap on /usage/, a manager's member budget):
the open chat pages of everyone it applies to re-render their budget banner and Send button at once.

Billing knows nothing of pages, so this module listens to the budget rows being saved and sends one
"budget.changed" event, after the commit, where it applies: each affected user's group (the group
every chat socket of the user joins, see accounts.revocation) for a person's or a team's budget, and
`EVERYONE` (which every chat socket joins too) for the organisation's or the site default. Each socket
then reads its own user's standing (consumer.budget_changed). As with sign-in revocation, the event
reaches every worker with Redis, and the process that made the change with the in-memory layer;
`QuerySet.update` bypasses it (the page catches up after its next reply).
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from accounts.revocation import user_group
from billing.models import BudgetPolicy, OrganisationBudget, SiteBudget, UserBudget
from teams.models import Membership, Team

logger = logging.getLogger(__name__)

BUDGET_CHANGED = "budget.changed"
#: The channel-layer group every chat socket joins for changes that concern everyone.
EVERYONE = "budgets-everyone"


def budget_changed(user_ids: list[int] | None) -> None:
    """Tell the open chat pages of `user_ids` (None: everyone's) that their budget may have changed,
    once the current transaction commits (nothing is said of a change rolled back)."""
    groups = [EVERYONE] if user_ids is None else [user_group(user_id) for user_id in set(user_ids)]
    transaction.on_commit(lambda: _send(groups))


def _send(groups: list[str]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        for group in groups:
            async_to_sync(layer.group_send)(group, {"type": BUDGET_CHANGED})
    except Exception:
        # A page missing the news must never break the save: it is up to date after its next reply.
        logger.exception("Could not tell the chat pages about a budget change")


def _user_budget_saved(sender, instance: UserBudget, created: bool, **kwargs) -> None:
    # The budget lock creates a row with the site default on a person's first call: nothing changed.
    if created and instance.policy == BudgetPolicy.DEFAULT and instance.personal_limit is None:
        return
    budget_changed([instance.user_id])


def _user_budget_deleted(sender, instance: UserBudget, **kwargs) -> None:
    budget_changed([instance.user_id])  # the site default applies again


def _team_saved(sender, instance: Team, **kwargs) -> None:
    budget_changed(list(instance.memberships.values_list("user_id", flat=True)))


def _membership_changed(sender, instance: Membership, **kwargs) -> None:
    budget_changed([instance.user_id])  # joined, moved or left: another team's budget applies


def _everyone(sender, **kwargs) -> None:
    budget_changed(None)


def connect_signals() -> None:
    post_save.connect(_user_budget_saved, sender=UserBudget, dispatch_uid="budget_push.user")
    post_delete.connect(_user_budget_deleted, sender=UserBudget, dispatch_uid="budget_push.user_deleted")
    post_save.connect(_team_saved, sender=Team, dispatch_uid="budget_push.team")
    post_save.connect(_membership_changed, sender=Membership, dispatch_uid="budget_push.member")
    post_delete.connect(_membership_changed, sender=Membership, dispatch_uid="budget_push.member_left")
    post_save.connect(_everyone, sender=OrganisationBudget, dispatch_uid="budget_push.organisation")
    post_save.connect(_everyone, sender=SiteBudget, dispatch_uid="budget_push.site")

"""Erasure of a person (the right to be forgotten).

Their conversations (with messages, attachments and files, share links), presets, pending uploads and
personal data (name, e-mail, sign-up and login records) are deleted; the account stays, deactivated
with no usable password, as "erased user #<id>" so that nothing can log in with it unless staff give it
a password and activate it again. Their ledger rows stay with every figure unchanged and carry the
pseudonym as their username label (the rollups too), so totals, statements and reconciliation are
exactly what they were. One audit entry records the erasure (without the erased name).
"""

from __future__ import annotations

from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.db import transaction

from accounts.models import Invite, SignupMail
from audit.hooks import audit_muted
from audit.services import Actor, audit_record
from billing.models import (
    AlertScope,
    BudgetAlert,
    UsageDaily,
    UsageDailyUser,
    UsageMonthly,
    UsageMonthlyUser,
    UsageRecord,
)
from conversations.models import Attachment, Conversation, ImportClaim, Preset
from teams.models import Membership

from .models import Erasure, LegalHold, pseudonym
from .retention import conversations_delete


class ErasureRefused(Exception):
    """The person cannot be erased; str(exc) says why. Nothing was changed."""


def erasure_refusal(user, *, by=None) -> str | None:
    """Why `user` cannot be erased (by staff member `by`), in words for staff; or None."""
    if Erasure.objects.filter(user=user).exists():
        return f"{user} has already been erased."
    if by is not None and by.pk == user.pk:
        return "You cannot erase your own account: ask another member of staff."
    if (
        LegalHold.objects.filter(user=user).exists()
        or LegalHold.objects.filter(conversation__owner=user).exists()
    ):
        return f"{user} is under a legal hold: lift the hold first (their data must be kept)."
    return None


def user_erase(*, user, actor: Actor | None = None, by=None) -> Erasure:
    """Erase `user` in one transaction (see the module's docstring); ErasureRefused when not allowed."""
    with transaction.atomic():
        if refusal := erasure_refusal(user, by=by):
            raise ErasureRefused(refusal)
        label = pseudonym(user.pk)
        old_username, old_email = user.get_username(), user.email
        conversation_ids = list(Conversation.objects.filter(owner=user).values_list("pk", flat=True))
        conversations_delete(conversation_ids)
        relabelled = UsageRecord.objects.relabel_user(user.pk, label)
        for rollup in (UsageDaily, UsageMonthly, UsageDailyUser, UsageMonthlyUser):
            rollup.objects.filter(user_id=user.pk).update(username=label)
        BudgetAlert.objects.filter(scope=AlertScope.USER, subject_id=user.pk).update(subject_name=label)
        with audit_muted():
            Attachment.objects.filter(owner=user).delete()  # uploads never sent
            Preset.objects.filter(owner=user).delete()
            ImportClaim.objects.filter(owner=user).delete()
            Membership.objects.filter(user=user).delete()
            user.managed_teams.clear()
            if old_email:
                SignupMail.objects.filter(email__iexact=old_email).delete()
                Invite.objects.filter(email__iexact=old_email).update(email="")
            for model in (AccessAttempt, AccessLog, AccessFailureLog):
                model.objects.filter(username=old_username).delete()
            user.username = label
            user.first_name = user.last_name = user.email = ""
            user.is_active = user.is_staff = user.is_superuser = False
            user.set_unusable_password()
            user.save()
            user.groups.clear()
            user.user_permissions.clear()
        erasure = Erasure.objects.create(
            user=user, conversations_deleted=len(conversation_ids), ledger_rows_relabelled=relabelled
        )
        audit_record(
            action="user.erased",
            obj=user,
            object_label=label,
            after={
                "username": label,
                "conversations_deleted": len(conversation_ids),
                "ledger_rows_relabelled": relabelled,
                "is_active": False,
            },
            actor=actor,
        )
    return erasure

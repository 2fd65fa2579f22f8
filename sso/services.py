"""Who a person signing in through the provider is here: their account found, linked or created.

The provider has already proved who they are (the code flow, in sso/backends.py); this decides whether
they may come in, under the site's rules: allowed e-mail domains, the sign-up mode, deactivated and
erased accounts. Every refusal, and every account made or linked, is an audit entry.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.modes import SignupMode, email_domain_allowed, signup_mode
from audit.services import SYSTEM, Actor, audit_record
from teams.models import Membership

from .models import GroupTeam, SsoIdentity

NO_EMAIL = "{name} did not give a verified e-mail address for you, so you cannot sign in with it here."
FOREIGN_DOMAIN = "Addresses at {domain} cannot sign in here: use an account at {allowed}."
DEACTIVATED = "This account has been deactivated. Ask a member of staff if you need it again."
ERASED = "This account was erased at your request or your organisation's. Ask a member of staff."
PENDING = "Your account has been created and waits for a member of staff to activate it."
AMBIGUOUS = "Several accounts here use your e-mail address: ask a member of staff to sort them out."
STAFF_LINK = (
    "A staff account here already uses your e-mail address: it is never linked to single sign-on "
    "automatically. Log in with its password, or ask another member of staff to link it."
)


class SsoRefused(Exception):
    """This person may not log in; `message` says why in their words, `reason` names it in the audit log."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


def sso_refusal_record(*, reason: str, issuer: str, email: str = "", client: str = "") -> None:
    """One audit entry for a single sign-on login that was refused."""
    audit_record(
        action="sso.login_failed",
        object_type="login",
        object_label=email[:150],
        after={"reason": reason, "issuer": issuer, "email": email, "client": client},
        actor=Actor(None, SYSTEM),
    )


def sso_user(*, issuer: str, claims: dict):
    """The account of the person `claims` (the ID token's and userinfo's, merged) describe; SsoRefused
    (after its audit entry) when they may not log in. Places them in the team their groups map to."""
    email = str(claims.get("email") or "").strip().lower()
    try:
        try:
            return _sso_user(issuer=issuer, claims=claims, email=email)
        except IntegrityError:  # the same person's first login in another tab won the race: theirs now
            return _sso_user(issuer=issuer, claims=claims, email=email)
    except SsoRefused as exc:
        sso_refusal_record(reason=exc.reason, issuer=issuer, email=email)
        raise


def _sso_user(*, issuer: str, claims: dict, email: str):
    sub = str(claims.get("sub") or "")
    with transaction.atomic():
        identity = SsoIdentity.objects.select_related("user").filter(issuer=issuer, subject=sub).first()
        if identity is not None:
            user = identity.user
        else:
            user, created = _account_for_new_identity(email=email, claims=claims)
            identity = SsoIdentity.objects.create(user=user, issuer=issuer, subject=sub)
            audit_record(
                action="sso.identity_linked",
                obj=identity,
                object_label=user.get_username(),
                after={
                    "user": f"{user.get_username()} (#{user.pk})",
                    "issuer": issuer,
                    "account_created": created,
                },
                actor=Actor(None, SYSTEM),
            )
    # Outside the block above: a pending account stays created although this login is refused.
    if not user.is_active:
        if hasattr(user, "erasure"):
            raise SsoRefused(ERASED, "erased")
        if _never_used(user):
            raise SsoRefused(PENDING, "pending")
        raise SsoRefused(DEACTIVATED, "deactivated")
    if email and not _domain_allowed(email):
        raise SsoRefused(_foreign(email), "domain")
    SsoIdentity.objects.filter(pk=identity.pk).update(last_login=timezone.now())
    _place_in_team(user, claims.get(settings.CHAT_SSO_GROUPS_CLAIM))
    return user


def _never_used(user) -> bool:
    return user.last_login is None and not user.has_usable_password()


def _account_for_new_identity(*, email: str, claims: dict) -> tuple:
    """The account a person new to single sign-on gets (linked or made), and whether it was made."""
    # Only an address the provider says it verified (a missing claim, or "false" as some send it, is not).
    if not email or claims.get("email_verified") not in (True, "true"):
        raise SsoRefused(NO_EMAIL.format(name=settings.CHAT_SSO_NAME), "no_email")
    if not _domain_allowed(email):
        raise SsoRefused(_foreign(email), "domain")
    users = get_user_model().objects
    same_address = list(users.filter(email__iexact=email)[:2])
    if len(same_address) > 1:
        raise SsoRefused(AMBIGUOUS, "ambiguous")
    if same_address and _never_used(same_address[0]) and not same_address[0].is_active:
        # An e-mail sign-up nobody confirmed (anyone can type an address): not this person's account.
        same_address[0].delete()
        same_address = []
    if same_address:  # an account made before single sign-on (or by staff for this person)
        if same_address[0].is_staff or same_address[0].is_superuser:
            raise SsoRefused(STAFF_LINK, "staff_account")
        return same_address[0], False
    mode = signup_mode()
    if mode is SignupMode.DOMAINS and not email_domain_allowed(email):
        raise SsoRefused(_foreign(email, settings.CHAT_SIGNUP_DOMAINS), "domain")
    active = mode in (SignupMode.OPEN, SignupMode.DOMAINS)
    user = users.create_user(
        username=_free_username(email),
        email=email,
        first_name=str(claims.get("given_name") or "")[:150],
        last_name=str(claims.get("family_name") or "")[:150],
        is_active=active,
    )  # no usable password: this person logs in through the provider
    return user, True


def _domain_allowed(email: str) -> bool:
    allowed = settings.CHAT_SSO_ALLOWED_DOMAINS
    return not allowed or email.rpartition("@")[2] in allowed


def _foreign(email: str, allowed: list[str] | None = None) -> str:
    allowed = allowed or settings.CHAT_SSO_ALLOWED_DOMAINS
    return FOREIGN_DOMAIN.format(domain=email.rpartition("@")[2], allowed=" or ".join(allowed))


def _free_username(email: str) -> str:
    """A username from the address's local part, numbered if taken."""
    base = re.sub(r"[^\w.@+-]", "", email.partition("@")[0])[:140] or "user"
    taken = get_user_model().objects
    candidate, n = base, 1
    while taken.filter(username__iexact=candidate).exists():
        n += 1
        candidate = f"{base}{n}"
    return candidate


def _place_in_team(user, groups) -> None:
    """Move `user` into the team the first of their groups (by name) maps to; none mapped: unchanged."""
    if isinstance(groups, str):
        groups = [groups]
    if not isinstance(groups, list) or not groups:
        return
    mapping = GroupTeam.objects.select_related("team").filter(group__in=[str(g) for g in groups]).first()
    if mapping is None:
        return
    current = Membership.objects.filter(user=user).first()
    if current is None:
        Membership.objects.create(user=user, team=mapping.team)
    elif current.team_id != mapping.team_id:
        current.team = mapping.team
        current.since = timezone.now()
        current.save()

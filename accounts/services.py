"""Creating accounts under the sign-up modes: small atomic writes, and the mail the domains mode sends."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.forms import SetPasswordForm
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode

from .forms import SignupForm
from .models import Invite, SignupMail
from .modes import email_domain_allowed

logger = logging.getLogger(__name__)

INVALID_INVITE = "This invite link is not valid. Ask whoever invited you for a new one."


class SignupRefused(Exception):
    """Sign-up is not possible; str(exc) says why, in words for the person trying. Nothing was written."""


class AccountConfirmTokenGenerator(PasswordResetTokenGenerator):
    """Tokens for the link that confirms a new address (domains mode). They stop working once the
    password is set (the hash of the password is part of the token) or after PASSWORD_RESET_TIMEOUT, and
    are no use as password-reset tokens (another salt)."""

    key_salt = "accounts.services.AccountConfirmTokenGenerator"

    def _make_hash_value(self, user: AbstractBaseUser, timestamp: int) -> str:
        return f"{super()._make_hash_value(user, timestamp)}{user.is_active}"


confirm_tokens = AccountConfirmTokenGenerator()


def invite_for_link(token: str) -> Invite:
    """The invite that `token` belongs to, if it can still create an account; SignupRefused otherwise."""
    invite = Invite.objects.for_token(token)
    if invite is None:
        raise SignupRefused(INVALID_INVITE)
    if refusal := invite.refusal(timezone.now()):
        raise SignupRefused(refusal)
    return invite


def account_create_with_invite(*, form: SignupForm, token: str) -> AbstractBaseUser:
    """Create the account of a valid sign-up form, using up one use of the invite `token` belongs to.

    Claiming the use is one conditional UPDATE, so two people racing for a single-use link cannot both win.
    """
    with transaction.atomic():
        invite = invite_for_link(token)
        claimed = Invite.objects.filter(
            pk=invite.pk, uses__lt=F("max_uses"), expires_at__gt=timezone.now()
        ).update(uses=F("uses") + 1)
        if not claimed:
            invite.refresh_from_db()
            raise SignupRefused(invite.refusal(timezone.now()) or INVALID_INVITE)
        user = form.save(commit=False)
        if invite.email:
            user.email = invite.email
        user.save()
        invite.accounts.add(user)
    return user


#: One confirmation mail per address this often, and at most CLIENT_MAILS_PER_HOUR per client address.
MAIL_INTERVAL = timedelta(minutes=5)
CLIENT_MAILS_PER_HOUR = 5


def account_request(
    *, username: str, email: str, absolute_url: Callable[[str], str], client: str = ""
) -> None:
    """Mail `email` the link that lets its owner choose a password and so finish signing up.

    A new address gets an inactive account without a usable password; a pending one gets its link again;
    one that already has an account gets a note saying so. The caller shows the same page in every case,
    so the form does not tell strangers which addresses have accounts. Mails are limited: one per address
    per MAIL_INTERVAL and CLIENT_MAILS_PER_HOUR per `client` (its network address), else SignupRefused
    says when to try again. A username held by a request never confirmed is free again once its link
    has expired.
    """
    now = timezone.now()
    with transaction.atomic():
        sent = SignupMail.objects.select_for_update()
        recent = (
            sent.filter(email__iexact=email, sent_at__gt=now - MAIL_INTERVAL).order_by("-sent_at").first()
        )
        if recent is not None:
            wait = max(1, math.ceil((recent.sent_at + MAIL_INTERVAL - now).total_seconds() / 60))
            raise SignupRefused(
                f"A mail was sent to this address a moment ago: check your inbox (and spam folder), or ask "
                f"again in {wait} minute{'s' if wait != 1 else ''}."
            )
        if (
            client
            and sent.filter(client=client, sent_at__gt=now - timedelta(hours=1)).count()
            >= CLIENT_MAILS_PER_HOUR
        ):
            raise SignupRefused(
                "Too many sign-up mails were asked for from your network: try again in an hour."
            )
        SignupMail.objects.create(email=email, client=client[:64], sent_at=now)
        SignupMail.objects.filter(sent_at__lt=now - timedelta(days=1)).delete()
    expired_signups_delete(now)
    users = get_user_model().objects
    user = users.filter(email__iexact=email).order_by("pk").first()
    if user is None:
        try:
            with transaction.atomic():
                user = users.create_user(username=username, email=email, is_active=False)  # unusable password
        except IntegrityError:  # the username was taken since the form checked it
            raise SignupRefused("That username was taken a moment ago: choose another.") from None
    if _is_pending(user):
        link = absolute_url(
            reverse(
                "signup_confirm",
                args=[urlsafe_base64_encode(force_bytes(user.pk)), confirm_tokens.make_token(user)],
            )
        )
        template, subject = "accounts/email/confirm.txt", "Confirm your address to finish signing up"
    else:
        link = absolute_url(reverse("login"))
        template, subject = "accounts/email/already_registered.txt", "You already have an account"
    body = render_to_string(template, {"user": user, "link": link})
    try:
        send_mail(subject, body, None, [user.email])
    except OSError:  # smtplib's errors included
        logger.exception("Could not mail %s", user.email)
        raise SignupRefused("The mail could not be sent just now. Try again in a few minutes.") from None


def expired_signups_delete(now=None) -> None:
    """Delete accounts whose sign-up was never confirmed and whose link has expired: their usernames and
    addresses are free again (they never logged in and own nothing)."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT)
    get_user_model().objects.filter(
        is_active=False, last_login__isnull=True, password__startswith="!", date_joined__lt=cutoff
    ).filter(sso_identities__isnull=True).delete()  # accounts made by single sign-on wait for staff


def pending_account(uidb64: str, token: str) -> AbstractBaseUser:
    """The not yet confirmed account a confirmation link names; SignupRefused if the link is not valid."""
    try:
        user = get_user_model().objects.filter(pk=int(urlsafe_base64_decode(uidb64))).first()
    except (ValueError, OverflowError):
        user = None
    if (
        user is None
        or not _is_pending(user)
        or not email_domain_allowed(user.email)
        or not confirm_tokens.check_token(user, token)
    ):
        raise SignupRefused(
            "This confirmation link does not work any more: links work once, for a few days. "
            "Sign up again to get a new one."
        )
    return user


def account_confirm(*, form: SetPasswordForm) -> AbstractBaseUser:
    """Set the chosen password of a pending account (a valid form) and activate it."""
    user = form.save(commit=False)
    user.is_active = True
    user.save()
    return user


def _is_pending(user: AbstractBaseUser) -> bool:
    return not user.is_active and not user.has_usable_password() and user.last_login is None

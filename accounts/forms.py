"""Sign-up forms: username and password (open and invite modes), username and e-mail (domains mode)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm, UsernameField

from .modes import email_domain_allowed


class SignupForm(UserCreationForm):
    """A username and a password, as Django's own sign-up form asks."""


class EmailSignupForm(forms.Form):
    """A username and an address at one of CHAT_SIGNUP_DOMAINS; the password is chosen after the link
    sent to the address is opened, so nobody can take an account for someone else's address."""

    username = UsernameField(
        max_length=150,
        help_text="Letters, digits and @/./+/-/_ only.",
        widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "username"}),
    )
    email = forms.EmailField(
        label="Work e-mail address", widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        for validator in get_user_model()._meta.get_field("username").validators:
            validator(username)
        return username

    def clean_email(self) -> str:
        email = get_user_model().objects.normalize_email(self.cleaned_data["email"])
        if not email_domain_allowed(email):
            domains = ", ".join(f"@{domain}" for domain in settings.CHAT_SIGNUP_DOMAINS)
            raise forms.ValidationError(f"Sign-up here needs an address ending in {domains}.")
        return email

    def clean(self) -> dict:
        data = super().clean()
        users = get_user_model().objects
        email, username = data.get("email"), data.get("username")
        # A known address gets a mail (its link again, or a note that it has an account) whatever
        # username was typed; only a new address needs a free username.
        if email and username and not users.filter(email__iexact=email).exists():
            if users.filter(username__iexact=username).exists():
                self.add_error("username", "A user with that username already exists.")
        return data

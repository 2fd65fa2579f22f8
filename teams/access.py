"""Which team a user is in, who manages what, and which models a user may choose."""

from __future__ import annotations

from django.conf import settings

from teams.models import Membership, Team


def team_of(user_id: int) -> Team | None:
    """The team the user is in now, or None (organisation only)."""
    membership = Membership.objects.select_related("team").filter(user_id=user_id).first()
    return membership.team if membership else None


def allowed_models(team: Team | None) -> list[str]:
    """The models a member of `team` may use, in the site's order: the team's list within CHAT_MODELS
    (a model the site no longer offers is dropped), else every model the site offers."""
    offered = list(settings.CHAT_MODELS)
    if team is None or not team.allowed_models:
        return offered
    chosen = set(team.allowed_models)
    # A team whose models the site no longer offers keeps only the site's default, never everything.
    return [model for model in offered if model in chosen] or [settings.CHAT_DEFAULT_MODEL]


def default_model(team: Team | None) -> str:
    """The model a new conversation of a member of `team` starts on."""
    models = allowed_models(team)
    for candidate in ((team.default_model if team else ""), settings.CHAT_DEFAULT_MODEL):
        if candidate in models:
            return candidate
    return models[0]


def managed_teams(user):
    """The teams whose pages `user` may see: every team for staff, else the ones they manage."""
    if user.is_staff:
        return Team.objects.all()
    return Team.objects.filter(managers=user)


def may_manage(user, team: Team) -> bool:
    return user.is_staff or team.managers.filter(pk=user.pk).exists()

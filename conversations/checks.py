"""System checks: every offered model is known and has a price in force (never billed at $0 silently)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.db import DatabaseError
from django.utils import timezone

from billing.models import ModelPrice

from .catalog import MODELS


@register()
def offered_models_are_priced(app_configs=None, **kwargs) -> list:
    """An error for each model in CHAT_MODELS without a price in force now; a warning for one the
    model catalog does not know (its window and output limits are then guessed)."""
    problems = []
    for model in settings.CHAT_MODELS:
        if model not in MODELS:
            problems.append(
                Warning(
                    f"CHAT_MODELS offers {model!r}, which conversations/catalog.py does not know.",
                    hint="Its context window and output limit are assumed (200K / 64K); add it to the catalog.",
                    id="conversations.W001",
                )
            )
    try:
        now = timezone.now()
        models = [*settings.CHAT_MODELS, *([settings.CHAT_TITLE_MODEL] if settings.CHAT_TITLE_MODEL else [])]
        unpriced = [m for m in dict.fromkeys(models) if ModelPrice.objects.in_effect(m, now) is None]
    except DatabaseError:
        return problems  # not migrated yet: `migrate` seeds the prices, and runs this check again
    for model in unpriced:
        problems.append(
            Error(
                f"CHAT_MODELS or CHAT_TITLE_MODEL names {model!r}, but it has no price in force: its calls would be billed "
                "at $0 and left out of budgets.",
                hint="Add its price in the admin (Billing > Model prices) or with `manage.py load_prices`, "
                "or remove it from CHAT_MODELS / CHAT_TITLE_MODEL.",
                id="conversations.E001",
            )
        )
    return problems

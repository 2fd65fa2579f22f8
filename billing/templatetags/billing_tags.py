"""Template helpers for money and the budget banner."""

from __future__ import annotations

from django import template

from billing.money import format_usd
from billing.services import budget_status

register = template.Library()


@register.filter
def usd(pico: int | None, places: int = 6) -> str:
    """pico-dollars → '$0.0105' (display rounding to `places` decimals)."""
    return format_usd(pico, max_places=int(places))


@register.filter
def intcomma_plain(value) -> str:
    """12345 → '12,345' without needing django.contrib.humanize."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return ""


@register.inclusion_tag("billing/budget_banner.html")
def budget_banner(user) -> dict:
    """Nothing under CHAT_BUDGET_WARNING_PERCENT (80 %) of the monthly budget; a warning from there; a stop at 100 %."""
    if user is None or not getattr(user, "is_authenticated", False):
        return {"status": None, "user": user}
    return {"status": budget_status(user), "user": user}

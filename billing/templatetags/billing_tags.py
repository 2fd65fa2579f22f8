"""Template helpers for money and the budget banner."""

from __future__ import annotations

from django import template

from billing.money import format_money, format_money_exact, format_money_pair
from billing.services import budget_status

register = template.Library()


@register.filter
def money(pico: int | None) -> str:
    """pico-dollars → '$0.26': the one way pages show an amount (billing.money.format_money)."""
    return format_money(pico)


@register.filter
def usd(pico: int | None, _places=None) -> str:
    """The older name of `money` (any precision argument is ignored: amounts are shown one way)."""
    return format_money(pico)


@register.filter
def money_exact(pico: int | None) -> str:
    """pico-dollars → '$0.263802', every significant decimal: for receipt lines; label it as exact."""
    return format_money_exact(pico)


@register.simple_tag
def money_of(part: int, whole: int | None) -> str:
    """'$0.008 of $0.01': both figures to the precision that keeps them true to their ratio."""
    if whole is None:
        return format_money(part)
    shown_part, shown_whole = format_money_pair(part, whole)
    return f"{shown_part} of {shown_whole}"


@register.filter
def intcomma_plain(value) -> str:
    """12345 → '12,345' without needing django.contrib.humanize."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return ""


@register.inclusion_tag("billing/budget_banner.html")
def budget_banner(user, status=None) -> dict:
    """Nothing under CHAT_BUDGET_WARNING_PERCENT (80 %) of the monthly budget; a warning from there; a stop at 100 %.
    `status`: the user's budget_status when the caller has it already."""
    if user is None or not getattr(user, "is_authenticated", False):
        return {"status": None, "user": user}
    return {"status": status or budget_status(user), "user": user}


@register.simple_tag
def money_pair(part: int, whole: int) -> tuple[str, str]:
    """The two figures of money_of, for sentences: {% money_pair spent limit as shown %}{{ shown.0 }}…"""
    return format_money_pair(part, whole)

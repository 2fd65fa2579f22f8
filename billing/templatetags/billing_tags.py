"""Template helpers for money and the budget banner."""

from __future__ import annotations

from django import template
from django.urls import reverse

from billing.levels import ORGANISATION, TEAM, USER
from billing.models import UserBudget
from billing.money import format_money, format_money_exact, format_money_pair
from billing.refusals import used_up_message
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


@register.simple_tag
def web_use(searches: int, fetches: int, cost: int) -> str:
    """'3 searches · $0.03', '2 searches · 1 fetch · $0.02': the server tools a call (or a sum of calls)
    used and what they cost; '' when none was used."""
    parts = [
        f"{count:,} {noun if count == 1 else plural}"
        for count, noun, plural in ((searches, "search", "searches"), (fetches, "fetch", "fetches"))
        if count
    ]
    return " · ".join([*parts, format_money(cost)]) if parts else ""


@register.filter
def percent_of(part: int, whole: int) -> str:
    """'12%': `part` as a whole-number share of `whole`, rounded down ('<1%' for a share above 0 that
    rounds to it; '—' when `whole` is 0)."""
    if not whole:
        return "—"
    share = int(part) * 100 // int(whole)
    return "<1%" if share == 0 and part else f"{share}%"


@register.filter
def intcomma_plain(value) -> str:
    """12345 → '12,345' without needing django.contrib.humanize."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return ""


def _banner_words(status) -> str:
    """The banner's sentence for a level other than the user's own staff-set budget (which the
    template words itself): the refusal's own words once used up, a share of it while warning."""
    level = status.binding
    if level is None or (level.scope == USER and not level.personal):
        return ""
    if level.state == "exhausted":
        return used_up_message(level, status.period)
    spent, limit = format_money_pair(level.spent, level.limit)
    whose = {
        ORGANISATION: f"the organisation's budget for {status.period.first_day:%B}",
        TEAM: f"your team's budget for {status.period.first_day:%B}",
        USER: "the monthly limit you set yourself",
    }[level.scope]
    return f"{level.percent}% of {whose} used: {spent} of {limit}."


@register.inclusion_tag("billing/budget_banner.html")
def budget_banner(user, status=None) -> dict:
    """Nothing while every level is under its warning threshold (80 % unless set otherwise); a warning
    from there; a stop once a level is used up. The level spoken of is the first used up, else the first
    warning, outermost first (organisation, team, user). `status`: the user's budget_status when the
    caller has it already."""
    if user is None or not getattr(user, "is_authenticated", False):
        return {"status": None, "user": user}
    status = status or budget_status(user)
    return {"status": status, "user": user, "words": _banner_words(status)}


@register.simple_tag
def money_pair(part: int, whole: int) -> tuple[str, str]:
    """The two figures of money_of, for sentences: {% money_pair spent limit as shown %}{{ shown.0 }}…"""
    return format_money_pair(part, whole)


@register.simple_tag
def user_budget_admin_url(user) -> str:
    """The admin page of `user`'s budget row, or the form that adds it (preset to them) when there is none."""
    if UserBudget.objects.filter(user_id=user.pk).exists():
        return reverse("admin:billing_userbudget_change", args=[user.pk])
    return f"{reverse('admin:billing_userbudget_add')}?user={user.pk}"

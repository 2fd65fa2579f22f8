"""Budget amounts as people type them: US dollars, checked with a sentence, stored as exact pUSD.

One field for every budget form (the organisation's, a team's, a member's set by a manager, a user's
own cap), so each refuses the same inputs with the same words.
"""

from __future__ import annotations

from decimal import Decimal

from django import forms

from billing.models import BudgetPolicy, UserBudget
from billing.money import format_money, usd_to_pico

#: A monthly budget above this is taken for a typing slip (an extra zero or two), not a decision.
MAX_MONTHLY_USD = Decimal(1_000_000)


def monthly_usd_field(label: str = "Monthly budget (USD)", *, required: bool = False, help_text: str = ""):
    return forms.DecimalField(
        label=label,
        required=required,
        help_text=help_text,
        min_value=Decimal(0),
        max_value=MAX_MONTHLY_USD,
        max_digits=13,
        decimal_places=6,
        error_messages={
            "invalid": "Enter an amount in US dollars, such as 25 or 12.50.",
            "min_value": "A budget cannot be negative.",
            "max_value": f"A monthly budget is at most ${MAX_MONTHLY_USD:,}: check the figure.",
            "max_decimal_places": "Enter at most six decimals (a millionth of a dollar).",
            "max_digits": f"A monthly budget is at most ${MAX_MONTHLY_USD:,}: check the figure.",
            "max_whole_digits": f"A monthly budget is at most ${MAX_MONTHLY_USD:,}: check the figure.",
        },
    )


def to_pico(value: Decimal | None) -> int | None:
    return None if value is None else usd_to_pico(value)


def below_spent_note(limit: int | None, spent: int, whose: str) -> str:
    """The sentence for a budget set at or below what was already spent this month ('' otherwise)."""
    if limit is None or spent < limit:
        return ""
    return (
        f"{whose} already spent {format_money(spent)} this month, at or above the new budget of "
        f"{format_money(limit)}: no more can be spent this month."
    )


class PersonalCapForm(forms.Form):
    """A user's own lower monthly limit (empty: none)."""

    personal_limit_usd = monthly_usd_field(
        "My monthly cap (USD)",
        help_text="Empty: no cap of your own. A cap above your budget changes nothing.",
    )

    def save(self, user) -> UserBudget:
        budget, _created = UserBudget.objects.get_or_create(user=user)
        budget.personal_limit = to_pico(self.cleaned_data["personal_limit_usd"])
        budget.save(update_fields=["personal_limit", "updated_at"])
        return budget


class MemberBudgetForm(forms.Form):
    """A member's monthly budget as a manager (or staff) sets it: the site default, a limit or none."""

    policy = forms.ChoiceField(choices=BudgetPolicy.choices)
    monthly_limit_usd = monthly_usd_field("Monthly limit (USD)")

    def clean(self):
        data = super().clean()
        if data.get("policy") == BudgetPolicy.LIMIT and data.get("monthly_limit_usd") is None:
            self.add_error("monthly_limit_usd", "Enter the limit, or choose the site default or no limit.")
        return data

    def save(self, user_id: int) -> UserBudget:
        budget, _created = UserBudget.objects.get_or_create(user_id=user_id)
        budget.policy = self.cleaned_data["policy"]
        budget.monthly_limit = (
            to_pico(self.cleaned_data["monthly_limit_usd"]) if budget.policy == BudgetPolicy.LIMIT else None
        )
        budget.save(update_fields=["policy", "monthly_limit", "updated_at"])
        return budget

"""Money is shown one way on every page: `money` (display), `money_exact` (receipts, ledger), pairs."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.template import Context, Template

from billing.money import format_money, format_money_exact, format_money_pair


def pico(usd: str) -> int:
    return int(Decimal(usd) * 10**12)


@pytest.mark.parametrize(
    ("usd", "shown"),
    [
        ("0.263802", "$0.26"),  # cents from ten cents up
        ("0.265", "$0.27"),  # half up, not to even
        ("0.275", "$0.28"),
        ("1234.5", "$1,234.50"),
        ("20", "$20.00"),
        ("0", "$0.00"),
        ("0.0071", "$0.0071"),  # below ten cents: two significant digits
        ("0.00714", "$0.0071"),
        ("0.021", "$0.021"),
        ("0.007", "$0.007"),
        ("0.0995", "$0.10"),
        ("0.000000123", "<$0.000001"),  # never "$0.00" for a non-zero amount
        ("-0.5", "-$0.50"),
    ],
)
def test_amounts_are_shown_in_cents_or_two_significant_digits(usd, shown):
    assert format_money(pico(usd)) == shown


def test_no_amount_is_a_dash():
    assert format_money(None) == "—"


@pytest.mark.parametrize(
    ("spent", "limit", "shown"),
    [
        ("0.008", "0.01", ("$0.008", "$0.01")),  # 80 %: never "$0.01 of $0.01"
        ("0.26", "20", ("$0.26", "$20.00")),
        ("19.996", "20", ("$19.996", "$20.00")),  # 99 %: not "$20.00 of $20.00"
        ("20", "20", ("$20.00", "$20.00")),  # equal amounts may look equal
        ("0.0071", "20", ("$0.0071", "$20.00")),
        ("0.26", "0.10", ("$0.26", "$0.10")),
    ],
)
def test_a_pair_of_amounts_agrees_with_their_ratio(spent, limit, shown):
    assert format_money_pair(pico(spent), pico(limit)) == shown


def test_exact_figures_keep_every_decimal():
    assert format_money_exact(pico("0.263802")) == "$0.263802"
    assert format_money_exact(pico("0.00000001")) == "$0.00000001"
    assert format_money_exact(pico("1234")) == "$1,234.00"


def test_the_template_filters_and_tags_use_the_same_format():
    template = Template(
        "{% load billing_tags %}{{ a|money }} {{ a|usd:6 }} {{ a|money_exact }} | {% money_of b c %} | "
        "{% money_pair b c as shown %}{{ shown.0 }}/{{ shown.1 }}"
    )
    text = template.render(Context({"a": pico("0.263802"), "b": pico("0.008"), "c": pico("0.01")}))
    assert text == "$0.26 $0.26 $0.263802 | $0.008 of $0.01 | $0.008/$0.01"


@pytest.mark.django_db
def test_the_budget_banner_at_80_percent_of_a_cent_does_not_say_a_cent_of_a_cent(settings):
    from billing_factories import make_user, record_call

    from billing.models import UserBudget
    from billing.templatetags.billing_tags import budget_banner

    user = make_user("tiny")
    UserBudget.objects.update_or_create(
        user=user, defaults={"policy": "limit", "monthly_limit": pico("0.01")}
    )
    # Sonnet 5.5 output at $10/MTok: 800 tokens = $0.008, 80 % of the cent.
    record_call(user, output_tokens=800)
    html = Template("{% load billing_tags %}{% budget_banner user %}").render(Context({"user": user}))
    assert budget_banner(user)["status"].percent == 80
    assert "80% of your monthly budget used" in html
    assert "$0.008 of $0.01" in html
    assert "$0.01 of $0.01" not in html


def test_three_amounts_in_one_sentence_never_look_equal_when_they_differ():
    from billing.money import format_money_together

    assert format_money_together(pico("0.0104"), pico("0.01"), pico("20")) == ("$0.0104", "$0.01", "$20.00")
    assert format_money_together(pico("0.021"), pico("0.01"), pico("1")) == ("$0.021", "$0.01", "$1.00")

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from billing_factories import make_user, record_call
from django.utils import timezone

from billing.models import ModelPrice
from billing.money import pico_to_usd, rate_from_usd_per_mtok, usd_to_pico

pytestmark = pytest.mark.django_db


def usd(pico: int) -> Decimal:
    return pico_to_usd(pico)


def test_sonnet_4_6_thousand_in_five_hundred_out_costs_exactly_one_cent_and_a_half_mil():
    row = record_call(make_user(), model="claude-sonnet-4-6", input_tokens=1000, output_tokens=500)
    assert row.cost == 10_500_000_000
    assert usd(row.cost) == Decimal("0.0105")
    assert row.priced and not row.banded


def test_every_token_category_is_billed_at_its_own_rate():
    # Sonnet 4.6: in 3, out 15, write5m 3.75, write1h 6, read 0.30 USD/MTok.
    row = record_call(
        make_user(),
        model="claude-sonnet-4-6",
        input_tokens=1_000,
        output_tokens=2_000,
        cache_write_5m_tokens=3_000,
        cache_write_1h_tokens=4_000,
        cache_read_tokens=10_000,
        thinking_tokens=500,
    )
    # 0.003 + 0.030 + 0.01125 + 0.024 + 0.003 = 0.07125
    assert usd(row.cost) == Decimal("0.07125")
    assert (row.cache_write_5m_tokens, row.cache_write_1h_tokens, row.cache_read_tokens) == (
        3000,
        4000,
        10000,
    )
    assert row.thinking_tokens == 500
    assert row.output_tokens == 2000  # thinking is informational, already inside output


def test_cache_writes_count_towards_the_long_prompt_band():
    user = make_user()
    # Haiku 5.5 bands prompts over 100,000 tokens; input + both cache writes make up the prompt here.
    at_threshold = record_call(
        user,
        model="claude-haiku-5-5",
        input_tokens=50_000,
        cache_write_5m_tokens=25_000,
        cache_write_1h_tokens=25_000,
    )
    assert not at_threshold.banded
    assert usd(at_threshold.cost) == Decimal("0.005") + Decimal("0.003125") + Decimal("0.005")
    over = record_call(
        user,
        model="claude-haiku-5-5",
        input_tokens=50_000,
        cache_write_5m_tokens=25_000,
        cache_write_1h_tokens=25_001,
    )
    assert over.banded
    # 50,000 × 0.50 + 25,000 × 0.625 + 25,001 × 1.00, per million
    assert usd(over.cost) == Decimal("0.025") + Decimal("0.015625") + Decimal("0.025001")


def test_cache_write_one_hour_and_cache_read_rates():
    row = record_call(
        make_user(),
        model="claude-haiku-4-5",
        cache_write_1h_tokens=1_000_000,
        cache_read_tokens=1_000_000,
    )
    assert usd(row.cost) == Decimal("2.10")  # 2 (1h write) + 0.10 (read)
    # Cache savings = cache read tokens × (input rate − cache read rate) = 1M × (1 − 0.10) / 1M.
    assert usd(row.cache_savings) == Decimal("0.90")


def test_haiku_5_5_below_the_band_uses_base_rates():
    row = record_call(make_user(), model="claude-haiku-5-5", input_tokens=100_000, output_tokens=1_000)
    assert not row.banded
    # 100,000 × 0.10/M + 1,000 × 0.50/M = 0.01 + 0.0005
    assert usd(row.cost) == Decimal("0.0105")


def test_haiku_5_5_above_100k_prompt_tokens_bills_the_whole_request_at_band_rates():
    # 60K input + 40,001 cache read = 100,001 prompt tokens: over the threshold.
    row = record_call(
        make_user(),
        model="claude-haiku-5-5",
        input_tokens=60_000,
        cache_read_tokens=40_001,
        output_tokens=1_000,
    )
    assert row.banded
    # 60,000 × 0.50 + 40,001 × 0.05 + 1,000 × 2.50, per million
    assert usd(row.cost) == Decimal("0.03") + Decimal("0.00200005") + Decimal("0.0025")
    assert row.rate_input == 500_000 and row.rate_output == 2_500_000


def test_every_seeded_rate_is_an_exact_integer_of_pico_dollars_per_token():
    prices = ModelPrice.objects.all()
    assert prices.count() >= 14
    for price in prices:
        for rates in filter(None, (price.base_rates, price.band_rates)):
            for value in (
                rates.input,
                rates.output,
                rates.cache_write_5m,
                rates.cache_write_1h,
                rates.cache_read,
            ):
                assert isinstance(value, int) and value > 0


def test_money_conversions_are_exact_and_refuse_inexact_figures():
    assert rate_from_usd_per_mtok("0.125") == 125_000
    assert usd_to_pico("0.0105") == 10_500_000_000
    with pytest.raises(ValueError):
        rate_from_usd_per_mtok("0.0000001")


def test_a_later_price_does_not_change_recorded_costs_and_new_calls_use_it():
    user = make_user()
    before = record_call(user, model="claude-sonnet-4-6", input_tokens=1000, output_tokens=500)
    ModelPrice.objects.create(
        model="claude-sonnet-4-6",
        effective_from=timezone.now() - timedelta(seconds=1),
        input_rate=rate_from_usd_per_mtok("6"),
        output_rate=rate_from_usd_per_mtok("30"),
        cache_write_5m_rate=rate_from_usd_per_mtok("7.5"),
        cache_write_1h_rate=rate_from_usd_per_mtok("12"),
        cache_read_rate=rate_from_usd_per_mtok("0.6"),
    )
    after = record_call(user, model="claude-sonnet-4-6", input_tokens=1000, output_tokens=500)
    before.refresh_from_db()
    assert usd(before.cost) == Decimal("0.0105")
    assert usd(after.cost) == Decimal("0.021")
    assert before.price_id != after.price_id


def test_editing_a_price_row_does_not_change_recorded_costs():
    user = make_user()
    row = record_call(user, model="claude-opus-5", input_tokens=1000, output_tokens=1000)
    price = ModelPrice.objects.get(pk=row.price_id)
    price.input_rate = price.input_rate * 10
    price.save()
    row.refresh_from_db()
    assert usd(row.cost) == Decimal("0.03")  # 1000 × 5/M + 1000 × 25/M
    assert row.rate_input == 5_000_000


def test_a_future_price_is_not_used_yet(monkeypatch):
    now = timezone.now()
    ModelPrice.objects.create(
        model="claude-opus-5",
        effective_from=now + timedelta(days=3),
        input_rate=1,
        output_rate=1,
        cache_write_5m_rate=1,
        cache_write_1h_rate=1,
        cache_read_rate=1,
    )
    user = make_user()
    assert usd(record_call(user, model="claude-opus-5", input_tokens=1_000_000).cost) == Decimal("5.00")
    monkeypatch.setattr(timezone, "now", lambda: now + timedelta(days=4))
    assert record_call(user, model="claude-opus-5", input_tokens=1_000_000).cost == 1_000_000


def test_unpriced_model_is_recorded_with_tokens_and_flagged():
    row = record_call(make_user(), model="claude-mystery-9", input_tokens=123, output_tokens=45)
    assert not row.priced
    assert row.price_id is None
    assert row.cost == 0
    assert (row.input_tokens, row.output_tokens) == (123, 45)


def test_failed_call_before_any_tokens_is_still_recorded_with_zeros():
    row = record_call(make_user(), model="claude-sonnet-4-6", purpose="reply", estimated=False)
    assert row.pk and row.cost == 0 and row.prompt_tokens == 0 and row.output_tokens == 0

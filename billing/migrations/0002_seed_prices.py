"""Seed the price table with Anthropic's list prices (https://www.anthropic.com/pricing, 2026-11).

Rates are USD per million tokens, stored as integer pico-dollars per token (× 1,000,000).
The same list ships as billing/prices/anthropic-2026-11.json for `manage.py load_prices`.
"""

from datetime import datetime, timezone
from decimal import Decimal

from django.db import migrations

EFFECTIVE_FROM = datetime(2026, 1, 1, tzinfo=timezone.utc)
LONG_CONTEXT_NOTE = "Band: prompts over 200K tokens (1M-context beta) billed 2x input, 1.5x output."

# model, input, output, cache write 5m, cache write 1h, cache read, band threshold, band rates, note
PRICES = [
    ("claude-opus-5-5", "4", "20", "5", "8", "0.20", None, None, ""),
    ("claude-sonnet-5-5", "2", "10", "2.50", "4", "0.10", None, None,
     "Cache read 0.10 per Anthropic; 3rd-party sources say it was 0.20 before 2026-10-07."),
    ("claude-haiku-5-5", "0.10", "0.50", "0.125", "0.20", "0.01", 100_000,
     ("0.50", "2.50", "0.625", "1.00", "0.05"), "Prompts over 100K tokens: whole request at band rates."),
    ("claude-fable-5-1", "10", "50", "12.50", "20", "0.25", None, None, ""),
    ("claude-fable-5-2", "8", "40", "10", "16", "0.20", None, None,
     "Cache write 5m/1h and cache read rates are 3rd-party figures (provisional)."),
    ("claude-opus-5", "5", "25", "6.25", "10", "0.50", None, None, ""),
    ("claude-sonnet-5", "2", "10", "2.50", "4", "0.20", None, None, ""),
    ("claude-opus-4-8", "5", "25", "6.25", "10", "0.50", None, None, ""),
    ("claude-opus-4-7", "5", "25", "6.25", "10", "0.50", None, None, ""),
    ("claude-opus-4-6", "5", "25", "6.25", "10", "0.50", None, None, ""),
    ("claude-opus-4-5", "5", "25", "6.25", "10", "0.50", None, None, ""),
    ("claude-sonnet-4-6", "3", "15", "3.75", "6", "0.30", None, None, ""),
    ("claude-sonnet-4-5", "3", "15", "3.75", "6", "0.30", 200_000,
     ("6", "22.50", "7.50", "12", "0.60"), "Deprecated, end of life 2026-11-30. " + LONG_CONTEXT_NOTE),
    ("claude-haiku-4-5", "1", "5", "1.25", "2", "0.10", None, None, ""),
]

NAMES = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")


def rate(usd_per_mtok: str) -> int:
    value = Decimal(usd_per_mtok) * 1_000_000
    assert value == value.to_integral_value(), usd_per_mtok
    return int(value)


def seed(apps, schema_editor):
    ModelPrice = apps.get_model("billing", "ModelPrice")
    for model, *base, threshold, band, note in PRICES:
        fields = {f"{name}_rate": rate(value) for name, value in zip(NAMES, base, strict=True)}
        if band:
            fields["band_threshold_tokens"] = threshold
            fields.update({f"band_{name}_rate": rate(value) for name, value in zip(NAMES, band, strict=True)})
        ModelPrice.objects.update_or_create(
            model=model, effective_from=EFFECTIVE_FROM, defaults={**fields, "note": note[:300]}
        )


def unseed(apps, schema_editor):
    ModelPrice = apps.get_model("billing", "ModelPrice")
    ModelPrice.objects.filter(effective_from=EFFECTIVE_FROM, model__in=[row[0] for row in PRICES]).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]

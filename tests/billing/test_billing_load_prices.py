from __future__ import annotations

import json
from io import StringIO

import pytest
from billing_factories import make_user, record_call
from django.core.management import CommandError, call_command

from billing.models import ModelPrice

pytestmark = pytest.mark.django_db

CSV = """model,effective_from,input,output,cache_write_5m,cache_write_1h,cache_read,band_threshold_tokens,band_input,band_output,band_cache_write_5m,band_cache_write_1h,band_cache_read,note
claude-new-1,2026-02-01,1.5,7.5,1.875,3,0.15,,,,,,,from csv
claude-new-2,2026-02-01T12:00:00+00:00,0.2,1,0.25,0.4,0.02,50000,0.4,2,0.5,0.8,0.04,banded
"""


def load(path, **options) -> str:
    out = StringIO()
    call_command("load_prices", str(path), stdout=out, **options)
    return out.getvalue()


def test_load_csv_creates_versions_and_is_idempotent(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text(CSV)
    assert "2 created" in load(path)
    assert "0 created, 0 updated, 2 unchanged" in load(path)
    banded = ModelPrice.objects.get(model="claude-new-2")
    assert banded.band_threshold_tokens == 50_000
    assert banded.band_cache_read_rate == 40_000
    assert ModelPrice.objects.get(model="claude-new-1").cache_write_5m_rate == 1_875_000


def test_load_json_with_numbers_is_exact(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "prices": [
                    {
                        "model": "claude-sonnet-4-6",
                        "effective_from": "2026-03-01",
                        "input": 2.7,
                        "output": 13.5,
                        "cache_write_5m": 3.375,
                        "cache_write_1h": 5.4,
                        "cache_read": 0.27,
                    }
                ]
            }
        )
    )
    assert "1 created" in load(path)
    price = ModelPrice.objects.get(model="claude-sonnet-4-6", effective_from__month=3)
    assert (price.input_rate, price.cache_write_5m_rate, price.cache_read_rate) == (
        2_700_000,
        3_375_000,
        270_000,
    )


def test_invalid_file_loads_nothing_and_names_every_problem(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(CSV + "claude-bad,notadate,1,2,3,4,0.0000001,,,,,,,\n,2026-01-01,1,,1,1,1,,,,,,,\n")
    with pytest.raises(CommandError) as excinfo:
        load(path)
    message = str(excinfo.value)
    assert "notadate" in message and "more than 6 decimal places" in message
    assert "model is missing" in message and "output is required" in message
    assert not ModelPrice.objects.filter(model__startswith="claude-new").exists()


def test_dry_run_saves_nothing(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text(CSV)
    assert "Dry run: 2 created" in load(path, dry_run=True)
    assert not ModelPrice.objects.filter(model__startswith="claude-new").exists()


def test_a_version_that_priced_calls_cannot_be_rewritten_by_a_file(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text(CSV)
    load(path)
    record_call(make_user(), model="claude-new-1", input_tokens=1000)
    path.write_text(CSV.replace("1.5,7.5", "9,7.5"))
    with pytest.raises(CommandError, match="already used"):
        load(path)
    assert ModelPrice.objects.get(model="claude-new-1").input_rate == 1_500_000


def test_shipped_price_list_matches_the_seed(tmp_path):
    from django.conf import settings

    assert "16 unchanged" in load(settings.BASE_DIR / "billing" / "prices" / "anthropic-2026-11.json")

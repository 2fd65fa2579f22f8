"""The model catalog sizes each reply, and an offered model without a price stops the app at start."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError

from billing.models import ModelPrice
from conversations.catalog import model_info, reply_max_tokens
from conversations.checks import offered_models_are_priced

pytestmark = pytest.mark.django_db


def test_thinking_models_ask_for_room_to_think_and_answer(settings):
    settings.CHAT_MAX_TOKENS = 0
    assert model_info("claude-opus-5-5").thinks_by_default and model_info("claude-opus-5-5").always_thinks
    assert reply_max_tokens("claude-sonnet-5-5") == 16_000  # thinking counts toward max_tokens
    assert reply_max_tokens("claude-haiku-4-5") == 8_000
    assert model_info("claude-haiku-4-5").context_window == 200_000
    assert model_info("claude-sonnet-5-5").context_window == 1_000_000


def test_chat_max_tokens_overrides_the_catalog_within_each_models_output_limit(settings):
    settings.CHAT_MAX_TOKENS = 100_000
    assert reply_max_tokens("claude-opus-5-5") == 100_000
    assert reply_max_tokens("claude-haiku-4-5") == 64_000


def test_the_offered_models_all_have_prices():
    assert offered_models_are_priced() == []


def test_an_offered_model_without_a_price_is_an_error_at_start(settings):
    ModelPrice.objects.filter(model="claude-opus-5-5").delete()
    [problem] = offered_models_are_priced()
    assert problem.id == "conversations.E001" and "claude-opus-5-5" in problem.msg
    with pytest.raises((SystemCheckError, CommandError)):
        call_command("check")


def test_an_offered_model_the_catalog_does_not_know_is_a_warning_with_safe_limits(settings):
    settings.CHAT_MODELS = [*settings.CHAT_MODELS, "claude-future-9"]
    problems = offered_models_are_priced()
    assert {p.id for p in problems} == {"conversations.W001", "conversations.E001"}
    assert reply_max_tokens("claude-future-9") <= model_info("claude-future-9").max_output == 64_000

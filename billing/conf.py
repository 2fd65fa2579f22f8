"""Billing knobs read from the environment (safe embedded defaults, like chatsite/settings.py)."""

from __future__ import annotations

import os

from billing.money import InexactAmount, usd_to_pico

UNLIMITED_WORDS = {"", "unlimited", "none", "off"}


def parse_budget_usd(value: str | None) -> int | None:
    """'20' → pUSD; '' / 'unlimited' → None (no limit). Raises InexactAmount on garbage."""
    if value is None or value.strip().lower() in UNLIMITED_WORDS:
        return None
    pico = usd_to_pico(value)
    if pico < 0:
        raise InexactAmount(f"budget {value!r} is negative")
    return pico


def env_default_monthly_budget() -> int | None:
    """CHAT_DEFAULT_MONTHLY_BUDGET_USD (default "20"), in pUSD; None = unlimited."""
    return parse_budget_usd(os.environ.get("CHAT_DEFAULT_MONTHLY_BUDGET_USD", "20"))


def rate_limit_per_minute() -> int:
    """CHAT_RATE_LIMIT_PER_MINUTE (default 20); 0 disables the limit."""
    return max(0, int(os.environ.get("CHAT_RATE_LIMIT_PER_MINUTE", "20") or 0))


#: Fraction of the budget at which the user is warned.
WARNING_FRACTION_PERCENT = 80

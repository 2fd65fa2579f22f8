"""Exact money: integers of pico-dollars (1 pUSD = 10^-12 USD), Decimal only for display.

Why pico-dollars: prices are quoted in USD per million tokens (USD/MTok). A rate of R USD/MTok is
R × 10^-6 USD per token = R × 10^6 pUSD per token. Every seeded rate has at most three decimal places
(the smallest are 0.01 and 0.125), so R × 10^6 is an integer, and so is tokens × rate: every cost is an
exact integer number of pico-dollars. Integers also SUM() exactly on SQLite, where DecimalField is REAL.
A BigIntegerField holds ±9.2 × 10^18 pUSD ≈ ±9.2 million USD per row or per aggregate.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

PICO_PER_USD = 10**12
#: A rate stored as pUSD per token equals USD/MTok × this.
RATE_SCALE = 10**6


class InexactAmount(ValueError):
    """A USD figure that is not a whole number of the target unit."""


def to_decimal(value: str | int | Decimal) -> Decimal:
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise InexactAmount(f"{value!r} is not a number") from exc
    if not amount.is_finite():
        raise InexactAmount(f"{value!r} is not a finite number")
    return amount


def usd_to_pico(value: str | int | Decimal) -> int:
    """USD (e.g. "20" or Decimal("0.0105")) → integer pico-dollars; refuses anything inexact."""
    pico = to_decimal(value) * PICO_PER_USD
    if pico != pico.to_integral_value():
        raise InexactAmount(f"{value} USD is not a whole number of pico-dollars")
    return int(pico)


def rate_from_usd_per_mtok(value: str | int | Decimal) -> int:
    """USD per million tokens → integer pico-dollars per token; refuses more than 6 decimal places."""
    rate = to_decimal(value) * RATE_SCALE
    if rate != rate.to_integral_value():
        raise InexactAmount(f"{value} USD/MTok has more than 6 decimal places")
    if rate < 0:
        raise InexactAmount(f"{value} USD/MTok is negative")
    return int(rate)


def rate_to_usd_per_mtok(rate: int | None) -> Decimal | None:
    if rate is None:
        return None
    return _at_least_cents(Decimal(rate).scaleb(-6))


def _at_least_cents(amount: Decimal) -> Decimal:
    amount = amount.normalize()
    return amount if amount.as_tuple().exponent <= -2 else amount.quantize(Decimal("0.01"))


def pico_to_usd(pico: int | None) -> Decimal | None:
    """Exact USD as Decimal (up to 12 decimal places; at least cents)."""
    if pico is None:
        return None
    return _at_least_cents(Decimal(int(pico)).scaleb(-12))


def format_usd(pico: int | None, *, max_places: int = 6) -> str:
    """'$0.0105', '$12.50', '$1,234.00'; rounded to `max_places` decimals for display only."""
    if pico is None:
        return "—"
    amount = Decimal(int(pico)).scaleb(-12)
    if amount.as_tuple().exponent < -max_places:
        amount = amount.quantize(Decimal(1).scaleb(-max_places))
    amount = _at_least_cents(amount)
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,}"

"""Exact money: integers of pico-dollars (1 pUSD = 10^-12 USD), Decimal only for display.

Why pico-dollars: prices are quoted in USD per million tokens (USD/MTok). A rate of R USD/MTok is
R × 10^-6 USD per token = R × 10^6 pUSD per token. Every seeded rate has at most three decimal places
(the smallest are 0.01 and 0.125), so R × 10^6 is an integer, and so is tokens × rate: every cost is an
exact integer number of pico-dollars. Integers also SUM() exactly on SQLite, where DecimalField is REAL.
A BigIntegerField holds ±9.2 × 10^18 pUSD ≈ ±9.2 million USD per row or per aggregate.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

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


#: A per-use rate stored as pUSD per use equals USD per 1,000 uses × this (server tools are quoted so).
PER_USE_SCALE = PICO_PER_USD // 1000


def rate_from_usd_per_thousand(value: str | int | Decimal) -> int:
    """USD per 1,000 uses (web search: "10") → integer pico-dollars per use; refuses more than 9 decimal
    places or a negative figure."""
    rate = to_decimal(value) * PER_USE_SCALE
    if rate != rate.to_integral_value():
        raise InexactAmount(f"{value} USD per 1,000 uses has more than 9 decimal places")
    if rate < 0:
        raise InexactAmount(f"{value} USD per 1,000 uses is negative")
    return int(rate)


def rate_to_usd_per_thousand(rate: int | None) -> Decimal | None:
    if rate is None:
        return None
    return _at_least_cents(Decimal(rate).scaleb(-9))


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


DISPLAY_MAX_PLACES = 6


def _places(amount: Decimal) -> int:
    """Cents from ten cents up; below, two significant digits (at most DISPLAY_MAX_PLACES decimals)."""
    if amount == 0 or abs(amount) >= Decimal("0.1"):
        return 2
    return min(DISPLAY_MAX_PLACES, max(2, -abs(amount).adjusted() + 1))


def _shown(amount: Decimal, places: int) -> str:
    rounded = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = f"{abs(rounded):,.{places}f}"
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")  # no trailing zeros past the cents
    if rounded == 0 and amount != 0:
        return f"{'-' if amount < 0 else ''}<${Decimal(1).scaleb(-places):f}"
    return f"{'-' if rounded < 0 else ''}${whole}.{fraction}"


def format_money(pico: int | None) -> str:
    """How every page shows an amount: '$0.26', '$1,234.50', '$0.0071' (below ten cents: 2 significant
    digits), '$0.00'; '—' for None. Rounded half up, for display only: the stored figure stays exact."""
    if pico is None:
        return "—"
    amount = Decimal(int(pico)).scaleb(-12)
    return _shown(amount, _places(amount))


def format_money_together(*picos: int) -> tuple[str, ...]:
    """Amounts shown side by side ('$X of $Y'): all to the same decimals, with more decimals while
    rounding makes different amounts look equal ('$0.008 of $0.01', never '$0.01 of $0.01' at 80 %)."""
    amounts = [Decimal(int(pico)).scaleb(-12) for pico in picos]
    places = max(_places(amount) for amount in amounts)

    def collide() -> bool:
        shown = {}
        for amount in amounts:
            text = _shown(amount, places)
            if shown.setdefault(text, amount) != amount:
                return True
        return False

    while places < 12 and collide():
        places += 1
    return tuple(_shown(amount, places) for amount in amounts)


def format_money_pair(part: int, whole: int) -> tuple[str, str]:
    """Two amounts shown together ('$0.008 of $0.01'): see format_money_together."""
    return format_money_together(part, whole)


def format_money_exact(pico: int | None) -> str:
    """The exact amount, every significant decimal (at least cents): '$0.263802'. For receipts and the
    ledger, where exactness is the point; pages label it as exact."""
    if pico is None:
        return "—"
    amount = pico_to_usd(pico)
    return f"{'-' if amount < 0 else ''}${abs(amount):,f}"


# The name older code uses for the display format.
format_usd = format_money

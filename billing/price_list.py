"""Price list files for `manage.py load_prices`: parsing, validation and an idempotent, atomic load.

Format (JSON or CSV, rates in USD per million tokens, written as strings or numbers; never floats
internally — JSON numbers are parsed as Decimal):

    JSON: {"prices": [{"model": "claude-sonnet-4-6", "effective_from": "2026-12-01",
                        "input": "3", "output": "15", "cache_write_5m": "3.75", "cache_write_1h": "6",
                        "cache_read": "0.30",
                        "band_threshold_tokens": null, "band_input": null, ..., "note": ""}]}
          (a bare list of the same objects is accepted too)
          beside "prices", optionally the server tools' prices, in USD per 1,000 uses:
          "server_tools": [{"tool": "web_search", "effective_from": "2026-12-01", "per_thousand": "10",
                            "note": ""}]   (tool: web_search or web_fetch)
    CSV:  header model,effective_from,input,output,cache_write_5m,cache_write_1h,cache_read,
          band_threshold_tokens,band_input,band_output,band_cache_write_5m,band_cache_write_1h,
          band_cache_read,note   (band columns and note optional; empty cell = none; model prices only)

effective_from: ISO date (midnight in TIME_ZONE) or ISO datetime (without offset: TIME_ZONE).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing.models import RATE_FIELDS, ModelPrice, UsageRecord
from billing.money import InexactAmount, rate_from_usd_per_mtok, rate_from_usd_per_thousand
from billing.tool_prices import ServerTool, ServerToolPrice


class PriceListError(ValueError):
    """The file is invalid; the message lists every problem found. Nothing was loaded."""


@dataclass
class PriceRow:
    model: str
    effective_from: datetime
    rates: dict[str, int]
    band_threshold_tokens: int | None = None
    band_rates: dict[str, int | None] = field(default_factory=dict)
    note: str = ""

    def fields(self) -> dict:
        values = {f"{name}_rate": self.rates[name] for name in RATE_FIELDS}
        values["band_threshold_tokens"] = self.band_threshold_tokens
        values.update({f"band_{name}_rate": self.band_rates.get(name) for name in RATE_FIELDS})
        values["note"] = self.note
        return values

    @property
    def name(self) -> str:
        return self.model

    @property
    def key(self) -> dict:
        return {"model": self.model, "effective_from": self.effective_from}

    def versions(self):
        return ModelPrice.objects

    def used(self, version: ModelPrice) -> bool:
        return UsageRecord.objects.filter(price_id=version.pk).exists()


@dataclass
class ToolPriceRow:
    """One version of a server tool's price: `rate` in pUSD per use."""

    tool: str
    effective_from: datetime
    rate: int
    note: str = ""

    @property
    def name(self) -> str:
        return f"server tool {self.tool}"

    def fields(self) -> dict:
        return {"rate": self.rate, "note": self.note}

    @property
    def key(self) -> dict:
        return {"tool": self.tool, "effective_from": self.effective_from}

    def versions(self):
        return ServerToolPrice.objects

    def used(self, version: ServerToolPrice) -> bool:
        return UsageRecord.objects.filter(
            Q(web_search_price_id=version.pk) | Q(web_fetch_price_id=version.pk)
        ).exists()


def _parse_when(value: str) -> datetime:
    text = str(value).strip()
    try:
        if len(text) == 10:
            parsed = datetime.combine(date.fromisoformat(text), time.min)
        else:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"effective_from {value!r} is not an ISO date or datetime") from exc
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=timezone.get_current_timezone())
    return parsed


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _rates(raw: dict, prefix: str, where: str, errors: list[str], *, required_because: str) -> dict[str, int]:
    """The five rates `prefix`+name of a row, in pUSD per token; each one missing or inexact is an error."""
    rates: dict[str, int] = {}
    for name in RATE_FIELDS:
        value = raw.get(f"{prefix}{name}")
        if _blank(value):
            errors.append(f"{where}: {prefix}{name} is required{required_because}")
            continue
        try:
            rates[name] = rate_from_usd_per_mtok(value)
        except InexactAmount as exc:
            errors.append(f"{where}: {prefix}{name}: {exc}")
    return rates


def _row(raw: dict, where: str, errors: list[str]) -> PriceRow | None:
    before = len(errors)
    model = str(raw.get("model") or "").strip()
    if not model or len(model) > 100:
        errors.append(f"{where}: model is missing or longer than 100 characters")
    try:
        when = _parse_when(raw.get("effective_from") or "")
    except ValueError as exc:
        errors.append(f"{where}: {exc}")
        when = None
    rates = _rates(raw, "", where, errors, required_because="")
    threshold = raw.get("band_threshold_tokens")
    band_rates: dict[str, int] = {}
    if not _blank(threshold):
        try:
            threshold = int(str(threshold).strip())
            if threshold <= 0:
                raise ValueError
        except ValueError:
            errors.append(f"{where}: band_threshold_tokens must be a positive whole number")
            threshold = None
        band_rates = _rates(
            raw, "band_", where, errors, required_because=" when band_threshold_tokens is set"
        )
    else:
        threshold = None
        if any(not _blank(raw.get(f"band_{name}")) for name in RATE_FIELDS):
            errors.append(f"{where}: band rates given without band_threshold_tokens")
    if len(errors) > before:
        return None
    return PriceRow(model, when, rates, threshold, band_rates, str(raw.get("note") or "").strip()[:300])


def _tool_row(raw: dict, where: str, errors: list[str]) -> ToolPriceRow | None:
    before = len(errors)
    tool = str(raw.get("tool") or "").strip()
    if tool not in ServerTool.values:
        errors.append(f"{where}: tool must be one of {', '.join(ServerTool.values)}")
    try:
        when = _parse_when(raw.get("effective_from") or "")
    except ValueError as exc:
        errors.append(f"{where}: {exc}")
        when = None
    rate = raw.get("per_thousand")
    if _blank(rate):
        errors.append(f"{where}: per_thousand (USD per 1,000 uses) is required")
    else:
        try:
            rate = rate_from_usd_per_thousand(rate)
        except InexactAmount as exc:
            errors.append(f"{where}: per_thousand: {exc}")
    if len(errors) > before:
        return None
    return ToolPriceRow(tool, when, rate, str(raw.get("note") or "").strip()[:300])


def parse_price_file(path: str | Path) -> list[PriceRow | ToolPriceRow]:
    """Read and validate a .json or .csv price list; raises PriceListError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise PriceListError(f"cannot read {path}: {exc}") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text, parse_float=Decimal)
        except json.JSONDecodeError as exc:
            raise PriceListError(f"{path}: invalid JSON: {exc}") from exc
        entries = data.get("prices", []) if isinstance(data, dict) else data
        tools = data.get("server_tools", []) if isinstance(data, dict) else []
        if not all(isinstance(e, list) and all(isinstance(x, dict) for x in e) for e in (entries, tools)):
            raise PriceListError(f"{path}: expected a list of price objects (or {{'prices': [...]}})")
        raw_rows = [(f"entry {n}", entry) for n, entry in enumerate(entries, 1)]
        raw_tools = [(f"server tool entry {n}", entry) for n, entry in enumerate(tools, 1)]
    elif path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        raw_rows = [(f"line {n}", row) for n, row in enumerate(reader, 2)]
        raw_tools = []
    else:
        raise PriceListError(f"{path}: use a .json or .csv file")
    errors: list[str] = []
    rows: list[PriceRow | ToolPriceRow] = [
        row for where, raw in raw_rows if (row := _row(raw, where, errors)) is not None
    ]
    rows += [row for where, raw in raw_tools if (row := _tool_row(raw, where, errors)) is not None]
    seen: set[tuple[str, datetime]] = set()
    for row in rows:
        key = (row.name, row.effective_from)
        if key in seen:
            errors.append(f"{row.name} from {row.effective_from.isoformat()} appears twice")
        seen.add(key)
    if not raw_rows and not raw_tools:
        errors.append(f"{path}: no prices in the file")
    if errors:
        raise PriceListError("\n".join(errors))
    return rows


def price_list_load(*, rows: list[PriceRow | ToolPriceRow], dry_run: bool = False) -> dict[str, list[str]]:
    """Create or update price versions, atomically; loading the same file twice changes nothing.

    A version that already priced recorded calls is never changed (refused: add a later version).
    Returns {"created": [...], "updated": [...], "unchanged": [...]} labels.
    """
    outcome: dict[str, list[str]] = {"created": [], "updated": [], "unchanged": []}
    refused: list[str] = []
    with transaction.atomic():
        for row in rows:
            label = f"{row.name} from {row.effective_from.isoformat()}"
            existing = row.versions().filter(**row.key).first()
            wanted = row.fields()
            if existing is None:
                row.versions().create(**row.key, **wanted)
                outcome["created"].append(label)
            elif all(getattr(existing, name) == value for name, value in wanted.items()):
                outcome["unchanged"].append(label)
            elif row.used(existing):
                refused.append(
                    f"{label}: already used to price recorded calls; add a version with a later date"
                )
            else:
                for name, value in wanted.items():
                    setattr(existing, name, value)
                existing.save()
                outcome["updated"].append(label)
        if refused:
            raise PriceListError("\n".join(refused))
        if dry_run:
            transaction.set_rollback(True)
    return outcome

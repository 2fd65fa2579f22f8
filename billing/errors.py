"""Exceptions shared by the ledger's model and queryset (a module of its own so neither imports the other)."""

from __future__ import annotations


class LedgerImmutable(Exception):
    """Raised on any attempt to change or delete a usage ledger row."""

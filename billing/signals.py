"""Signals billing sends for what others record (the audit log) without billing knowing of them."""

from django.dispatch import Signal

#: A reconciliation with Anthropic's report was stored: `days` (UTC dates) and how many of the stored
#: rows (day, model, token kind) differ.
usage_reconciled = Signal()

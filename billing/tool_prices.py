"""The server tools' prices: one effective-dated version per tool, per use, the same for every model
(a ledger row points at the versions that priced its uses, as it does at its model's; billing/models.py).
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from billing.queries import ServerToolPriceQuerySet


class ServerTool(models.TextChoices):
    """The server tools priced per use (`usage.server_tool_use` counts them)."""

    WEB_SEARCH = "web_search", "Web search"
    WEB_FETCH = "web_fetch", "Web fetch"


class ServerToolPrice(models.Model):
    """One price version of one server tool, per use, in force from `effective_from` until the next
    version's date; the same for every model. Anthropic quotes it per 1,000 uses ($10 per 1,000 web
    searches); it is stored as exact pUSD per use (USD per 1,000 × 10^9)."""

    tool = models.CharField(max_length=32, choices=ServerTool.choices)
    effective_from = models.DateTimeField(help_text="This price applies to calls made from this moment on.")
    rate = models.BigIntegerField(help_text="pUSD per use.")
    note = models.CharField(max_length=300, blank=True, help_text="Source, caveats.")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ServerToolPriceQuerySet.as_manager()

    class Meta:
        ordering = ["tool", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["tool", "effective_from"], name="servertoolprice_one_per_instant"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_tool_display()} from {timezone.localtime(self.effective_from):%Y-%m-%d %H:%M}"

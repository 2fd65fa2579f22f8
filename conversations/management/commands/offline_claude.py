"""``python manage.py offline_claude``: run the offline Claude (a stand-in for Claude) in the foreground."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from offline_claude.cli import add_arguments, options_from_args, serve


class Command(BaseCommand):
    """Serve the Messages API wire format locally; point ANTHROPIC_BASE_URL at it."""

    help = "Run the offline Claude: a local server speaking the Anthropic Messages API (not Claude)."

    def add_arguments(self, parser) -> None:  # noqa: D102 - Django hook
        add_arguments(parser)

    def handle(self, *args, **options) -> None:  # noqa: D102 - Django hook
        serve(options_from_args(_Namespace(options)))


class _Namespace:
    """Attribute access over Django's options dict, so the shared CLI code can read it."""

    def __init__(self, options: dict) -> None:
        self.__dict__.update(options)

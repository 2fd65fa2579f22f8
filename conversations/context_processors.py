from __future__ import annotations

from django.conf import settings


def claude_backend(request) -> dict:
    """Tells every page whether replies come from real Claude or the offline stand-in."""
    return {"claude_is_offline": not settings.ANTHROPIC_API_KEY}

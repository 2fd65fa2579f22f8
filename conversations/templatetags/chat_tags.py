from __future__ import annotations

from django import template

from conversations.rendering import MarkdownStream

register = template.Library()


@register.filter
def markdown_stream(text: str) -> MarkdownStream:
    """A streaming reply's text so far, rendered as the live stream renders it (completed blocks and
    the open end), so a page (re)loaded mid-reply looks like the page that watched it stream."""
    return MarkdownStream(text)

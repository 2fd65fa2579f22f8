"""Markdown to safe HTML, on the server: model output and user text are never trusted HTML."""

from __future__ import annotations

import html
import re
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

_formatter = HtmlFormatter(nowrap=True)

ALLOWED_TAGS = {
    "a", "blockquote", "br", "code", "del", "div", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "li", "ol", "p", "pre", "span", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul", "button",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "span": {"class"},
    "div": {"class"},
    "pre": {"class"},
    "th": {"class"},
    "td": {"class"},
    "button": {"type", "class", "data-copy", "aria-label"},
}


def _highlight(code: str, lang: str, attrs: str) -> str:
    try:
        lexer = get_lexer_by_name(lang) if lang else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return html.escape(code)
    return highlight(code, lexer, _formatter)


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    md = MarkdownIt(
        "commonmark", {"html": False, "linkify": False, "typographer": False, "highlight": _highlight}
    )
    md.enable(["table", "strikethrough"])
    default_fence = md.renderer.rules["fence"]

    def fence_with_copy_button(tokens, idx, options, env):
        block = default_fence(tokens, idx, options, env)
        button = '<button type="button" class="copy-code" data-copy aria-label="Copy code">Copy</button>'
        return f'<div class="code-block">{button}{block}</div>'

    md.renderer.rules["fence"] = fence_with_copy_button
    md.core.ruler.push("table_alignment_as_class", _table_alignment_as_class)
    return md


def _table_alignment_as_class(state) -> None:
    # markdown-it aligns table columns with style="text-align:…", which the Content-Security-Policy
    # refuses (no inline styles): say it with a class instead (app.css: .align-left/center/right).
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and (style := token.attrs.pop("style", None)):
            token.attrSet("class", f"align-{style.removeprefix('text-align:')}")


def render_markdown(text: str) -> str:
    """Rendered, sanitised HTML for `text` (raw HTML in the source is shown as text, never run)."""
    raw = _markdown().render(text)
    return nh3.clean(
        raw,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


TITLE_CHARS = 60
# The offline Claude's control words ("[[offline fault=500]]"): instructions to the stand-in, never text.
_CONTROL_WORDS = re.compile(r"\[\[offline\b[^\]]*\]\]", re.IGNORECASE)
_MARKDOWN_MARKS = re.compile(r"[*_`#>|~\[\]]+")
_LIST_MARKER = re.compile(r"^\s*(?:[-+]\s+|\d+[.)]\s+)")


def without_control_words(text: str) -> str:
    """`text` without the offline Claude's control words."""
    return _CONTROL_WORDS.sub(" ", text)


def clean_title(text: str) -> str:
    """A one-line plain-text title from `text` (a first message, or what Claude wrote): control words,
    markdown marks, surrounding quotes and control characters removed, at most TITLE_CHARS characters
    (cut at a word, with "…"). "" when nothing is left."""
    text = without_control_words(text)
    line = next((part for part in text.splitlines() if _MARKDOWN_MARKS.sub("", part).strip()), "")
    line = _LIST_MARKER.sub("", line)
    line = _MARKDOWN_MARKS.sub("", line)
    line = "".join(ch if ch.isprintable() else " " for ch in line)
    line = " ".join(line.split()).strip("\"'“”‘’ ")
    if line.lower().startswith("title:"):
        line = line[len("title:") :].strip()
    line = line.rstrip(".").strip()
    if len(line) <= TITLE_CHARS:
        return line
    cut = line[:TITLE_CHARS].rsplit(" ", 1)[0] if " " in line[:TITLE_CHARS] else line[:TITLE_CHARS]
    return cut.rstrip(",;:- ") + "…"

"""Markdown to safe HTML, on the server: model output and user text are never trusted HTML."""

from __future__ import annotations

import html
import re
from functools import lru_cache
from urllib.parse import urlsplit

import nh3
from django.utils.html import format_html
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
    return _clean(_markdown().render(text))


URL_CHARS = 2000
_URL_UNSAFE = re.compile(r"[\x00-\x20\x7f<>\"'`\\]")


def link_url(url: str) -> str:
    """`url` when it may be a link on the page (an absolute http(s) address of sensible length, with no
    character that could leave an attribute, and none that is invisible or turns the text's direction:
    an address shown or hovered must read as what it is), else ""."""
    url = str(url or "")
    if len(url) > URL_CHARS or _URL_UNSAFE.search(url) or not url.isprintable():
        return ""
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in ("http", "https") or not rest or rest.startswith("/"):
        return ""
    return url


# Where a citation goes in the source text before rendering: private-use characters no markdown rule
# touches (any in the reply's own text are removed first, so only these can be found afterwards).
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"
_MARKS = re.compile(f"{_MARK_OPEN}([0-9,]+){_MARK_CLOSE}")
_STRAY_MARKS = re.compile(f"[{_MARK_OPEN}{_MARK_CLOSE}]")


def render_cited(text: str, citations: list[dict], sources: list[dict]) -> str:
    """`text` rendered like `render_markdown`, with each citation as a numbered link to its source
    ("[1]", opening in a new tab) where the cited passage ends. The links are made here from the
    sources' checked addresses, after the sanitiser: nothing in a source can add markup."""
    if not citations:
        return render_markdown(text)
    by_end: dict[int, list[int]] = {}
    for citation in citations:
        at, number = citation.get("at"), citation.get("source")
        if isinstance(at, int) and isinstance(number, int) and 1 <= number <= len(sources):
            # The marker goes before the passage's trailing white space, against its last word.
            at = max(0, min(at, len(text)))
            while at > 0 and text[at - 1].isspace():
                at -= 1
            numbers = by_end.setdefault(at, [])
            if number not in numbers:
                numbers.append(number)
    marked, start = [], 0
    for at in sorted(by_end):
        marked.append(_STRAY_MARKS.sub("", text[start:at]))
        marked.append(f"{_MARK_OPEN}{','.join(map(str, by_end[at]))}{_MARK_CLOSE}")
        start = at
    marked.append(_STRAY_MARKS.sub("", text[start:]))

    def link(match: re.Match) -> str:
        return "".join(_citation_link(int(n), sources[int(n) - 1]) for n in match.group(1).split(","))

    return _STRAY_MARKS.sub("", _MARKS.sub(link, render_markdown("".join(marked))))


def _citation_link(number: int, source: dict) -> str:
    url = link_url(source.get("url", ""))
    title = str(source.get("title") or "")
    if not url:
        return format_html('<sup class="citation" title="{}">[{}]</sup>', title, number)
    return format_html(
        '<sup class="citation"><a href="{}" title="{}" target="_blank" rel="noopener noreferrer">[{}]</a></sup>',
        url,
        title,
        number,
    )


# Built once: configuring a sanitiser costs more than cleaning a streamed sentence with it.
_cleaner = nh3.Cleaner(
    tags=ALLOWED_TAGS,
    attributes=ALLOWED_ATTRIBUTES,
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer nofollow",
)


def _clean(raw: str) -> str:
    return _cleaner.clean(raw)


# The incomplete last line of a streaming reply is held back while it is nothing but markdown
# punctuation ("-", "1.", "##", "```"): shown early it would flash as a heading underline or a stray
# character and then change into something else.
_PUNCTUATION_ONLY = re.compile(r"[\s#>*_\-=+`~|:.)\d]*")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})", re.M)
_TABLE_DELIMITER = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_BULLET = re.compile(r"^\s*[*+-]\s", re.M)
_OPEN_LINK = re.compile(r"\[([^\]\n]*)(?:\]\([^)\s]*)?$")


def _display_tail(text: str) -> str:
    """The open end of a streaming reply as it should look for now: markers that are still open
    (`**bold`, `` `code``, an unfinished link) closed or hidden, so no literal `**` flashes by and the
    text grows by appending. Only for display: the finished reply is rendered from its real text."""
    head, _, last = text.rpartition("\n")
    if last and _PUNCTUATION_ONLY.fullmatch(last):
        text = head + ("\n" if head else "")
    if len(_FENCE.findall(text)) % 2:
        return text  # inside an open code fence: markdown-it renders it to the end as code already
    # A table's first rows are held back until its delimiter row (`|---|`) makes them a table: shown
    # before, they would read as a paragraph of pipes and then change into the table.
    lines = text.split("\n")
    end = len(lines) - 1 if lines[-1] == "" else len(lines)
    first_row = end
    while first_row and lines[first_row - 1].lstrip().startswith("|"):
        first_row -= 1
    if first_row < end and not any(_TABLE_DELIMITER.match(line) for line in lines[first_row:end]):
        text = "\n".join(lines[:first_row]) + ("\n" if first_row else "")
    paragraph = text[text.rfind("\n\n") + 1 :]
    body = paragraph.rstrip("*_~`[")
    cut = len(paragraph) - len(body)
    if cut:
        text, paragraph = text[: len(text) - cut], body
    if (link := _OPEN_LINK.search(paragraph)) is not None:
        text = text[: len(text) - len(paragraph) + link.start()] + link.group(1)
        paragraph = paragraph[: link.start()] + link.group(1)
    if paragraph.count("`") % 2:
        return text + "`"
    plain = _BULLET.sub("", _CODE_SPAN.sub("", paragraph))
    closers = ""
    if plain.count("~~") % 2:
        closers += "~~"
    if plain.count("**") % 2:
        closers += "**"
    if plain.replace("**", "").count("*") % 2:
        closers = "*" + closers
    return text + closers


class MarkdownStream:
    """A growing reply rendered incrementally, with the work per update bounded by its open end.

    Top-level blocks that can no longer change are rendered once and handed out as `completed`; only
    the text after them (the open last block) is parsed and rendered again on each update. The
    concatenation of every completed piece and the final render of the rest equals
    `render_markdown(whole text)`, so the finished reply replaces the streamed one without a re-flow.
    (One exception: a link reference definition streamed after a block that uses it.)
    """

    def __init__(self, text: str = "") -> None:
        self.completed: list[str] = []  # sanitised HTML of every block that can no longer change
        self.open_text = ""  # the source after those blocks
        # The open paragraph's settled head, rendered (see `open_html`).
        self._settled_src = ""
        self._settled_html = ""
        if text:
            self.feed(text)

    def feed(self, chunk: str) -> str:
        """Add `chunk`; returns the HTML of blocks it completed (to append after the earlier ones)."""
        self.open_text += chunk
        text = self.open_text
        if "\n" not in text:
            return ""  # one line is one block, the open one (the usual case: a paragraph being written)
        blocks = [t for t in _blocks(text) if t.level == 0 and t.nesting >= 0 and t.map]
        # A block is complete once the next one has started on a complete line (a half line can still
        # turn into something else: `-` into a list item or a heading underline), or, for blocks that
        # a blank line ends for good, as soon as the next one has started after that blank line.
        lines = text.count("\n")
        last_start = None
        for before, block in zip(reversed(blocks[:-1]), reversed(blocks[1:]), strict=True):
            start = block.map[0]
            if lines >= start + 1 or (before.map[1] < start and before.type in _ENDED_BY_A_BLANK_LINE):
                last_start = start
                break
        if last_start is None:
            return ""
        offset = _line_offset(text, last_start)
        html = render_markdown(text[:offset])
        self.completed.append(html)
        self.open_text = text[offset:]
        return html

    def open_html(self) -> str:
        """The open end, rendered for display while streaming (open markers closed or held back).

        The open end is most often one long paragraph, and inline markdown is the slow part: its
        settled head (its words up to the last point no marker is open) is rendered once and kept, so
        an update renders only the words written since."""
        text = self.open_text
        if not _PLAIN_LINE.fullmatch(text):  # (a plain line is shown as it is: no need to look)
            text = _display_tail(text)
        if _ONE_LINE_PARAGRAPH.fullmatch(text):
            content = text.strip()  # what the block parser would find, without running it on every frame
        else:
            blocks = _blocks(text)
            if [t.type for t in blocks] != ["paragraph_open", "inline", "paragraph_close"]:
                return _clean(_markdown().render(text))
            content = blocks[1].content
        if not content.startswith(self._settled_src):
            self._settled_src, self._settled_html = "", ""
        rest = content[len(self._settled_src) :]
        end = _last_settled(rest)
        if end:
            self._settled_html += _inline_html(rest[:end])
            self._settled_src += rest[:end]
            rest = rest[end:]
        return f"<p>{self._settled_html}{_inline_html(rest)}</p>\n"

    def final_open_html(self) -> str:
        """The open end rendered exactly (the reply ended)."""
        return render_markdown(self.open_text)

    def completed_html(self) -> str:
        return "".join(self.completed)


# A line that can only be a paragraph: it starts with a letter (no block marker, indent, HTML or link
# definition can), and nothing follows it.
_ONE_LINE_PARAGRAPH = re.compile(r"[^\W\d_][^\n]*\n?")

# One line of a paragraph that `_display_tail` would leave as it is: it starts with a letter and has none
# of the characters whose markers that function closes or holds back (nor a line break).
_PLAIN_LINE = re.compile(r"[^\W\d_][^\n*_~`\[|]*")

# Inline text that renders as itself: ASCII letters, digits, spaces and the punctuation that no inline
# rule of markdown-it acts on (its rules all start at ASCII characters), and any printable character
# beyond ASCII (`isprintable` leaves out the no-break space, which the sanitiser writes as an entity).
# Most of a reply's sentences are such text, and rendering one costs more than the rest of a frame.
_PLAIN_INLINE = re.compile(r"(?:[^\x00-\x7f]|[A-Za-z0-9 !\"#$%'()+,\-./:;=?@^{|}])*")


def _renders_as_itself(text: str) -> bool:
    return _PLAIN_INLINE.fullmatch(text) is not None and text.isprintable()


def _inline_html(text: str) -> str:
    """`text` rendered as inline markdown and sanitised."""
    if _renders_as_itself(text):
        return text
    return _clean(_markdown().renderInline(text))


# Top-level blocks that nothing after a blank line can continue (lists and indented code can be).
_ENDED_BY_A_BLANK_LINE = {"paragraph_open", "heading_open", "fence", "hr", "table_open", "blockquote_open"}


def _blocks(text: str) -> list:
    """The block tokens of `text`, without the (slow) inline parsing."""
    tokens: list = []
    md = _markdown()
    md.block.parse(text, md, {}, tokens)
    return tokens


_WORD_END = re.compile(r" +(?=\S)")
_LEFT_TO_THE_WHOLE = re.compile(r"[\[\]<>\\]")
_MARKER_RUN = re.compile(r"\*+|_+|`+|~+")


def _last_settled(text: str) -> int:
    """Where the longest head of `text` that ends between two words with no inline marker open ends
    (0: none). Its runs of emphasis, strikethrough and code markers must close in order what they
    opened (a run that can close, after a non-space, closing the last open run of the same character and
    length; one that can only open, before a non-space, opening), and it holds no link, raw `<` or escape
    (those are left to the whole render). What follows such a head cannot change how it renders."""
    stop = _LEFT_TO_THE_WHOLE.search(text)
    limit = stop.start() if stop else len(text)
    settled = start = 0
    open_runs: list[str] = []
    for match in _WORD_END.finditer(text, 0, limit):
        end = match.end()
        for run in _MARKER_RUN.finditer(text, start, end):
            marker, at = run.group(), run.start()
            if open_runs and open_runs[-1] == marker and at and not text[at - 1].isspace():
                open_runs.pop()
            elif run.end() < len(text) and not text[run.end()].isspace():
                open_runs.append(marker)
            else:
                return settled  # a run that neither closes nor opens: left to the whole render
        if not open_runs:
            settled = end
        start = end
    return settled


def _line_offset(text: str, line: int) -> int:
    offset = 0
    for _ in range(line):
        offset = text.index("\n", offset) + 1
    return offset


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


def host_of(url: str) -> str:
    """The host name of `url` ("" when it has none, or one with an invisible or direction-changing
    character: shown beside a link, a host must read as what it is)."""
    try:
        host = (urlsplit(url).hostname or "")[:253]
    except ValueError:
        return ""
    return host if host.isprintable() else ""


def shown_text(value: object, limit: int) -> str:
    """`value` as one line of text to show: control, invisible and direction-changing characters
    (Unicode's non-printable ones) become spaces, white space is collapsed, at most `limit` characters."""
    text = "".join(ch if ch.isprintable() else " " for ch in str(value or ""))
    return " ".join(text.split())[:limit]

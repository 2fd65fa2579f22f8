"""Full-text search over a person's own conversations: titles and message text, with highlighted snippets.

The message index lives in the database and follows every write to a message's text by itself, whoever
makes it (a reply's checkpoints while it streams, its end, a retry, an edit, a delete):

- SQLite (the embedded default): an FTS5 table with external content (the message table), kept in step
  by triggers on insert, on update of `content` and on delete.
- PostgreSQL: a stored generated `tsvector` column on the message table with a GIN index.

Both use language-neutral word splitting (no stemming): a team writes in many languages. A query is
split into words here (nothing a person types reaches the query syntax); every word must occur, the
last one as a prefix, so results show up while a word is still being typed. Snippets are cut by the
database around the hits with private-use marker characters, then escaped here and the markers turned
into <mark>: the HTML returned is safe to show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape
from urllib.parse import urlencode

from django.db import connection
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe

from .models import Conversation, Message, annotate_branches, message_dom_id

FTS_TABLE = "conversations_message_fts"
# Longest text indexed per message on PostgreSQL (a tsvector holds at most 1 MB); replies are far shorter.
PG_INDEXED_CHARS = 500_000
MAX_WORDS = 8
MAX_QUERY_CHARS = 200
RESULTS = 50
TITLE_RESULTS = 20

_OPEN, _CLOSE = "\ue000", "\ue001"
_WORD = re.compile(r"[^\W_]+")

_SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_insert AFTER INSERT ON conversations_message BEGIN
        INSERT INTO {FTS_TABLE}(rowid, content) VALUES (new.id, new.content);
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_delete AFTER DELETE ON conversations_message BEGIN
        INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content) VALUES ('delete', old.id, old.content);
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_update AFTER UPDATE OF content ON conversations_message
    WHEN old.content IS NOT new.content BEGIN
        INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content) VALUES ('delete', old.id, old.content);
        INSERT INTO {FTS_TABLE}(rowid, content) VALUES (new.id, new.content);
    END""",
]


def index_install(conn=None) -> None:
    """Create the message index if it is missing (idempotent), and fill it when it was.

    Run by the migration that introduces it and after every `migrate`: on SQLite, Django rebuilds a
    table for some schema changes (drop, copy, rename), which drops its triggers; this puts them back.
    """
    conn = conn or connection
    with conn.cursor() as cursor:
        if conn.vendor == "sqlite":
            cursor.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE %s",
                [f"{FTS_TABLE}_%"],
            )
            complete = cursor.fetchone()[0] == len(_SQLITE_TRIGGERS)
            cursor.execute(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5(content, "
                "content='conversations_message', content_rowid='id', tokenize='unicode61 remove_diacritics 2', "
                # Prefix indexes: the last word is searched as a prefix while it is typed; without them
                # a short prefix of common words merges the lists of every word it starts.
                "prefix='2 3 4')"
            )
            for statement in _SQLITE_TRIGGERS:
                cursor.execute(statement)
            if not complete:
                cursor.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")
        elif conn.vendor == "postgresql":
            cursor.execute(
                "ALTER TABLE conversations_message ADD COLUMN IF NOT EXISTS search_vector tsvector "
                f"GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, left(content, {PG_INDEXED_CHARS}))) STORED"
            )
            cursor.execute(
                "CREATE INDEX IF NOT EXISTS message_search ON conversations_message USING GIN (search_vector)"
            )


def index_repair(conn=None) -> None:
    """On SQLite, reinstall the index's triggers if the index exists but a trigger went missing."""
    conn = conn or connection
    if conn.vendor != "sqlite":
        return  # PostgreSQL never rebuilds a table behind the generated column's back
    with conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = %s", [FTS_TABLE])
        if cursor.fetchone()[0]:
            index_install(conn)


def index_uninstall(conn=None) -> None:
    conn = conn or connection
    with conn.cursor() as cursor:
        if conn.vendor == "sqlite":
            for suffix in ("insert", "delete", "update"):
                cursor.execute(f"DROP TRIGGER IF EXISTS {FTS_TABLE}_{suffix}")
            cursor.execute(f"DROP TABLE IF EXISTS {FTS_TABLE}")
        elif conn.vendor == "postgresql":
            cursor.execute("DROP INDEX IF EXISTS message_search")
            cursor.execute("ALTER TABLE conversations_message DROP COLUMN IF EXISTS search_vector")


class SearchError(ValueError):
    """A query that cannot be searched for; str(exc) says why."""


@dataclass(frozen=True)
class MessageHit:
    message_id: int
    conversation_id: int
    conversation_title: str
    role: str
    snippet: SafeString
    archived: bool
    # False for a version not on the conversation's active branch (an earlier edit or regeneration):
    # it opens through `message_show`, which switches to its branch first.
    active: bool = True
    query: str = ""

    @property
    def url(self) -> str:
        return hit_url(conversation_id=self.conversation_id, message_id=self.message_id, query=self.query)


def hit_url(*, conversation_id: int, message_id: int, query: str = "", version_id: int | None = None) -> str:
    """The conversation's page ending at a message (pages show the latest messages before `before`),
    which the page highlights (`found`, the words of `query` marked in it); `version` names the version
    a search hit's opening switched to, which the page mentions (`version_note`)."""
    params: dict[str, object] = {"before": message_id + 1, "found": message_id}
    if query:
        params["q"] = query[:MAX_QUERY_CHARS]
    if version_id:
        params["version"] = version_id
    page = reverse("conversation", args=[conversation_id])
    return f"{page}?{urlencode(params)}#{message_dom_id(message_id)}"


def version_note(*, conversation: Conversation, version_id: int, found_id: int | None) -> str:
    """The sentence a page opened at a search hit shows once opening it switched to the version
    `version_id` (on the branch shown now; else nothing): which version of which message is shown."""
    version = conversation.messages.active().filter(pk=version_id).first()
    if version is None:
        return ""
    annotate_branches([version])
    position = f"version {version.branch_index} of {version.branch_count}"
    if version.pk == found_id:
        return f"Showing {position} of this message, where your search matched."
    return f"Showing {position} of an earlier message: the branch where your search matched."


@dataclass(frozen=True)
class TitleHit:
    conversation: Conversation
    title: SafeString


@dataclass(frozen=True)
class Results:
    query: str
    words: list[str]
    titles: list[TitleHit]
    messages: list[MessageHit]


def query_words(query: object) -> list[str]:
    """The words of a query, lower-cased, at most MAX_WORDS; SearchError if there are none."""
    if not isinstance(query, str) or len(query) > MAX_QUERY_CHARS:
        raise SearchError(f"Search for at most {MAX_QUERY_CHARS} characters.")
    words = [word.lower() for word in _WORD.findall(query)][:MAX_WORDS]
    if not words:
        raise SearchError("Type a word to search for.")
    return words


def marked_html(text: str) -> SafeString:
    """`text` with its marked stretches as <mark>, everything else escaped (markers never unbalance tags)."""
    out: list[str] = []
    open_ = False
    for part in re.split(f"([{_OPEN}{_CLOSE}])", text):
        if part == _OPEN:
            if not open_:
                out.append("<mark>")
                open_ = True
        elif part == _CLOSE:
            if open_:
                out.append("</mark>")
                open_ = False
        else:
            out.append(escape(part, quote=False))
    if open_:
        out.append("</mark>")
    return mark_safe("".join(out))  # noqa: S308  (every piece of text above is escaped)


def _strip_markers(text: str) -> str:
    return text.replace(_OPEN, "").replace(_CLOSE, "")


def _words_pattern(words: list[str]) -> re.Pattern:
    """The query's words where they start a word of a text: whole words, the last one as a prefix."""
    whole = [re.escape(w) + r"(?![^\W_])" for w in words[:-1]] + [re.escape(words[-1]) + r"[^\W_]*"]
    return re.compile(r"(?<![^\W_])(?:" + "|".join(whole) + ")", re.IGNORECASE)


def _mark(text: str, words: list[str]) -> str:
    return _words_pattern(words).sub(lambda m: f"{_OPEN}{m.group(0)}{_CLOSE}", _strip_markers(text))


def highlight(text: str, words: list[str]) -> SafeString:
    """`text` escaped, with the words (the last as a prefix) that start a word in it as <mark>."""
    return marked_html(_mark(text, words)) if words else marked_html(_strip_markers(text))


# Markdown syntax a snippet shows as plain text (its words and the hit markers stay).
_MARKDOWN = [
    (re.compile(r"!?\[([^\]]*)\]\([^)]*\)"), r"\1"),  # [text](url), ![alt](src): the text
    (re.compile(r"<((?:https?|mailto):[^>\s]+)>"), r"\1"),  # <https://…>: the address
    (re.compile(r"(?:`{3,}|~{3,})[\w+#.-]*"), " "),  # code fences, with their language
    (re.compile(r"`+"), ""),  # inline code
    (re.compile(r"\*\*|__|~~"), ""),  # bold, strikethrough
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),  # *italic*
    (re.compile(r"(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])"), r"\1"),  # _italic_ (not snake_case)
    (re.compile(r"^[ \t]*(?:#{1,6}|>+|[*+-]|\d+[.)])[ \t]+", re.MULTILINE), ""),  # headings, quotes, lists
    (re.compile(r"\|?(?:\s*:?-{3,}:?\s*\|)+(?:\s*:?-{3,}:?\s*)?"), " "),  # a table's rule row
    (re.compile(r"\s*\|\s*"), " · "),  # table cells
]


def plain_snippet(text: str) -> str:
    """A snippet (hit markers included) with its markdown syntax removed and its whitespace collapsed:
    what the reader saw, not how it was written."""
    for pattern, replacement in _MARKDOWN:
        text = pattern.sub(replacement, text)
    text = re.sub(r"·(?:\s*·)+", "·", " ".join(text.split()))
    return re.sub(r"^(?:· )+|(?: ·)+$", "", text).strip()


def snippet_marked(text: str, words: list[str], *, around: int = 90) -> str:
    """About 2 x `around` characters of `text` around its first hit, hits between markers (unescaped,
    markdown and line breaks left for `plain_snippet`)."""
    found = _words_pattern(words).search(text)
    start = max(0, found.start() - around) if found else 0
    end = min(len(text), (found.end() if found else 0) + around)
    piece = text[start:end]  # its lines kept: `plain_snippet` reads line starts, then joins them
    return ("…" if start else "") + _mark(piece, words) + ("…" if end < len(text) else "")


def _fts5_query(words: list[str]) -> str:
    # Each word quoted (it holds letters and digits only), the last one a prefix: "alpha" "beta"*
    return " ".join(f'"{w}"' for w in words[:-1]) + f' "{words[-1]}"*'


def _tsquery(words: list[str]) -> str:
    return " & ".join(f"'{w}'" for w in words[:-1]) + (" & " if len(words) > 1 else "") + f"'{words[-1]}':*"


def _message_rows(user_id: int, words: list[str], limit: int) -> list[tuple]:
    """(message id, conversation id, title, role, marked snippet, archived, on the active branch) of the
    newest matches."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                f"""SELECT m.id, m.conversation_id, c.title, m.role,
                           snippet({FTS_TABLE}, 0, %s, %s, '…', 16), c.archived, m.active
                    FROM {FTS_TABLE} f
                    JOIN conversations_message m ON m.id = f.rowid
                    JOIN conversations_conversation c ON c.id = m.conversation_id
                    WHERE {FTS_TABLE} MATCH %s AND c.owner_id = %s
                    ORDER BY f.rowid DESC LIMIT %s""",
                [_OPEN, _CLOSE, _fts5_query(words), user_id, limit],
            )
            return cursor.fetchall()
        if connection.vendor == "postgresql":
            # The newest matches through the GIN index. Snippets are cut here, not by ts_headline, which
            # drops anything that looks like an HTML tag (code people write, e.g. "<div>").
            cursor.execute(
                """SELECT m.id, m.conversation_id, c.title, m.role, left(m.content, %s), c.archived, m.active
                   FROM conversations_message m
                   JOIN conversations_conversation c ON c.id = m.conversation_id
                   WHERE m.search_vector @@ to_tsquery('simple'::regconfig, %s) AND c.owner_id = %s
                   ORDER BY m.id DESC LIMIT %s""",
                [PG_INDEXED_CHARS, _tsquery(words), user_id, limit],
            )
            return [(*row[:4], snippet_marked(row[4], words), *row[5:]) for row in cursor.fetchall()]
    # Any other database: a plain scan (correct, not fast).
    query = Message.objects.filter(conversation__owner_id=user_id)
    for word in words:
        query = query.filter(content__icontains=word)
    rows = []
    for message in query.select_related("conversation").order_by("-id")[:limit]:
        rows.append(
            (
                message.pk,
                message.conversation_id,
                message.conversation.title,
                message.role,
                snippet_marked(message.content, words),
                message.conversation.archived,
                message.active,
            )
        )
    return rows


def search(*, user, query: object, limit: int = RESULTS) -> Results:
    """The user's conversations whose title has every word of `query`, and their newest messages that
    have every word, with highlighted snippets. Archived conversations are searched too (and marked)."""
    words = query_words(query)
    titles = Conversation.objects.owned_by(user)
    for word in words:
        titles = titles.filter(title__icontains=word)
    title_hits = [TitleHit(c, highlight(c.display_title, words)) for c in titles[:TITLE_RESULTS]]
    rows = _message_rows(user.pk, words, limit)
    message_hits = [
        MessageHit(
            message_id=pk,
            conversation_id=conversation_id,
            conversation_title=title or "New conversation",
            role=role,
            snippet=marked_html(plain_snippet(snippet)),
            archived=bool(archived),
            active=bool(active),
            query=str(query),
        )
        for pk, conversation_id, title, role, snippet, archived, active in rows
    ]
    return Results(query=str(query), words=words, titles=title_hits, messages=message_hits)

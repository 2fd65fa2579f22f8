"""The incremental markdown renderer: what streams is exactly what the finished reply shows."""

from __future__ import annotations

import random

import pytest

from conversations.rendering import MarkdownStream, render_markdown

DOCUMENTS = [
    "The capital of **France** is Paris.\n\nIt has *many* museums.\n",
    "# Plan\n\n1. **Measure** twice\n2. Cut once\n\n- a\n- b\n\n- loose c\n\nDone.",
    "Here is code:\n\n```python\ndef f(x):\n    return x * 2\n\n\nprint(f(2))\n```\n\nAnd more text after it.\n",
    "Intro\n```js\nlet a = 1;\n```\nOutro with `inline code` and a [link](https://example.org).",
    "A | B\n--|--\n1 | 2\n3 | 4\n\nAfter the table.\n",
    "Para line one\nline two\n===\n\nSetext above.\n\n> quoted\nlazy line\n\n    indented code\n\nend",
    "- item one\n\n  continued paragraph in the item\n\n- item two\n  - nested\n    - deeper\n\nText\n",
    "Title\n---\n\n***\n\n1) one\n2) two\n\n10. ten\n11. eleven\n",
    "~~~\nunclosed fence\n- not a list\n",
    "Line with trailing spaces  \nhard break\n\n<b>raw html</b> stays text\n\n| x |\n|---|\n| y |\n",
    "- a\n- b\nlazy\n\n\n\n- c after blank lines\n\n```\ncode\n```\n- d\n",
]


def stream_render(text: str, cuts: list[int]) -> str:
    stream = MarkdownStream()
    pieces, start = [], 0
    for cut in [*cuts, len(text)]:
        pieces.append(stream.feed(text[start:cut]))
        start = cut
    return "".join(pieces) + stream.final_open_html()


@pytest.mark.parametrize("text", DOCUMENTS)
def test_appended_blocks_and_the_open_end_equal_the_full_render_at_every_split(text):
    full = render_markdown(text)
    for cut in range(len(text) + 1):
        assert stream_render(text, [cut]) == full, f"split at {cut}: {text[:cut]!r} | {text[cut:]!r}"


@pytest.mark.parametrize("seed", range(40))
def test_appended_blocks_equal_the_full_render_for_random_chunkings(seed):
    rng = random.Random(seed)
    text = "\n\n".join(rng.sample(DOCUMENTS, 4)) + rng.choice(["", "\n", "\n\ntail"])
    cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 60))))
    assert stream_render(text, cuts) == render_markdown(text)
    # One character at a time, as a slow stream delivers it.
    assert stream_render(text, list(range(1, len(text)))) == render_markdown(text)


PROSE = [
    *DOCUMENTS,
    "Émile wrote: it *works* here. Then `code` and **bold** text; a [link](https://example.org) too.  \n",
    "Why? Because _this_ is ~~struck~~ and 3 < 4 > 2 & so on: done! Next sentence follows here.",
    "Straße und Ärger. 日本語の文章です。 Last one with trailing spaces   ",
]


@pytest.mark.parametrize("text", PROSE)
def test_the_one_line_shortcut_shows_the_open_end_exactly_as_parsing_it_would(text, monkeypatch):
    from conversations import rendering

    fast, parsed = MarkdownStream(), MarkdownStream()
    for n, char in enumerate(text):
        fast.feed(char)
        parsed.feed(char)
        expected = fast.open_html()
        with monkeypatch.context() as patched:  # the same stream with every line left to the block parser
            patched.setattr(rendering, "_ONE_LINE_PARAGRAPH", rendering.re.compile("(?!)"))
            assert parsed.open_html() == expected, f"after {text[: n + 1]!r}"
        assert fast.completed == parsed.completed


def test_completed_blocks_leave_only_the_open_end_to_render_again():
    stream = MarkdownStream()
    for n in range(200):
        stream.feed(f"Paragraph number {n} with **bold** text.\n\n")
    assert len(stream.completed) > 150
    assert len(stream.open_text) < 100


def test_open_markers_are_closed_or_held_back_while_streaming():
    for partial, shown in [
        ("The capital is **Par", "<strong>Par</strong>"),
        ("Use `pri", "<code>pri</code>"),
        ("Some *ital", "<em>ital</em>"),
        ("See [the docs](https://exa", "See the docs"),
        ("Para\n-", "<p>Para</p>"),
        ("Text **", "<p>Text</p>"),
        ("Before\n\n| A | B |\n| 1 |", "<p>Before</p>"),
        ("| A | B |\n|---|---|\n| 1 |", "<th>A</th>"),
    ]:
        stream = MarkdownStream(partial)
        html = stream.completed_html() + stream.open_html()
        assert shown in html, (partial, html)
        assert "**" not in html and "`" not in html


def test_streamed_html_is_sanitised_like_the_final_render():
    stream = MarkdownStream("<script>alert(1)</script>\n\n[x](javascript:alert(1)) **open")
    html = stream.completed_html() + stream.open_html()
    assert "<script" not in html and 'href="javascript' not in html and "&lt;script" in html


# Letters (some not ASCII), digits, spaces and every character markdown or HTML gives a meaning to.
ALPHABET = "aaaabcdeéßж日 1234567890    ,.;:?!'\"()/-+*_~`[]<>&#=|\\@^{}$%\n\t"
MARKUP = ["**b**", "~~s~~", "`c`", "[l](https://x.org)", "<b>", "&amp;", "_e_", "\\*", "<https://x.org>", "&"]
# Markers opened in one word and closed in a later one.
SPANNING = [
    "**open",
    "close**",
    "`open",
    "close`",
    "*it",
    "it*",
    "_it",
    "it_",
    "~~del",
    "del~~",
    "[link",
    "text](https://x.org)",
    "<span",
    "x>",
    "\\",
    "a\\",
]
PLAIN = "abcdefghijklmnopqrstuvwxyzéßж日0123456789⟦⟧—…“”😀\u0301\xa0\u2028\u200b\u00ad\ufeff"


@pytest.mark.parametrize("seed", range(60))
def test_plain_text_shortcuts_show_every_prefix_exactly_as_the_full_render_would(seed, monkeypatch):
    """A plain line skips `_display_tail` and plain inline text skips markdown-it and the sanitiser; with
    both shortcuts turned off the same stream must show the same HTML after every character."""
    from conversations import rendering

    rng = random.Random(seed)
    words = [
        "".join(rng.choice(PLAIN if rng.random() < 0.8 else ALPHABET) for _ in range(rng.randint(1, 9)))
        + rng.choice(["", "", "", ".", ",", "?", ";"])
        if rng.random() < 0.9
        else rng.choice(MARKUP)
        for _ in range(60)
    ]
    text = rng.choice(["The ", "Yes. ", "", "Über "]) + " ".join(words)
    fast, full = MarkdownStream(), MarkdownStream()
    never = rendering.re.compile("(?!)")
    for n, char in enumerate(text):
        fast.feed(char)
        full.feed(char)
        expected = fast.open_html()
        with monkeypatch.context() as patched:
            patched.setattr(rendering, "_PLAIN_LINE", never)
            patched.setattr(rendering, "_PLAIN_INLINE", never)
            assert full.open_html() == expected, f"after {text[: n + 1]!r}"


@pytest.mark.parametrize("seed", range(20))
def test_text_the_plain_inline_shortcut_takes_renders_as_itself(seed):
    from conversations.rendering import _clean, _markdown, _renders_as_itself

    rng = random.Random(seed)
    taken = 0
    for _ in range(300):
        text = "".join(rng.choice([*ALPHABET, *PLAIN * 3, *MARKUP]) for _ in range(rng.randint(0, 30)))
        if _renders_as_itself(text):
            taken += len(text) > 5
            assert _clean(_markdown().renderInline(text)) == text, repr(text)
    assert taken  # the alphabet makes some plain text in every seed


@pytest.mark.parametrize("seed", range(60))
def test_settled_words_are_shown_as_rendering_the_whole_open_paragraph_would_show_them(seed, monkeypatch):
    """The open paragraph's settled head is rendered once and kept; the HTML shown after every character
    must be what rendering the whole paragraph each time would show."""
    from conversations import rendering

    rng = random.Random(seed)
    words = [
        rng.choice(MARKUP + SPANNING)
        if rng.random() < 0.3
        else "".join(rng.choice(PLAIN[:30]) for _ in range(rng.randint(1, 7)))
        for _ in range(50)
    ]
    text = rng.choice(["The ", "Yes. ", "Über "]) + " ".join(
        w + rng.choice(["", "", ".", ",", ":"]) for w in words
    )
    kept, whole = MarkdownStream(), MarkdownStream()
    for n, char in enumerate(text):
        kept.feed(char)
        whole.feed(char)
        expected = kept.open_html()
        with monkeypatch.context() as patched:  # nothing settles: the open paragraph is rendered whole
            patched.setattr(rendering, "_last_settled", lambda _text: 0)
            assert whole.open_html() == expected, f"after {text[: n + 1]!r}"

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

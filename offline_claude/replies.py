"""Deterministic reply text: reads like a helpful answer, quotes the user, and demos markdown.

Everything here is a pure function of its arguments (the seed comes from a hash of the request), so
the same request always yields the same reply, and different prompts yield visibly different replies.
"""

from __future__ import annotations

import random
import re

from .tokenizer import count_tokens, split_pieces

_STOPWORDS = set(
    """a an the and or but if of to in on at by for with about from into over under is are was were be
    been being do does did doing have has had i me my you your we our they them their it its this that
    these those what which who whom how why when where can could would should will shall may might must
    please tell explain show give write make let lets let's some any more most very just also so than
    then there here as not no yes up out get got like want need know think use using one two into
    compare comparison versus vs difference differences between code function example script snippet
    implement program short brief""".split()
)

_LANGS = [
    ("python", ("python", "django", "pytest", "asyncio", "pandas")),
    ("javascript", ("javascript", "js", "node", "react", "browser")),
    ("typescript", ("typescript", "ts")),
    ("sql", ("sql", "query", "postgres", "sqlite", "database")),
    ("bash", ("bash", "shell", "script", "command line", "terminal")),
    ("rust", ("rust", "cargo")),
    ("go", ("golang", " go ")),
    ("html", ("html", "htmx", "markup")),
    ("css", ("css", "stylesheet")),
]
_CODE_WORDS = re.compile(
    r"\b(code|function|script|implement|program|snippet|class|regex|algorithm|example in|write a)\b", re.I
)
_COMPARE_WORDS = re.compile(
    r"\b(compare|comparison|versus|vs\.?|difference between|differences|pros and cons|table)\b", re.I
)
_TITLE_WORDS = re.compile(r"\btitle\b", re.I)

_OPENERS = [
    'You asked: "{quote}". Here is a clear, practical answer.',
    'Good question — "{quote}". Let me walk through it step by step.',
    'On "{quote}": here is how I would think about it.',
    'You wrote "{quote}". Below is a structured answer you can act on.',
]
_FOLLOWUP = [
    "Building on what we discussed earlier (you mentioned “{prev}”), ",
    "Picking up the thread from “{prev}”, ",
    "Continuing from your earlier point about “{prev}”, ",
]
_BODY = [
    "The key idea behind {topic} is to start from the simplest version that works and then refine it "
    "where measurements show it matters.",
    "When people look at {topic}, the most useful first step is to separate what must be true from what "
    "is merely convenient.",
    "A good way to approach {topic} is to name the constraints first, then pick the approach that "
    "satisfies them with the least moving parts.",
    "With {topic}, clarity beats cleverness: small, well-named pieces are easier to test and to change.",
]
_BULLET_INTROS = ["Things to keep in mind:", "A short checklist:", "The main points:", "In practice:"]
_BULLETS = [
    "**Start small** — get a minimal version of {w} working end to end before optimising.",
    "**Measure** — check how {w} behaves with real inputs instead of guessing.",
    "**Handle failure** — decide what should happen when {w} goes wrong, and test that path.",
    "**Keep it readable** — future you will thank present you for clear names around {w}.",
    "**Write it down** — a few lines of notes on {w} save hours later.",
    "**Iterate** — revisit {w} once you have feedback, not before.",
]
_CLOSERS = [
    "If you share more detail about your situation, I can tailor this further.",
    "Let me know which part you would like to explore in more depth.",
    "I hope this helps — happy to go deeper on any of these points.",
    "Would you like a worked example next?",
]
_PADDING = [
    "Another angle on {w} is the trade-off between speed and certainty: moving fast is fine as long as "
    "mistakes are cheap to undo.",
    "It also helps to think about {w} from the point of view of the person who maintains it a year from now.",
    "In many real projects, {w} turns out to depend on assumptions nobody wrote down, so listing them is "
    "time well spent.",
    "A useful habit with {w} is to keep one small, reproducible example at hand and to re-run it after "
    "every change.",
    "Finally, remember that {w} rarely needs to be perfect on the first try; it needs to be correct, "
    "observable and easy to improve.",
    "Teams that succeed with {w} usually agree early on what “done” means and how they will check it.",
]


def salient_words(text: str, limit: int = 6) -> list[str]:
    """The first distinct non-stopwords of ``text`` (used to build topics and titles)."""
    seen: list[str] = []
    for word in re.findall(r"[A-Za-z][A-Za-z0-9_+#.-]*", text):
        w = word.strip(".-").lower()
        if len(w) < 2 or w in _STOPWORDS or w in seen:
            continue
        seen.append(w)
        if len(seen) >= limit:
            break
    return seen


def quote_of(text: str, max_words: int = 14) -> str:
    """The user's words, shortened to ``max_words`` and flattened to one line, for quoting."""
    words = text.split()
    short = " ".join(words[:max_words])
    if len(words) > max_words:
        short += " …"
    return short.replace('"', "'")


def _language(text: str) -> str:
    low = f" {text.lower()} "
    for lang, keys in _LANGS:
        if any(k in low for k in keys):
            return lang
    return "python"


def _code_block(lang: str, words: list[str], rng: random.Random) -> str:
    name = "_".join(words[:2]) or "example"
    name = re.sub(r"\W", "_", name)
    if lang == "python":
        body = (
            f"def {name}(items: list[str]) -> dict[str, int]:\n"
            f'    """Count how often each item appears ({" ".join(words[:3]) or "demo"})."""\n'
            "    counts: dict[str, int] = {}\n"
            "    for item in items:\n"
            "        counts[item] = counts.get(item, 0) + 1\n"
            "    return counts\n\n\n"
            f'print({name}(["a", "b", "a"]))  # {{\'a\': 2, \'b\': 1}}'
        )
    elif lang in ("javascript", "typescript"):
        ann = ": string[]" if lang == "typescript" else ""
        body = (
            f"function {name}(items{ann}) {{\n"
            "  const counts = new Map();\n"
            "  for (const item of items) counts.set(item, (counts.get(item) ?? 0) + 1);\n"
            "  return counts;\n"
            "}\n\n"
            f'console.log({name}(["a", "b", "a"]));'
        )
    elif lang == "sql":
        body = (
            f"-- {' '.join(words[:3]) or 'demo'}\n"
            "SELECT item, COUNT(*) AS n\nFROM events\nGROUP BY item\nORDER BY n DESC\nLIMIT 10;"
        )
    elif lang == "bash":
        body = (
            f'#!/usr/bin/env bash\nset -euo pipefail\n# {name}\nsort "$1" | uniq -c | sort -rn | head -n 10'
        )
    elif lang == "rust":
        body = (
            "use std::collections::HashMap;\n\n"
            f"fn {name}(items: &[&str]) -> HashMap<String, usize> {{\n"
            "    let mut counts = HashMap::new();\n"
            "    for item in items {\n"
            "        *counts.entry(item.to_string()).or_insert(0) += 1;\n"
            "    }\n"
            "    counts\n}"
        )
    elif lang == "go":
        body = (
            f"func {name}(items []string) map[string]int {{\n"
            "\tcounts := map[string]int{}\n"
            "\tfor _, item := range items {\n\t\tcounts[item]++\n\t}\n\treturn counts\n}"
        )
    elif lang == "html":
        body = f'<section class="{name}">\n  <h2>{" ".join(words[:3]).title() or "Demo"}</h2>\n  <p>Hello!</p>\n</section>'
    else:  # css
        body = f".{name} {{\n  display: grid;\n  gap: 1rem;\n  padding: 1rem;\n}}"
    return f"```{lang}\n{body}\n```"


_PAIR_RE = re.compile(r"(?:between\s+)?([\w.+#-]+)\s+(?:vs\.?|versus|and|or)\s+([\w.+#-]+)", re.I)


def _table(text: str, words: list[str], rng: random.Random) -> str:
    pair = _PAIR_RE.search(text)
    if pair and pair.group(1).lower() not in _STOPWORDS:
        a, b = pair.group(1), pair.group(2)
    else:
        a = words[0] if words else "option A"
        b = words[1] if len(words) > 1 else "option B"
    rows = [
        ("Learning curve", "gentle", "steeper"),
        ("Performance", "good for most workloads", "excellent when tuned"),
        ("Ecosystem", "mature", "growing fast"),
        ("Best for", "getting started quickly", "demanding, specialised cases"),
    ]
    if rng.random() < 0.5:
        rows = [(r[0], r[2], r[1]) for r in rows]
    lines = [f"| Aspect | {a} | {b} |", "|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} |" for r in rows]
    return "\n".join(lines)


def build_reply(
    user_text: str, *, seed: int, previous_user_text: str | None = None, context: str = ""
) -> str:
    """The deterministic markdown answer to ``user_text``.

    ``context`` is extra text (e.g. the system prompt) used only to decide what kind of answer to give.
    """
    rng = random.Random(seed)
    words = salient_words(user_text) or ["this"]
    topic = " ".join(words[:3])
    probe = f"{user_text}\n{context}"

    if _TITLE_WORDS.search(probe) and len(user_text) > 0:
        # Title requests (the app names conversations this way) get a short title, nothing else.
        return " ".join(w.capitalize() for w in words[:5])

    quote = quote_of(user_text)
    parts: list[str] = []
    opener = rng.choice(_OPENERS).format(quote=quote)
    if previous_user_text:
        opener = (
            rng.choice(_FOLLOWUP).format(prev=quote_of(previous_user_text, 8))
            + opener[0].lower()
            + opener[1:]
        )
    parts.append(opener)
    parts.append(rng.choice(_BODY).format(topic=f"**{topic}**"))

    if _CODE_WORDS.search(user_text) or any(k in user_text.lower() for k in ("python", "sql", "javascript")):
        lang = _language(user_text)
        parts.append(f"Here is a small, self-contained example in {lang}:")
        parts.append(_code_block(lang, words, rng))
    if _COMPARE_WORDS.search(user_text):
        parts.append("Here is a side-by-side comparison:")
        parts.append(_table(user_text, words, rng))

    bullets = rng.sample(_BULLETS, 3)
    bullet_words = (words * 3)[:3]
    parts.append(
        rng.choice(_BULLET_INTROS)
        + "\n\n"
        + "\n".join(f"- {b.format(w=w)}" for b, w in zip(bullets, bullet_words, strict=True))
    )
    parts.append(rng.choice(_CLOSERS))
    return "\n\n".join(parts)


def padding_text(user_text: str, *, seed: int, min_tokens: int) -> str:
    """More deterministic prose (at least ``min_tokens`` tokens) to lengthen a reply for load tests."""
    rng = random.Random(seed ^ 0x5EED)
    words = salient_words(user_text) or ["this"]
    paras: list[str] = []
    total = 0
    i = 0
    while total < min_tokens:
        sentences = [rng.choice(_PADDING).format(w=words[(i + k) % len(words)]) for k in range(3)]
        para = " ".join(sentences)
        paras.append(para)
        total += count_tokens(para)
        i += 1
    return "\n\n" + "\n\n".join(paras)


def fit_to_tokens(text: str, extra: str, n_tokens: int) -> list[str]:
    """Pieces of ``text`` (+ ``extra`` if needed) trimmed to exactly ``n_tokens`` tokens."""
    pieces = split_pieces(text)
    if len(pieces) < n_tokens:
        pieces += split_pieces(extra)
    return pieces[:n_tokens]


# How many of the thinking steps each effort level takes (higher levels reconsider more).
EFFORT_STEPS = {"low": 1, "medium": 3, "high": 4, "xhigh": 7, "max": 10}


def thinking_text(user_text: str, *, seed: int, has_code: bool, effort: str = "high") -> str:
    """A short, summarised chain of thought for the thinking block: longer at higher effort."""
    rng = random.Random(seed ^ 0x7417)
    quote = quote_of(user_text, 10)
    steps = [
        f"The user asks “{quote}”.",
        rng.choice(
            [
                "They probably want a practical answer rather than theory.",
                "I should be concrete and structured.",
                "A short overview followed by specifics will read best.",
            ]
        ),
        "A code example would make this concrete." if has_code else "A brief checklist will help.",
        "I will close by offering to go deeper.",
        "Let me check that the order of the points makes sense to a newcomer.",
        "Edge cases are worth a sentence, but no more.",
        "On reflection, an example up front would anchor the rest.",
        "I should double-check the terms I use against the question's wording.",
        "One more pass: is anything here redundant? Trim it.",
        "Good: the plan holds. Write it.",
    ]
    return " ".join(steps[: EFFORT_STEPS.get(effort, 4)])

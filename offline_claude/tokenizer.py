"""The offline Claude's one tokenizer rule, used for input, output and count_tokens alike.

Rule: a token is a run of 1 to 10 word characters (``\\w``: letters, digits, underscore, any script),
or one single character that is neither a word character nor whitespace (punctuation, symbols, emoji).
Whitespace is free: it costs nothing and, in output, travels with the token that follows it.

So ``"Hello, world!"`` is 4 tokens (``Hello`` ``,`` ``world`` ``!``) and a 23-letter word is 3.
This is not Claude's tokenizer; it is a documented, deterministic stand-in whose counts are of a
realistic magnitude (roughly 1 token per English word or punctuation mark).
"""

from __future__ import annotations

import re

TOKEN_RE = re.compile(r"\w{1,10}|[^\w\s]")
# For streaming: the same tokens, each carrying the whitespace that precedes it, so that the pieces
# concatenate back to the original text exactly.
_PIECE_RE = re.compile(r"\s*(?:\w{1,10}|[^\w\s])")


def count_tokens(text: str) -> int:
    """Number of tokens in ``text`` under the rule above."""
    return len(TOKEN_RE.findall(text))


def split_pieces(text: str) -> list[str]:
    """Split text into output token pieces whose concatenation is exactly ``text``.

    Each piece holds one token plus its leading whitespace; trailing whitespace (which is not a
    token) is attached to the last piece so nothing is lost.
    """
    pieces = _PIECE_RE.findall(text)
    consumed = sum(len(p) for p in pieces)
    if consumed < len(text):
        tail = text[consumed:]
        if pieces:
            pieces[-1] += tail
        else:
            # Only whitespace: no token, but keep the text so a reply is never silently altered.
            pieces = [tail]
    return pieces

"""CPU per frame of live markdown, by reply length: the incremental renderer against a full re-render.

Streams offline Claude replies (code, a table, a list, then padding prose, as ``reply_tokens`` makes
them) in frames of about 2 tokens' text each (what one ~40 ms frame carries at 50 tokens/s) through
``MarkdownStream`` plus the frame's fragment, and reports the mean CPU per frame in the first and in
the last 200 frames of each reply, next to re-rendering the whole text every frame. Flat figures across
lengths mean the work per frame does not grow with the reply.

    .venv/bin/python bench/live_markdown.py [--lengths 2000,8000,32000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")


def frames_of(chars: int) -> list[str]:
    from offline_claude.replies import build_reply, padding_text

    question = "Compare Python vs Go for a web service, with a code example"
    text = build_reply(question, seed=7) + padding_text(question, seed=7, min_tokens=chars // 4)
    text = text[:chars]
    step = 9  # about two tokens of English
    return [text[i : i + step] for i in range(0, len(text), step)]


def per_frame(frames: list[str], *, incremental: bool) -> tuple[float, float]:
    from conversations import fragments
    from conversations.rendering import MarkdownStream, render_markdown

    stream, sofar, costs = MarkdownStream(), "", []
    for chunk in frames:
        start = time.process_time()
        if incremental:
            completed = stream.feed(chunk)
            fragments.delta(1, chunk, completed, stream.open_html())
        else:
            sofar += chunk
            render_markdown(sofar)
        costs.append(time.process_time() - start)
    head, tail = costs[:200], costs[-200:]
    return 1e6 * sum(head) / len(head), 1e6 * sum(tail) / len(tail)


def main() -> None:
    import django

    django.setup()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="2000,8000,32000", help="reply lengths in characters")
    args = parser.parse_args()
    print(
        f"{'chars':>7} {'frames':>7}  {'incremental µs/frame first/last 200':>36}  {'full re-render first/last 200':>30}"
    )
    for chars in (int(n) for n in args.lengths.split(",")):
        frames = frames_of(chars)
        inc = per_frame(frames, incremental=True)
        full = per_frame(frames, incremental=False)
        print(
            f"{chars:>7} {len(frames):>7}  {inc[0]:>17.0f} / {inc[1]:<16.0f}  {full[0]:>14.0f} / {full[1]:<13.0f}"
        )


if __name__ == "__main__":
    main()

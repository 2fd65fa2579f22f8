"""Which prompt-cache lifetime a reply's call writes: chosen per conversation from how fast its owner replies.

A cache write costs 1.25x the input rate for 5 minutes and 2x for an hour; a read costs a tenth or
less. Each call writes its new turns at the end of the prompt and reads the rest, so what matters is
whether the next call comes while the entry lives: back-to-back turns pay least with 5-minute writes
(about 15% of the uncached price on the 20-turn bench, 21% with 1-hour ones), but a person who
pauses longer than 5 minutes finds the 5-minute entry gone and pays the whole prompt again (125%),
where a 1-hour entry is read (21%). So: 5-minute writes while this person's recent replies came
within minutes, 1-hour writes once a recent pause says the 5-minute entry would expire.
`bench/prompt_caching.py` measures the choice against both fixed ones.
"""

from __future__ import annotations

from dataclasses import dataclass

#: A pause this long (seconds) counts as one the 5-minute entry might not survive (with some margin for
#: the reply's own writing time, which the entry's clock counts too).
LONG_PAUSE_SECONDS = 270
#: How many of the person's latest pauses are looked at.
RECENT_PAUSES = 6


@dataclass(frozen=True)
class CacheChoice:
    """The `cache_control.ttl` to write ("5m" or "1h", or "" for none) and why, for the receipt."""

    ttl: str
    note: str


def choose_cache_ttl(setting: str, pauses: list[float]) -> CacheChoice:
    """The lifetime to write under CHAT_PROMPT_CACHE_TTL `setting` ("auto", "5m", "1h" or "off"), given
    the owner's pauses in this conversation (seconds from a reply's end to their next message, oldest
    first; the last is the pause before the message being answered)."""
    if setting == "off":
        return CacheChoice("", "")
    if setting in ("5m", "1h"):
        return CacheChoice(setting, f"{_name(setting)} cache (the site's setting)")
    recent = pauses[-RECENT_PAUSES:]
    longest = max(recent, default=0.0)
    if longest >= LONG_PAUSE_SECONDS:
        minutes = round(longest / 60)
        return CacheChoice(
            "1h",
            f"1-hour cache: a recent pause of about {minutes} min would outlast a 5-minute cache",
        )
    if not recent:
        # The first call writes what every later one reads (the system prompt, the first turn): keep it
        # an hour, so a first long pause costs only the turns after it.
        return CacheChoice("1h", "1-hour cache: the start of a conversation, which every later reply reads")
    return CacheChoice("5m", "5-minute cache: your recent replies came within minutes")


def _name(ttl: str) -> str:
    return "1-hour" if ttl == "1h" else "5-minute"

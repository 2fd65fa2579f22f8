"""Run daphne on uvloop: ``python -m chatsite.serve [daphne's options] chatsite.asgi:application``.

Daphne runs Twisted's asyncio reactor on a loop it makes with ``asyncio.new_event_loop()`` when
``daphne.server`` is first imported, so the loop policy has to be set before that import: this is the
one place it is. ``make run``, the systemd unit, ``tests/servers.py`` and the benches start daphne this
way. ``CHAT_EVENT_LOOP=asyncio`` keeps the standard library's loop (to compare, or to rule uvloop out).
"""

from __future__ import annotations

import asyncio
import os


def install_event_loop() -> str:
    """Make new event loops uvloop's unless CHAT_EVENT_LOOP=asyncio; returns the loop in use."""
    choice = os.environ.get("CHAT_EVENT_LOOP", "uvloop").strip().lower() or "uvloop"
    if choice == "asyncio":
        return "asyncio"
    if choice != "uvloop":
        raise SystemExit(f"CHAT_EVENT_LOOP must be 'uvloop' or 'asyncio', not {choice!r}")
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def main() -> None:
    install_event_loop()
    from daphne.cli import CommandLineInterface  # imports daphne.server: the reactor's loop is made now

    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()

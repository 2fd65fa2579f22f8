"""``python -m offline_claude``: run the server without Django."""

from __future__ import annotations

from .cli import main

main()

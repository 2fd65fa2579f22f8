"""Command-line entry shared by ``manage.py offline_claude`` and ``python -m offline_claude``.

Kept free of Django so the benchmark can start the server as a plain subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from .background import make_options
from .server import OfflineClaudeServer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the server's options on ``parser`` (argparse or Django's CommandParser)."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default=None, help="require this key (default: accept any)")
    parser.add_argument("--ttft-ms", type=float, default=400.0, help="time to first token, ms")
    parser.add_argument("--tps", type=float, default=90.0, help="tokens per second (0 = unpaced)")
    parser.add_argument("--tokens-per-delta", type=int, default=3)
    parser.add_argument("--reply-tokens", type=int, default=None, help="pad/trim replies to N tokens")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="probability of a random fault")
    parser.add_argument("--fault-kinds", default="429,529,500,error,drop,end")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-fault RNG")
    parser.add_argument("--min-cache-tokens", type=int, default=0)


def options_from_args(args: argparse.Namespace) -> dict[str, object]:
    """Flat keyword options for :func:`make_options` from parsed arguments."""
    return {
        "host": args.host,
        "port": args.port,
        "api_key": args.api_key,
        "ttft_ms": args.ttft_ms,
        "tps": args.tps,
        "tokens_per_delta": args.tokens_per_delta,
        "reply_tokens": args.reply_tokens,
        "fault_rate": args.fault_rate,
        "fault_kinds": args.fault_kinds,
        "seed": args.seed,
        "min_cache_tokens": args.min_cache_tokens,
    }


def serve(options: dict[str, object], out=sys.stdout) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM."""

    async def main() -> None:
        server = OfflineClaudeServer(make_options(**options))
        await server.start()
        print(f"offline Claude (a stand-in, not Claude) listening on {server.base_url}", file=out, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.close()

    asyncio.run(main())


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m offline_claude [options]``."""
    parser = argparse.ArgumentParser(prog="offline_claude", description="Run the offline Claude server.")
    add_arguments(parser)
    serve(options_from_args(parser.parse_args(argv)))

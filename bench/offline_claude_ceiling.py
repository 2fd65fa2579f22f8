"""How many paced streams can the offline Claude serve before it becomes the bottleneck?

The server runs in a subprocess (so its CPU is measured apart from the client's); the client drives N
concurrent streams at ``--tps`` deltas/s each (1 token per delta) and measures, per level:

* achieved deltas/s vs the target N x tps,
* server CPU% (from /proc/<pid>/stat, utime+stime over the level's wall time),
* delivery lag of every delta: arrival - (first delta's arrival + k / tps), p50 and p99,
* the ceiling: highest N with achieved >= 95% of target and p99 lag <= 250 ms.

Two client modes: ``sdk`` consumes raw events with the real AsyncAnthropic SDK
(``messages.create(stream=True)``), ``raw`` uses a cheap asyncio socket client (server-only ceiling).

    .venv/bin/python bench/offline_claude_ceiling.py                  # both modes, default levels
    .venv/bin/python bench/offline_claude_ceiling.py --mode raw --levels 400,800,1600
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
DELTA_MARK = b"event: content_block_delta"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def start_server(port: int, tps: float) -> subprocess.Popen:
    """Start the offline Claude as a child process and wait until it listens."""
    cmd = [
        sys.executable,
        "-m",
        "offline_claude",
        "--port",
        str(port),
        "--ttft-ms",
        "0",
        "--tps",
        str(tps),
        "--tokens-per-delta",
        "1",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if "listening" not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc


def body(i: int, tokens: int) -> dict:
    return {
        "model": "claude-sonnet-5-5",
        "max_tokens": tokens + 10,
        "messages": [{"role": "user", "content": f"Benchmark stream {i}: tell me about rivers"}],
    }


async def sdk_stream(client, i: int, tokens: int, tps: float, lags: list[float], rates: list[float]) -> None:
    sent = time.perf_counter()
    stream = await client.messages.create(
        **body(i, tokens), stream=True, extra_headers={"x-offline-claude": f"reply_tokens={tokens}"}
    )
    k = 0
    now = sent
    async for ev in stream:
        if ev.type == "content_block_delta":
            now = time.perf_counter()
            # Delivery lag: arrival vs the ideal schedule counted from when the request was sent.
            lags.append(now - (sent + k / tps))
            k += 1
    rates.append(k / max(now - sent, (k - 1) / tps, 1e-9))


async def raw_stream(
    port: int, i: int, tokens: int, tps: float, lags: list[float], rates: list[float]
) -> None:
    """A minimal HTTP/1.1 client: counts delta events per received chunk, timestamps the chunk."""
    sent = time.perf_counter()
    now = sent
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = json.dumps({**body(i, tokens), "stream": True}).encode()
    writer.write(
        b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: k\r\nanthropic-version: 2026-10-21\r\n"
        b"content-type: application/json\r\nx-offline-claude: reply_tokens=%d\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % (tokens, len(payload)) + payload
    )
    await writer.drain()
    k = 0
    tail = b""
    while True:
        data = await reader.read(65536)
        if not data:
            break
        now = time.perf_counter()
        chunk = tail + data
        n = chunk.count(DELTA_MARK)
        tail = chunk[-len(DELTA_MARK) :]  # a marker split across reads is counted once
        tail_n = tail.count(DELTA_MARK)
        n -= tail_n
        tail = tail if tail_n == 0 else b""
        for _ in range(n):
            lags.append(now - (sent + k / tps))
            k += 1
        if b"event: message_stop" in chunk:
            break
    writer.close()
    rates.append(k / max(now - sent, (k - 1) / tps, 1e-9))


async def run_level(mode: str, port: int, n: int, tokens: int, tps: float, pid: int) -> dict:
    lags: list[float] = []
    rates: list[float] = []  # per stream: deltas / (request sent -> last delta)
    client = None
    if mode == "sdk":
        import anthropic
        import httpx2

        client = anthropic.AsyncAnthropic(
            base_url=f"http://127.0.0.1:{port}",
            api_key="bench",
            max_retries=0,
            timeout=120,
            http_client=anthropic.DefaultAsyncHttpxClient(
                limits=httpx2.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
            ),
        )
    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    if mode == "sdk":
        jobs = [sdk_stream(client, i, tokens, tps, lags, rates) for i in range(n)]
    else:
        jobs = [raw_stream(port, i, tokens, tps, lags, rates) for i in range(n)]
    results = await asyncio.gather(*jobs, return_exceptions=True)
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(pid) - cpu0
    if client is not None:
        await client.close()
    errors = [r for r in results if isinstance(r, BaseException)]
    lags.sort()
    return {
        "mode": mode,
        "streams": n,
        "target": n * tps,
        # Sum of per-stream delivery rates: equals the target when every stream keeps its pace.
        "achieved": sum(rates),
        "server_cpu": 100 * cpu / wall,
        "p50": 1000 * statistics.median(lags) if lags else float("nan"),
        "p99": 1000 * lags[int(0.99 * (len(lags) - 1))] if lags else float("nan"),
        "errors": len(errors),
        "wall": wall,
    }


def keeps_pace(r: dict) -> bool:
    return r["errors"] == 0 and r["achieved"] >= 0.95 * r["target"] and r["p99"] <= 250


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=["sdk", "raw", "both"], default="both")
    parser.add_argument("--levels", default=None, help="comma-separated stream counts")
    parser.add_argument("--tps", type=float, default=50.0, help="deltas per second per stream")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each stream")
    parser.add_argument("--port", type=int, default=8791)
    args = parser.parse_args()
    modes = ["sdk", "raw"] if args.mode == "both" else [args.mode]
    tokens = int(args.seconds * args.tps)
    proc = start_server(args.port, args.tps)
    print(
        f"offline Claude server pid {proc.pid}; {args.tps:g} deltas/s per stream, {tokens} deltas per stream"
    )
    print(
        f"{'mode':4} {'streams':>7} {'target/s':>9} {'achieved/s':>10} {'srv CPU%':>8} {'p50 ms':>7} {'p99 ms':>7} {'err':>4}  pace"
    )
    try:
        for mode in modes:
            default = "50,100,200,400" if mode == "sdk" else "200,400,800,1200"
            levels = [int(x) for x in re.split(r"[,\s]+", args.levels or default) if x]
            best = 0
            for n in levels:
                r = asyncio.run(run_level(mode, args.port, n, tokens, args.tps, proc.pid))
                ok = keeps_pace(r)
                best = n if ok else best
                last = r
                print(
                    f"{mode:4} {n:7d} {r['target']:9.0f} {r['achieved']:10.0f} {r['server_cpu']:8.1f} "
                    f"{r['p50']:7.1f} {r['p99']:7.1f} {r['errors']:4d}  {'yes' if ok else 'NO'}",
                    flush=True,
                )
            print(
                f"ceiling ({mode} client): {best} concurrent streams at {args.tps:g} deltas/s each keep pace"
            )
            per_core = last["achieved"] / max(last["server_cpu"] / 100, 1e-9)
            print(
                f"  server cost at {last['streams']} streams: {1e6 / per_core:.1f} us CPU per delta "
                f"-> one server core could pace ~{per_core:,.0f} deltas/s (~{per_core / args.tps:,.0f} streams)"
            )
    finally:
        proc.terminate()
        proc.wait(5)


if __name__ == "__main__":
    main()

"""Relay cost of the chat app versus the anthropic SDK alone, as issue 14 asks, in one run.

Everything runs against one standalone offline Claude (``stamp=1``: every text delta carries the
wall-clock time at which the offline server wrote it, see docs/offline-claude.md). Paths compared at
each load level ``K x rate`` (K concurrent replies, each `rate` deltas/s, or ``max``: unpaced):

* ``SDK helper`` / ``SDK raw``: a separate process runs K concurrent ``AsyncAnthropic`` consumers of
  the same requests (``messages.stream()`` helper / raw ``messages.create(stream=True)`` events),
  configured like conversations/replies/claude.py: the anchors the app is measured against, in the same run.
  ``SDK raw aiohttp``: the same raw events over the SDK's aiohttp transport, the app's default
  (CHAT_HTTP_CLIENT); the app rows are compared with both.
* ``app DEBUG=1`` / ``app DEBUG=0``: K websocket clients (this process, ``websockets``) each send one
  message to ONE daphne process started as ``make run`` starts it (``python -m chatsite.serve``: uvloop
  unless ``--server-env CHAT_EVENT_LOOP=asyncio``), SQLite, in-memory channel layer, and read the reply.

Per delta: latency = receive wall time - the delta's stamp (for the app: the browser-like client's
receive time, coalescing included). deltas/s delivered = the sum of per-stream rates (request sent to
last delta). Start = from sending the message (or request) to receiving its first delta, the mean over the
streams: what a reply waits for before it streams (the app's database work to start it, queued behind
the other replies', counts here). CPU µs per delta = the process's utime+stime over the level / deltas received. Each
configuration runs ``--repeat`` times (3) and the table shows medians; the machine's load average and the
CPU other processes used are printed with it, since the machine may be shared.

Besides (sections, ``--sections``): ``first`` the time from the API's first delta to the client receiving
it (app vs SDK raw: what the app adds); ``idle`` RSS per idle open websocket (``--idle-sockets`` 1,000);
``workers`` 1 vs 2 daphne workers with ``--redis-url`` (and ``--workers-database-url``, SQLite by
default), each worker given ``--worker-streams`` replies; ``db`` DB writes for one 2,000-token reply
(in this process through the real ASGI app, every write statement counted by table).

Run (about 6-8 minutes in full; needs the ``websockets`` package in the venv):

    .venv/bin/python bench/relay_latency.py --redis-url redis://127.0.0.1:6379/6
    .venv/bin/python bench/relay_latency.py --levels 100 --debug 1 --repeat 1 --sections streams  # quick
    .venv/bin/python bench/relay_latency.py --levels 1,50 --reply-tokens 150   # quicker still
    .venv/bin/python bench/relay_latency.py --variant before:CHAT_HTTP_CLIENT=httpx,CHAT_COALESCE_MAX_MS=40
        # one more app row with other settings (here: the SDK's httpx2 transport and a fixed window)
    git worktree add /tmp/before <commit>
    .venv/bin/python bench/relay_latency.py --variant before:APP_ROOT=/tmp/before  # that commit's code

``--levels`` takes K (at ``--tps``), ``KxR`` (R deltas/s) or ``Kxmax`` (unpaced, ``--max-reply-tokens``).
Everything listens on 127.0.0.1 ephemeral ports; every child process is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
MODEL = "claude-sonnet-5-5"
MAX_TOKENS = 4096  # the app's CHAT_MAX_TOKENS default: the SDK-alone requests use the same
STAMP_RE = re.compile("\u27e6(\\d+\\.\\d+)\u27e7")
# A frame that appends text to a reply (the answer's first one starts with "Thought for N s"); the
# appended source is the group: each delta's text is in exactly one of them (the rendered blocks and open
# end of live markdown repeat it, so stamps are counted there only).
DELTA_FRAME_RE = re.compile(r'<div id="msg-\d+-body" hx-swap-oob="beforeend">([^<]*)</div>')
FINAL_RE = re.compile(r'class="message assistant status-(\w+)"')
SELECT_FROM_RE = re.compile(r'\bFROM\s+"?(\w+)', re.I)
# The verb and the first table name after it (Django quotes names; billing's raw upserts do not).
WRITE_RE = re.compile(
    r'^\s*(INSERT|UPDATE|DELETE|REPLACE)\s+(?:OR\s+\w+\s+)?(?:INTO\s+|FROM\s+)?"?(\w+)', re.I
)


# ----------------------------------------------------------------------------------------- helpers
def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used (every core), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / CLK_TCK  # minus idle and iowait


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not listen on {port} within {timeout:.0f} s")


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def prompt(level, i: int, tps: float, reply_tokens: int) -> str:
    return (
        f"Relay bench {level}-{i}: tell me about rivers "
        f"[[offline tps={tps:g} tokens_per_delta=1 reply_tokens={reply_tokens} ttft_ms=0 stamp=1]]"
    )


def starts(level, seed: int, stagger: float) -> list[float]:
    """Start offsets of the streams of a level: the same for the app and the SDK alone."""
    n = level if isinstance(level, int) else level[0]
    rng = random.Random(f"{seed}-{level if isinstance(level, int) else n}")
    return [rng.uniform(0, stagger) for _ in range(n)]


def summarize(latencies: list[float], rates: list[float], deltas: int, cpu: float, wall: float) -> dict:
    latencies.sort()
    return {
        "deltas": deltas,
        "rate": sum(rates),
        "p50": 1000 * percentile(latencies, 0.50),
        "p99": 1000 * percentile(latencies, 0.99),
        "max": 1000 * latencies[-1] if latencies else float("nan"),
        "cpu": cpu,
        "wall": wall,
        "cpu_per_delta_us": 1e6 * cpu / deltas if deltas else float("nan"),
        "cpu_pct": 100 * cpu / wall if wall else float("nan"),
    }


def stream_rate(sent: float, last: float | None, n: int) -> float:
    """Delivery rate of one stream: deltas per second from sending the request to its last delta
    (ttft_ms=0, so a stream that keeps pace scores (n - 1) / ((n - 1) / tps) = tps)."""
    if last is None or n < 2 or last <= sent:
        return 0.0
    return (n - 1) / (last - sent)


async def gather_within(coros: list, timeout: float) -> list:
    """Run `coros` concurrently for at most `timeout` s: their results or exceptions, and a TimeoutError
    for each one still running then (cancelled), so an overloaded level reports what it got."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return [
        TimeoutError(f"not finished within {timeout:.0f} s")
        if t in pending
        else (t.exception() or t.result())
        for t in tasks
    ]


# --------------------------------------------------------------------------------- SDK-alone worker
async def sdk_worker(spec: dict) -> dict:
    """K consumers in this (separate) process, configured like conversations/replies/claude.py: raw
    ``create(stream=True)`` events (mode "raw") or the ``messages.stream()`` helper (mode "helper");
    concurrently, or one after another (``sequential``, for the first-delta latency)."""
    import anthropic
    import httpx2

    client = anthropic.AsyncAnthropic(
        api_key="bench",
        base_url=spec["base_url"],
        max_retries=0,
        timeout=httpx2.Timeout(60.0, connect=5.0),
        # The SDK's aiohttp transport (the anthropic[aiohttp] extra), as CHAT_HTTP_CLIENT=aiohttp uses it.
        **({"http_client": anthropic.DefaultAioHttpClient()} if spec.get("http") == "aiohttp" else {}),
    )
    metadata = {"user_id": "0" * 32}
    helper = spec.get("mode", "raw") == "helper"

    async def one(text: str, delay: float, out: dict) -> None:
        await asyncio.sleep(delay)
        sent = time.time()
        params = {
            "model": MODEL,
            "max_tokens": MAX_TOKENS,
            "messages": [{"role": "user", "content": text}],
            "metadata": metadata,
        }
        last = None
        n = 0
        first = None

        def seen(chunk: str) -> None:
            nonlocal last, n, first
            now = time.time()
            if n == 0:
                out["start"].append(now - sent)
            for stamp in STAMP_RE.findall(chunk):
                out["lat"].append(now - float(stamp))
                if first is None:
                    first = now - float(stamp)
                n += 1
            last = now

        if helper:
            async with client.messages.stream(**params) as stream:
                async for event in stream:
                    if event.type == "text":
                        seen(event.text)
        else:
            stream = await client.messages.create(**params, stream=True)
            async for event in stream:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    seen(event.delta.text)
        out["rates"].append(stream_rate(sent, last, n))
        out["deltas"] += n
        if first is not None:
            out["first"].append(first)

    def fresh() -> dict:
        return {"lat": [], "rates": [], "deltas": 0, "first": [], "start": []}

    # Warm up (imports, connection pool, first-call paths), as daphne is warmed up before it is measured.
    await one(prompt(0, 0, 0, 20).replace("stamp=1", "stamp=0"), 0, fresh())
    out = fresh()
    texts, delays = spec["texts"], spec["starts"]
    cpu0, t0 = time.process_time(), time.perf_counter()
    if spec.get("sequential"):
        results = []
        for t in texts:
            try:
                await asyncio.wait_for(one(t, 0, out), 60)
            except Exception as exc:  # noqa: BLE001 (reported below)
                results.append(exc)
    else:
        results = await gather_within(
            [one(t, d, out) for t, d in zip(texts, delays, strict=True)], spec["timeout"]
        )
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    await client.close()
    summary = summarize(out["lat"], out["rates"], out["deltas"], cpu, wall)
    summary["first"] = out["first"]
    summary["start_mean"] = 1000 * statistics.mean(out["start"]) if out["start"] else float("nan")
    summary["errors"] = [repr(r) for r in results if isinstance(r, BaseException)][:3]
    summary["error_count"] = sum(isinstance(r, BaseException) for r in results)
    summary["cpu_total"] = time.process_time()
    return summary


def run_sdk_alone(
    base_url: str,
    texts: list[str],
    delays: list[float],
    timeout: float,
    mode: str = "raw",
    sequential=False,
    http: str = "httpx",
) -> dict:
    spec = {
        "base_url": base_url,
        "texts": texts,
        "starts": delays,
        "timeout": timeout,
        "mode": mode,
        "sequential": sequential,
        "http": http,
    }
    proc = subprocess.run(
        [sys.executable, __file__, "--sdk-worker"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=timeout + 30,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise SystemExit(f"sdk worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------ relay clients
class Socket:
    """One browser-like websocket client on one conversation."""

    def __init__(self, port: int, conversation_id: int, session_key: str):
        self.url = f"ws://127.0.0.1:{port}/ws/chat/{conversation_id}/"
        self.origin = f"http://127.0.0.1:{port}"
        self.cookie = f"sessionid={session_key}"
        self.conversation_id = conversation_id
        self.ws = None

    async def open(self, attempts: int = 5) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidHandshake

        for attempt in range(1, attempts + 1):
            try:
                self.ws = await connect(
                    self.url,
                    origin=self.origin,
                    additional_headers={"Cookie": self.cookie},
                    compression=None,  # daphne negotiates none anyway
                    max_size=None,
                    ping_interval=None,
                    open_timeout=60,
                )
                break
            except (InvalidHandshake, OSError, TimeoutError):
                # On a starved machine daphne may drop a handshake it could not finish within its own
                # timeout: open again (the measurement starts only once every socket is open).
                if attempt == attempts:
                    raise
                await asyncio.sleep(0.5 * attempt)
        await asyncio.wait_for(self.ws.recv(), 60)  # the current-state frame sent on connect

    async def reply(self, text: str, delay: float, out: dict) -> None:
        await asyncio.sleep(delay)
        sent = time.time()
        await self.ws.send(json.dumps({"message": text, "conversation": self.conversation_id}))
        frames = delta_frames = n = 0
        last = None
        status = None
        while status is None:
            frame = await self.ws.recv()
            now = time.time()
            frames += 1
            if appended := DELTA_FRAME_RE.search(frame):
                delta_frames += 1
                for stamp in STAMP_RE.findall(appended.group(1)):
                    if n == 0:
                        out["first"].append(now - float(stamp))
                        out["start"].append(now - sent)
                    out["lat"].append(now - float(stamp))
                    n += 1
                last = now
            else:
                final = FINAL_RE.search(frame)
                if final and final.group(1) != "streaming":
                    status = final.group(1)
        # The send button is re-enabled by one more frame right after the final message.
        try:
            await asyncio.wait_for(self.ws.recv(), 2)
            frames += 1
        except TimeoutError:
            pass
        if status != "complete":
            out["bad_status"].append(status)
        out["frames"].append(frames)
        out["delta_frames"].append(delta_frames)
        out["rates"].append(stream_rate(sent, last, n))
        out["deltas"] += n

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def open_sockets(sockets: list[Socket]) -> None:
    gate = asyncio.Semaphore(20)  # twisted's listen backlog is 50: don't SYN-flood it

    async def open_one(s: Socket) -> None:
        async with gate:
            await s.open()

    await asyncio.wait_for(asyncio.gather(*(open_one(s) for s in sockets)), 300)


async def relay_level(
    ports, pids, targets: list[tuple[int, str]], texts, delays, timeout, sequential: bool = False
) -> dict:
    """K clients, client i on worker ports[i % len(ports)], each sending texts[i] after delays[i] (or
    all on one socket, one after another, when `sequential`). CPU is the sum over the workers `pids`."""
    ports = [ports] if isinstance(ports, int) else list(ports)
    pids = [pids] if isinstance(pids, int) else list(pids)
    if sequential:
        sockets = [Socket(ports[0], *targets[0])]
    else:
        sockets = [Socket(ports[i % len(ports)], cid, key) for i, (cid, key) in enumerate(targets)]
    out: dict = {
        "lat": [],
        "rates": [],
        "deltas": 0,
        "frames": [],
        "delta_frames": [],
        "bad_status": [],
        "first": [],
        "start": [],
    }
    try:
        await open_sockets(sockets)
        cpu0, own0, t0 = sum(map(cpu_seconds, pids)), time.process_time(), time.perf_counter()
        if sequential:
            results = []
            for t in texts:
                try:
                    await asyncio.wait_for(sockets[0].reply(t, 0, out), 60)
                except Exception as exc:  # noqa: BLE001 (reported below)
                    results.append(exc)
        else:
            results = await gather_within(
                [s.reply(t, d, out) for s, t, d in zip(sockets, texts, delays, strict=True)], timeout
            )
        cpu, wall = sum(map(cpu_seconds, pids)) - cpu0, time.perf_counter() - t0
        client_cpu = time.process_time() - own0
    finally:
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    summary = summarize(out["lat"], out["rates"], out["deltas"], cpu, wall)
    summary["first"] = out["first"]
    summary["start_mean"] = 1000 * statistics.mean(out["start"]) if out["start"] else float("nan")
    summary["frames_mean"] = statistics.mean(out["frames"]) if out["frames"] else float("nan")
    summary["frames_max"] = max(out["frames"], default=0)
    summary["delta_frames_mean"] = statistics.mean(out["delta_frames"]) if out["delta_frames"] else 0
    summary["client_cpu_pct"] = 100 * client_cpu / wall
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    summary["errors"] = (errors + [f"status {s}" for s in out["bad_status"]])[:3]
    summary["error_count"] = len(errors) + len(out["bad_status"])
    return summary


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def idle_rss(port: int, pid: int, targets: list[tuple[int, str]], count: int) -> dict:
    """RSS the worker grows by while `count` websockets are open and idle (spread over `targets`)."""
    sockets = [Socket(port, *targets[i % len(targets)]) for i in range(count)]
    await asyncio.sleep(1)
    before = rss_kb(pid)
    try:
        await open_sockets(sockets)
        await asyncio.sleep(2)
        during = rss_kb(pid)
    finally:
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    return {
        "sockets": count,
        "before_kb": before,
        "during_kb": during,
        "per_socket_kb": (during - before) / count,
    }


# ------------------------------------------------------------------------------ Django (in-process)
def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def make_users(n: int, prefix: str = "bench") -> list[tuple[int, str]]:
    """n users (unusable passwords: no hashing cost) and a logged-in session key for each."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model

    user_model = get_user_model()
    store = import_module(settings.SESSION_ENGINE).SessionStore
    users = user_model.objects.bulk_create(
        [user_model(username=f"{prefix}-{i}", password="!") for i in range(n)]
    )
    out = []
    for user in users:
        session = store()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        out.append((user.pk, session.session_key))
    return out


def make_conversations(users: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """A fresh conversation per user (so every request is a first turn, identical to the SDK's)."""
    from conversations.models import Conversation

    made = Conversation.objects.bulk_create([Conversation(owner_id=pk, model=MODEL) for pk, _ in users])
    return [(c.pk, key) for c, (_, key) in zip(made, users, strict=True)]


class WriteCounter:
    """execute_wrapper counting the write statements run on any DB connection while active."""

    def __init__(self) -> None:
        self.active = False
        self.writes: Counter[str] = Counter()
        self.other: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, execute, sql, params, many, context):
        if self.active:
            match = WRITE_RE.match(sql)
            with self.lock:
                if match:
                    upsert = " ON CONFLICT " in sql.upper()
                    verb = "UPSERT" if upsert else match.group(1).upper()
                    self.writes[f"{verb} {match.group(2)}"] += 1
                else:
                    verb = sql.lstrip().split(None, 1)[0].upper()
                    table = SELECT_FROM_RE.search(sql) if verb == "SELECT" else None
                    self.other[f"{verb} {table.group(1)}" if table else verb] += 1
        return execute(sql, params, many, context)

    def install(self) -> None:
        from django.db import connections
        from django.db.backends.signals import connection_created

        def attach(sender, connection, **kwargs):
            if self not in connection.execute_wrappers:
                connection.execute_wrappers.append(self)

        connection_created.connect(attach, weak=False)
        for connection in connections.all():
            attach(None, connection)


async def db_writes_reply(conversation_id: int, session_key: str, text: str, counter: WriteCounter) -> dict:
    """One reply through the real ASGI app in this process, its DB writes counted."""
    from channels.testing import WebsocketCommunicator

    from chatsite.asgi import application
    from conversations.replies.generation import generation_wait

    communicator = WebsocketCommunicator(
        application,
        f"/ws/chat/{conversation_id}/",
        headers=[
            (b"origin", b"http://127.0.0.1"),
            (b"host", b"127.0.0.1"),
            (b"cookie", f"sessionid={session_key}".encode()),
        ],
    )
    connected, _ = await communicator.connect(timeout=10)
    if not connected:
        raise SystemExit("in-process websocket was refused")
    await communicator.receive_from(timeout=10)
    counter.active = True
    t0 = time.perf_counter()
    await communicator.send_to(text_data=json.dumps({"message": text, "conversation": conversation_id}))
    frames, status, deadline = 0, None, time.monotonic() + 60
    while status is None and time.monotonic() < deadline:
        frame = await communicator.receive_from(timeout=30)
        frames += 1
        final = FINAL_RE.search(frame)
        if final and final.group(1) != "streaming" and not DELTA_FRAME_RE.match(frame):
            status = final.group(1)
    from conversations.models import Message

    message_id = await asyncio.to_thread(
        lambda: Message.objects.filter(conversation_id=conversation_id, role="assistant").values_list(
            "pk", "output_tokens"
        )[0]
    )
    await generation_wait(message_id[0])
    counter.active = False
    wall = time.perf_counter() - t0
    await communicator.disconnect()
    return {"status": status, "frames": frames, "output_tokens": message_id[1], "wall": wall}


# ------------------------------------------------------------------------------------------- main
# DJANGO_DEBUG=0 needs a real-looking key; the bench's own process signs its sessions with the same one.
BENCH_SECRET_KEY = "relay-bench-" + "".join(chr(c) for c in range(ord("a"), ord("z") + 1)) * 2
SUMMARY_KEYS = (
    "rate", "p50", "p99", "max", "cpu_per_delta_us", "cpu_pct", "frames_mean", "delta_frames_mean", "start_mean",
)  # fmt: skip


@dataclass(frozen=True)
class Level:
    n: int
    tps: float  # 0: unpaced
    reply_tokens: int

    @property
    def label(self) -> str:
        return f"{self.n} x {'max' if not self.tps else f'{self.tps:g}/s'}"

    @property
    def key(self) -> str:
        return f"{self.n}x{self.tps:g}"


def parse_levels(spec: str, tps: float, reply_tokens: int, max_reply_tokens: int) -> list[Level]:
    levels = []
    for item in (x.strip().lower() for x in spec.split(",")):
        if not item:
            continue
        n, _, rate = item.partition("x")
        if rate == "max":
            levels.append(Level(int(n), 0.0, max_reply_tokens))
        else:
            levels.append(Level(int(n), float(rate) if rate else tps, reply_tokens))
    return levels


def median_summary(runs: list[dict]) -> dict:
    out = {k: statistics.median(r[k] for r in runs) for k in SUMMARY_KEYS if all(k in r for r in runs)}
    out["error_count"] = max(r["error_count"] for r in runs)
    out["errors"] = next((r["errors"] for r in runs if r["errors"]), [])
    out["runs"] = len(runs)
    return out


def load_note() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


def print_row(label: str, path: str, r: dict, target: float) -> None:
    frames = f"{r['frames_mean']:.1f} / {r['frames_max']}" if "frames_max" in r else "-"
    print(
        f"{label:>11}  {path:20} {r['rate']:8.0f} / {target or float('nan'):<6.0f} {r['p50']:7.1f} {r['p99']:7.1f} "
        f"{r['max']:7.1f} {r['cpu_per_delta_us']:8.1f} {r['cpu_pct']:6.0f}   {frames:13} {r['error_count']:3d} "
        f"{r.get('start_mean', float('nan')):8.0f}",
        flush=True,
    )
    for e in r["errors"]:
        print(f"         error: {e}")


ROW_HEADER = (
    f"{'K x rate':>11}  {'path':20} {'deltas/s (target)':>17} {'p50 ms':>7} {'p99 ms':>7} "
    f"{'max ms':>7} {'µs/delta':>8} {'CPU%':>6}   {'frames/reply':13} {'err':>3} {'start ms':>8}"
)


def start_offline(tmp: Path, tps: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "offline_claude", "--host", "127.0.0.1", "--port", str(port)]
        + ["--ttft-ms", "0", "--tps", str(tps), "--tokens-per-delta", "1"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "offline.log", "w"),  # noqa: SIM115 (closed with the process)
    )
    wait_port(port, proc, "offline Claude")
    return proc, f"http://127.0.0.1:{port}"


def start_daphne(
    tmp: Path, env: dict[str, str], label: str, root: Path = ROOT
) -> tuple[subprocess.Popen, int]:
    """One worker, started as `make run` starts it (python -m chatsite.serve: daphne on uvloop), from the
    code in `root` (this checkout, or another one of the same schema: see --variant's APP_ROOT)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chatsite.serve",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "chatsite.asgi:application",
        ],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / f"daphne-{label}.log", "w"),  # noqa: SIM115 (closed with the process)
    )
    wait_port(port, proc, f"daphne {label}")
    return proc, port


def profiler(directory: str | None, pid: int, name: str) -> subprocess.Popen | None:
    """py-spy recording `pid` (raw collapsed stacks, idle frames left out) into directory/name.txt while
    a level runs, with `--profile DIR`: the profile issue 28 asks performance work to start from."""
    if not directory:
        return None
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy (make install-test installs it into .venv)")
    Path(directory).mkdir(parents=True, exist_ok=True)
    out = Path(directory) / (re.sub(r"[^\w.-]+", "_", name) + ".txt")
    cmd = [spy, "record", "-p", str(pid), "-r", "200", "--nonblocking", "-f", "raw", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # py-spy attaches before the level starts
    return proc


def stop_profiler(proc: subprocess.Popen | None) -> None:
    if proc is not None:
        proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def stop_all(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        timeout=300,
    )


def app_env(args: argparse.Namespace, base_url: str, database_url: str) -> dict[str, str]:
    env = {
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "DATABASE_URL": database_url,
        "ANTHROPIC_API_KEY": "bench",
        "ANTHROPIC_BASE_URL": base_url,
        "DJANGO_DEBUG": "1",
        "DJANGO_SECRET_KEY": BENCH_SECRET_KEY,
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_HSTS_SECONDS": "0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CHAT_RATE_LIMIT_PER_MINUTE": "100000",
        "CHAT_DEFAULT_MONTHLY_BUDGET_USD": "unlimited",
        "CHAT_MAX_SOCKETS_PER_USER": "0",  # the idle-socket section opens several sockets per user
        "CHAT_LOG_LEVEL": "WARNING",
        # Every bench reply opens a new conversation, which a real one does once: leave out the title
        # call that the first exchange of each would add (one more Messages call, not relayed).
        "CHAT_TITLE_MODEL": "off",
    }
    env.update(kv.split("=", 1) for kv in args.server_env)
    return env


def coalesce_ms(args: argparse.Namespace) -> float:
    for kv in args.server_env:
        name, _, value = kv.partition("=")
        if name == "CHAT_COALESCE_MS":
            return float(value)
    return 40.0


# The SDK-alone anchors: (mode, HTTP transport). "SDK raw" is the anchor (the SDK's default
# httpx2 transport); "SDK raw aiohttp" reads the same events over the SDK's aiohttp transport, as the app
# does by default (CHAT_HTTP_CLIENT): the same client the app runs, alone.
SDK_PATHS = {
    "SDK helper": ("helper", "httpx"),
    "SDK raw": ("raw", "httpx"),
    "SDK raw aiohttp": ("raw", "aiohttp"),
}


def verdict(app: dict, raw: dict, window_ms: float) -> str:
    """The issue's bar for an app row against the SDK-raw row of the same level and run set."""
    bound = raw["p99"] + window_ms + 60
    rate = app["rate"] / raw["rate"] if raw["rate"] else float("nan")
    cpu = app["cpu_per_delta_us"] / raw["cpu_per_delta_us"] if raw["cpu_per_delta_us"] else float("nan")
    return (
        f"x{rate:.2f} rate ({'ok' if rate >= 0.95 else 'below 0.95'}); p99 bound {bound:.0f} ms "
        f"({'ok' if app['p99'] <= bound else 'over'}); x{cpu:.2f} CPU ({'ok' if cpu <= 1.1 else 'over 1.1'})"
    )


def print_table(title: str, levels: list[Level], paths: list[str], results: dict, window_ms: float) -> None:
    print()
    print(f"### {title}")
    print()
    print(
        "| K x rate | path | deltas/s delivered (target) | p99 ms | mean start ms | CPU µs per delta "
        "| replies not complete | app vs SDK raw | app vs SDK raw aiohttp |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for level in levels:
        raw = results.get((level.key, "SDK raw"))
        raw_aiohttp = results.get((level.key, "SDK raw aiohttp"))
        for i, path in enumerate(paths):
            r = results.get((level.key, path))
            if r is None:
                continue
            target = f"{level.n * level.tps:,.0f}" if level.tps else "max"
            app = path.startswith("app")
            check = verdict(r, raw, window_ms) if raw is not None and app else ""
            check_aiohttp = verdict(r, raw_aiohttp, window_ms) if raw_aiohttp is not None and app else ""
            print(
                f"| {level.label if i == 0 else ''} | {path} | {r['rate']:,.0f} ({target}) | {r['p99']:,.0f} | "
                f"{r.get('start_mean', float('nan')):,.0f} | {r['cpu_per_delta_us']:,.0f} | {r['error_count']} | "
                f"{check} | {check_aiohttp} |"
            )


def first_delta_note(samples: list[float]) -> str:
    samples = sorted(1000 * x for x in samples)
    if not samples:
        return "no samples"
    return (
        f"median {statistics.median(samples):.1f} ms, p90 {percentile(samples, 0.9):.1f} ms, n={len(samples)}"
    )


def run(args: argparse.Namespace) -> None:
    sections = {x.strip() for x in args.sections.split(",") if x.strip()}
    levels = parse_levels(args.levels, args.tps, args.reply_tokens, args.max_reply_tokens)
    debugs = [x.strip() for x in args.debug.split(",") if x.strip()]
    window_ms = coalesce_ms(args)
    tmp = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    procs: list[subprocess.Popen] = []
    try:
        offline, base_url = start_offline(tmp, args.tps)
        procs.append(offline)
        for name in ("REDIS_URL", "DATABASE_CONN_MAX_AGE"):  # the embedded default: SQLite + in-memory layer
            os.environ.pop(name, None)
        env = app_env(args, base_url, f"sqlite:///{tmp / 'bench.sqlite3'}")
        migrate(env)
        servers = {}  # path -> (proc, port)
        loops = [x.strip() for x in args.loops.split(",") if x.strip()]
        for debug in debugs:
            for loop in loops:
                path = f"app DEBUG={debug}" + (f" {loop}" if len(loops) > 1 else "")
                server_env = {**os.environ, **env, "DJANGO_DEBUG": debug, "CHAT_EVENT_LOOP": loop}
                proc, port = start_daphne(tmp, server_env, f"debug{debug}-{loop}")
                procs.append(proc)
                servers[path] = (proc, port)
        for n, variant in enumerate(args.variant):
            # Another app row in the same run: LABEL:NAME=VALUE,NAME=VALUE (e.g. the earlier settings).
            label, _, assignments = variant.partition(":")
            extra = dict(kv.split("=", 1) for kv in assignments.split(",") if kv)
            root = Path(extra.pop("APP_ROOT", ROOT))  # e.g. a `git worktree` of an earlier commit
            server_env = {
                **os.environ,
                **env,
                "DJANGO_DEBUG": debugs[0],
                "CHAT_EVENT_LOOP": loops[0],
                **extra,
            }
            server_env["PYTHONPATH"] = str(root)  # before the venv's editable install of this checkout
            proc, port = start_daphne(tmp, server_env, f"variant{n}", root)
            procs.append(proc)
            servers[f"app DEBUG={debugs[0]} {label}"] = (proc, port)
        django_setup(env)
        max_n = max([lv.n for lv in levels] + [1])
        users = make_users(max(max_n, min(args.idle_sockets, 200) if "idle" in sections else 1))
        print(
            f"offline Claude pid {offline.pid} at {base_url}; SQLite {tmp / 'bench.sqlite3'}; in-memory channel layer"
        )
        for path, (proc, port) in servers.items():
            print(f"{path}: daphne pid {proc.pid} on :{port} (python -m chatsite.serve)")
        server_env = " ".join(args.server_env) or "(none)"
        print(f"extra server env: {server_env}; coalescing window {window_ms:g} ms; {load_note()}")
        # Warm each daphne up (first-call imports, SDK client, templates) with one short reply.
        for proc, port in servers.values():
            warm = make_conversations(users[:1])
            asyncio.run(relay_level(port, proc.pid, warm, [prompt(0, 0, 0, 20)], [0.0], 60))

        if "idle" in sections and args.idle_sockets:
            print()
            print(
                f"### RSS per idle open websocket ({args.idle_sockets:,} sockets, each on its own page's conversation)"
            )
            for path, (proc, port) in servers.items():
                targets = make_conversations(users[: min(len(users), 200)])
                r = asyncio.run(idle_rss(port, proc.pid, targets, args.idle_sockets))
                print(
                    f"{path}: RSS {r['before_kb'] / 1024:.1f} MB -> {r['during_kb'] / 1024:.1f} MB with "
                    f"{r['sockets']:,} idle sockets: {r['per_socket_kb']:.1f} KB per socket (bar: 64 KB)"
                )

        if "first" in sections and args.first_replies:
            print()
            print(
                f"### First delta: the API writing it -> the client receiving it ({args.first_replies} "
                f"replies one after another, {load_note()})"
            )
            texts = [prompt("first", j, 50, 5) for j in range(args.first_replies)]
            sdk = run_sdk_alone(base_url, texts, [0.0] * len(texts), 120, "raw", sequential=True)
            print(f"SDK raw: {first_delta_note(sdk['first'])}")
            sdk_median = statistics.median(sdk["first"]) if sdk["first"] else float("nan")
            for path, (proc, port) in servers.items():
                target = make_conversations(users[:1])
                r = asyncio.run(relay_level(port, proc.pid, target, texts, [], 120, sequential=True))
                added = 1000 * (statistics.median(r["first"]) - sdk_median) if r["first"] else float("nan")
                print(
                    f"{path}: {first_delta_note(r['first'])}; the app adds {added:.1f} ms at the median "
                    f"(bar: 30 ms); {r['error_count']} replies not complete"
                )

        if "streams" in sections and levels:
            runs: dict[tuple[str, str], list[dict]] = {}
            loads = []
            others = []
            sdk_paths = [p for p in SDK_PATHS if p != "SDK helper" or not args.no_helper]
            for rep in range(args.repeat):
                loads.append(load_note())
                print()
                print(f"run {rep + 1} of {args.repeat}: {loads[-1]}")
                print(ROW_HEADER)
                for level in levels:
                    texts = [
                        prompt(f"{level.key}-{rep}", i, level.tps, level.reply_tokens) for i in range(level.n)
                    ]
                    delays = starts(level.n, args.seed + rep, args.stagger)
                    pace = level.reply_tokens / level.tps if level.tps else 10
                    timeout = args.stagger + 6 * pace + 120
                    for path, (proc, port) in servers.items():
                        targets = make_conversations(users[: level.n])
                        busy0, own0, t0 = (
                            machine_busy_seconds(),
                            cpu_seconds(proc.pid) + cpu_seconds(offline.pid),
                            time.perf_counter(),
                        )
                        own_client0 = time.process_time()
                        spy = profiler(args.profile, proc.pid, f"{path}-{level.key}-{rep + 1}")
                        try:
                            r = asyncio.run(relay_level(port, proc.pid, targets, texts, delays, timeout))
                        finally:
                            stop_profiler(spy)
                        wall = time.perf_counter() - t0
                        used = (
                            cpu_seconds(proc.pid)
                            + cpu_seconds(offline.pid)
                            - own0
                            + time.process_time()
                            - own_client0
                        )
                        others.append(100 * (machine_busy_seconds() - busy0 - used) / wall)
                        runs.setdefault((level.key, path), []).append(r)
                        print_row(level.label, path, r, level.n * level.tps)
                    for path in sdk_paths:
                        mode, http = SDK_PATHS[path]
                        busy0, off0, t0 = (
                            machine_busy_seconds(),
                            cpu_seconds(offline.pid),
                            time.perf_counter(),
                        )
                        r = run_sdk_alone(base_url, texts, delays, timeout, mode, http=http)
                        wall = time.perf_counter() - t0
                        others.append(
                            100
                            * (
                                machine_busy_seconds()
                                - busy0
                                - (cpu_seconds(offline.pid) - off0)
                                - r["cpu_total"]
                            )
                            / wall
                        )
                        runs.setdefault((level.key, path), []).append(r)
                        print_row(level.label, path, r, level.n * level.tps)
            results = {k: median_summary(v) for k, v in runs.items()}
            print()
            print(
                f"Medians of {args.repeat} run(s). Loads at the start of each run: {'; '.join(loads)}. Other processes "
                f"on the machine used {statistics.median(others):.0f}% of a core (median over the runs; "
                f"max {max(others):.0f}%). Coalescing window {window_ms:g} ms."
            )
            print_table(
                "Relay vs the SDK alone (one worker, SQLite, in-memory layer)",
                levels,
                sdk_paths + list(servers),
                results,
                window_ms,
            )
            print()
            print(
                "app vs SDK raw: the issue's bar is >= 0.95x the raw deltas/s, p99 <= raw p99 + coalescing "
                "window + 60 ms, CPU per delta <= 1.1x raw."
            )

        if "workers" in sections:
            print()
            if not args.redis_url:
                print(
                    "### Workers: skipped (give --redis-url redis://127.0.0.1:6379/N to measure 1 vs 2 workers)"
                )
            else:
                spec = {
                    "base_url": base_url,
                    "tmp": str(tmp),
                    "database_url": args.workers_database_url or f"sqlite:///{tmp / 'workers.sqlite3'}",
                    "redis_url": args.redis_url,
                    "workers": [int(x) for x in args.workers.split(",")],
                    "streams": args.worker_streams,
                    "tps": args.tps,
                    "reply_tokens": args.reply_tokens,
                    "stagger": args.stagger,
                    "seed": args.seed,
                    "repeat": args.repeat,
                    "debug": args.workers_debug,
                    "server_env": args.server_env,
                    "root": args.workers_app_root or str(ROOT),
                }
                proc = subprocess.run(
                    [sys.executable, __file__, "--workers-child"],
                    input=json.dumps(spec),
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=ROOT,
                    timeout=1800,
                )
                lines = proc.stdout.strip().splitlines()
                if proc.returncode != 0 or not lines:
                    print(f"workers section failed (exit {proc.returncode})")
                else:
                    print("\n".join(lines[:-1]))
                    rows = json.loads(lines[-1])
                    print()
                    print(
                        f"### 1 vs N workers (REDIS_URL, {spec['database_url'].split('://')[0]}, "
                        f"DEBUG={spec['debug']}, {args.worker_streams} replies x {args.tps:g}/s per worker; medians of {args.repeat})"
                    )
                    print()
                    print(
                        "| workers | replies | deltas/s delivered (target) | per worker | p99 ms | CPU µs per delta | replies not complete |"
                    )
                    print("|---|---|---|---|---|---|---|")
                    for row in rows:
                        r = row["summary"]
                        print(
                            f"| {row['workers']} | {row['streams']} | {r['rate']:,.0f} ({row['streams'] * args.tps:,.0f}) | "
                            f"{r['rate'] / row['workers']:,.0f} | {r['p99']:,.0f} | {r['cpu_per_delta_us']:,.0f} | {r['error_count']} |"
                        )

        if "db" in sections and args.db_reply_tokens:
            counter = WriteCounter()
            counter.install()
            ((cid, key),) = make_conversations(users[:1])
            text = (
                f"Count my DB writes: tell me about rivers "
                f"[[offline tps={args.db_tps:g} tokens_per_delta=1 reply_tokens={args.db_reply_tokens} ttft_ms=0]]"
            )
            db = asyncio.run(db_writes_reply(cid, key, text, counter))
            total = sum(counter.writes.values())
            breakdown = ", ".join(
                f"{k} {v}" for k, v in sorted(counter.writes.items(), key=lambda kv: -kv[1])
            )
            print()
            print(
                f"DB writes for one {db['output_tokens']:,}-token reply ({args.db_tps:g} tokens/s, "
                f"{db['wall']:.1f} s, status {db['status']}, {db['frames']} frames): {total} "
                f"({breakdown})"
            )
            other = ", ".join(f"{k} {v}" for k, v in counter.other.most_common())
            print(f"  other statements in the same reply: {other}")
    finally:
        stop_all(procs)
        if args.keep_logs:
            print(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def ensure_postgres_database(url: str) -> None:
    """Create the PostgreSQL database of `url` if it does not exist yet (the bench's own, e.g. chat14)."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def workers_child(spec: dict) -> list[dict]:
    """1 vs N daphne workers sharing a database and Redis; prints progress, returns the medians."""
    import uuid

    tmp = Path(spec["tmp"])
    args = argparse.Namespace(server_env=spec["server_env"])
    env = app_env(args, spec["base_url"], spec["database_url"])
    env.update(REDIS_URL=spec["redis_url"], DJANGO_DEBUG=spec["debug"])
    if spec["database_url"].startswith(("postgres://", "postgresql://")):
        ensure_postgres_database(spec["database_url"])
    migrate(env)
    procs: list[subprocess.Popen] = []
    try:
        servers = []
        for i in range(max(spec["workers"])):
            root = Path(spec["root"])
            proc, port = start_daphne(
                tmp, {**os.environ, **env, "PYTHONPATH": str(root)}, f"worker{i + 1}", root
            )
            procs.append(proc)
            servers.append((proc, port))
        django_setup(env)
        most = max(spec["workers"]) * spec["streams"]
        users = make_users(most, prefix=f"bench-{uuid.uuid4().hex[:8]}")
        for proc, port in servers:
            asyncio.run(
                relay_level(port, proc.pid, make_conversations(users[:1]), [prompt(0, 0, 0, 20)], [0.0], 60)
            )
        print(
            f"workers: {', '.join(f'pid {p.pid} on :{port}' for p, port in servers)}; {load_note()}",
            flush=True,
        )
        print(ROW_HEADER, flush=True)
        runs: dict[int, list[dict]] = {}
        for rep in range(spec["repeat"]):
            for count in spec["workers"]:
                n = count * spec["streams"]
                texts = [prompt(f"w{count}-{rep}", i, spec["tps"], spec["reply_tokens"]) for i in range(n)]
                delays = starts(n, spec["seed"] + rep, spec["stagger"])
                timeout = spec["stagger"] + 6 * spec["reply_tokens"] / spec["tps"] + 120
                chosen = servers[:count]
                r = asyncio.run(
                    relay_level(
                        [port for _, port in chosen],
                        [p.pid for p, _ in chosen],
                        make_conversations(users[:n]),
                        texts,
                        delays,
                        timeout,
                    )
                )
                runs.setdefault(count, []).append(r)
                print_row(f"{count}w {n}x{spec['tps']:g}", "app", r, n * spec["tps"])
        print(f"after the runs: {load_note()}", flush=True)
    finally:
        stop_all(procs)
    return [
        {"workers": count, "streams": count * spec["streams"], "summary": median_summary(v)}
        for count, v in runs.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--levels",
        default="1xmax,100,200",
        help="comma-separated load levels: K (K streams at --tps), KxR (R deltas/s), Kxmax (unpaced)",
    )
    parser.add_argument("--tps", type=float, default=50.0, help="deltas per second per stream")
    parser.add_argument("--reply-tokens", type=int, default=250, help="deltas per stream")
    parser.add_argument(
        "--max-reply-tokens", type=int, default=2000, help="deltas per unpaced (Kxmax) stream"
    )
    parser.add_argument("--stagger", type=float, default=1.0, help="spread stream starts over this many s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each configuration (the table shows medians)"
    )
    parser.add_argument(
        "--debug", default="1,0", help="DJANGO_DEBUG values to run the app with (one daphne each)"
    )
    parser.add_argument(
        "--loops",
        default="uvloop",
        help="CHAT_EVENT_LOOP values to run the app with (uvloop,asyncio compares)",
    )
    parser.add_argument("--no-helper", action="store_true", help="leave out the SDK stream-helper anchor")
    parser.add_argument(
        "--sections",
        default="idle,first,streams,workers,db",
        help="what to measure: idle (RSS per idle socket), first (first-delta latency), streams, workers, db",
    )
    parser.add_argument("--idle-sockets", type=int, default=1000)
    parser.add_argument("--first-replies", type=int, default=20)
    parser.add_argument(
        "--redis-url", default="", help="Redis for the workers section, e.g. redis://127.0.0.1:6379/6"
    )
    parser.add_argument(
        "--workers-database-url", default="", help="database of the workers section (SQLite if unset)"
    )
    parser.add_argument("--workers", default="1,2", help="worker counts to compare")
    parser.add_argument(
        "--worker-streams", type=int, default=100, help="replies per worker in the workers section"
    )
    parser.add_argument(
        "--workers-app-root",
        default="",
        help="run the workers section's daphnes from this checkout (default: this one)",
    )
    parser.add_argument("--workers-debug", default="0", help="DJANGO_DEBUG of the workers section")
    parser.add_argument(
        "--db-reply-tokens", type=int, default=2000, help="0 leaves the DB-writes section out"
    )
    parser.add_argument("--db-tps", type=float, default=400.0)
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra env for the app (repeat), e.g. CHAT_EVENT_LOOP=asyncio",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL:NAME=VALUE,...",
        help="one more app row with these settings, e.g. 'before:CHAT_HTTP_CLIENT=httpx,CHAT_COALESCE_MAX_MS=40'; "
        "APP_ROOT=DIR runs that row's daphne from another checkout (e.g. a git worktree of an earlier commit)",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="record each app row of the streams section with py-spy into DIR (collapsed stacks)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the tmp dir (daphne/offline logs)")
    parser.add_argument("--sdk-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workers-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sdk_worker:
        print(json.dumps(asyncio.run(sdk_worker(json.loads(sys.stdin.read())))))
        return
    if args.workers_child:
        rows = workers_child(json.loads(sys.stdin.read()))
        print(json.dumps(rows))
        return
    run(args)


if __name__ == "__main__":
    main()

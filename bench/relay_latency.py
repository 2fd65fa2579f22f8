"""Relay cost of the chat app versus the SDK alone: latency, CPU, frames and DB writes per reply.

Measures, in one run, against one standalone offline Claude (``stamp=1``: every text delta carries the
wall-clock time at which the offline server wrote it, see docs/offline-claude.md):

* relay (daphne): N websocket clients (this process, ``websockets``) each send one message to ONE
  daphne process (``chatsite.asgi``, its own fresh SQLite file, in-memory channel layer); the app
  streams the reply from the offline Claude through the SDK, coalesces deltas and relays frames.
  Per delta: latency = the client's receive wall time - the delta's stamp (includes the app's
  ~CHAT_COALESCE_MS coalescing). Daphne's CPU (utime+stime from /proc) over the run / deltas.
* sdk alone: a separate process runs N concurrent ``AsyncAnthropic().messages.create(stream=True)``
  consumers of identical requests (same text, model, max_tokens, metadata; same start stagger),
  measuring stamp -> event latency and its own CPU per delta: the limit a relay is measured against.
* frames per reply (every frame the socket receives for its reply) and deltas/s achieved (sum of
  per-stream delivery rates, each from sending the request to the last delta; the target is N x tps).
* DB writes for one 2,000-token reply: the reply runs in this process through the real ASGI app
  (channels' WebsocketCommunicator), every DB connection gets an execute_wrapper that counts
  INSERT/UPDATE/DELETE statements, grouped by table.

Run (about 2-3 minutes; needs the ``websockets`` package in the venv):

    .venv/bin/python bench/relay_latency.py
    .venv/bin/python bench/relay_latency.py --levels 1,50 --reply-tokens 150   # quicker

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
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
MODEL = "claude-sonnet-5-5"
MAX_TOKENS = 4096  # the app's CHAT_MAX_TOKENS default: the SDK-alone requests use the same
STAMP_RE = re.compile("\u27e6(\\d+\\.\\d+)\u27e7")
DELTA_FRAME_RE = re.compile(r'^<div id="msg-\d+-body" hx-swap-oob="beforeend">')
FINAL_RE = re.compile(r'class="message assistant status-(\w+)"')
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


def prompt(level: int, i: int, tps: float, reply_tokens: int) -> str:
    return (
        f"Relay bench {level}-{i}: tell me about rivers "
        f"[[offline tps={tps:g} tokens_per_delta=1 reply_tokens={reply_tokens} ttft_ms=0 stamp=1]]"
    )


def starts(level: int, seed: int, stagger: float) -> list[float]:
    """Start offsets of the streams of a level: the same for the relay and the SDK alone."""
    rng = random.Random(f"{seed}-{level}")
    return [rng.uniform(0, stagger) for _ in range(level)]


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


# --------------------------------------------------------------------------------- SDK-alone worker
async def sdk_worker(spec: dict) -> dict:
    """N raw-event consumers in this (separate) process, configured like conversations/claude.py."""
    import anthropic
    import httpx2

    client = anthropic.AsyncAnthropic(
        api_key="bench",
        base_url=spec["base_url"],
        max_retries=2,
        timeout=httpx2.Timeout(60.0, connect=5.0),
    )
    metadata = {"user_id": "0" * 32}

    async def one(text: str, delay: float, out: dict) -> None:
        await asyncio.sleep(delay)
        sent = time.time()
        stream = await client.messages.create(
            model=MODEL,
            max_tokens=MAX_TOKENS,
            messages=[{"role": "user", "content": text}],
            metadata=metadata,
            stream=True,
        )
        last = None
        n = 0
        async for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                now = time.time()
                for stamp in STAMP_RE.findall(event.delta.text):
                    out["lat"].append(now - float(stamp))
                    n += 1
                last = now
        out["rates"].append(stream_rate(sent, last, n))
        out["deltas"] += n

    # Warm up (imports, connection pool, first-call paths), as daphne is warmed up before it is measured.
    await one(prompt(0, 0, 0, 20).replace("stamp=1", "stamp=0"), 0, {"lat": [], "rates": [], "deltas": 0})
    out: dict = {"lat": [], "rates": [], "deltas": 0}
    texts, delays = spec["texts"], spec["starts"]
    cpu0, t0 = time.process_time(), time.perf_counter()
    results = await asyncio.wait_for(
        asyncio.gather(*(one(t, d, out) for t, d in zip(texts, delays, strict=True)), return_exceptions=True),
        spec["timeout"],
    )
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    await client.close()
    summary = summarize(out["lat"], out["rates"], out["deltas"], cpu, wall)
    summary["errors"] = [repr(r) for r in results if isinstance(r, BaseException)][:3]
    summary["error_count"] = sum(isinstance(r, BaseException) for r in results)
    summary["cpu_total"] = time.process_time()
    return summary


def run_sdk_alone(base_url: str, texts: list[str], delays: list[float], timeout: float) -> dict:
    spec = {"base_url": base_url, "texts": texts, "starts": delays, "timeout": timeout}
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

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(
            self.url,
            origin=self.origin,
            additional_headers={"Cookie": self.cookie},
            compression=None,  # daphne negotiates none anyway
            max_size=None,
            ping_interval=None,
            open_timeout=30,
        )
        await asyncio.wait_for(self.ws.recv(), 30)  # the current-state frame sent on connect

    async def reply(self, text: str, delay: float, out: dict) -> None:
        await asyncio.sleep(delay)
        sent = time.time()
        await self.ws.send(json.dumps({"message": text, "conversation": self.conversation_id}))
        frames = delta_frames = n = 0
        last = None
        status = None
        seen: set[str] = set()  # a stamp rendered again (the open end of live markdown) counts once
        while status is None:
            frame = await self.ws.recv()
            now = time.time()
            frames += 1
            if DELTA_FRAME_RE.match(frame):
                delta_frames += 1
                for stamp in STAMP_RE.findall(frame):
                    if stamp in seen:
                        continue
                    seen.add(stamp)
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


async def relay_level(port: int, pid: int, targets: list[tuple[int, str]], texts, delays, timeout) -> dict:
    sockets = [Socket(port, cid, key) for cid, key in targets]
    gate = asyncio.Semaphore(20)  # twisted's listen backlog is 50: don't SYN-flood it

    async def open_one(s: Socket) -> None:
        async with gate:
            await s.open()

    try:
        await asyncio.wait_for(asyncio.gather(*(open_one(s) for s in sockets)), 60)
        out: dict = {"lat": [], "rates": [], "deltas": 0, "frames": [], "delta_frames": [], "bad_status": []}
        cpu0, own0, t0 = cpu_seconds(pid), time.process_time(), time.perf_counter()
        results = await asyncio.wait_for(
            asyncio.gather(
                *(s.reply(t, d, out) for s, t, d in zip(sockets, texts, delays, strict=True)),
                return_exceptions=True,
            ),
            timeout,
        )
        cpu, wall = cpu_seconds(pid) - cpu0, time.perf_counter() - t0
        client_cpu = time.process_time() - own0
    finally:
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    summary = summarize(out["lat"], out["rates"], out["deltas"], cpu, wall)
    summary["frames_mean"] = statistics.mean(out["frames"]) if out["frames"] else float("nan")
    summary["frames_max"] = max(out["frames"], default=0)
    summary["delta_frames_mean"] = statistics.mean(out["delta_frames"]) if out["delta_frames"] else 0
    summary["client_cpu_pct"] = 100 * client_cpu / wall
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    summary["errors"] = (errors + [f"status {s}" for s in out["bad_status"]])[:3]
    summary["error_count"] = len(errors) + len(out["bad_status"])
    return summary


# ------------------------------------------------------------------------------ Django (in-process)
def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def make_users(n: int) -> list[tuple[int, str]]:
    """n users (unusable passwords: no hashing cost) and a logged-in session key for each."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model

    user_model = get_user_model()
    store = import_module(settings.SESSION_ENGINE).SessionStore
    users = user_model.objects.bulk_create(
        [user_model(username=f"bench-{i}", password="!") for i in range(n)]
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
                    self.other[sql.lstrip().split(None, 1)[0].upper()] += 1
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
    from conversations.generation import generation_wait

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
def print_row(n: int, path: str, r: dict, tps: float) -> None:
    frames = f"{r['frames_mean']:.1f} / {r['frames_max']}" if "frames_mean" in r else "-"
    print(
        f"{n:7d}  {path:13} {r['rate']:8.0f} / {n * tps:<6.0f} {r['p50']:7.1f} {r['p99']:7.1f} "
        f"{r['max']:7.1f} {r['cpu_per_delta_us']:8.1f} {r['cpu_pct']:6.0f}   {frames:13} {r['error_count']:3d}",
        flush=True,
    )
    for e in r["errors"]:
        print(f"         error: {e}")


def run(args: argparse.Namespace) -> None:
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    procs: list[subprocess.Popen] = []
    try:
        offline_port, daphne_port = free_port(), free_port()
        offline = subprocess.Popen(
            [sys.executable, "-m", "offline_claude", "--host", "127.0.0.1"]
            + [
                "--port",
                str(offline_port),
                "--ttft-ms",
                "0",
                "--tps",
                str(args.tps),
                "--tokens-per-delta",
                "1",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / "offline.log", "w"),  # noqa: SIM115 (closed with the process)
        )
        procs.append(offline)
        base_url = f"http://127.0.0.1:{offline_port}"
        env = {
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
            "ANTHROPIC_API_KEY": "bench",
            "ANTHROPIC_BASE_URL": base_url,
            "DJANGO_DEBUG": "1",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CHAT_RATE_LIMIT_PER_MINUTE": "100000",
            "CHAT_DEFAULT_MONTHLY_BUDGET_USD": "unlimited",
            "CHAT_LOG_LEVEL": "WARNING",
        }
        for name in ("REDIS_URL", "DATABASE_CONN_MAX_AGE"):  # the embedded default: SQLite + in-memory layer
            os.environ.pop(name, None)
        env.update(kv.split("=", 1) for kv in args.server_env)
        child_env = {**os.environ, **env}
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=child_env,
            check=True,
            timeout=120,
        )
        wait_port(offline_port, offline, "offline Claude")
        daphne = subprocess.Popen(
            [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(daphne_port), "chatsite.asgi:application"],
            cwd=ROOT,
            env=child_env,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / "daphne.log", "w"),  # noqa: SIM115 (closed with the process)
        )
        procs.append(daphne)
        django_setup(env)
        users = make_users(max(levels + [1]))
        wait_port(daphne_port, daphne, "daphne")
        print(
            f"offline Claude pid {offline.pid} at {base_url}; daphne pid {daphne.pid} on :{daphne_port}; "
            f"SQLite {tmp / 'bench.sqlite3'}; in-memory channel layer"
        )
        print(
            f"each stream: {args.reply_tokens} deltas of 1 token at {args.tps:g}/s "
            f"({args.reply_tokens / args.tps:.1f} s), starts staggered over {args.stagger:g} s; "
            "latency = client receive wall time - offline Claude's write-time stamp"
        )
        # Warm daphne up (first-call imports, SDK client, templates) with one short reply.
        warm = make_conversations(users[:1])
        asyncio.run(relay_level(daphne_port, daphne.pid, warm, [prompt(0, 0, 0, 20)], [0.0], 60))

        print()
        print(
            f"{'streams':>7}  {'path':13} {'deltas/s (target)':>17} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'max ms':>7} {'µs/delta':>8} {'CPU%':>6}   {'frames/reply':13} {'err':>3}"
        )
        notes = []
        for n in levels:
            targets = make_conversations(users[:n])
            texts = [prompt(n, i, args.tps, args.reply_tokens) for i in range(n)]
            delays = starts(n, args.seed, args.stagger)
            timeout = args.stagger + 3 * args.reply_tokens / args.tps + 60
            ours = (offline.pid, daphne.pid, os.getpid())
            off0, busy0, t0 = [cpu_seconds(p) for p in ours], machine_busy_seconds(), time.perf_counter()
            relay = asyncio.run(relay_level(daphne_port, daphne.pid, targets, texts, delays, timeout))
            wall = time.perf_counter() - t0
            used = [cpu_seconds(p) - c for p, c in zip(ours, off0, strict=True)]
            others_relay = 100 * (machine_busy_seconds() - busy0 - sum(used)) / wall
            off_relay = 100 * used[0] / wall
            print_row(n, "relay(daphne)", relay, args.tps)
            off0, busy0, t0 = cpu_seconds(offline.pid), machine_busy_seconds(), time.perf_counter()
            sdk = run_sdk_alone(base_url, texts, delays, timeout)
            wall = time.perf_counter() - t0
            off_used = cpu_seconds(offline.pid) - off0
            # The worker's own CPU is not known outside its measured window: count its whole life.
            others_sdk = 100 * (machine_busy_seconds() - busy0 - off_used - sdk["cpu_total"]) / wall
            off_sdk = 100 * off_used / wall
            print_row(n, "sdk alone", sdk, args.tps)
            notes.append(
                f"  {n:>4} streams: relay {relay['delta_frames_mean']:.1f} delta frames/reply; "
                f"ws client (this process) CPU {relay['client_cpu_pct']:.0f}%; offline Claude CPU "
                f"{off_relay:.0f}% / {off_sdk:.0f}%; other processes on the machine "
                f"{others_relay:.0f}% / {others_sdk:.0f}% (relay run / sdk run, % of one core)"
            )
        print("CPU% = share of one core used by daphne (relay) or by the SDK-alone process, over the level;")
        print(f"the machine has {os.cpu_count()} cores, shared with whatever else runs on it:")
        print("\n".join(notes))

        counter = WriteCounter()
        counter.install()
        ((cid, key),) = make_conversations(users[:1])
        text = (
            f"Count my DB writes: tell me about rivers "
            f"[[offline tps={args.db_tps:g} tokens_per_delta=1 reply_tokens={args.db_reply_tokens} ttft_ms=0]]"
        )
        db = asyncio.run(db_writes_reply(cid, key, text, counter))
        total = sum(counter.writes.values())
        breakdown = ", ".join(f"{k} {v}" for k, v in sorted(counter.writes.items(), key=lambda kv: -kv[1]))
        print()
        print(
            f"DB writes for one {db['output_tokens']:,}-token reply ({args.db_tps:g} tokens/s, "
            f"{db['wall']:.1f} s, status {db['status']}, {db['frames']} frames): {total} "
            f"({breakdown})"
        )
        other = ", ".join(f"{k} {v}" for k, v in counter.other.most_common())
        print(f"  other statements in the same reply: {other}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if args.keep_logs:
            print(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", default="1,100,200", help="comma-separated concurrent streams")
    parser.add_argument("--tps", type=float, default=50.0, help="deltas per second per stream")
    parser.add_argument("--reply-tokens", type=int, default=250, help="deltas per stream")
    parser.add_argument("--stagger", type=float, default=1.0, help="spread stream starts over this many s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db-reply-tokens", type=int, default=2000)
    parser.add_argument("--db-tps", type=float, default=400.0)
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra env for the app (repeat)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the tmp dir (daphne/offline logs)")
    parser.add_argument("--sdk-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sdk_worker:
        print(json.dumps(asyncio.run(sdk_worker(json.loads(sys.stdin.read())))))
        return
    run(args)


if __name__ == "__main__":
    main()

"""Real daphne workers for tests: each in its own process, on a port the OS picked, against a database
of its own (a fresh SQLite file, or a fresh database on the PostgreSQL server of DATABASE_URL).

The test process reaches a worker only as a browser would (HTTP and websockets) and reads the worker's
database directly, read-only, to check what was stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

PROJECT_DIR = Path(__file__).resolve().parents[1]
VENV_BIN = (
    PROJECT_DIR / ".venv" / "bin" if (PROJECT_DIR / ".venv" / "bin").is_dir() else Path(sys.executable).parent
)
# Debian's Chromium (Playwright cannot download browsers here), headless, as the browser tests and the
# browser benchmarks run it.
CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SERVER_START_TIMEOUT = 60
PASSWORD = "srv-Long-passw0rd!"


class ServerError(AssertionError):
    """A worker did not start or answer as expected (the message carries its log)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def uses_postgres() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


class ServerDatabase:
    """A database for server processes: created fresh, dropped (PostgreSQL) by `drop()`."""

    def __init__(self, workdir: Path, label: str) -> None:
        self.admin_url = None
        outer = os.environ.get("DATABASE_URL", "")
        if uses_postgres():
            import psycopg
            from psycopg import sql

            parts = urlsplit(outer)
            self.name = f"chat_{label}_{os.getpid()}"
            self.admin_url = urlunsplit(parts._replace(path="/postgres"))
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
                )
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
            self.url = urlunsplit(parts._replace(path=f"/{self.name}"))
        else:
            self.name = str(workdir / f"{label}.sqlite3")
            self.url = f"sqlite:///{self.name}"

    def query(self, sql_text: str, params: tuple = ()) -> list[tuple]:
        """Rows of one read-only query (written with %s placeholders)."""
        if self.admin_url is None:
            with sqlite3.connect(self.name, timeout=20) as conn:
                return conn.execute(sql_text.replace("%s", "?"), params).fetchall()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql_text, params).fetchall()

    def drop(self) -> None:
        if self.admin_url is None:
            return
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))


def server_env(database_url: str, **settings: str) -> dict[str, str]:
    """The environment of a server process: its own database, no API key (the offline Claude)."""
    env = dict(os.environ)
    # tests/conftest.py plants a fake key so nothing in the *test* process can reach Anthropic; the
    # server must not inherit it: without a key it uses its in-process offline Claude, as on a fresh
    # install. Likewise nothing from the pytest-django process may leak into the server's settings.
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "DJANGO_SETTINGS_MODULE", "PYTEST_CURRENT_TEST"):
        env.pop(name, None)
    env.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="chatsite.settings",
        DJANGO_DEBUG="1",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
        # Attachments of test servers go to a directory of their own, never the project's.
        CHAT_MEDIA_ROOT=tempfile.mkdtemp(prefix="chat-test-media-"),
        # Conversations keep the first-line titles the tests typed (titles by Claude are tested in
        # process, tests/conversations/replies/test_titles_and_stop_sequences.py); a test may turn them on.
        CHAT_TITLE_MODEL="off",
    )
    env.update(settings)
    return env


def migrate(env: dict[str, str]) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "python"), "manage.py", "migrate", "--noinput"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if result.returncode != 0:
        raise ServerError(f"manage.py migrate failed:\n{result.stdout}\n{result.stderr}")


class Worker:
    """One daphne process serving the app; `start()` returns once it answers HTTP."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, port: int | None = None) -> Worker:
        """Start serving, on `port` if given (a restart where pages expect it), else on a free one."""
        self.port = port or free_port()
        # As `make run` and the systemd unit start it: daphne on uvloop (chatsite/serve.py).
        python = VENV_BIN / "python" if (VENV_BIN / "python").exists() else Path(sys.executable)
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                [
                    str(python),
                    "-m",
                    "chatsite.serve",
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "chatsite.asgi:application",
                ],
                cwd=PROJECT_DIR,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_serving()
        return self

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(
                    f"daphne exited with {self.process.returncode} before serving:\n{self.log()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/accounts/login/", timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answers; an error page is the tests' business, not the fixture's
            except OSError as exc:
                last_error = exc
            time.sleep(0.2)
        raise ServerError(
            f"daphne did not serve {self.url} within {SERVER_START_TIMEOUT}s ({last_error}):\n{self.log()}"
        )

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """Make sure the process is gone (tests stop workers themselves; this is the safety net)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text()[-20000:] if self.log_path.exists() else ""


@contextlib.contextmanager
def own_worker(workdir: Path, label: str, **settings: str):
    """A daphne worker on a database of its own (`settings` as server_env takes them), migrated and
    started; stopped and its database dropped afterwards."""
    database = ServerDatabase(workdir, label)
    env = server_env(database.url, **settings)
    migrate(env)
    worker = Worker(env, workdir / "daphne.log").start()
    try:
        yield worker
    finally:
        worker.stop()
        database.drop()


class Account:
    """A person signed up through the form, with the session cookie a browser would hold."""

    def __init__(self, worker: Worker | Nginx) -> None:
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.username = f"srv{uuid.uuid4().hex[:10]}"
        self._post(
            worker,
            "/accounts/signup/",
            {"username": self.username, "password1": PASSWORD, "password2": PASSWORD},
        )

    def cookie(self, name: str) -> str:
        return next(c.value for c in self.jar if c.name == name)

    def _post(self, worker: Worker, path: str, fields: dict) -> str:
        """POST a form the way a browser does (CSRF token from the page); returns the final URL."""
        with self.opener.open(f"{worker.url}{path}", timeout=20) as page:
            html = page.read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
        data = urllib.parse.urlencode(
            {**fields, "csrfmiddlewaretoken": token.group(1) if token else ""}
        ).encode()
        request = urllib.request.Request(
            f"{worker.url}{path}", data=data, headers={"Referer": f"{worker.url}{path}"}
        )
        with self.opener.open(request, timeout=20) as response:
            return response.geturl()

    def new_conversation(self, worker: Worker) -> int:
        """A new empty conversation, made through the home page's form; returns its id."""
        with self.opener.open(f"{worker.url}/", timeout=20) as page:
            html = page.read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
        data = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "message": ""}).encode()
        request = urllib.request.Request(
            f"{worker.url}/c/new/", data=data, headers={"Referer": f"{worker.url}/"}
        )
        with self.opener.open(request, timeout=20) as response:
            return int(re.search(r"/c/(\d+)/", response.geturl()).group(1))

    def ws_headers(self, worker: Worker) -> dict[str, str]:
        return {"Cookie": f"sessionid={self.cookie('sessionid')}", "Origin": worker.url}


DELTA = re.compile(r'<div id="msg-(\d+)-body" hx-swap-oob="beforeend">(.*?)</div>', re.S)


class Chat:
    """One browser tab's websocket on a conversation: what it sent and every frame it received."""

    def __init__(self, ws, conversation_id: int) -> None:
        self.ws = ws
        self.conversation_id = conversation_id
        self.frames: list[str] = []
        self.close_code: int | None = None

    @classmethod
    async def open(cls, worker: Worker, account: Account, conversation_id: int) -> Chat:
        ws = await connect(
            f"{worker.ws_url}/ws/chat/{conversation_id}/",
            origin=worker.url,
            additional_headers={"Cookie": f"sessionid={account.cookie('sessionid')}"},
            proxy=None,
            max_size=None,
            ping_interval=None,  # as a browser: it answers pings, it sends none (a busy server is not dead)
        )
        chat = cls(ws, conversation_id)
        await chat.until(lambda f: 'id="messages"' in f)  # the state every socket gets on connect
        return chat

    async def send(self, **frame) -> None:
        await self.ws.send(json.dumps({"conversation": self.conversation_id, **frame}))

    async def until(self, predicate, timeout: float = 60) -> str:
        """Read frames until one satisfies `predicate`; returns it."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.ws.recv()
                self.frames.append(frame)
                if predicate(frame):
                    return frame

    async def until_closed(self, timeout: float = 60) -> int:
        try:
            async with asyncio.timeout(timeout):
                async for frame in self.ws:
                    self.frames.append(frame)
        except ConnectionClosed:
            pass
        self.close_code = self.ws.close_code
        return self.close_code

    async def until_streaming(self, timeout: float = 60) -> str:
        """Read frames until a reply's text is streaming in (its first delta)."""
        return await self.until(DELTA.search, timeout)

    def replies_started(self) -> list[int]:
        return sorted(
            {
                int(m)
                for f in self.frames
                for m in re.findall(r'id="msg-(\d+)" class="message assistant status-streaming', f)
            }
        )

    def text_of(self, message_id: int) -> str:
        """The reply's text as this tab received it live."""
        return "".join(
            html.unescape(t) for f in self.frames for m, t in DELTA.findall(f) if int(m) == message_id
        )

    async def close(self) -> None:
        await self.ws.close()


NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
DEPLOY_DIR = PROJECT_DIR / "deploy"


class Nginx:
    """nginx in front of `workers` with the proxy rules the project ships (deploy/nginx/)."""

    def __init__(self, workers: list[Worker], workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        servers = "\n".join(
            f"        server 127.0.0.1:{w.port} max_fails=1 fail_timeout=5s;" for w in workers
        )
        self.conf = workdir / "nginx.conf"
        self.conf.write_text(
            f"""daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    upstream teamchat_workers {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{self.port};
        include {DEPLOY_DIR}/nginx/teamchat-proxy.conf;
    }}
}}
"""
        )
        self.process = subprocess.Popen(
            [NGINX, "-p", str(workdir), "-c", str(self.conf)], stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise ServerError(f"nginx did not start: {self.process.stderr.read().decode()}") from None
                time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class RedisServer:
    """A Redis of the test's own on a free port, which the test may stop and start again (the shared one
    on 6379 is never touched)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise ServerError("redis-server did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class TcpProxy:
    """A TCP relay to `target` on a free port, run in the test's event loop. `cut()` closes every
    connection through it and refuses new ones (the database unreachable for whoever connects through
    it); `restore()` accepts again on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> TcpProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    async def cut(self) -> None:
        self.server.close()
        for writer in list(self.writers):
            transport = writer.transport
            transport.abort()  # a reset, as a network that went away
        self.writers.clear()
        await self.server.wait_closed()

    async def restore(self) -> None:
        await self.start()

    def url_for(self, url: str) -> str:
        """`url` (to the proxied host and port) with this proxy's port in its place."""
        parts = urlsplit(url)
        return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.port}", f":{self.port}")))

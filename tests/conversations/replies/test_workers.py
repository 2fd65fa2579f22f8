"""Real daphne workers, stopped and killed: nothing wedged, nothing lost, every call billed once.

Each test starts its own worker processes against a database of their own and talks to them as a
browser would; it reads that database directly to check what was stored. The two-worker tests need
PostgreSQL and Redis (the scale-out), so they run in the `make test` pass that provides them.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import signal
import subprocess

import pytest

from tests.helpers import eventually
from tests.servers import (
    DELTA,
    DEPLOY_DIR,
    NGINX,
    Account,
    Chat,
    Nginx,
    ServerDatabase,
    migrate,
    server_env,
    uses_postgres,
)


def final(message_id: int):
    marker = f'id="msg-{message_id}" class="message assistant status-'
    return lambda frame: marker in frame and f"{marker}streaming" not in frame


def reply_row(db: ServerDatabase, message_id: int) -> tuple[str, str]:
    [row] = db.query("SELECT status, content FROM conversations_message WHERE id = %s", (message_id,))
    return row


def ledger_rows(db: ServerDatabase, message_id: int) -> int:
    return db.query("SELECT count(*) FROM billing_usagerecord WHERE message_id = %s", (message_id,))[0][0]


def open_holds(db: ServerDatabase) -> int:
    return db.query("SELECT count(*) FROM billing_spendreservation WHERE settled_at IS NULL")[0][0]


async def started_with_a_conversation(workers, env: dict[str, str], count: int = 1):
    """Migrate, start `count` workers, and sign up on the first with one conversation there."""
    await asyncio.to_thread(migrate, env)
    started = [await asyncio.to_thread(workers, env) for _ in range(count)]
    account = await asyncio.to_thread(Account, started[0])
    conversation = await asyncio.to_thread(account.new_conversation, started[0])
    return started, account, conversation


async def poll(check, timeout: float = 60):
    """Wait until `check()` (run in a thread: it queries the database) returns something truthy."""
    return await eventually(lambda: asyncio.to_thread(check), timeout=timeout, interval=0.2)


async def test_sigterm_lets_the_worker_finish_what_it_can_then_ends_the_rest_and_exits(database, workers):
    env = server_env(database.url, CHAT_SHUTDOWN_GRACE_SECONDS="1")
    [worker], account, conversation = await started_with_a_conversation(workers, env)
    chat = await Chat.open(worker, account, conversation)
    await chat.send(message="A long saga, please [[offline tps=30 reply_tokens=3000]]")
    await chat.until_streaming()
    [reply] = chat.replies_started()

    worker.signal(signal.SIGTERM)
    # The page is told at once; the socket then drops as the server stops (htmx reconnects on that).
    await chat.until(lambda f: "restarting" in f)
    code = await chat.until_closed()
    assert code in (1006, 1011, 1012, 1013), code  # the codes htmx's ws extension reconnects on
    assert await asyncio.to_thread(worker.wait, 60) == 0

    status, saved = reply_row(database, reply)
    received = chat.text_of(reply)
    assert status == "interrupted"
    assert received and saved.startswith(received)  # nothing the reader saw is lost
    assert ledger_rows(database, reply) == 1 and open_holds(database) == 0

    # Back up again, the page catches up with the end of the reply and can send.
    worker = await asyncio.to_thread(workers, env)
    chat = await Chat.open(worker, account, conversation)
    assert f'id="msg-{reply}" class="message assistant status-interrupted' in chat.frames[0]
    await chat.send(message="Still there? [[offline reply_tokens=5]]")
    await chat.until(lambda f: "assistant status-complete" in f)  # the conversation works again
    await chat.close()
    assert max(chat.replies_started()) > reply


async def test_after_sigkill_a_new_worker_ends_the_orphaned_reply_within_the_lease(database, workers):
    env = server_env(database.url, CHAT_LEASE_SECONDS="3")
    [worker], account, conversation = await started_with_a_conversation(workers, env)
    chat = await Chat.open(worker, account, conversation)
    await chat.send(message="Keep going [[offline tps=30 reply_tokens=3000]]")
    await chat.until_streaming()
    [reply] = chat.replies_started()
    await poll(lambda: reply_row(database, reply)[1])  # a checkpoint has saved some text

    worker.signal(signal.SIGKILL)
    await asyncio.to_thread(worker.wait, 30)
    await chat.until_closed()

    worker = await asyncio.to_thread(workers, env)  # nobody runs recover_replies by hand
    status, saved = await poll(
        lambda: (row := reply_row(database, reply))[0] != "streaming" and row, timeout=30
    )
    assert status == "interrupted" and saved and chat.text_of(reply).startswith(saved)
    assert ledger_rows(database, reply) == 1 and open_holds(database) == 0

    chat = await Chat.open(worker, account, conversation)
    await chat.send(message="And now? [[offline reply_tokens=5]]")
    await chat.until(lambda f: "assistant status-complete" in f)
    await chat.close()


REDIS_URL = os.environ.get("REDIS_URL", "")
scale_out = pytest.mark.skipif(
    not (uses_postgres() and REDIS_URL),
    reason="the scale-out runs on PostgreSQL + Redis (make test-postgres)",
)


def scale_out_env(database: ServerDatabase, **settings: str) -> dict[str, str]:
    # A Redis database of their own: the in-process tests of the same run use REDIS_URL's.
    redis_url = re.sub(r"/\d*$", "", REDIS_URL) + "/14"
    return server_env(database.url, REDIS_URL=redis_url, CHAT_RATE_LIMIT_PER_MINUTE="0", **settings)


@scale_out
async def test_two_workers_share_replies_stop_and_recover_each_others(database, workers):
    env = scale_out_env(database, CHAT_LEASE_SECONDS="3")
    (a, b), account, conversation = await started_with_a_conversation(workers, env, count=2)
    on_a = await Chat.open(a, account, conversation)
    on_b = await Chat.open(b, account, conversation)

    # A reply started on A streams live to a tab connected to B, and B's Stop stops it.
    await on_a.send(message="Tell me everything [[offline tps=40 reply_tokens=3000]]")
    await on_b.until_streaming()
    [reply] = on_b.replies_started()
    await on_b.send(action="stop", message_id=reply)
    await on_b.until(final(reply))
    assert "status-stopped" in (await on_a.until(final(reply)))
    assert on_b.text_of(reply) and reply_row(database, reply)[0] == "stopped"

    # A dies mid-reply: B's tab sees the reply end as interrupted within the lease, and can send.
    await on_a.send(message="Another long one [[offline tps=40 reply_tokens=3000]]")
    await on_b.until(lambda f: (m := DELTA.search(f)) is not None and int(m.group(1)) != reply)
    second = max(on_b.replies_started())
    a.signal(signal.SIGKILL)
    await asyncio.to_thread(a.wait, 30)
    assert "status-interrupted" in await on_b.until(final(second), timeout=30)
    await on_b.send(message="Hello again [[offline reply_tokens=5]]")
    await on_b.until(lambda f: "assistant status-complete" in f)
    assert ledger_rows(database, reply) == ledger_rows(database, second) == 1
    await on_b.close()


CATCH_UP = re.compile(r'<div id="msg-(\d+)-body" data-catch-up hx-swap-oob="innerHTML">(.*?)</div>', re.S)


@scale_out
async def test_a_tab_opened_on_another_worker_mid_reply_shows_the_whole_text_once(database, workers):
    env = scale_out_env(database)
    (a, b), account, conversation = await started_with_a_conversation(workers, env, count=2)
    on_a = await Chat.open(a, account, conversation)
    await on_a.send(message="A long one [[offline tps=60 reply_tokens=300]]")
    await on_a.until_streaming()
    [reply] = on_a.replies_started()
    await on_a.until(lambda f: len(on_a.text_of(reply)) > 40)

    # Worker A relays the reply to its own tab without the channel layer; a tab that opens on B now
    # gets the text so far (its catch-up), then every later frame through Redis, and nothing twice.
    on_b = await Chat.open(b, account, conversation)
    caught_up = await on_b.until(CATCH_UP.search)
    [(caught_id, so_far)] = CATCH_UP.findall(caught_up)
    assert int(caught_id) == reply and so_far
    await on_b.until(final(reply))
    await on_a.until(final(reply))
    status, content = reply_row(database, reply)
    assert status == "complete"
    assert on_a.text_of(reply) == content
    # (deltas B got before its catch-up, if any, are inside it: the page replaces its text with it)
    after = on_b.frames[on_b.frames.index(caught_up) + 1 :]
    assert (
        html.unescape(so_far) + "".join(html.unescape(t) for f in after for _, t in DELTA.findall(f))
        == content
    )
    await on_a.close()
    await on_b.close()


@scale_out
async def test_restarting_both_workers_during_twenty_replies_loses_nothing_and_bills_each_call_once(
    database, workers
):
    env = scale_out_env(database, CHAT_SHUTDOWN_GRACE_SECONDS="2")
    await asyncio.to_thread(migrate, env)
    a = await asyncio.to_thread(workers, env)
    b = await asyncio.to_thread(workers, env)
    account = await asyncio.to_thread(Account, a)
    chats = []
    for n in range(20):
        worker = a if n % 2 else b
        conversation = await asyncio.to_thread(account.new_conversation, worker)
        chats.append(await Chat.open(worker, account, conversation))
    texts = [f"Reply number {n} please [[offline tps=25 reply_tokens=600]]" for n in range(20)]
    for chat, text in zip(chats, texts, strict=True):
        await chat.send(message=text)
    for chat in chats:
        await chat.until_streaming()

    for old in (a, b):  # a rolling restart: one worker after the other
        old.signal(signal.SIGTERM)
        assert await asyncio.to_thread(old.wait, 60) == 0
        await asyncio.to_thread(workers, env)

    def settled():
        return (
            database.query("SELECT count(*) FROM conversations_message WHERE status = 'streaming'")[0][0] == 0
        )

    await poll(settled, timeout=60)
    users = database.query("SELECT content FROM conversations_message WHERE role = 'user' ORDER BY id")
    assert sorted(row[0] for row in users) == sorted(texts)  # every message, as typed (stored concurrently)
    replies = database.query("SELECT id, status FROM conversations_message WHERE role = 'assistant'")
    assert len(replies) == 20 and all(status in {"complete", "interrupted"} for _, status in replies)
    per_call = database.query(
        "SELECT message_id, count(*) FROM billing_usagerecord GROUP BY message_id HAVING count(*) <> 1"
    )
    assert per_call == [] and database.query("SELECT count(*) FROM billing_usagerecord")[0][0] == 20
    assert open_holds(database) == 0
    for chat in chats:
        await chat.close()


needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is installed by `make test` (apt-get)")


@needs_nginx
def test_the_shipped_nginx_site_is_valid_nginx(tmp_path):
    # Check the whole shipped site file with `nginx -t`: a throwaway certificate in place of the real one.
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=chat.example.org",
         "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    site = (DEPLOY_DIR / "nginx" / "teamchat.conf").read_text()
    site = site.replace("/etc/letsencrypt/live/chat.example.org/fullchain.pem", str(tmp_path / "cert.pem"))
    site = site.replace("/etc/letsencrypt/live/chat.example.org/privkey.pem", str(tmp_path / "key.pem"))
    site = site.replace("/etc/nginx/teamchat-proxy.conf", str(DEPLOY_DIR / "nginx" / "teamchat-proxy.conf"))
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log; events {{}}\n"
        f"http {{ access_log off; include {tmp_path}/site.conf; }}\n"
    )
    result = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


@needs_nginx
@scale_out
async def test_behind_the_shipped_nginx_rules_a_restarted_worker_is_skipped_and_chats_go_on(
    database, workers, tmp_path
):
    env = scale_out_env(database, CHAT_SHUTDOWN_GRACE_SECONDS="1")
    await asyncio.to_thread(migrate, env)
    a = await asyncio.to_thread(workers, env)
    b = await asyncio.to_thread(workers, env)
    proxy = await asyncio.to_thread(Nginx, [a, b], tmp_path)
    try:
        account = await asyncio.to_thread(Account, proxy)  # sign-up and its CSRF through the proxy
        conversation = await asyncio.to_thread(account.new_conversation, proxy)
        tabs = [
            await Chat.open(proxy, account, conversation) for _ in range(2)
        ]  # one per worker (round robin)
        await tabs[0].send(message="Hello through the proxy [[offline tps=200 reply_tokens=60]]")
        for tab in tabs:
            await tab.until(lambda f: "assistant status-complete" in f)

        a.signal(signal.SIGTERM)  # one worker leaves; the proxy sends everyone to the other
        assert await asyncio.to_thread(a.wait, 60) == 0
        for _ in range(4):
            tab = await Chat.open(proxy, account, conversation)
            await tab.send(message="Still here? [[offline reply_tokens=5]]")
            await tab.until(lambda f: "assistant status-complete" in f)
            await tab.close()
    finally:
        proxy.stop()

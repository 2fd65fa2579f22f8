"""Slow is not dead, with two real workers on PostgreSQL + Redis: a Redis outage mid-reply, the database
unreachable from one worker, a row lock held past the lease, and Sends just after SIGTERM. In each, no
reply is left streaming, every reply keeps the text its tab saw, every call has one ledger row (the API's
own count wherever it reported one) and no hold stays open.
"""

from __future__ import annotations

import asyncio
import signal

from tests.conversations.replies.test_workers import (
    final,
    ledger_rows,
    open_holds,
    poll,
    reply_row,
    scale_out,
    scale_out_env,
    started_with_a_conversation,
)
from tests.servers import Account, Chat, RedisServer, TcpProxy, migrate

pytestmark = scale_out


def ledger_row(db, message_id: int) -> tuple[bool, int]:
    """(estimated, output tokens) of the reply's one ledger row."""
    [row] = db.query(
        "SELECT estimated, output_tokens FROM billing_usagerecord WHERE message_id = %s", (message_id,)
    )
    return row


def page_opens(worker, account: Account, conversation: int) -> int:
    with account.opener.open(f"{worker.url}/c/{conversation}/", timeout=20) as page:
        return page.status


async def test_a_redis_outage_mid_reply_keeps_the_page_streaming_and_the_reply_whole(
    database, workers, tmp_path
):
    redis = RedisServer(tmp_path).start()
    try:
        env = {**scale_out_env(database), "REDIS_URL": redis.url}
        (a, b), account, conversation = await started_with_a_conversation(workers, env, count=2)
        chat = await Chat.open(a, account, conversation)
        await chat.send(message="Tell me a story [[offline tps=30 reply_tokens=240]]")  # about 8 s
        await chat.until_streaming()
        [reply] = chat.replies_started()

        await asyncio.to_thread(redis.stop)
        # Meanwhile a page of this worker still opens, and its socket too (its frames need no Redis).
        assert await asyncio.to_thread(page_opens, a, account, conversation) == 200
        second = await Chat.open(a, account, conversation)
        await asyncio.sleep(4)
        await asyncio.to_thread(redis.start)

        await chat.until(final(reply), timeout=60)
        assert chat.ws.close_code is None  # the socket was never closed for the outage
        status, saved = reply_row(database, reply)
        assert status == "complete" and saved == chat.text_of(reply)
        assert (
            ledger_rows(database, reply) == 1
            and not ledger_row(database, reply)[0]
            and open_holds(database) == 0
        )
        # Once Redis is back the other worker's pages see the end too, and the conversation goes on.
        on_b = await Chat.open(b, account, conversation)
        assert f'id="msg-{reply}" class="message assistant status-complete' in on_b.frames[0]
        await chat.send(message="And then? [[offline reply_tokens=5]]")
        await on_b.until(lambda f: "And then?" in f, timeout=30)  # relayed through Redis again
        await poll(lambda: _complete_replies(database) == 2, timeout=30)
        for tab in (chat, second, on_b):
            await tab.close()
        assert a.log().count("Traceback") <= 2  # one line per outage, not one per reply per half second
    finally:
        redis.stop()


async def test_the_database_unreachable_from_one_worker_keeps_the_end_and_saves_it_when_back(
    database, workers
):
    proxy = await TcpProxy(*_database_host(database)).start()
    env_b = scale_out_env(database)
    env_a = {**env_b, "DATABASE_URL": proxy.url_for(database.url)}
    await asyncio.to_thread(migrate, env_b)
    a = await asyncio.to_thread(workers, env_a)
    b = await asyncio.to_thread(workers, env_b)  # sweeps expired leases all along
    account = await asyncio.to_thread(Account, a)
    conversation = await asyncio.to_thread(account.new_conversation, a)
    chat = await Chat.open(a, account, conversation)
    await chat.send(message="Tell me about rivers [[offline tps=40 reply_tokens=120]]")  # about 3 s
    await chat.until_streaming()
    [reply] = chat.replies_started()

    await proxy.cut()
    # The reply ends while worker A cannot reach the database: the page is told it is kept and saved later.
    await chat.until(lambda f: "Saving it: the database is not answering yet" in f, timeout=30)
    await asyncio.sleep(5)  # 8 s in all: less than a lease, so the live worker is not taken for dead
    await proxy.restore()

    await chat.until(final(reply), timeout=60)
    await chat.close()
    status, saved = reply_row(database, reply)
    assert status == "complete" and saved == chat.text_of(reply)
    estimated, output = ledger_row(database, reply)
    assert not estimated and output >= 120 and open_holds(database) == 0
    assert "whose worker stopped renewing their lease" not in b.log()  # B never took A for dead


async def test_a_row_lock_held_past_the_lease_does_not_get_a_live_reply_swept(database, workers):
    import psycopg

    env = scale_out_env(database, CHAT_LEASE_SECONDS="3")
    (a, b), account, conversation = await started_with_a_conversation(workers, env, count=2)
    chat = await Chat.open(a, account, conversation)
    await chat.send(message="A long answer [[offline tps=30 reply_tokens=300]]")  # about 10 s
    await chat.until_streaming()
    [reply] = chat.replies_started()
    await poll(lambda: reply_row(database, reply)[1])

    with psycopg.connect(database.url) as locker:  # someone holds the reply's row for twice the lease
        locker.execute("SELECT id FROM conversations_message WHERE id = %s FOR UPDATE", (reply,))
        await asyncio.sleep(6)
        locker.rollback()

    await chat.until(final(reply), timeout=60)
    await chat.close()
    status, saved = reply_row(database, reply)
    assert status == "complete" and saved == chat.text_of(reply)
    assert (
        ledger_rows(database, reply) == 1 and not ledger_row(database, reply)[0] and open_holds(database) == 0
    )
    assert "whose worker stopped renewing their lease" not in a.log() + b.log()


async def test_sends_just_after_sigterm_are_refused_or_finished_never_left_streaming(database, workers):
    env = scale_out_env(database, CHAT_SHUTDOWN_GRACE_SECONDS="5")
    (a, b), account, first = await started_with_a_conversation(workers, env, count=2)
    conversations = [first] + [await asyncio.to_thread(account.new_conversation, a) for _ in range(5)]
    tabs = [await Chat.open(a, account, c) for c in conversations]
    await tabs[0].send(message="Busy already [[offline tps=40 reply_tokens=80]]")
    await tabs[0].until_streaming()

    a.signal(signal.SIGTERM)
    await asyncio.sleep(0.5)
    for tab in tabs[1:]:
        try:
            await tab.send(message="Just in time? [[offline tps=40 reply_tokens=40]]")
        except Exception:
            pass  # its socket was already closed so the page reconnects to the other worker: nothing sent
    assert await asyncio.to_thread(a.wait, 60) == 0

    streaming = database.query("SELECT count(*) FROM conversations_message WHERE status = 'streaming'")[0][0]
    assert streaming == 0
    # Every stored message has its reply, ended, with one ledger row; nothing else was stored.
    users, assistants = (
        database.query("SELECT count(*) FROM conversations_message WHERE role = %s", (role,))[0][0]
        for role in ("user", "assistant")
    )
    assert users == assistants >= 1
    unbilled = database.query(
        "SELECT count(*) FROM conversations_message m WHERE m.role = 'assistant' AND "
        "(SELECT count(*) FROM billing_usagerecord r WHERE r.attempt_id = m.attempt_id) <> 1"
    )[0][0]
    assert unbilled == 0 and open_holds(database) == 0
    # The pages move to the other worker and go on there.
    moved = await Chat.open(b, account, conversations[1])
    await moved.send(message="Here now? [[offline reply_tokens=5]]")
    await moved.until(lambda f: "assistant status-complete" in f, timeout=30)
    await moved.close()
    for tab in tabs:
        try:
            await tab.close()
        except Exception:
            pass


def _complete_replies(db) -> int:
    return db.query(
        "SELECT count(*) FROM conversations_message WHERE role = 'assistant' AND status = 'complete'"
    )[0][0]


def _database_host(db) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(db.url)
    return parts.hostname, parts.port or 5432

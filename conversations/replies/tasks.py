"""The tasks this server owns: they outlive the request or socket that started them.

Generations (one per reply), titles (one per conversation being titled), the lease sweeper (one per
event loop) and the checkpointer (while replies run) are all started here: in a fresh context (a task
must not inherit the request's or socket's, whose thread executor ends with it), named, found again by
their kind and key, and logged if one crashes. The drain (`generation.generations_drain`) waits for
the ones that write something a person will see or pay for, generations and titles, and cancels what
is left at its deadline; the sweeper and the checkpointer stop with the process.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine, Hashable, Iterable

logger = logging.getLogger(__name__)

_tasks: dict[tuple[str, Hashable], asyncio.Task] = {}


def start(
    kind: str, key: Hashable, coro: Coroutine, *, on_done: Callable[[asyncio.Task], None] | None = None
) -> asyncio.Task:
    """Run `coro` as the server's task `kind` `key` on the running loop (the caller checked that no such
    task runs, if that matters to it). `on_done` runs when it ends, however it ends."""
    for stale in [k for k, t in _tasks.items() if t.get_loop().is_closed()]:
        del _tasks[stale]  # left by an event loop that is gone (tests run one per test)
    task = asyncio.get_running_loop().create_task(coro, name=f"{kind}-{key}", context=contextvars.Context())
    _tasks[(kind, key)] = task

    def ended(task: asyncio.Task) -> None:
        if _tasks.get((kind, key)) is task:
            del _tasks[(kind, key)]
        if on_done is not None:
            on_done(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("The server's task %s crashed", task.get_name(), exc_info=task.exception())

    task.add_done_callback(ended)
    return task


def get(kind: str, key: Hashable) -> asyncio.Task | None:
    """The running task `kind` `key`, if any."""
    task = _tasks.get((kind, key))
    return task if task is not None and not task.done() else None


def running(kinds: Iterable[str]) -> list[asyncio.Task]:
    """The tasks of these kinds that have not ended."""
    wanted = set(kinds)
    return [task for (kind, _key), task in list(_tasks.items()) if kind in wanted and not task.done()]


async def wait(kind: str, key: Hashable, timeout: float = 30) -> None:
    """Wait until task `kind` `key` has ended (tests and shutdown); at once if there is none."""
    task = get(kind, key)
    if task is not None:
        await asyncio.wait_for(asyncio.shield(task), timeout)

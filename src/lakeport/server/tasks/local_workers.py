"""Workers ``lakeport serve`` starts beside itself (``--workers N``, 1 by default): processes
of ``lakeport worker`` on the server's own URL, with a worker key made for them at start and
revoked at stop (the key goes through the environment, never the command line)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from lakeport.server.settings import ServerSettings
from lakeport.server.store import Store
from lakeport.server.store.users import create_key, revoke_key
from lakeport.tasks.process import DIE_WITH_PARENT

log = logging.getLogger("lakeport.server.tasks")
USER = "lakeport-worker"
STOP_GRACE = 10.0


@asynccontextmanager
async def local_workers(settings: ServerSettings, store: Store) -> AsyncIterator[list[int]]:
    """Start ``settings.workers`` worker processes; their pids. They are stopped on exit
    (SIGTERM, then SIGKILL after :data:`STOP_GRACE` seconds)."""
    if settings.workers <= 0:
        yield []
        return
    key = await create_key(store, USER, "workers of lakeport serve", worker=True)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    url = f"http://{host}:{settings.port}"
    env = {**os.environ, "LAKEPORT_API_KEY": key, "LAKEPORT_URL": url}
    processes = []
    for number in range(settings.workers):
        processes.append(await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lakeport.cli", "worker", "--name",
            f"{os.uname().nodename}-serve-{number}", "--concurrency",
            str(settings.worker_concurrency), env=env, stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=DIE_WITH_PARENT))  # a server killed with kill -9 takes them along
    try:
        yield [process.pid for process in processes]
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        with contextlib.suppress(Exception):
            await revoke_key(store, key.split("_")[1])


__all__ = ["USER", "local_workers"]

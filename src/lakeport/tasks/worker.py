"""``lakeport worker``: claims runs from a lakeport server over HTTP and runs them.

A worker needs nothing but the server's URL and a worker key (``lakeport keys create --user
NAME --worker``), so it runs on any machine. It offers the runtimes usable where it runs (or
those named), claims up to ``concurrency`` runs at once with a long poll, and runs each as an
:class:`~lakeport.tasks.attempt.Attempt`, its process forked by one of the worker's
launchers (:mod:`lakeport.tasks.launcher`: small fork servers, one per interpreter, so a
start costs the fork of a small process, and a ``py`` task no interpreter start-up). A
worker killed with ``kill -9`` takes its task processes with it (the kernel stops its
launchers and each task's leader when their parent dies, and a restarted worker stops what
is left of the groups it had started); the server marks such runs lost and retries them
elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path

from lakeport.client.config import ClientConfig
from lakeport.client.http import Http
from lakeport.client.task_worker import Next, TaskWorkerApi
from lakeport.errors import Invalid, LakeportError, Transient
from lakeport.home import lakeport_home
from lakeport.tasks.attempt import Attempt
from lakeport.tasks.launching import Launchers
from lakeport.tasks.runtimes import available_runtimes, runtime, runtime_names

log = logging.getLogger("lakeport.tasks.worker")
CLAIM_WAIT = 3.0
"""Seconds a claim waits on the server (a server stopping waits for open claims)."""
BACKOFF_MAX = 5.0


@dataclass
class WorkerConfig:
    """What a worker runs with."""

    url: str | None = None  # None: LAKEPORT_URL, else $LAKEPORT_HOME/client.json
    api_key: str | None = None  # None: LAKEPORT_API_KEY, else $LAKEPORT_HOME/client.json
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    runtimes: list[str] | None = None  # None: every runtime usable here
    concurrency: int = 4
    folder: Path | None = None  # None: $LAKEPORT_HOME/worker


def offered_runtimes(names: list[str] | None) -> list[str]:
    """The runtimes a worker offers: ``names`` (each must be usable here) or all usable."""
    if names is None:
        return available_runtimes()
    for name in names:
        problem = runtime(name).missing()
        if problem is not None:
            raise Invalid(f"runtime {name!r} cannot run here: {problem}")
    return list(dict.fromkeys(names))


class Worker:
    """Claims and runs attempts until :meth:`stop` (or its ``stopping`` event)."""

    def __init__(self, config: WorkerConfig) -> None:
        if config.concurrency < 1:
            raise Invalid(f"concurrency must be at least 1, not {config.concurrency}")
        self.config = config
        self.runtimes = offered_runtimes(config.runtimes)
        if not self.runtimes:
            raise Invalid(f"no runtime can run here (known: {', '.join(runtime_names())})")
        self.folder = config.folder or lakeport_home() / "worker"
        self.running: dict[int, asyncio.Task[None]] = {}
        self.launchers: Launchers | None = None  # while running: the fork servers of tasks
        self._slot = self.folder
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        """Serve until stopped; running attempts are waited for (their runs finish). A task
        process an earlier worker of the same slot left behind is killed first (its run is
        retried by the server)."""
        self._slot, lock = _take_slot(self.folder)
        _stop_leftovers(self._slot / "groups")
        http = Http(ClientConfig.from_env(url=self.config.url, api_key=self.config.api_key,
                                          timeout=CLAIM_WAIT + 30))
        api = TaskWorkerApi(http)
        slots = asyncio.Semaphore(self.config.concurrency)
        self.launchers = Launchers()
        delay = 0.5
        log.info("worker %s offers %s to %s", self.config.name, ", ".join(self.runtimes),
                 http.url)
        try:
            while not self.stopping.is_set():
                await slots.acquire()
                free = self.config.concurrency - len(self.running)  # this slot included
                try:
                    records = await self._claim(api, free)
                except Transient as exc:
                    slots.release()
                    log.warning("cannot claim runs: %s (again in %.1f s)", exc, delay)
                    await self._pause(delay)
                    delay = min(delay * 2, BACKOFF_MAX)
                    continue
                delay = 0.5
                if not records:
                    slots.release()
                    continue
                for number, record in enumerate(records):
                    if number:  # at once: no more runs were claimed than slots were free
                        await slots.acquire()
                    job = asyncio.create_task(self._attempt(api, record, slots))
                    self.running[record["id"]] = job
            if self.running:
                await asyncio.gather(*self.running.values(), return_exceptions=True)
        finally:
            await self.launchers.close()
            self.launchers = None
            await http.aclose()
            os.close(lock)

    async def _claim(self, api: TaskWorkerApi, most: int) -> list[dict]:
        claiming = asyncio.ensure_future(api.claim(self._next(most), CLAIM_WAIT))
        stopping = asyncio.ensure_future(self.stopping.wait())
        try:
            done, _ = await asyncio.wait({claiming, stopping},
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if claiming in done:
            return claiming.result()
        claiming.cancel()
        with contextlib.suppress(asyncio.CancelledError, LakeportError):
            return await claiming  # claimed while stopping: run them anyway
        return []

    def _next(self, most: int = 1) -> Next:
        return Next(self.config.name, self.runtimes, most)

    def _then(self) -> Next | None:
        """What an attempt claims with its finish: the next run for its slot (while the
        worker is not stopping)."""
        return None if self.stopping.is_set() else self._next()

    async def _attempt(self, api: TaskWorkerApi, record: dict, slots: asyncio.Semaphore
                       ) -> None:
        """Run ``record``'s attempt in a slot, then each run claimed with its finish in the
        same slot; the slot is free once one was claimed with none."""
        job = self.running[record["id"]]
        try:
            while record is not None:
                attempt = Attempt(api, record, self._slot / "attempts" / str(record["id"]),
                                  self.folder / "cache", self._slot / "groups",
                                  self.launchers, self._then)
                try:
                    await attempt.run()
                except Exception:
                    log.exception("attempt %s failed in the worker", record["id"])
                self.running.pop(record["id"], None)
                record = attempt.claimed[0] if attempt.claimed else None
                if record is not None:
                    self.running[record["id"]] = job
        finally:
            if record is not None:
                self.running.pop(record["id"], None)
            slots.release()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)


def _take_slot(folder: Path, slots: int = 256) -> tuple[Path, int]:
    """A folder of this worker's own under ``folder`` (``slot-N``, locked while it runs, so
    workers sharing a machine never touch each other's tasks); (the slot, its lock fd)."""
    for number in range(slots):
        slot = folder / f"slot-{number}"
        slot.mkdir(parents=True, exist_ok=True)
        fd = os.open(slot / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return slot, fd
    raise Invalid(f"{slots} workers use {folder} already: give this one --folder")


def _stop_leftovers(groups: Path) -> None:
    """Kill the process groups an earlier worker in this folder started and left behind."""
    if not groups.is_dir():
        return
    for entry in groups.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(entry.name), signal.SIGKILL)
        entry.unlink(missing_ok=True)


__all__ = ["Worker", "WorkerConfig", "offered_runtimes"]

"""The manager inside ``lakeport serve`` that runs the rules and bridges whose desired state
is ``running``, each as an asyncio task on the server's engine.

It reconciles the tables with what runs: at once when a route of this server changed
something (:meth:`Manager.notify`), and every ``poll`` seconds for changes made through
another server. A rule or bridge whose row changed (``updated_ms``) is restarted. One that
cannot run (a bad statement, an action that cannot be made, its owner no longer allowed to
read or produce a topic, a refused broker login) gets state ``failed`` with the error and is
not tried again until it is started or updated; a store or engine that is unreachable for a
moment is tried again with backoff (state ``retrying``); a broker that cannot be reached is
the bridge's own retry loop.

One server runs them: on PostgreSQL the one holding the advisory lock :data:`LOCK_KEY`
(a server that loses its lock's connection stops everything it runs at once; another takes
over within ``poll`` seconds); on SQLite the only server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from lakeport.errors import LakeportError, Terminal, Transient
from lakeport.routing.bridge import Backoff, Bridge, BridgeConfig, open_bridge
from lakeport.routing.spec import RuleSpec
from lakeport.server.observations.writer import ServiceState
from lakeport.server.routing.access import RULE, check_bridge, check_rule
from lakeport.server.routing.observations import observation_writer
from lakeport.server.routing.tables import TABLES
from lakeport.server.store import Store
from lakeport.server.store.leader import AdvisoryLock
from lakeport.server.store.users import User, users
from lakeport.streams import Engine

log = logging.getLogger("lakeport.server.routing")
LOCK_KEY = 0x1A4E_7A5D
"""The PostgreSQL advisory lock of the server that runs rules and bridges."""
STOP_TIMEOUT = 10.0
"""Seconds a rule or bridge gets to stop cleanly before its task is cancelled."""

Key = tuple[str, str]  # (kind, name)


@dataclass
class Running:
    """One rule or bridge at work."""

    kind: str
    name: str
    updated_ms: int
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    runner: Any = None  # the RuleRunner, or the Bridge
    state: str = "starting"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Manager:
    """Runs the rules and bridges of the store on ``engine`` (module docstring)."""

    def __init__(self, store: Store, engine: Engine, observations: ServiceState, *,
                 poll: float = 2.0) -> None:
        self.store, self.engine, self.observations = store, engine, observations
        self.poll = poll
        self.running: dict[Key, Running] = {}
        self._wake = asyncio.Event()
        self._leader = AdvisoryLock(store, LOCK_KEY, "runs the rules and bridges")

    def notify(self) -> None:
        """Something changed: reconcile now."""
        self._wake.set()

    def find(self, kind: str, name: str) -> Running | None:
        return self.running.get((kind, name))

    async def stopped(self, kind: str, name: str) -> None:
        """After a stop or delete and :meth:`notify`: return once this server no longer
        runs it (what it read before is acked, nothing more is read)."""
        entry = self.running.get((kind, name))
        if entry is not None and entry.task is not None:
            await asyncio.wait({entry.task}, timeout=STOP_TIMEOUT + 1)

    # -- the loop -------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                try:
                    if await self._lead():
                        await self.reconcile()
                    elif self.running:
                        await self.stop_all()
                except asyncio.CancelledError:
                    raise
                except Exception:  # the store went away a moment: next round
                    log.exception("reconciling rules and bridges failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll)
        finally:
            await self.stop_all()
            await self._drop_lock()

    async def reconcile(self) -> None:
        wanted: dict[Key, Any] = {}
        async with self.store.connect() as conn:
            for kind, table in TABLES.items():
                for row in await conn.execute(
                        sa.select(table.c.name, table.c.updated_ms, table.c.state)
                        .where(table.c.desired == "running")):
                    wanted[kind, row.name] = row
        for key, entry in list(self.running.items()):
            row = wanted.get(key)
            if row is None or row.updated_ms != entry.updated_ms:
                await self._stop(entry)
        for key, row in wanted.items():
            if key not in self.running and row.state != "failed":
                self._start(key[0], key[1], row.updated_ms)

    async def stop_all(self) -> None:
        await asyncio.gather(*(self._stop(entry) for entry in list(self.running.values())))

    # -- one rule or bridge ---------------------------------------------------------------
    def _start(self, kind: str, name: str, updated_ms: int) -> None:
        entry = Running(kind, name, updated_ms)
        work = self._rule if kind == RULE else self._bridge
        entry.task = asyncio.create_task(self._supervise(entry, work), name=f"{kind}:{name}")
        self.running[kind, name] = entry

    async def _stop(self, entry: Running) -> None:
        entry.stop.set()
        if entry.task is not None:
            done, _ = await asyncio.wait({entry.task}, timeout=STOP_TIMEOUT)
            if not done:
                log.warning("%s %r did not stop within %ss: cancelled", entry.kind,
                            entry.name, STOP_TIMEOUT)
                entry.task.cancel()
                with contextlib.suppress(BaseException):
                    await entry.task
        if self.running.get((entry.kind, entry.name)) is entry:
            del self.running[entry.kind, entry.name]

    async def _supervise(self, entry: Running, work: Any) -> None:
        backoff = Backoff(0.5, 30.0)
        try:
            while not entry.stop.is_set():
                try:
                    await work(entry)
                    await self._mark(entry, "stopped", None)
                    return
                except Transient as exc:
                    delay = backoff.next()
                    log.warning("%s %r: %s; trying again in %.1fs", entry.kind, entry.name,
                                _first_line(exc), delay)
                    await self._mark(entry, "retrying", _first_line(exc))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(entry.stop.wait(), delay)
                except LakeportError as exc:
                    log.warning("%s %r failed: %s", entry.kind, entry.name, _first_line(exc))
                    await self._mark(entry, "failed", _first_line(exc))
                    return
            await self._mark(entry, "stopped", None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("%s %r failed", entry.kind, entry.name)
            with contextlib.suppress(Exception):
                await self._mark(entry, "failed", f"{type(exc).__name__}: {_first_line(exc)}")
        finally:
            if self.running.get((entry.kind, entry.name)) is entry and entry.state == "failed":
                del self.running[entry.kind, entry.name]

    async def _load(self, entry: Running) -> tuple[Any, User] | None:
        table = TABLES[entry.kind]
        body = table.c.spec if entry.kind == RULE else table.c.config
        async with self.store.connect() as conn:
            row = (await conn.execute(
                sa.select(body.label("body"), table.c.updated_ms, users.c.id, users.c.name,
                          users.c.admin)
                .join(users, users.c.id == table.c.owner_id)
                .where(table.c.name == entry.name))).first()
        if row is None or row.updated_ms != entry.updated_ms:
            return None  # changed meanwhile: the next reconcile starts the new one
        return orjson.loads(row.body), User(row.id, row.name, admin=row.admin)

    async def _rule(self, entry: Running) -> None:
        from lakeport.routing.actions import rule_runner

        loaded = await self._load(entry)
        if loaded is None:
            return
        body, owner = loaded
        spec = RuleSpec.parse(**body)
        runner = rule_runner(spec, self.engine, observations=observation_writer(
            self.store, self.observations, owner))
        try:
            await check_rule(self.store, self.engine, owner, spec, runner.rule.topic)
            entry.runner = runner
            await self._mark(entry, "running", None)
            await runner.run(entry.stop)
        finally:
            with contextlib.suppress(Exception):
                runner.rule.close()

    async def _bridge(self, entry: Running) -> None:
        loaded = await self._load(entry)
        if loaded is None:
            return
        body, owner = loaded
        config = BridgeConfig.parse(**{**body, "name": entry.name})
        await check_bridge(self.store, self.engine, owner, entry.name, config)
        bridge: Bridge = open_bridge(config)
        entry.runner = bridge
        await self._mark(entry, "running", None)
        status = await bridge.run(entry.stop, self.engine)
        if status.state == "failed":
            raise _BridgeFailed(status.last_error or "the bridge failed")

    async def _mark(self, entry: Running, state: str, error: str | None) -> None:
        entry.state = state
        table = TABLES[entry.kind]
        async with self.store.begin() as conn:
            await conn.execute(table.update().where(
                table.c.name == entry.name, table.c.updated_ms == entry.updated_ms
            ).values(state=state, error=error))

    # -- leadership -----------------------------------------------------------------------
    async def _lead(self) -> bool:
        return await self._leader.held()

    async def _drop_lock(self) -> None:
        await self._leader.release()


class _BridgeFailed(Terminal):
    """A bridge that ended with a terminal error (a refused login, a certificate that does
    not verify): its status says which."""


__all__ = ["LOCK_KEY", "Manager", "Running"]

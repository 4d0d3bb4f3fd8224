"""The observation writer of rules run by the server: an ``observations`` action's rows
(the app message format: ``asset``, ``datastream``, ``value``, optional ``time`` and
``unit``) stored the way the recorder stores readings (``recorder.store_rows``).

A rule writes with its owner's rights, as the observation ingest does: observations of a
sensor that exists take ``write`` on it; a sensor (and its feature of interest) that does not
exist yet is created with the rule's owner as its owner, so the owner's later rows of it are
theirs to write. A row that is no reading, names a sensor the owner may not write, or does
not fit the store is refused for good as ``(row index, reason)``; while the store cannot be
reached the rows are tried again with backoff, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import date, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from lakeport.readings import build_rows
from lakeport.routing.actions import ObservationWriter
from lakeport.server.access import Level
from lakeport.server.observations.access import level_on
from lakeport.server.observations.models import NAME_PATTERN
from lakeport.server.observations.recorder import RETRY_MAX, store_rows, transient
from lakeport.server.observations.tables import features, sensors
from lakeport.server.observations.writer import ServiceState
from lakeport.server.store import Store, insert_ignore
from lakeport.server.store.schema import now_ms
from lakeport.server.store.users import User
from lakeport.streams.block import MessageBlock
from lakeport.streams.types import Format, Message

log = logging.getLogger("lakeport.server.routing")
Failures = list[tuple[int, str]]
_NAME = re.compile(NAME_PATTERN)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _block(rows: list[dict[str, Any]]) -> MessageBlock:
    now = time.time_ns()
    return MessageBlock.from_messages(
        [Message(index + 1, now, "rule", orjson.dumps({k: _plain(v) for k, v in row.items()},
                                                      default=str))
         for index, row in enumerate(rows)], Format.JSON)


async def _writable(store: Store, owner: User, assets: list[str]) -> dict[str, str]:
    """Why the owner may not write each refused asset (sensor); missing sensors are
    created with the owner as their owner."""
    names = [a for a in assets if _NAME.fullmatch(a)]
    refused: dict[str, str] = {}
    async with store.begin() as conn:
        found = {row.name: row for row in await conn.execute(
            sa.select(sensors.c.id, sensors.c.name, sensors.c.owner)
            .where(sensors.c.name.in_(names)))}
        for name, row in found.items():
            if await level_on(conn, owner, "sensor", row) < Level.WRITE:
                refused[name] = (f"{owner.name} may not write observations of sensor "
                                 f"{name!r} (owner {row.owner!r})")
        missing = [n for n in names if n not in found]
        if missing:
            created = now_ms()
            await conn.execute(insert_ignore(store.dialect, sensors), [
                {"name": n, "description": "", "kind": "atomic", "components": "[]",
                 "meta": "{}", "owner": owner.name, "created_ms": created} for n in missing])
            await conn.execute(insert_ignore(store.dialect, features), [
                {"name": n, "description": "", "geometry": None, "parent_id": None,
                 "properties": "{}", "owner": owner.name, "created_ms": created}
                for n in missing])
    return refused


def observation_writer(store: Store, state: ServiceState, owner: User) -> ObservationWriter:
    """The :data:`~lakeport.routing.actions.ObservationWriter` of a rule of ``owner``."""

    async def write(rows: list[dict[str, Any]]) -> Failures:
        if not rows:
            return []
        table, dead = build_rows(_block(rows))
        failures: Failures = [(message.seqno - 1, reason) for message, reason in dead]
        delay = 0.1
        while True:
            try:
                assets = pc.unique(table["asset"]).to_pylist() if table.num_rows else []
                refused = await _writable(store, owner, assets)
                keep = table
                if refused:
                    bad = pc.is_in(table["asset"], pa.array(list(refused)))
                    for seqno, asset in zip(table.filter(bad)["seqno"].to_pylist(),
                                            table.filter(bad)["asset"].to_pylist(),
                                            strict=True):
                        failures.append((seqno - 1, refused[asset]))
                    keep = table.filter(pc.invert(bad))
                _, rejected = await store_rows(store, state, keep)
                break
            except Exception as exc:
                if not transient(exc):
                    raise
                log.warning("the observation store cannot take a rule's rows now (%s): "
                            "trying again in %.1fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
        failures += [(seqno - 1, why) for seqno, why in rejected]
        return sorted(failures)

    return write


__all__ = ["observation_writer"]

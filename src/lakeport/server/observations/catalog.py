"""Names to ids: sensors, features and observed properties by name, datastreams by triple.

Datastream ids are cached in memory for the app's life: a datastream is deleted only with the
sensor, property or feature it binds, once it has no observations, and the deletion drops it
from the cache. Ids enter the cache only after the transaction that created them committed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from lakeport.errors import Invalid, NotFound
from lakeport.server.observations.tables import (
    NO_FEATURE,
    datastreams,
    features,
    properties,
)
from lakeport.server.store import insert_ignore
from lakeport.server.store.schema import now_ms

Triple = tuple[int, int, int]
"""(sensor id, property id, feature id or NO_FEATURE)."""


@dataclass(frozen=True, slots=True)
class Prop:
    id: int
    name: str
    unit: str
    data_type: str


class DatastreamCache:
    """Datastream ids by (sensor id, property id, feature id)."""

    def __init__(self) -> None:
        self.ids: dict[Triple, int] = {}

    def remember(self, found: dict[Triple, int]) -> None:
        if len(self.ids) > 1_000_000:
            self.ids.clear()
        self.ids.update(found)

    def forget(self, ids: set[int]) -> None:
        """Drop the datastreams ``ids`` (deleted with their sensor, feature or property)."""
        self.ids = {triple: ident for triple, ident in self.ids.items() if ident not in ids}


async def feature_id(conn: AsyncConnection, name: str | None) -> int:
    """The id of feature ``name`` (NO_FEATURE for None); NotFound ``unknown feature 'x'``."""
    if name is None or name == "":
        return NO_FEATURE
    if not isinstance(name, str):
        raise Invalid(f"feature must be a feature name or null, not {name!r}")
    found = (await conn.execute(sa.select(features.c.id).where(features.c.name == name))).scalar()
    if found is None:
        raise NotFound(f"unknown feature {name!r}")
    return int(found)


async def property_map(conn: AsyncConnection, names: Iterable[str]) -> dict[str, Prop]:
    """The observed properties among ``names`` that exist, by name."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    rows = (await conn.execute(
        sa.select(properties.c.id, properties.c.name, properties.c.unit, properties.c.data_type)
        .where(properties.c.name.in_(wanted)))).all()
    return {r.name: Prop(r.id, r.name, r.unit, r.data_type) for r in rows}


async def ensure_datastreams(conn: AsyncConnection, dialect: str, cache: DatastreamCache,
                             triples: Iterable[Triple]) -> tuple[dict[Triple, int],
                                                                 dict[Triple, int]]:
    """Ids of ``triples`` (creating missing datastreams in ``conn``'s transaction) and the
    subset that was not cached (to :meth:`DatastreamCache.remember` after the commit)."""
    result: dict[Triple, int] = {}
    missing: list[Triple] = []
    for triple in set(triples):
        cached = cache.ids.get(triple)
        if cached is None:
            missing.append(triple)
        else:
            result[triple] = cached
    if not missing:
        return result, {}
    created = now_ms()
    await conn.execute(insert_ignore(dialect, datastreams), [
        {"sensor_id": s, "property_id": p, "feature_id": f, "count": 0, "created_ms": created}
        for s, p, f in sorted(missing)])
    fresh: dict[Triple, int] = {}
    for start in range(0, len(missing), 500):
        part = missing[start:start + 500]
        condition = sa.or_(*(sa.and_(datastreams.c.sensor_id == s, datastreams.c.property_id == p,
                                     datastreams.c.feature_id == f) for s, p, f in part))
        rows = await conn.execute(sa.select(datastreams.c.id, datastreams.c.sensor_id,
                                            datastreams.c.property_id,
                                            datastreams.c.feature_id).where(condition))
        for row in rows:
            fresh[(row.sensor_id, row.property_id, row.feature_id)] = row.id
    result.update(fresh)
    return result, fresh


def decode_value(number: float | None, text: str | None, data_type: str) -> Any:
    """The JSON value of a stored observation."""
    if text is None:
        return number
    if data_type == "boolean":
        return text == "true"
    if data_type == "object":
        return orjson.loads(text)
    return text


def text_value(number: float | None, text: str | None) -> str:
    """The value as CSV text (numbers as Python prints them)."""
    if text is None:
        return "" if number is None else repr(number)
    return text


__all__ = ["DatastreamCache", "Prop", "Triple", "decode_value", "ensure_datastreams",
           "feature_id", "property_map", "text_value"]

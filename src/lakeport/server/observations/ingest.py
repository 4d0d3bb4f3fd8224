"""Inserting observations: one, a batch (``components`` + ``dataArray``), or a CSV file.

Every request is all or nothing: it is checked completely, then stored in one transaction.
``routing=stream`` or ``both`` also publishes each observation to ``observations.<sensor>``;
with ``both`` the rows are published before the transaction commits, so a request whose
publishing fails stores nothing (and a retry is deduplicated on the topic by its msg_ids).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Query, Request

from lakeport.allocator import collector_paused
from lakeport.errors import Invalid, NotFound
from lakeport.server.access import Level, claim, user_id_named
from lakeport.server.auth import current_user
from lakeport.server.deps import get_store
from lakeport.server.observations import csv_input
from lakeport.server.observations.access import require_named
from lakeport.server.observations.catalog import (
    Prop,
    decode_value,
    ensure_datastreams,
    feature_id,
    property_map,
)
from lakeport.server.observations.csv_input import InvalidAt, NotFoundAt
from lakeport.server.observations.values import BadValue, encode_column
from lakeport.server.observations.writer import (
    Series,
    ServiceState,
    insert_series,
    publish,
    service_state,
    topic_for,
)
from lakeport.server.store import Store
from lakeport.server.store.schema import now_ms
from lakeport.server.store.users import User
from lakeport.server.times import BadTime, format_times, parse_time, parse_times

router = APIRouter()
Routing = Literal["db", "stream", "both"]
RoutingParam = Annotated[Routing, Query(
    description="db: store; stream: only publish to observations.<sensor>; both: store and "
                "publish")]
Where = Callable[[int | None, str, str], Exception]
"""Builds the error for (row position or None for the whole request, column, problem)."""


@dataclass
class Part:
    """Observations of one (sensor, feature) pair, as columns."""

    sensor: str
    feature: str | None
    times: list[Any] = field(default_factory=list)
    columns: dict[str, list[Any]] = field(default_factory=dict)
    rows: list[int] = field(default_factory=list)
    """Each row's position in the request (index or file line), for errors."""
    located: bool = False
    """Whether sensor and feature errors name a row (they came from a row, not the request)."""


@dataclass
class Checked:
    sensor: str
    feature: str | None
    sensor_id: int
    feature_id: int
    series: list[tuple[Prop, np.ndarray, list[float] | None, list[str] | None]]
    owner: str
    """The sensor owner's name: the owner of its observations topic."""


async def _check(conn: Any, user: User, parts: list[Part], text: bool, where: Where,
                 props: dict[str, Prop]) -> list[Checked]:
    out: list[Checked] = []
    for part in parts:
        first = part.rows[0] if part.rows and part.located else None
        if not isinstance(part.sensor, str):
            raise Invalid(f"sensor must be a sensor name, not {part.sensor!r}")
        try:
            sensor = await require_named(conn, user, "sensor", part.sensor, Level.WRITE,
                                         "insert observations of")
        except NotFound as exc:
            raise where(first, "sensor", str(exc)) from None
        try:
            fid = await feature_id(conn, part.feature)
        except NotFound as exc:
            raise where(first, "feature", str(exc)) from None
        with collector_paused():
            times, bad, message = parse_times(part.times)
            if bad is not None:
                raise where(part.rows[bad], "time", message)
            series = []
            for name, values in part.columns.items():
                prop = props[name]
                try:
                    keep, numbers, texts = encode_column(values, prop.data_type, text)
                except BadValue as exc:
                    raise where(part.rows[exc.index], name, str(exc)) from None
                series.append((prop, times if keep is None else times[keep], numbers, texts))
        out.append(Checked(part.sensor, part.feature, sensor.id, fid, series, sensor.owner))
    return out


async def ingest(request: Request, store: Store, user: User, parts: list[Part],
                 routing: Routing, text: bool, where: Where) -> dict[str, int]:
    """Check ``parts`` completely, then store and/or publish them (with ``both``, publish
    inside the transaction: a failure to publish rolls the rows back)."""
    state: ServiceState = service_state(request)
    names = {name for part in parts for name in part.columns}
    stored = published = 0
    fresh: dict[Any, int] = {}
    async with store.begin() as conn:
        props = await property_map(conn, names)
        for name in sorted(names - set(props)):
            raise where(None, name, f"unknown observed property {name!r}: create it first "
                                    "(POST /api/v1/properties)")
        checked = await _check(conn, user, parts, text, where, props)
        if routing != "db":
            for part in checked:
                await _claim_topic(conn, store.dialect, part)
        if routing != "stream":
            triples = [(c.sensor_id, prop.id, c.feature_id) for c in checked
                       for prop, *_ in c.series]
            ids, fresh = await ensure_datastreams(conn, store.dialect, state.cache, triples)
            stored = await insert_series(conn, store.dialect, [
                Series(ids[(c.sensor_id, prop.id, c.feature_id)], times, numbers, texts)
                for c in checked for prop, times, numbers, texts in c.series])
        if routing == "both":
            published = await _publish(state, checked)
    state.cache.remember(fresh)
    if routing == "stream":
        published = await _publish(state, checked)
    return {"stored": stored, "published": published}


async def _claim_topic(conn: Any, dialect: str, part: Checked) -> None:
    """The sensor's owner owns its observations topic (operators only, when the sensor was
    made by the recorder rather than a user)."""
    topic = topic_for(part.sensor)
    owner_id = await user_id_named(conn, part.owner)
    if owner_id is not None:
        await claim(conn, dialect, "topic", topic, owner_id)


async def _publish(state: ServiceState, checked: list[Checked]) -> int:
    published = 0
    for part in checked:
        topic = topic_for(part.sensor)
        try:
            published += await publish(state.producers, topic, _payloads(part))
        except Invalid as exc:
            raise Invalid(f"topic {topic!r} refused the observations: {exc}") from None
    return published


def _payloads(part: Checked) -> list[dict[str, Any]]:
    payloads: list[dict[str, Any]] = []
    for prop, times, numbers, texts in part.series:
        stamps = format_times(times).to_pylist()
        values = numbers if numbers is not None else [
            decode_value(None, t, prop.data_type) for t in texts or ()]
        payloads.extend({"sensor": part.sensor, "feature": part.feature, "property": prop.name,
                         "time": stamp, "value": value, "unit": prop.unit}
                        for stamp, value in zip(stamps, values, strict=True))
    return payloads


async def _json_body(request: Request) -> Any:
    body = await request.body()
    try:
        with collector_paused():
            return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"the body is not JSON: {exc}") from None


async def _object_body(request: Request, fields: tuple[str, ...]) -> dict[str, Any]:
    """The JSON body as an object holding no key but ``fields``."""
    body = await _json_body(request)
    names = ", ".join(fields)
    if not isinstance(body, dict):
        raise Invalid(f"the body must be an object with {names}")
    unknown = set(body) - set(fields)
    if unknown:
        raise Invalid(f"unknown field {sorted(unknown)[0]!r}: use {names}")
    return body


def _name(value: Any, what: str, optional: bool = False) -> Any:
    """``value`` as a name; an optional one (the feature) may be null or "" (none)."""
    if (value is None or value == "") and optional:
        return None
    if not isinstance(value, str) or not value:
        raise Invalid(f"{what} must be a {'name or null' if optional else 'name'}, "
                      f"not {value!r}")
    return value


_ONE_SCHEMA = {"type": "object", "required": ["sensor", "property", "value"],
               "properties": {"sensor": {"type": "string"}, "property": {"type": "string"},
                              "feature": {"type": ["string", "null"]},
                              "time": {"type": ["string", "integer"],
                                       "description": "ISO 8601, epoch ms or "
                                                      "dd-MMM-yyyy HH:mm:ss[.SSS] [zone]"},
                              "value": {}}}
_BATCH_SCHEMA = {"type": "object", "required": ["sensor", "components", "dataArray"],
                 "properties": {"sensor": {"type": "string"},
                                "feature": {"type": ["string", "null"]},
                                "components": {"type": "array", "items": {"type": "string"},
                                               "description": '"time" and property names'},
                                "dataArray": {"type": "array",
                                              "items": {"type": "array", "items": {}}}}}


def _body_doc(schema: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {media: {"schema": schema}}}}


@router.post("/observations", status_code=201, summary="Insert one observation",
             openapi_extra=_body_doc(_ONE_SCHEMA))
async def insert_one(request: Request, routing: RoutingParam = "db",
                     user: User = Depends(current_user), store: Store = Depends(get_store)
                     ) -> dict[str, int]:
    body = await _object_body(request, ("sensor", "property", "feature", "time", "value"))
    if body.get("value") is None:
        raise Invalid("value is missing or null")
    prop = _name(body.get("property"), "property")
    when = body.get("time")
    try:
        stamp = now_ms() if when is None else parse_time(when)
    except BadTime as exc:
        raise InvalidAt(f"time: {exc}", {"field": "time"}) from None
    part = Part(_name(body.get("sensor"), "sensor"),
                _name(body.get("feature"), "feature", optional=True),
                [stamp], {prop: [body["value"]]}, [0])

    def where(index: int | None, column: str, problem: str) -> Exception:
        if column in ("sensor", "feature"):
            return NotFoundAt(problem, {"field": column})
        if index is None:
            return InvalidAt(problem, {"field": "property"})
        return InvalidAt(f"value: {problem}", {"field": "value"})

    return await ingest(request, store, user, [part], routing, False, where)


@router.post("/observations/batch", status_code=201,
             summary="Insert many observations of one sensor (all or nothing)",
             openapi_extra=_body_doc(_BATCH_SCHEMA))
async def insert_batch(request: Request, routing: RoutingParam = "db",
                       user: User = Depends(current_user), store: Store = Depends(get_store)
                       ) -> dict[str, int]:
    body = await _object_body(request, ("sensor", "feature", "components", "dataArray"))
    sensor = _name(body.get("sensor"), "sensor")
    feature = _name(body.get("feature"), "feature", optional=True)
    components = body.get("components")
    if not isinstance(components, list) or not all(isinstance(c, str) for c in components):
        raise Invalid('components must be a list of names: "time" and observed properties')
    if components.count("time") != 1:
        raise Invalid('components must name "time" exactly once')
    if len(set(components)) != len(components):
        raise Invalid("components must not repeat a name")
    rows = body.get("dataArray")
    if not isinstance(rows, list):
        raise Invalid("dataArray must be a list of rows (lists)")
    width = len(components)
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            raise InvalidAt(f"row {index}: has {len(row) if isinstance(row, list) else 'no'} "
                            f"values, components has {width}", {"row": index, "column": None})
    with collector_paused():
        columns = list(zip(*rows, strict=True)) if rows else [()] * width
        del body, rows
        time_at = components.index("time")
        part = Part(sensor, feature, list(columns[time_at]),
                    {name: list(columns[i]) for i, name in enumerate(components)
                     if i != time_at}, list(range(len(columns[0]))))
        del columns

    def where(index: int | None, column: str, problem: str) -> Exception:
        if column in ("sensor", "feature"):
            return NotFoundAt(problem, {"row": None, "column": column})
        if index is None:
            return InvalidAt(f"column {column!r}: {problem}", {"row": None, "column": column})
        return InvalidAt(f"row {index}, column {column!r}: {problem}",
                         {"row": index, "column": column})

    return await ingest(request, store, user, [part], routing, False, where)


@router.post("/observations/csv", status_code=201,
             summary="Insert observations from a CSV file (all or nothing)",
             openapi_extra=_body_doc({"type": "string"}, "text/csv"))
async def insert_csv(request: Request, sensor: str | None = None, feature: str | None = None,
                     routing: RoutingParam = "db", user: User = Depends(current_user),
                     store: Store = Depends(get_store)) -> dict[str, int]:
    body = await request.body()
    with collector_paused():
        parts, long = csv_input.read(body, sensor, feature or None)
    first_line = {name: part.rows[0] for part in reversed(parts) for name in part.columns}

    def where(line: int | None, column: str, problem: str) -> Exception:
        kind = NotFoundAt if column in ("sensor", "feature") else InvalidAt
        if line is None and kind is NotFoundAt:
            return NotFoundAt(problem, {"line": None, "column": column})
        if line is None and long:  # an unknown property named in a row's property column
            line = first_line[column]
            return kind(f"line {line}: {problem}", {"line": line, "column": "property"})
        if line is None:
            return kind(f"line 1: column {column!r} of the header is an unknown observed property: "
                        "create it first (POST /api/v1/properties), or upload the long form "
                        f"({','.join(csv_input.LONG)})", {"line": 1, "column": column})
        named = "value" if long and column != "time" else column
        return kind(f"line {line}: {problem}", {"line": line, "column": named})

    return await ingest(request, store, user, parts, routing, True, where)


__all__ = ["Part", "ingest", "router"]

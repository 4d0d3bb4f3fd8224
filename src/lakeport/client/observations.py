"""``client.observations``: sensors, features, properties, and their observations — insert one,
a batch or a CSV file; query, latest, aggregates, counts and downloads; delete a time range."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from lakeport.client import paging
from lakeport.client.http import Http, as_time
from lakeport.client.resources import Features, Properties, Sensors
from lakeport.client.results import (
    FRAME_FORMATS,
    Page,
    ResultFormat,
    arrow_to,
    check_format,
    shape,
)
from lakeport.client.transfer import BodySource, Dest, Source, write_response
from lakeport.errors import Invalid

Time = datetime | str | int | float | None
Routing = Literal["db", "stream", "both"]
COLUMNS = ("sensor", "feature", "property", "time", "value")
FUNCTIONS = ("avg", "min", "max", "count", "first", "last")


def _selection(sensor: str | None, property: str | None, feature: str | None,
               start: Time = None, end: Time = None) -> dict[str, Any]:
    return {"sensor": sensor, "property": property, "feature": feature,
            "start": as_time(start), "end": as_time(end)}


def _order(order: str) -> str:
    if order not in ("asc", "desc"):
        raise Invalid(f"bad order {order!r}: use asc or desc")
    return order


class Observations:
    """The sensor observation service (modelled after OGC SensorThings)."""

    def __init__(self, http: Http) -> None:
        self._http = http
        self.features = Features(http)
        self.sensors = Sensors(http)
        self.properties = Properties(http)

    # -- insert -----------------------------------------------------------------------------
    async def insert(self, sensor: str, property: str, value: Any, *, time: Time = None,
                     feature: str | None = None, routing: Routing = "db") -> dict[str, int]:
        """Insert one observation (``time`` defaults to now) → ``{"stored", "published"}``."""
        body = {"sensor": sensor, "property": property, "feature": feature,
                "time": as_time(time if time is not None else datetime.now(UTC)),
                "value": value}
        return await self._http.json("POST", "/observations", params={"routing": routing},
                                     json=body)

    async def insert_batch(self, sensor: str, components: Sequence[str],
                           rows: Iterable[Sequence[Any]], *, feature: str | None = None,
                           routing: Routing = "db") -> dict[str, int]:
        """Insert rows ``[time, v1, v2, ...]`` for ``components`` ``["time", "p1", "p2", ...]``
        in one transaction (all or nothing; a bad row is Invalid with its index in details)."""
        components = list(components)
        if not components or components[0] != "time":
            components = ["time", *components]
        body = {"sensor": sensor, "feature": feature, "components": components,
                "dataArray": [[as_time(row[0]), *row[1:]] for row in rows]}
        return await self._http.json("POST", "/observations/batch",
                                     params={"routing": routing}, json=body)

    async def insert_dataframe(self, sensor: str, frame: Any, *, feature: str | None = None,
                               routing: Routing = "db") -> dict[str, int]:
        """Insert a DataFrame with a ``time`` column and one column per observed property."""
        if "time" not in frame.columns:
            raise Invalid("the DataFrame needs a 'time' column")
        properties = [str(name) for name in frame.columns if name != "time"]
        times = frame["time"]
        if hasattr(times, "dt"):
            times = times.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
        rows = zip(times.tolist(), *(frame[p].tolist() for p in properties), strict=True)
        return await self.insert_batch(sensor, ["time", *properties], rows, feature=feature,
                                       routing=routing)

    async def upload_csv(self, source: Source, *, sensor: str | None = None,
                         feature: str | None = None,
                         routing: Routing = "db") -> dict[str, int]:
        """Upload a CSV file (header ``time,<property>,...``; optional ``sensor`` and
        ``feature`` columns), streamed. A bad row is Invalid naming its line; nothing is stored.
        """
        return await self._http.json(
            "POST", "/observations/csv",
            params={"sensor": sensor, "feature": feature, "routing": routing},
            body=BodySource(source), headers={"content-type": "text/csv; charset=utf-8"})

    # -- delete -----------------------------------------------------------------------------
    async def delete_observations(self, sensor: str, start: Time = None, end: Time = None,
                                  property: str | None = None,
                                  feature: str | None = None) -> int:
        """Delete the observations of ``sensor`` in ``[start, end)`` (None: open), optionally
        of one property or feature; only the sensor's owner may. How many were deleted."""
        answer = await self._http.json("DELETE", "/observations",
                                       params=_selection(sensor, property, feature, start, end))
        return int(answer["deleted"])

    # -- query ------------------------------------------------------------------------------
    async def page(self, sensor: str | None = None, property: str | None = None,
                   feature: str | None = None, start: Time = None, end: Time = None, *,
                   order: str = "asc", limit: int = 100, cursor: str | None = None) -> Page:
        """One page of observations; pass ``next_cursor`` back as ``cursor`` for the next."""
        params = {**_selection(sensor, property, feature, start, end), "order": _order(order)}
        return await paging.page(self._http, "/observations", params, limit, cursor)

    def iter(self, sensor: str | None = None, property: str | None = None,
             feature: str | None = None, start: Time = None, end: Time = None, *,
             order: str = "asc", limit: int | None = None,
             page_size: int = paging.MAX_PAGE) -> AsyncIterator[dict[str, Any]]:
        """Every matching observation (at most ``limit``), page by page: ``async for o in``."""
        params = {**_selection(sensor, property, feature, start, end), "order": _order(order)}
        return paging.iterate(self._http, "/observations", params, limit=limit,
                              page_size=page_size)

    async def query(self, sensor: str | None = None, property: str | None = None,
                    feature: str | None = None, start: Time = None, end: Time = None, *,
                    order: str = "asc", limit: int | None = None,
                    format: ResultFormat = "json") -> Any:
        """Observations in ``[start, end)`` as records, a table or a DataFrame.

        A DataFrame travels as Parquet (``time`` as UTC timestamps), fast for big ranges.
        """
        check_format(format)
        if format in FRAME_FORMATS:
            table = await self.arrow(sensor, property, feature, start, end, order=order)
            if limit is not None:
                table = table.slice(0, limit)
            return arrow_to(table, format)
        items = [item async for item in self.iter(sensor, property, feature, start, end,
                                                  order=order, limit=limit)]
        return shape(items, format, COLUMNS)

    async def arrow(self, sensor: str | None = None, property: str | None = None,
                    feature: str | None = None, start: Time = None, end: Time = None, *,
                    order: str = "asc") -> Any:
        """Observations in ``[start, end)`` as a pyarrow Table (fetched as Parquet)."""
        import pyarrow.parquet as pq

        params = {**_selection(sensor, property, feature, start, end),
                  "order": _order(order), "format": "parquet"}
        response = await self._http.request("GET", "/observations", params=params)
        return pq.read_table(io.BytesIO(response.content))

    async def download(self, dest: Dest, sensor: str | None = None,
                       property: str | None = None, feature: str | None = None,
                       start: Time = None, end: Time = None, *, format: str = "csv",
                       order: str = "asc") -> int:
        """Save observations in ``[start, end)`` as CSV or Parquet into ``dest`` (a path or a
        binary file), streamed; the number of bytes written."""
        if format not in ("csv", "parquet"):
            raise Invalid(f"bad download format {format!r}: use csv or parquet")
        params = {**_selection(sensor, property, feature, start, end),
                  "order": _order(order), "format": format}
        async with self._http.stream("GET", "/observations", params=params) as response:
            return await write_response(response, dest)

    async def latest(self, sensor: str | None = None, property: str | None = None,
                     feature: str | None = None, *, format: ResultFormat = "json") -> Any:
        """The latest observation of every matching datastream."""
        check_format(format)
        answer = await self._http.json("GET", "/observations/latest",
                                       params=_selection(sensor, property, feature))
        return shape(answer["items"], format, COLUMNS if not answer["items"] else None)

    async def aggregate(self, sensor: str | None = None, property: str | None = None,
                        feature: str | None = None, start: Time = None, end: Time = None, *,
                        bucket: str = "1h", fns: Sequence[str] = ("avg", "min", "max", "count"),
                        format: ResultFormat = "json") -> Any:
        """Per time ``bucket`` (1m, 1h, 1d): ``fns`` of avg, min, max, count, first, last."""
        check_format(format)
        unknown = [fn for fn in fns if fn not in FUNCTIONS]
        if unknown or not fns:
            raise Invalid(f"bad aggregate function {unknown[0] if unknown else ''!r}: "
                          f"use {', '.join(FUNCTIONS)}")
        params = {**_selection(sensor, property, feature, start, end), "bucket": bucket,
                  "fn": ",".join(fns)}
        answer = await self._http.json("GET", "/observations/aggregate", params=params)
        columns = ("sensor", "feature", "property", "bucket", *fns)
        return shape(answer["items"], format, columns if not answer["items"] else None)

    async def count(self, sensor: str | None = None, property: str | None = None,
                    feature: str | None = None, start: Time = None, end: Time = None) -> int:
        """How many observations match."""
        answer = await self._http.json("GET", "/observations/count",
                                       params=_selection(sensor, property, feature, start, end))
        return int(answer["count"])

    async def counts(self, *, format: ResultFormat = "json") -> Any:
        """How many features, sensors, properties, datastreams and observations exist."""
        check_format(format)
        return shape(await self._http.json("GET", "/counts"), format)

    async def datastreams(self, sensor: str | None = None, property: str | None = None,
                          feature: str | None = None, *, limit: int | None = None,
                          format: ResultFormat = "json") -> Any:
        """The datastreams (sensor, property, feature) matching, with their counts."""
        check_format(format)
        items = await paging.collect(self._http, "/datastreams",
                                     _selection(sensor, property, feature), limit=limit)
        return shape(items, format)


__all__ = ["COLUMNS", "FUNCTIONS", "Observations", "Routing", "Time"]

"""``client.observations``: sensors, features, properties, and their observations — insert one,
a batch or a CSV file; query, latest, aggregates, counts and downloads; delete a time range."""

from __future__ import annotations

import io
import math
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any, Literal

import numpy as np
import orjson

from lakeport.client import paging
from lakeport.client.http import Http, as_time
from lakeport.client.resources import Features, Properties, Sensors
from lakeport.client.results import (
    FRAME_FORMATS,
    TIME_COLUMNS,
    Page,
    ResultFormat,
    arrow_to,
    check_format,
    shape,
)
from lakeport.client.transfer import BodySource, Dest, Source, write_response
from lakeport.errors import Invalid

Time = datetime | date | np.datetime64 | str | int | float | None
Routing = Literal["db", "stream", "both"]
COLUMNS = ("sensor", "feature", "property", "time", "value")
Names = str | Sequence[str] | None
"""A filter: one name, several (any of them matches; the server's repeated parameter) or None
(no filter)."""
FUNCTIONS = ("avg", "min", "max", "sum", "count", "first", "last")
DATASTREAM_COLUMNS = ("id", "sensor", "property", "feature", "unit", "data_type", "count",
                      "first", "last")


def _names(value: Names, what: str) -> str | list[str] | None:
    """A filter as a query parameter: a list of names is sent repeated."""
    if value is None or isinstance(value, str):
        return value
    names = list(value)
    bad = [name for name in names if not isinstance(name, str)]
    if bad or not names:
        raise Invalid(f"{what}: give a name or a list of names, not {value!r}")
    return names


def _selection(sensor: Names, property: Names, feature: Names,
               start: Time = None, end: Time = None) -> dict[str, Any]:
    return {"sensor": _names(sensor, "sensor"), "property": _names(property, "property"),
            "feature": _names(feature, "feature"),
            "start": None if start is None else _time(start, "start"),
            "end": None if end is None else _time(end, "end")}


def _order(order: str) -> str:
    if order not in ("asc", "desc"):
        raise Invalid(f"bad order {order!r}: use asc or desc")
    return order


def is_missing(value: Any) -> bool:
    """Whether ``value`` means "no observation": None, NaN, pandas' NA and NaT, numpy's NaT."""
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    if isinstance(value, np.datetime64 | np.timedelta64):
        return bool(np.isnat(value))
    pandas = sys.modules.get("pandas")
    return pandas is not None and (value is pandas.NA or value is pandas.NaT)


def _time(value: Any, what: str) -> Any:
    """``value`` (a datetime, numpy datetime64, date, text or epoch ms) as a time to send;
    Invalid naming ``what`` when it is missing."""
    if is_missing(value):
        raise Invalid(f"{what} has no time ({value!r})")
    if isinstance(value, np.datetime64):
        value = value.astype("datetime64[us]").astype(datetime)
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    return as_time(value)


def _arrow_table(frame: Any) -> Any:
    """A pandas or polars DataFrame (or a pyarrow Table) as a pyarrow Table; a pandas index
    named ``time`` becomes the time column."""
    import pyarrow as pa

    if isinstance(frame, pa.Table):
        return frame
    polars = sys.modules.get("polars")
    if polars is not None and isinstance(frame, polars.DataFrame):
        return frame.to_arrow()
    pandas = sys.modules.get("pandas")
    if pandas is None or not isinstance(frame, pandas.DataFrame):
        raise Invalid(f"insert_dataframe takes a pandas or polars DataFrame, not "
                      f"{type(frame).__name__}")
    try:
        return pa.Table.from_pandas(frame, preserve_index=frame.index.name == "time")
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise Invalid(f"cannot read the DataFrame: {exc}") from None


def _plain(column: Any) -> Any:
    """A pyarrow column with categories decoded, decimals as float64, NaN as null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_decimal(column.type):
        column = column.cast(pa.float64())
    if pa.types.is_floating(column.type):
        column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
    return column


def _wire_times(column: Any) -> list[Any]:
    """A time column as the batch sends it: datetimes as ISO 8601 UTC text (naive = UTC, floored
    to the millisecond), dates as midnight UTC; text and epoch ms unchanged."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = _plain(column)
    kind = column.type
    if column.null_count:
        raise Invalid(f"row {pc.index(pc.is_null(column), True).as_py()} of the DataFrame "
                      "has no time")
    if pa.types.is_timestamp(kind) and kind.tz is None:
        column = column.cast(pa.timestamp(kind.unit, "UTC"))
    if pa.types.is_timestamp(kind):
        column = pc.floor_temporal(column, unit="millisecond")
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        utc = column.cast(pa.timestamp("ms", "UTC"))
        return pc.strftime(utc, format="%Y-%m-%dT%H:%M:%SZ").to_pylist()
    if pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column.to_pylist()
    if pa.types.is_floating(kind):
        return pc.floor(column).cast(pa.int64()).to_pylist()
    raise Invalid(f"the DataFrame's time column holds {kind}: use datetimes, ISO 8601 text or "
                  "epoch milliseconds")


def frame_rows(frame: Any) -> tuple[list[str], list[list[Any]]]:
    """(property names, rows ``[time, v1, v2, ...]``) of a DataFrame with a ``time`` column;
    missing values are None. Invalid when the frame holds no observation at all."""
    table = _arrow_table(frame)
    names = [str(name) for name in table.column_names]
    if "time" not in names:
        raise Invalid("the DataFrame needs a 'time' column (or a DatetimeIndex named 'time')")
    properties = [name for name in names if name != "time"]
    if not properties:
        raise Invalid("the DataFrame has no column besides 'time': add one per observed "
                      "property")
    if table.num_rows == 0:
        raise Invalid("the DataFrame has no rows: nothing to store")
    times = _wire_times(table.column(names.index("time")))
    columns = [_plain(table.column(names.index(name))).to_pylist() for name in properties]
    if all(value is None for column in columns for value in column):
        raise Invalid(f"the DataFrame holds no observation: every value of "
                      f"{', '.join(properties)} is missing")
    return properties, [list(row) for row in zip(times, *columns, strict=True)]


def _text(value: Any) -> str | None:
    """A value as the Parquet download writes a non-numeric one."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(float(value))
    return orjson.dumps(value).decode()


def observation_table(items: Sequence[dict[str, Any]]) -> Any:
    """Observations as a pyarrow Table of the Parquet download's schema: ``time`` as
    ``timestamp[ms, UTC]``, ``value`` float64 when every value is a number, else text."""
    import pyarrow as pa

    values = [item["value"] for item in items]
    numeric = all(v is None or (isinstance(v, int | float) and not isinstance(v, bool))
                  for v in values)
    columns = {name: pa.array([item[name] for item in items], pa.string())
               for name in ("sensor", "feature", "property")}
    columns["time"] = pa.array([item["time"] for item in items], pa.string()).cast(
        pa.timestamp("ms", "UTC"))
    columns["value"] = pa.array(values, pa.float64()) if numeric else \
        pa.array([_text(v) for v in values], pa.string())
    return pa.table(columns)


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
        """Insert one observation (``time`` defaults to now; a datetime without zone is UTC)
        → ``{"stored", "published"}``. A missing ``value`` (None, NaN, NA, NaT) is Invalid."""
        if is_missing(value):
            raise Invalid(f"no value to insert for sensor {sensor!r}, property {property!r}: "
                          f"{value!r} is missing")
        body = {"sensor": sensor, "property": property, "feature": feature,
                "time": _time(datetime.now(UTC) if time is None else time, "the observation"),
                "value": value}
        return await self._http.json("POST", "/observations", params={"routing": routing},
                                     json=body)

    async def insert_batch(self, sensor: str, components: Sequence[str],
                           rows: Iterable[Sequence[Any]], *, feature: str | None = None,
                           routing: Routing = "db") -> dict[str, int]:
        """Insert rows ``[time, v1, v2, ...]`` for ``components`` ``["time", "p1", "p2", ...]``
        in one transaction (all or nothing; a bad row is Invalid with its index in details).
        A missing value (None, NaN, NA, NaT) is no observation; a row without time is Invalid.
        """
        clean = [[_time(row[0], f"row {index}"), *(None if is_missing(v) else v for v in row[1:])]
                 for index, row in enumerate(rows)]
        return await self._post_batch(sensor, components, clean, feature, routing)

    async def insert_dataframe(self, sensor: str, frame: Any, *, feature: str | None = None,
                               routing: Routing = "db") -> dict[str, int]:
        """Insert a pandas or polars DataFrame with a ``time`` column (or a DatetimeIndex named
        ``time``) and one column per observed property, in one transaction.

        Zone-aware times are converted to UTC, naive ones are UTC; a missing value (NaN, NA,
        NaT, None) is no observation. Invalid when the frame holds no observation at all.
        """
        properties, rows = frame_rows(frame)
        return await self._post_batch(sensor, properties, rows, feature, routing)

    async def _post_batch(self, sensor: str, components: Sequence[str], rows: list[list[Any]],
                          feature: str | None, routing: Routing) -> dict[str, int]:
        components = list(components)
        if not components or components[0] != "time":
            components = ["time", *components]
        body = {"sensor": sensor, "feature": feature, "components": components,
                "dataArray": rows}
        return await self._http.json("POST", "/observations/batch",
                                     params={"routing": routing}, json=body)

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
    async def page(self, sensor: Names = None, property: Names = None,
                   feature: Names = None, start: Time = None, end: Time = None, *,
                   order: str = "asc", limit: int = 100, cursor: str | None = None) -> Page:
        """One page of observations; pass ``next_cursor`` back as ``cursor`` for the next."""
        params = {**_selection(sensor, property, feature, start, end), "order": _order(order)}
        return await paging.page(self._http, "/observations", params, limit, cursor)

    def iter(self, sensor: Names = None, property: Names = None,
             feature: Names = None, start: Time = None, end: Time = None, *,
             order: str = "asc", limit: int | None = None,
             page_size: int = paging.MAX_PAGE) -> AsyncIterator[dict[str, Any]]:
        """Every matching observation (at most ``limit``), page by page: ``async for o in``."""
        params = {**_selection(sensor, property, feature, start, end), "order": _order(order)}
        return paging.iterate(self._http, "/observations", params, limit=limit,
                              page_size=page_size)

    async def query(self, sensor: Names = None, property: Names = None,
                    feature: Names = None, start: Time = None, end: Time = None, *,
                    order: str = "asc", limit: int | None = None,
                    format: ResultFormat = "json") -> Any:
        """Observations in ``[start, end)`` as records, a table or a DataFrame (at most
        ``limit``).

        A DataFrame has ``time`` as UTC timestamps (ms) and ``value`` as float64 when every
        value is a number (else text). Without ``limit`` it travels as Parquet, fast for big
        ranges; with ``limit`` only that many observations are fetched, as JSON pages.
        """
        check_format(format)
        if format in FRAME_FORMATS and limit is None:
            return arrow_to(await self.arrow(sensor, property, feature, start, end,
                                             order=order), format)
        items = [item async for item in self.iter(sensor, property, feature, start, end,
                                                  order=order, limit=limit)]
        if format in FRAME_FORMATS:
            return arrow_to(observation_table(items), format)
        return shape(items, format, COLUMNS)

    async def arrow(self, sensor: Names = None, property: Names = None,
                    feature: Names = None, start: Time = None, end: Time = None, *,
                    order: str = "asc") -> Any:
        """Observations in ``[start, end)`` as a pyarrow Table (fetched as Parquet)."""
        import pyarrow.parquet as pq

        params = {**_selection(sensor, property, feature, start, end),
                  "order": _order(order), "format": "parquet"}
        response = await self._http.request("GET", "/observations", params=params)
        return pq.read_table(io.BytesIO(response.content))

    async def download(self, dest: Dest, sensor: Names = None,
                       property: Names = None, feature: Names = None,
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

    async def latest(self, sensor: Names = None, property: Names = None,
                     feature: Names = None, *, format: ResultFormat = "json") -> Any:
        """The latest observation of every matching datastream; each filter is a name or a
        list of names (any of them matches)."""
        check_format(format)
        answer = await self._http.json("GET", "/observations/latest",
                                       params=_selection(sensor, property, feature))
        return shape(answer["items"], format, COLUMNS if not answer["items"] else None)

    async def aggregate(self, sensor: Names = None, property: Names = None,
                        feature: Names = None, start: Time = None, end: Time = None, *,
                        bucket: str = "1h", fns: Sequence[str] = ("avg", "min", "max", "count"),
                        tz: str = "UTC", format: ResultFormat = "json") -> Any:
        """Per time ``bucket`` (1m, 1h, 1d): ``fns`` of avg, min, max, sum, count, first, last.
        Buckets start at the local minute, hour or midnight of ``tz`` (an IANA name such as
        ``Asia/Kolkata``, an offset such as ``+05:30`` or an abbreviation such as ``IST``);
        ``bucket`` in the answer is that start in UTC."""
        check_format(format)
        unknown = [fn for fn in fns if fn not in FUNCTIONS]
        if unknown or not fns:
            raise Invalid(f"bad aggregate function {unknown[0] if unknown else ''!r}: "
                          f"use {', '.join(FUNCTIONS)}")
        params = {**_selection(sensor, property, feature, start, end), "bucket": bucket,
                  "fn": ",".join(fns), "tz": tz}
        answer = await self._http.json("GET", "/observations/aggregate", params=params)
        columns = ("sensor", "feature", "property", "bucket", *fns)
        return shape(answer["items"], format, columns if not answer["items"] else None)

    async def count(self, sensor: Names = None, property: Names = None,
                    feature: Names = None, start: Time = None, end: Time = None) -> int:
        """How many observations match."""
        answer = await self._http.json("GET", "/observations/count",
                                       params=_selection(sensor, property, feature, start, end))
        return int(answer["count"])

    async def counts(self, *, format: ResultFormat = "json") -> Any:
        """How many features, sensors, properties, datastreams and observations exist."""
        check_format(format)
        return shape(await self._http.json("GET", "/counts"), format)

    async def datastreams(self, sensor: Names = None, property: Names = None,
                          feature: Names = None, *, limit: int | None = None,
                          format: ResultFormat = "json") -> Any:
        """The datastreams (sensor, property, feature) matching, with their counts."""
        check_format(format)
        items = await paging.collect(self._http, "/datastreams",
                                     _selection(sensor, property, feature), limit=limit)
        return shape(items, format, DATASTREAM_COLUMNS if not items else None,
                     TIME_COLUMNS | {"first", "last"})


__all__ = ["COLUMNS", "DATASTREAM_COLUMNS", "FUNCTIONS", "Names", "Observations", "Routing",
           "Time",
           "frame_rows", "is_missing", "observation_table"]

"""DataFrames in and out of the observation client against a real server: zone-aware times are
stored in UTC, missing values are no observation, a frame with nothing to store is refused, and
every frame the client returns has UTC datetime time columns."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import polars as pl
import pytest

from lakeport.client import Client
from lakeport.errors import Invalid
from server_fixtures import Platform

MS_UTC = "datetime64[ms, UTC]"


def client_for(platform: Platform) -> Client:
    return Client(platform.url, platform.api_key)


async def register(client: Client) -> None:
    for name, kind in (("temp", "number"), ("count", "number"), ("on", "boolean"),
                       ("state", "string"), ("kind", "string")):
        await client.observations.properties.create(name, data_type=kind)
    await client.observations.features.create("line-1")
    await client.observations.sensors.create("s1")


async def stored(client: Client, **selection: str) -> list[tuple[str, str, object]]:
    items = await client.observations.query("s1", **selection)
    return [(o["property"], o["time"], o["value"]) for o in items]


async def test_zone_aware_times_are_stored_in_utc(platform: Platform) -> None:
    async with client_for(platform) as client:
        await register(client)
        kolkata = pd.DataFrame({"time": [pd.Timestamp("2026-01-01 05:30", tz="Asia/Kolkata")],
                                "temp": [1.0]})
        assert (await client.observations.insert_dataframe("s1", kolkata))["stored"] == 1
        assert await stored(client) == [("temp", "2026-01-01T00:00:00.000Z", 1.0)]
        naive = pd.DataFrame({"time": [pd.Timestamp("2026-01-01 01:00:00.123456")],
                              "temp": [2.0]})
        await client.observations.insert_dataframe("s1", naive)
        indexed = pd.DataFrame({"temp": [3.0]}, index=pd.DatetimeIndex(
            [pd.Timestamp("2026-01-01 02:00", tz="America/New_York")], name="time"))
        await client.observations.insert_dataframe("s1", indexed)
        polars = pl.DataFrame({"time": [datetime(2026, 1, 1, 9, 0)], "temp": [4.0]}).with_columns(
            pl.col("time").dt.replace_time_zone("Asia/Tokyo"))
        await client.observations.insert_dataframe("s1", polars)
        assert await stored(client) == [
            ("temp", "2026-01-01T00:00:00.000Z", 1.0), ("temp", "2026-01-01T00:00:00.000Z", 4.0),
            ("temp", "2026-01-01T01:00:00.123Z", 2.0), ("temp", "2026-01-01T07:00:00.000Z", 3.0)]


async def test_missing_values_are_no_observation(platform: Platform) -> None:
    times = pd.date_range("2026-01-01", periods=3, freq="s", tz="UTC")
    frame = pd.DataFrame({
        "time": times,
        "temp": [1.5, np.nan, 2.5],
        "count": pd.array([pd.NA, 7, 8], dtype="Int64"),
        "on": pd.array([True, pd.NA, False], dtype="boolean"),
        "state": pd.array(["a", None, pd.NA], dtype="string[pyarrow]"),
        "kind": pd.Categorical(["x", None, "y"]),
    })
    async with client_for(platform) as client:
        await register(client)
        assert (await client.observations.insert_dataframe("s1", frame))["stored"] == 9
        second = await stored(client, start="2026-01-01T00:00:01Z", end="2026-01-01T00:00:02Z")
        assert second == [("count", "2026-01-01T00:00:01.000Z", 7.0)]
        assert await client.observations.count("s1", "state") == 1

        polars = pl.DataFrame({"time": [datetime(2026, 1, 2), datetime(2026, 1, 2, 0, 0, 1)],
                               "temp": [float("nan"), None], "count": [1, None]})
        assert (await client.observations.insert_dataframe("s1", polars))["stored"] == 1

        rows = [[datetime(2026, 1, 3, tzinfo=UTC), pd.NA, np.nan, pd.NaT, "z"]]
        answer = await client.observations.insert_batch("s1", ["temp", "count", "state", "kind"],
                                                        rows)
        assert answer["stored"] == 1
        for missing in (None, pd.NA, pd.NaT, np.nan, float("nan"), np.datetime64("NaT")):
            with pytest.raises(Invalid, match="is missing"):
                await client.observations.insert("s1", "temp", missing)


async def test_a_frame_with_nothing_to_store_is_refused(platform: Platform) -> None:
    async with client_for(platform) as client:
        await register(client)
        empty = pd.DataFrame({"time": pd.date_range("2026-01-01", periods=3, tz="UTC"),
                              "temp": [np.nan] * 3})
        with pytest.raises(Invalid, match="holds no observation: every value of temp is "
                                          "missing"):
            await client.observations.insert_dataframe("s1", empty)
        empty["count"] = pd.array([pd.NA] * 3, "Int64")
        with pytest.raises(Invalid, match="every value of temp, count is missing"):
            await client.observations.insert_dataframe("s1", empty)
        with pytest.raises(Invalid, match="no rows"):
            await client.observations.insert_dataframe("s1", empty.head(0))
        with pytest.raises(Invalid, match="no column besides 'time'"):
            await client.observations.insert_dataframe("s1", empty[["time"]])
        no_time = pd.DataFrame({"time": [pd.Timestamp("2026-01-01", tz="UTC"), pd.NaT],
                                "temp": [1.0, 2.0]})
        with pytest.raises(Invalid, match="row 1 of the DataFrame has no time"):
            await client.observations.insert_dataframe("s1", no_time)
        with pytest.raises(Invalid, match="row 0 has no time"):
            await client.observations.insert_batch("s1", ["temp"], [[pd.NaT, 1.0]])
        assert await client.observations.count("s1") == 0


async def test_every_returned_frame_has_utc_time_columns(platform: Platform) -> None:
    async with client_for(platform) as client:
        obs = client.observations
        await register(client)
        for fmt in ("dataframe", "polars"):  # nothing stored yet: empty frames are typed too
            assert time_type(await obs.latest(format=fmt), "time") == MS_UTC
            assert time_type(await obs.aggregate(format=fmt), "bucket") == MS_UTC
            assert time_type(await obs.datastreams(format=fmt), "last") == MS_UTC
        frame = pd.DataFrame({"time": pd.date_range("2026-01-01", periods=90, freq="s",
                                                    tz="UTC"), "temp": np.arange(90.0)})
        await obs.insert_dataframe("s1", frame, feature="line-1")
        for fmt in ("dataframe", "polars"):
            results = {
                "query": (await obs.query("s1", format=fmt), {"time"}),
                "latest": (await obs.latest("s1", format=fmt), {"time"}),
                "aggregate": (await obs.aggregate("s1", bucket="1m", fns=("first", "count"),
                                                  format=fmt), {"bucket"}),
                "features": (await obs.features.list(format=fmt), {"created"}),
                "sensors": (await obs.sensors.list(format=fmt), {"created"}),
                "properties": (await obs.properties.list(format=fmt), {"created"}),
                "sensor": (await obs.sensors.get("s1", format=fmt), {"created"}),
                "datastreams": (await obs.datastreams("s1", format=fmt),
                                {"first", "last"}),
            }
            for what, (result, names) in results.items():
                for name in names:
                    assert time_type(result, name) == MS_UTC, (fmt, what, name)
        buckets = await obs.aggregate("s1", bucket="1m", fns=("first", "count"),
                                      format="dataframe")
        assert list(buckets["bucket"]) == [pd.Timestamp("2026-01-01", tz="UTC"),
                                           pd.Timestamp("2026-01-01 00:01", tz="UTC")]
        assert list(buckets["first"]) == [0.0, 60.0]  # values, not times


def time_type(frame: object, name: str) -> str:
    """The type of column ``name`` of a pandas or polars frame, as pandas names it."""
    if isinstance(frame, pl.DataFrame):
        kind = frame.schema[name]
        return MS_UTC if kind == pl.Datetime("ms", "UTC") else str(kind)
    assert isinstance(frame, pd.DataFrame)
    return str(frame[name].dtype)


async def test_times_of_every_kind_select_the_same_range(platform: Platform) -> None:
    async with client_for(platform) as client:
        await register(client)
        frame = pd.DataFrame({"time": pd.date_range("2026-01-01", periods=48, freq="h",
                                                    tz="UTC"), "temp": np.arange(48.0)})
        await client.observations.insert_dataframe("s1", frame)
        day = ("2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z")
        for start, end in [
            (pd.Timestamp(day[0]).tz_convert("Asia/Kolkata"), pd.Timestamp(day[1])),
            (np.datetime64("2026-01-02T00:00:00.000000000"), np.datetime64("2026-01-03")),
            (pd.Timestamp("2026-01-02").date(), datetime(2026, 1, 3)),
        ]:
            assert await client.observations.count("s1", start=start, end=end) == 24
        with pytest.raises(Invalid, match="start has no time"):
            await client.observations.count("s1", start=pd.NaT)

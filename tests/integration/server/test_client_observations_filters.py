"""The observation client's filters and aggregates against a real server: aggregates in a time
zone with ``sum``, and filters given as lists of names."""

from __future__ import annotations

import pytest

from lakeport.client import Client
from lakeport.errors import Invalid
from server_fixtures import Platform

HOUR = 3_600_000
IST_MIDNIGHT = 1_768_415_400_000  # 2026-01-15T00:00 IST = 2026-01-14T18:30Z


def client_for(platform: Platform) -> Client:
    return Client(platform.url, platform.api_key)


async def test_aggregates_per_local_day_with_sum(platform: Platform) -> None:
    async with client_for(platform) as client:
        obs = client.observations
        await obs.properties.create("temp", data_type="number")
        await obs.sensors.create("s1")
        # one reading at half past every IST hour of 2026-01-15: 0.0 ... 23.0
        await obs.insert_batch("s1", ["time", "temp"],
                               [[IST_MIDNIGHT + h * HOUR + HOUR // 2, float(h)]
                                for h in range(24)])
        days = await obs.aggregate("s1", bucket="1d", fns=("sum",), tz="Asia/Kolkata")
        assert days == [{"sensor": "s1", "feature": None, "property": "temp",
                         "bucket": "2026-01-14T18:30:00.000Z", "sum": 276.0}]
        utc = await obs.aggregate("s1", bucket="1d", fns=("sum", "count"))
        assert [(d["bucket"], d["sum"], d["count"]) for d in utc] == [
            ("2026-01-14T00:00:00.000Z", 10.0, 5), ("2026-01-15T00:00:00.000Z", 266.0, 19)]
        frame = await obs.aggregate("s1", bucket="1d", fns=("sum",), tz="IST",
                                    format="dataframe")
        assert frame["sum"].tolist() == [276.0]
        with pytest.raises(Invalid, match="tz: unknown time zone 'Mars/Base'"):
            await obs.aggregate("s1", tz="Mars/Base")
        with pytest.raises(Invalid, match="bad aggregate function 'median'"):
            await obs.aggregate("s1", fns=("sum", "median"))


async def test_filters_take_lists_of_names(platform: Platform) -> None:
    async with client_for(platform) as client:
        obs = client.observations
        await obs.properties.create("temp", data_type="number")
        for sensor, value in (("a", 1.0), ("b", 2.0), ("c", 3.0)):
            await obs.sensors.create(sensor)
            await obs.insert(sensor, "temp", value, time="2026-01-15T08:00:00Z")
        for sensors in (["a", "b"], ("b", "a")):
            latest = await obs.latest(sensor=sensors)
            assert sorted((o["sensor"], o["value"]) for o in latest) == [("a", 1.0), ("b", 2.0)]
        assert await obs.count(sensor=["a", "c"]) == 2
        assert len(await obs.query(sensor=("a", "b", "c"), property=["temp"])) == 3
        assert [o["sensor"] for o in await obs.latest(sensor="c")] == ["c"]
        with pytest.raises(Invalid, match="sensor: give a name or a list of names"):
            await obs.latest(sensor=[])

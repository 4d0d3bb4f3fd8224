"""The Python client against a real server (SQLite and PostgreSQL): every service round-trips,
lists page, DataFrames come back typed, and errors arrive as typed exceptions."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from lakeport.client import Client, ClientError, SyncClient
from lakeport.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from server_fixtures import Platform

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms


@pytest.fixture
def keys(platform: Platform) -> dict[str, str]:
    """API keys of alice, bob and carol (made before the test's event loop runs)."""
    return {"alice": platform.api_key, "bob": platform.key_for("bob"),
            "carol": platform.key_for("carol")}


def client_for(platform: Platform, key: str | None = None) -> Client:
    return Client(platform.url, key or platform.api_key)


async def register(client: Client, sensor: str = "pump-1") -> None:
    await client.observations.properties.create("temp", unit="degC", data_type="number")
    await client.observations.properties.create("state", data_type="string")
    await client.observations.features.create("plant")
    await client.observations.features.create("line-1", parent="plant", geometry=(7.6, 45.1))
    await client.observations.sensors.create(sensor, description="inlet pump")


async def test_resources_round_trip_and_page(platform: Platform) -> None:
    async with client_for(platform) as client:
        assert await client.me() == "alice"
        await register(client)
        feature = await client.observations.features.get("line-1")
        assert feature["parent"] == "plant" and feature["owner"] == "alice"
        assert feature["geometry"] == {"type": "Point", "coordinates": [7.6, 45.1]}
        updated = await client.observations.sensors.update("pump-1", description="outlet")
        assert updated["description"] == "outlet"
        for i in range(4):
            await client.observations.sensors.create(f"extra-{i}")
        names = [s["name"] async for s in client.observations.sensors.iter(page_size=2)]
        assert sorted(names) == sorted(["pump-1", *(f"extra-{i}" for i in range(4))])
        children = await client.observations.features.list(parent="plant")
        assert [f["name"] for f in children] == ["line-1"]
        table = await client.observations.properties.list(format="table")
        assert "degC" in table and "temp" in table
        await client.observations.sensors.delete("extra-0")
        with pytest.raises(NotFound):
            await client.observations.sensors.get("extra-0")


async def test_observations_insert_query_and_download(platform: Platform,
                                                      tmp_path: Path) -> None:
    async with client_for(platform) as client:
        await register(client)
        rows = [[T0 + i * 1000, 20.0 + i] for i in range(10)]
        assert await client.observations.insert_batch(
            "pump-1", ["time", "temp"], rows, feature="line-1") == {"stored": 10, "published": 0}
        one = await client.observations.insert("pump-1", "state", "on", time=T0,
                                               feature="line-1")
        assert one["stored"] == 1
        text = "time,temp\n" + "".join(f"{T0 + (10 + i) * 1000},{30 + i}\n" for i in range(5))
        answer = await client.observations.upload_csv(text.encode(), sensor="pump-1",
                                                      feature="line-1")
        assert answer["stored"] == 5

        newest = await client.observations.query("pump-1", "temp", order="desc", limit=3)
        assert [o["value"] for o in newest] == [34.0, 33.0, 32.0]
        assert newest[0]["time"] == "2026-01-01T00:00:14.000Z"
        page = await client.observations.page("pump-1", "temp", limit=4)
        assert len(page.items) == 4 and page.next_cursor
        every = [o async for o in client.observations.iter("pump-1", "temp", page_size=4)]
        assert [o["value"] for o in every] == [20.0 + i for i in range(10)] + \
            [30.0 + i for i in range(5)]

        frame = await client.observations.query("pump-1", "temp", start=T0 + 2000,
                                                end=T0 + 12_000, format="dataframe")
        assert len(frame) == 10
        assert str(frame["time"].dtype) == "datetime64[ms, UTC]"
        assert frame["value"].iloc[0] == 22.0

        latest = await client.observations.latest("pump-1")
        assert {(o["property"], o["value"]) for o in latest} == {("temp", 34.0), ("state", "on")}
        buckets = await client.observations.aggregate("pump-1", "temp", bucket="1m",
                                                      fns=("min", "max", "count"))
        assert [(b["min"], b["max"], b["count"]) for b in buckets] == [(20.0, 34.0, 15)]
        assert await client.observations.count("pump-1", "temp", start=T0 + 10_000) == 5
        counts = await client.observations.counts()
        assert counts["observations"] == 16 and counts["sensors"] == 1
        streams = await client.observations.datastreams("pump-1")
        assert len(streams) == 2

        target = tmp_path / "range.csv"
        size = await client.observations.download(target, "pump-1", "temp", start=T0,
                                                  end=T0 + 5000)
        assert size == target.stat().st_size
        lines = list(csv.DictReader(io.StringIO(target.read_text())))
        assert [float(r["value"]) for r in lines] == [20.0, 21.0, 22.0, 23.0, 24.0]
        parquet = tmp_path / "range.parquet"
        await client.observations.download(parquet, "pump-1", "temp", format="parquet")
        import pyarrow.parquet as pq

        assert pq.read_table(parquet).num_rows == 15


async def test_errors_are_typed_with_details(platform: Platform,
                                             keys: dict[str, str]) -> None:
    async with client_for(platform) as alice, client_for(platform, keys["bob"]) as bob:
        await register(alice)
        with pytest.raises(NotFound, match="unknown sensor 'nope'"):
            await alice.observations.insert("nope", "temp", 1.0, time=T0)
        with pytest.raises(Conflict):
            await alice.observations.sensors.create("pump-1")
        with pytest.raises(Forbidden):
            await bob.observations.sensors.delete("pump-1")
        bad = b"time,temp\n2026-01-01T00:00:00Z,1.5\n2026-01-01T00:00:01Z,warm\n"
        with pytest.raises(Invalid, match="line 3") as caught:
            await alice.observations.upload_csv(bad, sensor="pump-1")
        assert isinstance(caught.value, ClientError)
        assert caught.value.status == 422
        assert caught.value.details["line"] == 3
        assert caught.value.details["column"] == "temp"
        assert await alice.observations.count("pump-1") == 0
        with pytest.raises(Invalid, match="after"):
            await alice.observations.query("pump-1", start=T0 + 1000, end=T0)
    async with Client(platform.url, "lpk_00000000_not-a-key") as stranger:
        with pytest.raises(Unauthorized):
            await stranger.observations.counts()


async def test_files_round_trip_share_and_lineage(platform: Platform, keys: dict[str, str],
                                                   tmp_path: Path) -> None:
    source = tmp_path / "readings.csv"
    source.write_text("time,temp\n1,20.5\n2,21.5\n3,22.5\n")
    async with client_for(platform) as alice, client_for(platform, keys["bob"]) as bob, \
            client_for(platform, keys["carol"]) as carol:
        lake = alice.datalake
        info = await lake.put("lab/raw/readings.csv", source, tags=["raw"],
                              metadata={"site": "north"})
        assert info["size"] == source.stat().st_size and info["owner"] == "alice"
        with pytest.raises(Conflict):
            await lake.put("lab/raw/readings.csv", b"again")
        back = tmp_path / "back.csv"
        assert await lake.get("lab/raw/readings.csv", back) == info["size"]
        assert back.read_bytes() == source.read_bytes()
        assert await lake.get("lab/raw/readings.csv", range=(0, 3)) == b"time"
        await lake.append("lab/raw/readings.csv", b"4,23.5\n")
        chunks = [c async for c in lake.stream("lab/raw/readings.csv")]
        assert b"".join(chunks).endswith(b"4,23.5\n")

        found = await lake.search(tags=["raw"])
        assert [f["path"] for f in found] == ["lab/raw/readings.csv"]
        assert [f["path"] for f in await lake.search(metadata={"site": "north"})] == [
            "lab/raw/readings.csv"]
        updated = await lake.update("lab/raw/readings.csv", add_tags=["checked"])
        assert set(updated["tags"]) == {"raw", "checked"}
        await lake.mkdir("lab/derived")
        listing = await lake.ls("lab")
        assert {e["path"] for e in listing} >= {"lab/raw", "lab/derived"}

        frame = await lake.table("lab/raw/readings.csv", format="dataframe")
        assert list(frame.columns) == ["time", "temp"] and len(frame) == 4
        as_json = await lake.table("lab/raw/readings.csv", limit=2)
        assert as_json["columns"] == ["time", "temp"] and len(as_json["rows"]) == 2

        await lake.put("lab/derived/summary.csv", b"mean\n22\n")
        await lake.relate("lab/derived/summary.csv", "lab/raw/readings.csv")
        up = await lake.lineage("lab/derived/summary.csv")
        assert "lab/raw/readings.csv" in up["nodes"]

        await lake.share("lab/raw", "bob")
        assert (await bob.datalake.info("lab/raw/readings.csv"))["owner"] == "alice"
        with pytest.raises(Forbidden):
            await bob.datalake.put("lab/raw/readings.csv", b"mine", overwrite=True)
        with pytest.raises(NotFound):
            await carol.datalake.get("lab/raw/readings.csv")
        await lake.unshare("lab/raw", "bob")
        with pytest.raises(NotFound):
            await bob.datalake.info("lab/raw/readings.csv")

        with pytest.raises(Invalid):
            await lake.put("../escape.txt", b"x")
        archived = await lake.archive("lab/derived/summary.csv")
        assert archived["archived"] is True
        await lake.delete("lab/raw/readings.csv")
        with pytest.raises(NotFound):
            await lake.info("lab/raw/readings.csv")


async def test_topics_round_trip(platform: Platform) -> None:
    async with client_for(platform) as client:
        topics = client.topics
        created = await topics.create("readings", max_age="7d")
        assert created["name"] == "readings"
        assert await topics.produce("readings", {"temp": 1}, msg_id="a") == 1
        assert await topics.produce_batch("readings", [{"temp": 2}, {"temp": 3}]) == [2, 3]
        assert (await topics.info("readings"))["last_seqno"] == 3
        await topics.create("blobs", format="bytes")
        assert await topics.produce("blobs", b"\x00\xff") == 1
        assert {t["name"] for t in await topics.list()} >= {"readings", "blobs"}
        with pytest.raises(Conflict):
            await topics.create("readings", max_age="1d")
        await topics.delete("blobs")
        with pytest.raises(NotFound):
            await topics.info("blobs")


def test_sync_client_queries_a_dataframe(platform: Platform) -> None:
    with SyncClient(platform.url, platform.api_key) as client:
        client.observations.properties.create("temp")
        client.observations.sensors.create("s1")
        client.observations.insert_batch("s1", ["time", "temp"],
                                         [[T0 + i, float(i)] for i in range(100)])
        frame = client.observations.query("s1", format="dataframe")
        assert len(frame) == 100 and frame["value"].sum() == sum(range(100))
        assert sum(1 for _ in client.observations.iter("s1", page_size=30)) == 100
        assert "s1" in client.observations.latest(format="table")
        import pandas as pd

        frame = pd.DataFrame({"time": pd.date_range("2026-02-01", periods=50, freq="s",
                                                    tz="UTC"),
                              "temp": [float(i) for i in range(50)]})
        assert client.observations.insert_dataframe("s1", frame)["stored"] == 50
        assert client.observations.count("s1", start="2026-02-01T00:00:10Z") == 40


def test_results_as_polars_frames(platform: Platform) -> None:
    import polars as pl

    with SyncClient(platform.url, platform.api_key) as client:
        client.observations.properties.create("temp")
        client.observations.sensors.create("s1")
        client.observations.insert_batch("s1", ["time", "temp"],
                                         [[T0 + i * 1000, float(i)] for i in range(10)])
        frame = client.observations.query("s1", format="polars")
        assert isinstance(frame, pl.DataFrame) and frame.height == 10
        assert frame["value"].sum() == sum(range(10))
        assert frame.schema["time"] == pl.Datetime("ms", "UTC")
        latest = client.observations.latest(sensor="s1", format="polars")
        assert latest["value"].to_list() == [9.0]
        assert latest.schema["time"] == pl.Datetime("ms", "UTC")

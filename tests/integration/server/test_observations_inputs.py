"""Observation inputs at their limits: times outside years 1-9999 on every insert path and in
a store written by an older version, deleting observations, routing=both when publishing
fails, and numbers and integers that JSON, the store or a query cannot hold."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow.parquet as pq
import pytest

from lakeport.apps.messages import Number
from lakeport.server.times import MAX_MS, MIN_MS, format_time
from server_fixtures import Platform, platform_settings, running_platform

API = "/api/v1"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms
OUT_OF_RANGE = ["0000-01-01T00:00:00Z", "-0001-01-01T00:00:00Z", "+10000-01-01T00:00:00Z",
                "10000-01-01T00:00:00Z", "9999-12-31T23:59:59.999-05:00",
                "0001-01-01T00:00:00+01:00", str(MIN_MS - 1), str(MAX_MS + 1)]


def setup_station(http: httpx.Client, sensor: str = "st-1") -> None:
    """A sensor, a feature and two properties (number, string)."""
    assert http.post(f"{API}/sensors", json={"name": sensor}).status_code == 201
    if http.get(f"{API}/features/plant").status_code == 404:
        assert http.post(f"{API}/features", json={"name": "plant"}).status_code == 201
    for name, kind in (("temp", "number"), ("state", "string")):
        if http.get(f"{API}/properties/{name}").status_code == 404:
            answer = http.post(f"{API}/properties", json={"name": name, "data_type": kind})
            assert answer.status_code == 201, answer.text


def error(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    return answer.json()["error"]


def reads_work(http: httpx.Client) -> None:
    """Every read of the observation service answers (none fails on a stored time)."""
    for path in ("/datastreams", "/observations", "/observations/latest",
                 "/observations/aggregate", "/observations/count", "/counts"):
        answer = http.get(f"{API}{path}")
        assert answer.status_code == 200, (path, answer.text)
    download = http.get(f"{API}/observations", params={"format": "csv"})
    assert download.status_code == 200, download.text
    assert download.text.startswith("sensor,feature,property,time,value")
    parquet = http.get(f"{API}/observations", params={"format": "parquet"})
    assert parquet.status_code == 200, parquet.text
    assert pq.read_table(io.BytesIO(parquet.content)).num_rows == \
        http.get(f"{API}/counts").json()["observations"]


# -- times -----------------------------------------------------------------------------------
def test_times_outside_years_1_to_9999_are_refused_on_every_insert_path(
        platform: Platform) -> None:
    with platform.client() as http:
        setup_station(http)
        for bad in OUT_OF_RANGE:
            when: Any = int(bad) if bad.lstrip("-").isdigit() else bad
            one = error(http.post(f"{API}/observations", json={
                "sensor": "st-1", "property": "temp", "time": when, "value": 1.0}), 422)
            assert "out of range" in one["message"] and one["details"] == {"field": "time"}, bad
            batch = error(http.post(f"{API}/observations/batch", json={
                "sensor": "st-1", "feature": "plant", "components": ["time", "temp"],
                "dataArray": [["2026-01-15T08:00:00Z", 1.0], [when, 2.0]]}), 422)
            assert batch["details"] == {"row": 1, "column": "time"}, (bad, batch)
            assert "out of range" in batch["message"], (bad, batch)
            csv = error(http.post(f"{API}/observations/csv", params={"sensor": "st-1"},
                                  content=f"time,temp\n2026-01-15T08:00:00Z,1\n{bad},2\n"), 422)
            assert csv["details"] == {"line": 3, "column": "time"}, (bad, csv)
            assert csv["message"].startswith("line 3: ") and "out of range" in csv["message"]
        assert http.get(f"{API}/counts").json()["observations"] == 0
        edges = http.post(f"{API}/observations/batch", json={
            "sensor": "st-1", "components": ["time", "temp"],
            "dataArray": [["0001-01-01T00:00:00Z", 1.0], ["9999-12-31T23:59:59.999Z", 2.0]]})
        assert edges.json()["stored"] == 2, edges.text
        stream = http.get(f"{API}/datastreams").json()["items"][0]
        assert (stream["first"], stream["last"]) == ("0001-01-01T00:00:00.000Z",
                                                     "9999-12-31T23:59:59.999Z")
        reads_work(http)


async def _poison(store_url: str, year_0_ms: int, year_10000_ms: int) -> None:
    """Move the stored observations out of the range, as a version without the checks could."""
    import sqlalchemy as sa

    from lakeport.server.store import Store

    async with Store(store_url) as store, store.begin() as conn:
        await conn.execute(sa.text("UPDATE observations SET time = :t WHERE time = :old"),
                           [{"t": year_0_ms, "old": T0}, {"t": year_10000_ms, "old": T0 + 1}])
        await conn.execute(sa.text("UPDATE obs_datastreams SET first_ms = :lo, last_ms = :hi"),
                           {"lo": year_0_ms, "hi": year_10000_ms})


def test_reads_survive_times_outside_the_range_stored_by_an_older_version(
        platform: Platform) -> None:
    with platform.client() as http:
        setup_station(http)
        http.post(f"{API}/observations/batch", json={
            "sensor": "st-1", "components": ["time", "temp"],
            "dataArray": [[T0, 1.0], [T0 + 1, 2.0]]}).raise_for_status()
        year_0, year_10000 = MIN_MS - 366 * 86_400_000, MAX_MS + 1
        asyncio.run(_poison(platform.settings.store_url, year_0, year_10000))
        reads_work(http)
        stream = http.get(f"{API}/datastreams").json()["items"][0]
        assert (stream["first"], stream["last"]) == ("0000-01-01T00:00:00.000Z",
                                                     "+10000-01-01T00:00:00.000Z")
        items = http.get(f"{API}/observations").json()["items"]
        assert [o["time"] for o in items] == ["0000-01-01T00:00:00.000Z",
                                              "+10000-01-01T00:00:00.000Z"]
        latest = http.get(f"{API}/observations/latest").json()["items"]
        assert latest[0]["time"] == "+10000-01-01T00:00:00.000Z"
        buckets = http.get(f"{API}/observations/aggregate", params={"bucket": "1d"}).json()
        assert [b["bucket"] for b in buckets["items"]] == ["0000-01-01T00:00:00.000Z",
                                                          "+10000-01-01T00:00:00.000Z"]
        text = http.get(f"{API}/observations", params={"format": "csv"}).text
        assert "0000-01-01T00:00:00.000Z" in text and "+10000-01-01T00:00:00.000Z" in text


@pytest.fixture
def recording(store_url: str, tmp_path: Path) -> Iterator[Platform]:
    """A server recording the topic ``asset-data``, which holds a reading of year 0 between
    good ones."""
    from lakeport.streams import open_engine

    settings = platform_settings(store_url, tmp_path, record_topics=["asset-data"])
    payloads = [Number(asset="pump-1", datastream="pressure", value=i, unit="bar",
                       time=f"2026-01-15T08:00:00.{i:03d}Z").to_payload() for i in range(10)]
    payloads.insert(5, {**payloads[0], "time": "0000-01-01T00:00:00Z", "value": 99.0})

    async def produce() -> None:
        async with open_engine(settings.streams_url) as engine, \
                engine.producer("plc", "asset-data") as producer:
            await producer.produce_many(payloads)

    asyncio.run(produce())
    with running_platform(settings) as platform:
        yield platform


def test_the_recorder_skips_readings_outside_the_range(recording: Platform) -> None:
    with recording.client() as http:
        deadline = time.monotonic() + 30
        while http.get(f"{API}/counts").json()["observations"] < 10:
            assert time.monotonic() < deadline, "the recorder stored too little"
            time.sleep(0.05)
        streams = http.get(f"{API}/datastreams")
        assert streams.status_code == 200, streams.text
        stream = streams.json()["items"][0]
        assert stream["count"] == 10 and stream["first"] == "2026-01-15T08:00:00.000Z"
        reads_work(http)


# -- deleting --------------------------------------------------------------------------------
def _fill(http: httpx.Client) -> None:
    setup_station(http)
    http.post(f"{API}/observations/batch", json={
        "sensor": "st-1", "feature": "plant", "components": ["time", "temp", "state"],
        "dataArray": [[T0 + i * 1000, float(i), f"s{i}"] for i in range(10)]}
    ).raise_for_status()
    http.post(f"{API}/observations/batch", json={
        "sensor": "st-1", "components": ["time", "temp"],
        "dataArray": [[T0 + i * 1000, float(i)] for i in range(5)]}).raise_for_status()


def _streams(http: httpx.Client) -> dict[tuple[str, str | None], tuple[int, Any, Any]]:
    return {(s["property"], s["feature"]): (s["count"], s["first"], s["last"])
            for s in http.get(f"{API}/datastreams").json()["items"]}


def iso(ms: int) -> str:
    return format_time(ms)


def test_deleting_observations_keeps_the_datastreams_right(platform: Platform) -> None:
    with platform.client() as http:
        _fill(http)
        gone = http.delete(f"{API}/observations", params={
            "sensor": "st-1", "property": "temp", "feature": "plant",
            "start": iso(T0 + 8000), "end": str(T0 + 20_000)})
        assert gone.status_code == 200 and gone.json() == {"deleted": 2}, gone.text
        assert _streams(http) == {("temp", "plant"): (8, iso(T0), iso(T0 + 7000)),
                                  ("state", "plant"): (10, iso(T0), iso(T0 + 9000)),
                                  ("temp", None): (5, iso(T0), iso(T0 + 4000))}
        latest = http.get(f"{API}/observations/latest",
                          params={"property": "temp", "feature": "plant"}).json()["items"]
        assert [(o["time"], o["value"]) for o in latest] == [(iso(T0 + 7000), 7.0)]
        first = http.delete(f"{API}/observations", params={"sensor": "st-1", "end": T0 + 2000})
        assert first.json() == {"deleted": 6}  # two of each datastream
        assert _streams(http) == {("temp", "plant"): (6, iso(T0 + 2000), iso(T0 + 7000)),
                                  ("state", "plant"): (8, iso(T0 + 2000), iso(T0 + 9000)),
                                  ("temp", None): (3, iso(T0 + 2000), iso(T0 + 4000))}
        assert http.get(f"{API}/observations/count",
                        params={"sensor": "st-1", "start": 0}).json()["count"] == 17
        assert http.delete(f"{API}/observations", params={
            "sensor": "st-1", "start": T0 + 100_000}).json() == {"deleted": 0}
        everything = http.delete(f"{API}/observations", params={"sensor": "st-1"})
        assert everything.json() == {"deleted": 17}
        assert set(_streams(http).values()) == {(0, None, None)}
        assert http.get(f"{API}/counts").json()["observations"] == 0
        assert http.get(f"{API}/observations/latest").json()["items"] == []


def test_only_the_owner_may_delete_observations_and_bad_requests_say_why(
        platform: Platform) -> None:
    with platform.client() as http, platform.client("bob") as bob:
        _fill(http)
        refused = error(bob.delete(f"{API}/observations", params={"sensor": "st-1"}), 403)
        assert "st-1" in refused["message"] and "alice" in refused["message"]
        error(bob.delete(f"{API}/observations", params={"sensor": "nope"}), 404)
        error(http.delete(f"{API}/observations", params={"sensor": "nope"}), 404)
        error(http.delete(f"{API}/observations", params={"sensor": "st-1",
                                                         "property": "nope"}), 404)
        error(http.delete(f"{API}/observations", params={"sensor": "st-1",
                                                         "feature": "nope"}), 404)
        error(http.delete(f"{API}/observations", params={"sensor": "st-1", "start": T0 + 5,
                                                         "end": T0}), 422)
        error(http.delete(f"{API}/observations"), 422)
        assert http.get(f"{API}/counts").json()["observations"] == 25


def test_the_client_and_the_command_delete_observations(platform: Platform) -> None:
    from lakeport.client import SyncClient

    with platform.client() as http:
        _fill(http)
    with SyncClient(platform.url, platform.api_key) as client:
        assert client.observations.delete_observations(
            "st-1", T0, T0 + 3000, property="temp", feature="plant") == 3
        assert client.observations.count("st-1", "temp", "plant") == 7

    script = Path(sys.executable).parent / "lakeport"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "lakeport.cli"]
    env = {**os.environ, "LAKEPORT_URL": platform.url, "LAKEPORT_API_KEY": platform.api_key}

    def lakeport(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, "observations", "delete", *args], env=env, text=True,
                              capture_output=True, stdin=subprocess.DEVNULL, timeout=60)

    unconfirmed = lakeport("--sensor", "st-1")
    assert unconfirmed.returncode == 1 and "--yes" in unconfirmed.stderr, unconfirmed.stderr
    done = lakeport("--sensor", "st-1", "--property", "state", "--start", str(T0 + 5000),
                    "--yes")
    assert done.returncode == 0, done.stderr
    assert "deleted 5 observations" in done.stderr
    as_json = lakeport("--sensor", "st-1", "--feature", "plant", "--end", "2026-01-01T00:00:06Z",
                       "--yes", "--json")
    assert as_json.returncode == 0 and orjson.loads(as_json.stdout) == {"deleted": 8}
    with platform.client() as http:
        assert http.get(f"{API}/counts").json()["observations"] == 25 - 3 - 5 - 8


# -- routing=both ----------------------------------------------------------------------------
def _messages(platform: Platform, topic: str) -> list[Any]:
    from lakeport.streams import open_engine

    async def read() -> list[Any]:
        async with open_engine(platform.settings.streams_url) as engine, \
                engine.consumer("check", topic, position="beginning", follow=False) as reader:
            return [m.payload async for m in reader]

    return asyncio.run(read())


@pytest.mark.parametrize("fmt", ["bytes", "string"])
def test_routing_both_stores_nothing_when_publishing_fails(platform: Platform,
                                                           fmt: str) -> None:
    with platform.client() as http:
        setup_station(http)
        made = http.put(f"{API}/topics/observations.st-1", json={"format": fmt})
        assert made.status_code == 201, made.text
        one = http.post(f"{API}/observations", params={"routing": "both"}, json={
            "sensor": "st-1", "property": "temp", "time": T0, "value": 1.0})
        assert "observations.st-1" in error(one, 422)["message"]
        error(http.post(f"{API}/observations/batch", params={"routing": "both"}, json={
            "sensor": "st-1", "components": ["time", "temp"], "dataArray": [[T0, 1.0]]}), 422)
        error(http.post(f"{API}/observations/csv", params={"sensor": "st-1", "routing": "both"},
                        content=f"time,temp\n{T0},1\n"), 422)
        assert http.get(f"{API}/counts").json()["observations"] == 0
        assert all(s["count"] == 0 for s in http.get(f"{API}/datastreams").json()["items"])
        stored = http.post(f"{API}/observations", json={
            "sensor": "st-1", "property": "temp", "time": T0, "value": 1.0})
        assert stored.json() == {"stored": 1, "published": 0}
    assert _messages(platform, "observations.st-1") == []


def test_publishing_again_the_same_request_is_deduplicated(platform: Platform) -> None:
    body = {"sensor": "st-1", "components": ["time", "temp"],
            "dataArray": [[T0, 1.0], [T0, 1.0], [T0 + 1, 2.0]]}
    with platform.client() as http:
        setup_station(http)
        for _ in range(2):
            answer = http.post(f"{API}/observations/batch", params={"routing": "both"},
                               json=body)
            assert answer.json() == {"stored": 3, "published": 3}, answer.text
        assert http.get(f"{API}/counts").json()["observations"] == 6
    times = [m["time"] for m in _messages(platform, "observations.st-1")]
    assert times == [iso(T0), iso(T0), iso(T0 + 1)]  # equal observations of one request stay


# -- numbers ---------------------------------------------------------------------------------
NOT_JSON_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", str(2**70),
                    str(-(2**63) - 1)]


def test_numbers_json_cannot_hold_are_refused_in_metadata_and_properties(
        platform: Platform) -> None:
    headers = {"content-type": "application/json"}
    with platform.client() as http:
        assert http.post(f"{API}/sensors", json={"name": "s"}).status_code == 201
        assert http.post(f"{API}/features", json={"name": "f"}).status_code == 201
        for number in NOT_JSON_NUMBERS:
            nested = f'{{"a": {{"b": [1, {number}]}}}}'
            for method, path, field in (
                    ("POST", "/sensors", "metadata"), ("PATCH", "/sensors/s", "metadata"),
                    ("POST", "/features", "properties"), ("PATCH", "/features/f", "properties")):
                name = '"name": "x", ' if method == "POST" else ""
                answer = http.request(method, f"{API}{path}", headers=headers,
                                      content=f'{{{name}"{field}": {nested}}}')
                found = error(answer, 422)
                assert f"{field}['a']['b'][1]" in found["message"], (number, found)
        assert http.get(f"{API}/sensors/x").status_code == 404
        assert http.get(f"{API}/sensors/s").json()["metadata"] == {}
        fine = http.patch(f"{API}/sensors/s", json={"metadata": {"a": [1.5, 2**63 - 1, None]}})
        assert fine.json()["metadata"] == {"a": [1.5, 2**63 - 1, None]}, fine.text


# -- integers in query parameters and cursors ------------------------------------------------
HUGE = [str(2**63), str(-(2**63) - 1), str(10**30), str(2**53 + 1), "NaN", "nan", "inf",
        "-Infinity", "1e400", "1.5", "0x10"]


def cursor_of(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def test_integer_query_parameters_and_cursors_never_overflow(platform: Platform) -> None:
    observed = {"sensor": "st-1"}
    checks: list[tuple[str, dict[str, Any], str, list[str]]] = [
        (path, base, name, HUGE) for path, base, names in (
            ("/search", {}, ("min_size", "max_size", "after", "before", "limit")),
            ("/observations", observed, ("start", "end", "limit")),
            ("/observations/count", observed, ("start", "end")),
            ("/observations/aggregate", observed, ("start", "end")),
            ("/datastreams", {}, ("limit",)), ("/sensors", {}, ("limit",)),
            ("/features", {}, ("limit",)), ("/properties", {}, ("limit",)))
        for name in names]
    cursors = [cursor_of(v) for v in (
        [2**63, 1, 0], [T0, 2**63, 0], [T0, 1, 2**63], [T0, 1, 2**53 + 1], [-(2**63) - 1, 1, 0],
        [10**30, 1, 0], [T0, 1, -1], [1e300, 1, 0], 2**63, 10**30, -(2**63) - 1, [2**63],
        ["a", 2**70])] + ["not-a-cursor"]
    checks += [(path, observed if path == "/observations" else {}, "cursor", cursors)
               for path in ("/observations", "/datastreams", "/search", "/sensors", "/features",
                            "/properties")]
    with platform.client() as http:
        setup_station(http)
        http.post(f"{API}/observations", json={"sensor": "st-1", "property": "temp",
                                               "time": T0, "value": 1.0}).raise_for_status()
        http.put(f"{API}/files/data/a.csv", content=b"x").raise_for_status()
        failures = []
        for path, base, name, values in checks:
            for value in values:
                answer = http.get(f"{API}{path}", params={**base, name: value})
                if not 400 <= answer.status_code < 500:
                    failures.append((path, name, value, answer.status_code))
        for name in ("start", "end"):
            for value in HUGE:
                answer = http.delete(f"{API}/observations", params={"sensor": "st-1",
                                                                    name: value})
                if not 400 <= answer.status_code < 500:
                    failures.append(("DELETE /observations", name, value, answer.status_code))
        assert failures == []

        # bodies: times out of any range, values JSON holds only as floats (or not at all)
        for when, value in ((2**63, 1.0), (-(2**63) - 1, 1.0), (10**30, 1.0), (T0, 2**70),
                            (T0, 2**64 - 1), (T0, -(2**63) - 1)):
            for path, body in (
                    ("/observations", {"sensor": "st-1", "property": "temp", "time": when,
                                       "value": value}),
                    ("/observations/batch", {"sensor": "st-1", "components": ["time", "temp"],
                                             "dataArray": [[when, value]]})):
                answer = http.post(f"{API}{path}", content=json.dumps(body),
                                   headers={"content-type": "application/json"})
                assert answer.status_code < 500, (path, body, answer.text)
                if when != T0:
                    assert answer.status_code == 422, (path, body, answer.text)
        for text in ("1e400", "-1e400", "nan", "inf"):
            for path, body in (
                    ("/observations", f'{{"sensor": "st-1", "property": "temp", "time": {T0}, '
                                      f'"value": {text}}}'),
                    ("/observations/csv?sensor=st-1", f"time,temp\n{T0},{text}\n")):
                error(http.post(f"{API}{path}", content=body), 422)
        reads_work(http)

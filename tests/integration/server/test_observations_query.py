"""Querying observations: pages and order, time ranges, latest, aggregates, counts, and CSV /
Parquet downloads."""

from __future__ import annotations

import io

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from server_fixtures import Platform

API = "/api/v1"
T0 = 1_768_464_000_000  # 2026-01-15T08:00:00Z


def load(http: httpx.Client) -> None:
    """Sensor s1 at 'plant': temp every 10 s for 10 minutes (60 rows, value = minute * 10 +
    second / 10), two rows at T0 + 5 s; a status string every minute."""
    http.post(f"{API}/sensors", json={"name": "s1"})
    http.post(f"{API}/features", json={"name": "plant"})
    http.post(f"{API}/properties", json={"name": "temp", "unit": "degC"})
    http.post(f"{API}/properties", json={"name": "status", "data_type": "string"})
    rows = [[T0 + i * 10_000, (i // 6) * 10 + (i % 6), None] for i in range(60)]
    for i in range(0, 60, 6):
        rows[i][2] = f"m{i // 6}"
    rows += [[T0 + 5_000, 100.0, None], [T0 + 5_000, -100.0, None]]
    answer = http.post(f"{API}/observations/batch", json={
        "sensor": "s1", "feature": "plant", "components": ["time", "temp", "status"],
        "dataArray": rows})
    assert answer.status_code == 201, answer.text


def walk(http: httpx.Client, **params: object) -> list[dict]:
    items, cursor = [], None
    while True:
        page = http.get(f"{API}/observations",
                        params={**params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


def test_pages_cover_every_row_once_in_either_order(platform: Platform) -> None:
    with platform.client() as http:
        load(http)
        everything = walk(http, sensor="s1", limit=10_000)
        assert len(everything) == 72
        times = [i["time"] for i in everything]
        assert times == sorted(times)
        for limit in (1, 3, 7):  # pages that split the two rows sharing T0 + 5 s
            assert walk(http, sensor="s1", limit=limit) == everything
            backwards = walk(http, sensor="s1", limit=limit, order="desc")
            assert sorted(map(str, backwards)) == sorted(map(str, everything))
            assert [i["time"] for i in backwards] == times[::-1]


def test_time_range_is_start_inclusive_end_exclusive(platform: Platform) -> None:
    with platform.client() as http:
        load(http)
        rows = walk(http, property="temp", start="2026-01-15T08:01:00Z",
                    end="15-Jan-2026 13:32:00 IST")  # 08:02:00Z
        assert [r["time"][14:19] for r in rows] == [f"01:{s}0" for s in "012345"]
        assert rows[0]["value"] == 10.0 and rows[0]["feature"] == "plant"
        upside_down = http.get(f"{API}/observations", params={"start": T0 + 1, "end": T0})
        assert upside_down.status_code == 422
        assert "is after end" in upside_down.json()["error"]["message"]
        for path in ("/observations/count", "/observations/aggregate"):
            assert http.get(f"{API}{path}", params={"start": T0 + 1, "end": T0}
                            ).status_code == 422
        assert http.get(f"{API}/observations", params={"start": "tuesday"}).status_code == 422
        assert http.get(f"{API}/observations", params={"sensor": "ghost"}).status_code == 404


def test_latest_count_and_counts(platform: Platform) -> None:
    with platform.client() as http:
        load(http)
        latest = http.get(f"{API}/observations/latest", params={"sensor": "s1"}).json()["items"]
        assert sorted((i["property"], i["time"], i["value"]) for i in latest) == [
            ("status", "2026-01-15T08:09:00.000Z", "m9"),
            ("temp", "2026-01-15T08:09:50.000Z", 95.0)]
        count = http.get(f"{API}/observations/count", params={"property": "temp"}).json()
        assert count == {"count": 62}
        ranged = http.get(f"{API}/observations/count",
                          params={"property": "temp", "start": T0, "end": T0 + 10_000}).json()
        assert ranged == {"count": 3}
        assert http.get(f"{API}/counts").json()["observations"] == 72


def test_aggregates_per_bucket(platform: Platform) -> None:
    with platform.client() as http:
        load(http)
        answer = http.get(f"{API}/observations/aggregate", params={
            "property": "temp", "bucket": "1m", "fn": "avg,min,max,count,first,last",
            "end": T0 + 120_000})
        assert answer.status_code == 200, answer.text
        first, second = answer.json()["items"]
        assert first == {"sensor": "s1", "feature": "plant", "property": "temp",
                         "bucket": "2026-01-15T08:00:00.000Z", "avg": 15 / 8, "min": -100.0,
                         "max": 100.0, "count": 8, "first": 0.0, "last": 5.0}
        assert second["bucket"] == "2026-01-15T08:01:00.000Z" and second["count"] == 6
        hourly = http.get(f"{API}/observations/aggregate", params={
            "sensor": "s1", "bucket": "1h", "fn": "count,avg,last"}).json()["items"]
        assert {(i["property"], i["count"], i["avg"], i["last"]) for i in hourly} == {
            ("temp", 62, (sum((i // 6) * 10 + i % 6 for i in range(60))) / 62, 95.0),
            ("status", 10, None, "m9")}
        assert http.get(f"{API}/observations/aggregate",
                        params={"fn": "median"}).status_code == 422
        assert http.get(f"{API}/observations/aggregate",
                        params={"bucket": "5m"}).status_code == 422


def test_csv_and_parquet_downloads_hold_the_whole_range(platform: Platform) -> None:
    with platform.client() as http:
        load(http)
        csv = http.get(f"{API}/observations", params={"sensor": "s1", "format": "csv",
                                                      "limit": 1})
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
        lines = csv.text.splitlines()
        assert lines[0] == "sensor,feature,property,time,value" and len(lines) == 73
        assert lines[1] == "s1,plant,temp,2026-01-15T08:00:00.000Z,0.0"
        assert "s1,plant,status,2026-01-15T08:00:00.000Z,m0" in lines
        parquet = http.get(f"{API}/observations", params={"property": "temp",
                                                          "format": "parquet"})
        assert parquet.headers["content-type"] == "application/vnd.apache.parquet"
        table = pq.read_table(io.BytesIO(parquet.content))
        assert table.column_names == ["sensor", "feature", "property", "time", "value"]
        assert table.schema.field("time").type == pa.timestamp("ms", tz="UTC")
        assert table.schema.field("value").type == pa.float64()
        assert table.num_rows == 62 and table["value"][0].as_py() == 0.0
        mixed = pq.read_table(io.BytesIO(http.get(f"{API}/observations", params={
            "sensor": "s1", "format": "parquet"}).content))
        assert mixed.schema.field("value").type == pa.string() and mixed.num_rows == 72
        empty = http.get(f"{API}/observations", params={"property": "temp", "format": "csv",
                                                        "start": T0 + 10**9})
        assert empty.text.splitlines() == ["sensor,feature,property,time,value"]


def test_values_keep_their_types(platform: Platform) -> None:
    with platform.client() as http:
        http.post(f"{API}/sensors", json={"name": "s1"})
        for name, kind in (("flag", "boolean"), ("shape", "object"), ("note", "string")):
            http.post(f"{API}/properties", json={"name": name, "data_type": kind})
        answer = http.post(f"{API}/observations/batch", json={
            "sensor": "s1", "components": ["time", "flag", "shape", "note"],
            "dataArray": [[T0, True, {"a": [1, 2]}, "ok"], [T0 + 1, False, [3], ""]]})
        assert answer.json()["stored"] == 6
        items = walk(http, sensor="s1")
        assert [(i["property"], i["value"]) for i in items] == [
            ("flag", True), ("shape", {"a": [1, 2]}), ("note", "ok"),
            ("flag", False), ("shape", [3]), ("note", "")]

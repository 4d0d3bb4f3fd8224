"""The observation service used as users of the platform it replaces use it: repeated filters,
the empty feature, cursors bound to their query, unknown query parameters, epoch seconds,
numeric-month and GMT+hh:mm times, aggregates per local day, and a CSV download uploaded
back."""

from __future__ import annotations

import httpx

from server_fixtures import Platform

API = "/api/v1"
T0 = 1_768_464_000_000  # 2026-01-15T08:00:00Z
HOUR = 3_600_000


def error(answer: httpx.Response, status: int) -> dict:
    assert answer.status_code == status, answer.text
    return answer.json()["error"]


def created(answer: httpx.Response) -> dict:
    assert answer.status_code == 201, answer.text
    return answer.json()


def two_sensors(http: httpx.Client) -> None:
    """Sensors a and b (feature plant) and c (no feature), temp every second from T0: a 3
    rows, b 4 rows, c 2 rows."""
    for name in ("a", "b", "c"):
        created(http.post(f"{API}/sensors", json={"name": name}))
    created(http.post(f"{API}/features", json={"name": "plant"}))
    created(http.post(f"{API}/properties", json={"name": "temp"}))
    for name, rows, feature in (("a", 3, "plant"), ("b", 4, "plant"), ("c", 2, None)):
        created(http.post(f"{API}/observations/batch", json={
            "sensor": name, "feature": feature, "components": ["time", "temp"],
            "dataArray": [[T0 + i * 1000, float(i)] for i in range(rows)]}))


def test_sensor_property_and_feature_filters_can_be_repeated(platform: Platform) -> None:
    with platform.client() as http:
        two_sensors(http)
        both = [("sensor", "a"), ("sensor", "b")]
        latest = http.get(f"{API}/observations/latest", params=both).json()["items"]
        assert sorted((i["sensor"], i["value"]) for i in latest) == [("a", 2.0), ("b", 3.0)]
        rows = http.get(f"{API}/observations", params=[*both, ("limit", 100)]).json()
        assert sorted({i["sensor"] for i in rows["items"]}) == ["a", "b"]
        assert len(rows["items"]) == 7
        assert http.get(f"{API}/observations/count", params=both).json() == {"count": 7}
        sums = http.get(f"{API}/observations/aggregate",
                        params=[*both, ("fn", "count")]).json()["items"]
        assert sorted((i["sensor"], i["count"]) for i in sums) == [("a", 3), ("b", 4)]
        streams = http.get(f"{API}/datastreams", params=[("sensor", "c"), ("sensor", "b")])
        assert sorted(i["sensor"] for i in streams.json()["items"]) == ["b", "c"]
        assert http.get(f"{API}/observations/count",
                        params=[("property", "temp"), ("property", "temp")]).json() == \
            {"count": 9}
        ghost = error(http.get(f"{API}/observations/latest",
                               params=[("sensor", "a"), ("sensor", "ghost")]), 404)
        assert ghost["message"] == "unknown sensor 'ghost'"


def test_the_empty_feature_selects_observations_without_one(platform: Platform) -> None:
    with platform.client() as http:
        two_sensors(http)
        created(http.post(f"{API}/observations", json={
            "sensor": "a", "property": "temp", "feature": "", "time": T0, "value": 9.0}))
        none = http.get(f"{API}/observations", params={"feature": ""}).json()["items"]
        assert sorted((i["sensor"], i["feature"]) for i in none) == [
            ("a", None), ("c", None), ("c", None)]
        assert http.get(f"{API}/observations/count", params={"feature": ""}).json() == \
            {"count": 3}
        assert http.get(f"{API}/observations/count").json() == {"count": 10}  # no filter
        either = [("feature", ""), ("feature", "plant"), ("sensor", "a")]
        assert http.get(f"{API}/observations/count", params=either).json() == {"count": 4}
        latest = http.get(f"{API}/observations/latest",
                          params={"feature": "", "sensor": "a"}).json()["items"]
        assert [(i["feature"], i["value"]) for i in latest] == [(None, 9.0)]
        deleted = http.delete(f"{API}/observations", params={"sensor": "a", "feature": ""})
        assert deleted.json() == {"deleted": 1}
        assert http.get(f"{API}/observations/count", params={"sensor": "a"}).json() == \
            {"count": 3}


def test_a_cursor_only_continues_its_own_query(platform: Platform) -> None:
    with platform.client() as http:
        two_sensors(http)
        first = http.get(f"{API}/observations", params={"sensor": "a", "limit": 1}).json()
        cursor = first["next_cursor"]
        other = http.get(f"{API}/observations", params={"sensor": "b", "cursor": cursor})
        assert error(other, 422)["message"].startswith("cursor belongs to another query")
        reordered = http.get(f"{API}/observations",
                             params={"sensor": "a", "order": "desc", "cursor": cursor})
        assert "another query" in error(reordered, 422)["message"]
        same = http.get(f"{API}/observations",
                        params={"sensor": "a", "limit": 5, "cursor": cursor}).json()
        assert [i["value"] for i in same["items"]] == [1.0, 2.0]
        for path, params in (("/datastreams", {}), ("/sensors", {})):
            page = http.get(f"{API}{path}", params={**params, "limit": 1}).json()
            assert page["next_cursor"] is not None
            moved = http.get(f"{API}/features", params={"cursor": page["next_cursor"]})
            assert "another query" in error(moved, 422)["message"]
        streams = http.get(f"{API}/datastreams", params={"limit": 1}).json()["next_cursor"]
        narrowed = http.get(f"{API}/datastreams", params={"sensor": "c", "cursor": streams})
        assert "another query" in error(narrowed, 422)["message"]


def test_unknown_query_parameters_are_refused_on_every_route(platform: Platform) -> None:
    with platform.client() as http:
        two_sensors(http)
        typo = error(http.get(f"{API}/observations", params={"sensor": "a", "limt": 5}), 422)
        assert typo["message"].startswith("query.limt: unknown query parameter")
        assert "limit" in typo["message"]
        assert typo["details"][0]["loc"] == ["query", "limt"]
        for method, path in (("GET", "/observations/latest"), ("GET", "/features"),
                             ("GET", "/topics"), ("GET", "/ls"), ("GET", "/grants/sensor/a"),
                             ("POST", "/observations/batch"), ("GET", "/me")):
            answer = http.request(method, f"{API}{path}", params={"bogus": "1"})
            assert error(answer, 422)["message"].startswith("query.bogus: "), path
        assert http.get("/health", params={"x": "1"}).status_code == 422
        assert http.get(f"{API}/search", params={"meta.site": "pune"}).status_code == 200
        assert http.get("/openapi.json", params={"x": "1"}).status_code == 200


def test_epoch_seconds_are_refused_on_every_insert_path(platform: Platform) -> None:
    seconds = 1_768_464_008
    with platform.client() as http:
        two_sensors(http)
        one = error(http.post(f"{API}/observations", json={
            "sensor": "a", "property": "temp", "time": seconds, "value": 1.0}), 422)
        assert "looks like epoch seconds (2026-01-15T08:00:08Z)" in one["message"]
        assert one["details"] == {"field": "time"}
        batch = error(http.post(f"{API}/observations/batch", json={
            "sensor": "a", "components": ["time", "temp"],
            "dataArray": [[T0, 1.0], [seconds, 2.0]]}), 422)
        assert batch["details"] == {"row": 1, "column": "time"}
        assert "send 1768464008000 or ISO 8601" in batch["message"]
        csv = error(http.post(f"{API}/observations/csv", params={"sensor": "a"},
                              content=f"time,temp\n{T0},1\n{seconds},2\n".encode()), 422)
        assert csv["details"] == {"line": 3, "column": "time"}
        query = error(http.get(f"{API}/observations", params={"start": seconds}), 422)
        assert query["message"].startswith("start: time '1768464008' looks like epoch seconds")
        assert http.get(f"{API}/observations/count").json() == {"count": 9}


def test_numeric_month_and_gmt_offset_times_are_stored(platform: Platform) -> None:
    with platform.client() as http:
        two_sensors(http)
        created(http.post(f"{API}/observations/batch", json={
            "sensor": "c", "components": ["time", "temp"],
            "dataArray": [["15-07-2019 12:35:56.789 IST", 1.0],
                          ["15-07-2019 12:35:57.789 GMT+05:30", 2.0],
                          ["15-Jul-2019 12:35:58.789 UTC+5:30", 3.0]]}))
        rows = http.get(f"{API}/observations", params={
            "sensor": "c", "end": "16-07-2019 00:00:00 GMT+05:30"}).json()["items"]
        assert [(i["time"], i["value"]) for i in rows] == [
            ("2019-07-15T07:05:56.789Z", 1.0), ("2019-07-15T07:05:57.789Z", 2.0),
            ("2019-07-15T07:05:58.789Z", 3.0)]


def test_aggregates_per_local_day_with_sum(platform: Platform) -> None:
    ist_midnight = 1_768_415_400_000  # 2026-01-15T00:00 IST = 2026-01-14T18:30Z
    with platform.client() as http:
        two_sensors(http)
        created(http.post(f"{API}/sensors", json={"name": "d"}))
        created(http.post(f"{API}/observations/batch", json={
            "sensor": "d", "components": ["time", "temp"],
            "dataArray": [[ist_midnight + h * HOUR - HOUR // 2, float(h)] for h in range(26)]}))
        days = http.get(f"{API}/observations/aggregate", params={
            "sensor": "d", "bucket": "1d", "tz": "Asia/Kolkata", "fn": "count,sum,avg"}
                        ).json()["items"]
        assert [(d["bucket"], d["count"], d["sum"], d["avg"]) for d in days] == [
            ("2026-01-13T18:30:00.000Z", 1, 0.0, 0.0),
            ("2026-01-14T18:30:00.000Z", 24, 300.0, 12.5),
            ("2026-01-15T18:30:00.000Z", 1, 25.0, 25.0)]
        fixed = http.get(f"{API}/observations/aggregate", params={
            "sensor": "d", "bucket": "1d", "tz": "IST", "fn": "count"}).json()["items"]
        assert [d["count"] for d in fixed] == [1, 24, 1]
        utc = http.get(f"{API}/observations/aggregate", params={
            "sensor": "d", "bucket": "1d", "fn": "count"}).json()
        assert [d["count"] for d in utc["items"]] == [6, 20]
        bad = error(http.get(f"{API}/observations/aggregate", params={"tz": "Mars/Base"}), 422)
        assert bad["message"].startswith("tz: unknown time zone 'Mars/Base'")


def test_a_day_with_daylight_saving_is_one_bucket_of_23_hours(platform: Platform) -> None:
    berlin_midnight = 1_774_738_800_000  # 2026-03-29T00:00 CET = 2026-03-28T23:00Z
    with platform.client() as http:
        two_sensors(http)
        created(http.post(f"{API}/sensors", json={"name": "d"}))
        created(http.post(f"{API}/observations/batch", json={
            "sensor": "d", "components": ["time", "temp"],
            "dataArray": [[berlin_midnight + h * HOUR, float(h)] for h in range(24)]}))
        days = http.get(f"{API}/observations/aggregate", params={
            "sensor": "d", "bucket": "1d", "tz": "Europe/Berlin", "fn": "count,min,max"}
                        ).json()["items"]
        assert [(d["bucket"], d["count"], d["min"], d["max"]) for d in days] == [
            ("2026-03-28T23:00:00.000Z", 23, 0.0, 22.0),
            ("2026-03-29T22:00:00.000Z", 1, 23.0, 23.0)]


def test_a_csv_download_uploads_back_to_the_same_observations(platform: Platform) -> None:
    with platform.client() as http:
        two_sensors(http)
        for name, kind in (("state", "string"), ("alarm", "boolean"), ("shape", "object")):
            created(http.post(f"{API}/properties", json={"name": name, "data_type": kind}))
        created(http.post(f"{API}/observations/batch", json={
            "sensor": "c", "components": ["time", "state", "alarm", "shape"],
            "dataArray": [[T0, "on, then off", True, {"a": [1, 2]}],
                          [T0 + 1, 'say "hi"', False, [3]]]}))
        before = http.get(f"{API}/observations", params={"limit": 1000}).json()["items"]
        download = http.get(f"{API}/observations", params={"format": "csv"})
        assert download.status_code == 200
        for sensor in ("a", "b", "c"):
            http.delete(f"{API}/observations", params={"sensor": sensor})
        assert http.get(f"{API}/observations/count").json() == {"count": 0}
        upload = http.post(f"{API}/observations/csv", content=download.content,
                           headers={"content-type": "text/csv"})
        assert created(upload) == {"stored": len(before), "published": 0}
        after = http.get(f"{API}/observations", params={"limit": 1000}).json()["items"]
        assert sorted(map(repr, after)) == sorted(map(repr, before))


def test_csv_errors_name_columns_not_properties_called_property(platform: Platform) -> None:
    with platform.client() as http:
        two_sensors(http)
        wide = error(http.post(f"{API}/observations/csv", params={"sensor": "a"},
                               content=b"time,property,temp\n0,x,1\n"), 422)
        assert wide["message"].startswith(
            "line 1: column 'property' of the header is an unknown observed property")
        assert "long form (sensor,feature,property,time,value)" in wide["message"]
        long = error(http.post(f"{API}/observations/csv", content=(
            b"sensor,feature,property,time,value\n"
            b"a,plant,temp,2026-01-15T08:00:00.000Z,1\nb,,humidity,2026-01-15T08:00:00Z,2\n")),
            422)
        assert long["details"] == {"line": 3, "column": "property"}
        assert "unknown observed property 'humidity'" in long["message"]
        value = error(http.post(f"{API}/observations/csv", content=(
            b"sensor,property,time,value\na,temp,2026-01-15T08:00:00Z,warm\n")), 422)
        assert value["details"] == {"line": 2, "column": "value"}
        extra = error(http.post(f"{API}/observations/csv", content=(
            b"sensor,property,time,value,unit\na,temp,2026-01-15T08:00:00Z,1,degC\n")), 422)
        assert extra["details"] == {"line": 1, "column": "unit"}

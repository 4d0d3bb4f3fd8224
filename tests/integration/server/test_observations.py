"""Observation resources (features, sensors, properties) and inserting observations: one, a
batch, a CSV file; ownership and bad input."""

from __future__ import annotations

import httpx

from server_fixtures import Platform

API = "/api/v1"


def setup_station(http: httpx.Client, sensor: str = "st-1") -> None:
    """A sensor, a feature and three properties (number, string, boolean)."""
    assert http.post(f"{API}/sensors", json={"name": sensor}).status_code == 201
    assert http.post(f"{API}/features", json={"name": "plant"}).status_code == 201
    for name, kind, unit in (("temp", "number", "degC"), ("state", "string", ""),
                             ("alarm", "boolean", "")):
        answer = http.post(f"{API}/properties",
                           json={"name": name, "data_type": kind, "unit": unit})
        assert answer.status_code == 201, answer.text


def error(answer: httpx.Response, status: int) -> dict:
    assert answer.status_code == status, answer.text
    return answer.json()["error"]


def test_features_form_a_hierarchy_with_points_and_pages(platform: Platform) -> None:
    with platform.client() as http:
        plant = http.post(f"{API}/features", json={
            "name": "plant", "description": "Pune", "properties": {"area": 3},
            "geometry": {"type": "Point", "coordinates": [73.85, 18.52]}})
        assert plant.status_code == 201
        body = plant.json()
        assert body["owner"] == "alice" and body["created"].endswith("Z")
        assert body["geometry"]["coordinates"] == [73.85, 18.52] and body["parent"] is None
        for n in range(5):
            assert http.post(f"{API}/features",
                             json={"name": f"line-{n}", "parent": "plant"}).status_code == 201
        names, cursor = [], None
        while True:
            page = http.get(f"{API}/features", params={"parent": "plant", "limit": 2,
                                                       **({"cursor": cursor} if cursor else {})})
            names += [f["name"] for f in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert names == [f"line-{n}" for n in range(5)]
        assert http.get(f"{API}/features/line-3").json()["parent"] == "plant"
        patched = http.patch(f"{API}/features/line-3", json={"description": "third"}).json()
        assert patched["description"] == "third" and patched["parent"] == "plant"
        assert http.patch(f"{API}/features/line-3", json={"parent": None}).json()["parent"] \
            is None
        cycle = http.patch(f"{API}/features/plant", json={"parent": "line-0"})
        assert "cycle" in error(cycle, 422)["message"]
        bad_point = http.post(f"{API}/features", json={
            "name": "x", "geometry": {"type": "Point", "coordinates": [200, 0]}})
        assert "longitude" in error(bad_point, 422)["message"]
        assert "children" in error(http.delete(f"{API}/features/plant"), 409)["message"] or \
            "child" in http.delete(f"{API}/features/plant").json()["error"]["message"]
        assert http.delete(f"{API}/features/line-4").status_code == 204
        error(http.get(f"{API}/features/line-4"), 404)


def test_sensors_atomic_and_composite(platform: Platform) -> None:
    with platform.client() as http:
        assert http.post(f"{API}/sensors", json={"name": "t1", "metadata": {"model": "PT100"}}
                         ).json()["kind"] == "atomic"
        composite = http.post(f"{API}/sensors", json={"name": "rig", "kind": "composite",
                                                      "components": ["t1"]})
        assert composite.status_code == 201 and composite.json()["components"] == ["t1"]
        assert "unknown sensor 'nope'" in error(http.post(f"{API}/sensors", json={
            "name": "rig2", "kind": "composite", "components": ["nope"]}), 404)["message"]
        error(http.post(f"{API}/sensors", json={"name": "a", "components": ["t1"]}), 422)
        assert "component" in error(http.delete(f"{API}/sensors/t1"), 409)["message"]
        assert [s["name"] for s in http.get(f"{API}/sensors").json()["items"]] == ["rig", "t1"]


def test_duplicates_conflict_and_other_users_may_read_but_not_change(
        platform: Platform) -> None:
    with platform.client() as alice, platform.client("bob") as bob:
        setup_station(alice)
        assert "exists" in error(alice.post(f"{API}/sensors", json={"name": "st-1"}),
                                 409)["message"]
        error(alice.post(f"{API}/properties", json={"name": "temp"}), 409)
        assert bob.get(f"{API}/sensors/st-1").json()["owner"] == "alice"
        assert "alice" in error(bob.delete(f"{API}/sensors/st-1"), 403)["message"]
        error(bob.patch(f"{API}/properties/temp", json={"unit": "K"}), 403)
        error(bob.delete(f"{API}/features/plant"), 403)
        assert alice.get(f"{API}/sensors/st-1").status_code == 200


def test_bad_names_and_bodies_are_422(platform: Platform) -> None:
    with platform.client() as http:
        for body in ({"name": "has space"}, {"name": ""}, {"name": "x" * 201},
                     {"name": "ok", "surprise": 1}, {"name": "ok", "kind": "blob"}):
            error(http.post(f"{API}/sensors", json=body), 422)
        error(http.post(f"{API}/properties", json={"name": "p", "data_type": "int"}), 422)
        error(http.post(f"{API}/sensors", content=b"{not json",
                        headers={"content-type": "application/json"}), 422)
        error(http.get(f"{API}/sensors", params={"cursor": "%%%"}), 422)


def test_one_observation_and_a_batch_are_stored(platform: Platform) -> None:
    with platform.client() as http:
        setup_station(http)
        one = http.post(f"{API}/observations", json={
            "sensor": "st-1", "property": "temp", "feature": "plant",
            "time": "15-Jul-2019 12:35:56.789 IST", "value": 21.5})
        assert one.status_code == 201 and one.json() == {"stored": 1, "published": 0}
        batch = http.post(f"{API}/observations/batch", json={
            "sensor": "st-1", "feature": "plant", "components": ["time", "temp", "state"],
            "dataArray": [[1_700_000_000_000 + i * 1000, 20 + i, "run" if i else None]
                          for i in range(100)]})
        assert batch.status_code == 201 and batch.json() == {"stored": 199, "published": 0}
        counts = http.get(f"{API}/counts").json()
        assert counts == {"features": 1, "sensors": 1, "properties": 3, "datastreams": 2,
                          "observations": 200}
        latest = http.get(f"{API}/observations/latest", params={"property": "temp"}).json()
        assert latest["items"] == [{"sensor": "st-1", "feature": "plant", "property": "temp",
                                    "time": "2023-11-14T22:14:59.000Z", "value": 119.0}]
        streams = http.get(f"{API}/datastreams", params={"sensor": "st-1"}).json()["items"]
        assert sorted((s["property"], s["count"]) for s in streams) == [("state", 99),
                                                                        ("temp", 101)]
        assert "observations" in error(http.delete(f"{API}/sensors/st-1"), 409)["message"]
        assert "observations" in error(http.delete(f"{API}/features/plant"), 409)["message"]


def test_a_bad_batch_row_names_row_and_column_and_stores_nothing(platform: Platform) -> None:
    with platform.client() as http:
        setup_station(http)
        rows = [[1_700_000_000_000 + i, 1.0, True] for i in range(10)]
        rows[7][1] = "warm"
        answer = error(http.post(f"{API}/observations/batch", json={
            "sensor": "st-1", "components": ["time", "temp", "alarm"], "dataArray": rows}), 422)
        assert answer["details"] == {"row": 7, "column": "temp"}
        assert "row 7" in answer["message"] and "number" in answer["message"]
        rows[7][1] = 1.0
        rows[3][0] = "not a time"
        answer = error(http.post(f"{API}/observations/batch", json={
            "sensor": "st-1", "components": ["time", "temp", "alarm"], "dataArray": rows}), 422)
        assert answer["details"] == {"row": 3, "column": "time"}
        unknown = error(http.post(f"{API}/observations/batch", json={
            "sensor": "st-1", "components": ["time", "humidity"], "dataArray": [[0, 1]]}), 422)
        assert "humidity" in unknown["message"]
        assert http.get(f"{API}/counts").json()["observations"] == 0


def test_values_must_fit_the_data_type(platform: Platform) -> None:
    with platform.client() as http:
        setup_station(http)
        for prop, value in (("temp", "hot"), ("temp", True), ("alarm", "yes"),
                            ("state", 3), ("state", "a\u0000b")):
            answer = http.post(f"{API}/observations", json={
                "sensor": "st-1", "property": prop, "time": 0, "value": value})
            assert error(answer, 422)["details"] == {"field": "value"}, (prop, value)
        assert http.get(f"{API}/counts").json()["observations"] == 0


def test_unknown_sensor_is_404_and_malformed_json_is_422(platform: Platform) -> None:
    with platform.client() as http:
        setup_station(http)
        missing = error(http.post(f"{API}/observations", json={
            "sensor": "ghost", "property": "temp", "time": 0, "value": 1}), 404)
        assert missing["message"] == "unknown sensor 'ghost'"
        error(http.post(f"{API}/observations/batch", json={
            "sensor": "ghost", "components": ["time", "temp"], "dataArray": [[0, 1]]}), 404)
        error(http.post(f"{API}/observations/csv", params={"sensor": "ghost"},
                        content=b"time,temp\n0,1\n"), 404)
        for body in (b"{\"sensor\": ", b"[1, 2]", b"null"):
            error(http.post(f"{API}/observations/batch", content=body,
                            headers={"content-type": "application/json"}), 422)
            error(http.post(f"{API}/observations", content=body,
                            headers={"content-type": "application/json"}), 422)


CSV = b"""time,temp,state,alarm
2026-01-15T08:00:00Z,21.5,run,false
1768464001000,21.6,,true
15-Jan-2026 08:00:02.500 UTC,21.7,stop,
"""


def test_a_csv_file_is_stored_in_wide_form(platform: Platform) -> None:
    with platform.client() as http:
        setup_station(http)
        answer = http.post(f"{API}/observations/csv", params={"sensor": "st-1",
                                                             "feature": "plant"},
                           content=CSV, headers={"content-type": "text/csv"})
        assert answer.status_code == 201, answer.text
        assert answer.json() == {"stored": 7, "published": 0}
        rows = http.get(f"{API}/observations", params={"property": "alarm"}).json()["items"]
        assert [r["value"] for r in rows] == [False, True]
        assert rows[0] == {"sensor": "st-1", "feature": "plant", "property": "alarm",
                           "time": "2026-01-15T08:00:00.000Z", "value": False}


def test_csv_sensor_and_feature_columns_override_the_query(platform: Platform) -> None:
    with platform.client() as http:
        setup_station(http)
        http.post(f"{API}/sensors", json={"name": "st-2"})
        body = b"sensor,feature,time,temp\nst-1,plant,0,1\nst-2,,0,2\n,,1,3\n"
        answer = http.post(f"{API}/observations/csv", params={"sensor": "st-1"}, content=body)
        assert answer.json()["stored"] == 3
        latest = http.get(f"{API}/observations/latest").json()["items"]
        assert sorted((i["sensor"], i["feature"] or "-", i["value"]) for i in latest) == [
            ("st-1", "-", 3.0), ("st-1", "plant", 1.0), ("st-2", "-", 2.0)]
        ghost = error(http.post(f"{API}/observations/csv", params={"sensor": "st-1"},
                                content=b"sensor,time,temp\nst-1,0,1\nghost,0,1\n"), 404)
        assert ghost["details"] == {"line": 3, "column": "sensor"}


BAD_CSV = [  # (body, line, column, what the message says)
    (b"time,temp\n0,1\n1,1\n2,warm\n3,1\n", 4, "temp", "not a number"),
    (b"time,temp\n0,1\nlater,2\n", 3, "time", "'later'"),
    (b"time,temp\n0,1\n1,2,3\n", 3, None, "3 fields"),
    (b"temp\n1\n", 1, None, "no time column"),
    (b"time,humidity\n0,1\n", 1, "humidity", "unknown observed property"),
    (b"time,temp,temp\n0,1,1\n", 1, "temp", "twice"),
    (b"time,temp\n0,1\n1,\"unclosed\n", 3, None, ""),
    (b"time,temp\n0,1\n\xff\xfe,2\n", 3, None, "UTF-8"),
    (b"", 1, None, "empty"),
]


def test_a_bad_csv_line_is_named_and_nothing_is_stored(platform: Platform) -> None:
    with platform.client() as http:
        setup_station(http)
        for body, line, column, says in BAD_CSV:
            answer = error(http.post(f"{API}/observations/csv", params={"sensor": "st-1"},
                                     content=body), 422)
            assert answer["message"].startswith(f"line {line}: "), (body, answer)
            assert says in answer["message"], (body, answer)
            assert answer["details"] == {"line": line, "column": column}, (body, answer)
        assert http.get(f"{API}/counts").json()["observations"] == 0


def test_routing_stream_publishes_and_both_also_stores(platform: Platform) -> None:
    import asyncio

    from lakeport.streams import open_engine

    with platform.client() as http:
        setup_station(http)
        stream = http.post(f"{API}/observations/batch", params={"routing": "stream"}, json={
            "sensor": "st-1", "feature": "plant", "components": ["time", "temp"],
            "dataArray": [[0, 1.5], [1000, 2.5]]})
        assert stream.json() == {"stored": 0, "published": 2}
        assert http.get(f"{API}/counts").json()["observations"] == 0
        both = http.post(f"{API}/observations", params={"routing": "both"}, json={
            "sensor": "st-1", "property": "alarm", "time": 2000, "value": True})
        assert both.json() == {"stored": 1, "published": 1}
        error(http.post(f"{API}/observations", params={"routing": "nowhere"}, json={
            "sensor": "st-1", "property": "alarm", "time": 2000, "value": True}), 422)

    async def read() -> list:
        async with open_engine(platform.settings.streams_url) as engine, \
                engine.consumer("check", "observations.st-1", position="beginning",
                                follow=False) as consumer:
            return [m.payload async for m in consumer]

    payloads = asyncio.run(read())
    assert payloads == [
        {"sensor": "st-1", "feature": "plant", "property": "temp",
         "time": "1970-01-01T00:00:00.000Z", "value": 1.5, "unit": "degC"},
        {"sensor": "st-1", "feature": "plant", "property": "temp",
         "time": "1970-01-01T00:00:01.000Z", "value": 2.5, "unit": "degC"},
        {"sensor": "st-1", "feature": None, "property": "alarm",
         "time": "1970-01-01T00:00:02.000Z", "value": True, "unit": ""}]

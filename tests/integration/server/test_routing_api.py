"""Rules and bridges run by the server, over HTTP, on SQLite and PostgreSQL: a rule from topic
to topic moves the rows, counts them, stops, starts again, takes an update and goes away
when deleted; ``/rules/test`` tries a statement on the last messages; an ``observations``
action stores rows as observations; secrets never come back and never reach the store; a
bridge on the machine's Mosquitto moves a message into a topic."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import Iterator
from itertools import count
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from conftest import require_service
from lakeport.apps.secrets import SecretStore
from lakeport.streams import open_engine
from server_fixtures import STORES, Platform, platform_settings, postgres_database, running_platform
from servers import port_open
from waiting import wait_until

pytestmark = pytest.mark.timeout(180)

API = "/api/v1"
RULES = f"{API}/rules"
BRIDGES = f"{API}/bridges"
numbers = count(1)


@pytest.fixture(scope="module", params=STORES)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Platform, httpx.Client]]:
    """One server per store for the module's tests (each with topics and rules of its own)."""
    folder = tmp_path_factory.mktemp("served")
    urls = iter([f"sqlite:///{folder / 'store.db'}"]) if request.param == "sqlite" \
        else postgres_database()
    store_url = next(urls)
    try:
        with running_platform(platform_settings(store_url, folder)) as platform, \
                platform.client() as http:
            yield platform, http
    finally:
        next(urls, None)  # drops the PostgreSQL database


def unique(prefix: str) -> str:
    return f"{prefix}-{next(numbers)}-{uuid.uuid4().hex[:6]}"


def make_topic(http: httpx.Client, topic: str) -> None:
    answer = http.put(f"{API}/topics/{topic}")
    assert answer.status_code == 201, answer.text


def produce(http: httpx.Client, topic: str, payloads: list[Any]) -> None:
    answer = http.post(f"{API}/topics/{topic}/messages/batch", json={"payloads": payloads})
    assert answer.status_code == 200, answer.text


def read_topic(platform: Platform, topic: str) -> list[Any]:
    """Every message of ``topic``, read over the network with alice's key."""
    async def read() -> list[Any]:
        async with open_engine(f"{platform.url}?api_key={platform.api_key}") as engine:
            if not (await engine.topic_info(topic)).last_seqno:
                return []
            consumer = engine.consumer(f"reader-{uuid.uuid4().hex[:8]}", topic,
                                       position="beginning", follow=False, ephemeral=True)
            async with consumer:
                return [message.payload async for message in consumer]

    return asyncio.run(read())


def arrived(platform: Platform, topic: str, n: int, timeout: float = 30) -> list[Any]:
    """The messages of ``topic`` once it holds ``n`` of them (failing after ``timeout``)."""
    seen: list[Any] = []

    def enough() -> bool:
        seen[:] = read_topic(platform, topic)
        return len(seen) >= n

    assert wait_until(enough, timeout), f"{topic}: {len(seen)} messages, expected {n}: {seen}"
    return seen


def rule(http: httpx.Client, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    answer = http.post(RULES, json=body)
    assert answer.status_code == status, answer.text
    return answer.json()


def get(http: httpx.Client, route: str) -> dict[str, Any]:
    answer = http.get(route)
    assert answer.status_code == 200, answer.text
    return answer.json()


def in_state(http: httpx.Client, route: str, state: str, timeout: float = 15) -> dict[str, Any]:
    assert wait_until(lambda: get(http, route)["state"] == state, timeout), get(http, route)
    return get(http, route)


def readings(*values: float, asset: str = "pump-1") -> list[dict[str, Any]]:
    return [{"asset": asset, "datastream": "temperature", "value": value,
             "time": f"2026-01-15T08:00:{i:02d}Z"} for i, value in enumerate(values)]


def test_a_rule_moves_rows_counts_stops_starts_updates_and_goes(served: Any) -> None:
    platform, http = served
    raw, hot, name = unique("raw"), unique("hot"), unique("hot-rule")
    make_topic(http, raw)
    make_topic(http, hot)
    created = rule(http, {"name": name, "sql": f'SELECT asset, value FROM "{raw}" WHERE '
                          "value > 50", "actions": [{"type": "topic", "topic": hot}]})
    assert (created["name"], created["owner"], created["desired"]) == (name, "alice", "running")
    assert created["spec"]["actions"] == [{"type": "topic", "topic": hot}]
    route = f"{RULES}/{name}"
    in_state(http, route, "running")

    produce(http, raw, readings(10, 60, 20, 70, 80, 30))
    rows = arrived(platform, hot, 3)
    assert rows == [{"asset": "pump-1", "value": v} for v in (60, 70, 80)]
    assert wait_until(lambda: get(http, f"{route}/stats")["rows_in"] == 6, 15)
    stats = get(http, f"{route}/stats")
    assert (stats["state"], stats["rows_in"], stats["rows_out"], stats["dropped"],
            stats["errors"]) == ("running", 6, 3, 3, 0), stats
    assert get(http, route)["stats"]["rows_out"] == 3

    # stopped, it reads nothing; started again, it goes on after its last ack, once
    stopped = http.post(f"{route}/stop")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["desired"] == "stopped"
    in_state(http, route, "stopped")
    assert wait_until(lambda: platform.app.state.routing.find("rule", name) is None, 5)
    assert get(http, f"{route}/stats")["state"] == "stopped"
    assert get(http, f"{route}/stats")["rows_in"] == 0
    produce(http, raw, readings(90, 5))
    assert http.post(f"{route}/start").status_code == 200
    in_state(http, route, "running")
    rows = arrived(platform, hot, 4)
    assert rows[3:] == [{"asset": "pump-1", "value": 90}]

    # an update restarts it with the new statement
    updated = http.put(route, json={"sql": f'SELECT asset, value * 10 AS tenfold FROM "{raw}" '
                                           "WHERE value > 95",
                                    "actions": [{"type": "topic", "topic": hot}]})
    assert updated.status_code == 200, updated.text
    assert "value > 95" in updated.json()["spec"]["sql"]
    in_state(http, route, "running")
    produce(http, raw, readings(96, 50))
    rows = arrived(platform, hot, 5)
    assert rows[4:] == [{"asset": "pump-1", "tenfold": 960}]

    listed = get(http, RULES)["items"]
    assert [(i["name"], i["sql"], i["actions"]) for i in listed if i["name"] == name] == [
        (name, updated.json()["spec"]["sql"], ["topic"])]

    assert http.delete(route).status_code == 204
    assert platform.app.state.routing.find("rule", name) is None
    assert http.get(route).status_code == 404
    assert name not in [i["name"] for i in get(http, RULES)["items"]]
    produce(http, raw, readings(99))
    assert http.post(RULES, json={"name": name, "sql": f'SELECT * FROM "{raw}"', "start": False,
                                  "actions": [{"type": "topic", "topic": hot}]}
                     ).status_code == 201  # the name is free again
    assert http.delete(route).status_code == 204


def test_a_rule_that_cannot_run_fails_with_its_error_and_starts_again(served: Any) -> None:
    _, http = served
    raw, out, name = unique("raw"), unique("out"), unique("late-rule")
    make_topic(http, raw)
    make_topic(http, out)
    rule(http, {"name": name, "sql": f'SELECT asset FROM "{raw}"', "start": False,
                "actions": [{"type": "topic", "topic": out}]})
    route = f"{RULES}/{name}"
    assert get(http, route)["state"] == "stopped"
    assert http.delete(f"{API}/topics/{raw}").status_code == 204  # its source is gone
    assert http.post(f"{route}/start").status_code == 200
    failed = in_state(http, route, "failed")
    assert raw in failed["error"], failed
    make_topic(http, raw)
    assert http.post(f"{route}/start").status_code == 200
    assert in_state(http, route, "running")["error"] is None
    assert http.delete(route).status_code == 204


def test_rules_test_evaluates_the_last_messages_without_acting(served: Any) -> None:
    _, http = served
    raw = unique("raw")
    make_topic(http, raw)
    produce(http, raw, [*readings(1, 2, 3, 4, 5), "not an object"])
    answer = http.post(f"{RULES}/test", json={
        "sql": f'SELECT asset, value FROM "{raw}" WHERE value >= 3', "sample": 4})
    assert answer.status_code == 200, answer.text
    tried = answer.json()
    assert tried["columns"] == ["asset", "value"]
    assert tried["rows"] == [["pump-1", 3], ["pump-1", 4], ["pump-1", 5]]
    assert tried["rows_in"] == 4 and tried["dropped"] == 0
    assert [e["seqno"] for e in tried["errors"]] == [6]
    assert "not a JSON object" in tried["errors"][0]["reason"]

    windowed = http.post(f"{RULES}/test", json={
        "sql": f'SELECT asset, avg(value) AS mean, count(*) AS n FROM "{raw}" '
               "GROUP BY asset, TUMBLING(1h)", "sample": 100})
    assert windowed.status_code == 200, windowed.text
    assert windowed.json()["rows"] == [["pump-1", 3.0, 5]]
    assert get(http, f"{API}/topics/{raw}")["last_seqno"] == 6

    sql = f'SELECT asset FROM "{raw}" WHERE (('
    bad = http.post(f"{RULES}/test", json={"sql": sql})
    assert bad.status_code == 422, bad.text
    where = re.fullmatch(r"bad rule at 1:(\d+): \( is incomplete", bad.json()["error"]["message"])
    assert where and sql.index("((") < int(where[1]) <= len(sql), bad.text
    created = http.post(RULES, json={"name": unique("bad"), "sql": "SELECT FROM WHERE",
                                     "actions": [{"type": "topic", "topic": raw}]})
    assert created.status_code == 422, created.text
    assert created.json()["error"]["message"].startswith("bad rule at 1:"), created.text
    hidden = http.post(f"{RULES}/test", json={"sql": 'SELECT * FROM "nobody-knows-this"'})
    assert hidden.status_code == 404, hidden.text


def test_an_observations_action_stores_rows_as_observations(served: Any) -> None:
    _, http = served
    raw, name, asset = unique("raw"), unique("obs-rule"), unique("boiler")
    make_topic(http, raw)
    rule(http, {"name": name, "actions": [{"type": "observations"}],
                "sql": f"SELECT asset, 'heat' AS datastream, value * 2 AS value, time "
                       f'FROM "{raw}"'})
    in_state(http, f"{RULES}/{name}", "running")
    produce(http, raw, readings(1.5, 2.5, asset=asset))

    def stored() -> list[Any]:
        answer = http.get(f"{API}/observations", params={"sensor": asset})
        return answer.json()["items"] if answer.status_code == 200 else []

    assert wait_until(lambda: len(stored()) == 2, 30), stored()
    assert [(o["sensor"], o["property"], o["time"], o["value"]) for o in stored()] == [
        (asset, "heat", "2026-01-15T08:00:00.000Z", 3.0),
        (asset, "heat", "2026-01-15T08:00:01.000Z", 5.0)]
    assert get(http, f"{API}/sensors/{asset}")["owner"] == "alice"
    assert http.delete(f"{RULES}/{name}").status_code == 204


def stored_row(platform: Platform, table: str, name: str) -> str:
    """The JSON body of a rule or bridge as the store keeps it."""
    from lakeport.server.store import Store

    async def read() -> str:
        async with Store(platform.settings.store_url) as store, store.connect() as conn:
            column = "spec" if table == "rules" else "config"
            return (await conn.execute(sa.text(f"SELECT {column} FROM {table} WHERE name = "
                                               ":name"), {"name": name})).scalar_one()

    return asyncio.run(read())


def test_secrets_are_masked_in_every_answer_and_absent_from_the_store(served: Any) -> None:
    platform, http = served
    raw, name = unique("raw"), unique("secret-rule")
    make_topic(http, raw)
    actions = [{"type": "mqtt", "url": "mqtt://127.0.0.1:1883", "publish": "out/{asset}",
                "username": "u", "password": "hunter2-mqtt"},
               {"type": "webhook", "url": "http://127.0.0.1:9/hook",
                "headers": {"Authorization": "Bearer hunter2-hook"}}]
    body = {"name": name, "sql": f'SELECT * FROM "{raw}"', "actions": actions, "start": False}
    answers = [http.post(RULES, json=body)]
    route = f"{RULES}/{name}"
    answers += [http.get(route), http.get(RULES), http.get(f"{route}/stats"),
                http.put(route, json={**body, "description": "kept"})]
    for answer in answers:
        assert answer.status_code in (200, 201), answer.text
        assert "hunter2" not in answer.text, answer.text
    shown = answers[1].json()["spec"]["actions"]
    assert shown[0]["password"] == "***"
    assert shown[1]["headers"] == {"Authorization": "***"}
    text = stored_row(platform, "rules", name)
    assert "hunter2" not in text and "<% secrets.routing-rule-" in text
    secrets = SecretStore()
    names = [n for n in secrets.names() if n.startswith("routing-rule-")
             and n in text]
    assert sorted(secrets.get(n) for n in names) == ["Bearer hunter2-hook", "hunter2-mqtt"]

    # a record sent back as it was shown keeps the secrets; a reference to another secret
    # of the server is refused
    again = http.put(route, json={**body, "description": "kept", "actions": shown})
    assert again.status_code == 200, again.text
    assert stored_row(platform, "rules", name) == text
    secrets.create("operators-own", "do-not-leak")
    foreign = http.put(route, json={**body, "actions": [
        {**actions[0], "password": "<% secrets.operators-own %>"}]})
    assert foreign.status_code == 422, foreign.text
    assert "do-not-leak" not in foreign.text

    assert http.delete(route).status_code == 204
    assert [n for n in secrets.names() if n in names] == []


def mosquitto() -> str:
    if not port_open(1883):
        require_service("Mosquitto", "no MQTT broker at 127.0.0.1:1883")
    return "mqtt://127.0.0.1:1883"


def test_a_bridge_moves_a_message_from_mosquitto_into_a_topic(served: Any) -> None:
    platform, http = served
    url = mosquitto()
    paho = pytest.importorskip("paho.mqtt.client")
    topic, name, base = unique("from-mqtt"), unique("bridge"), f"lp-test/{uuid.uuid4().hex}"
    refused = http.post(BRIDGES, json={"name": name, "url": url, "subscribe": [f"{base}/#"],
                                       "to_topic": topic, "streams_url": "memory://"})
    assert refused.status_code == 422 and "streams_url" in refused.text, refused.text
    created = http.post(BRIDGES, json={"name": name, "url": url, "subscribe": [f"{base}/#"],
                                       "to_topic": topic, "fields": "lp-test/{run}/{asset}",
                                       "password": "hunter2-broker", "username": "lp"})
    assert created.status_code == 201, created.text
    assert created.json()["config"]["password"] == "***"
    assert "hunter2" not in stored_row(platform, "bridges", name)
    route = f"{BRIDGES}/{name}"
    assert wait_until(lambda: (get(http, route)["status"] or {}).get("connected"), 20), \
        get(http, route)

    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", 1883, 10)
    client.loop_start()
    try:
        client.publish(f"{base}/pump-7", json.dumps({"value": 41.5}), qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()
    messages = arrived(platform, topic, 1)
    assert messages[0]["asset"] == "pump-7" and messages[0]["value"] == 41.5
    assert wait_until(lambda: get(http, route)["status"]["messages_out"] >= 1, 10)
    status = get(http, route)
    assert (status["state"], status["status"]["state"], status["status"]["messages_in"]) == (
        "running", "connected", 1), status
    assert [i["name"] for i in get(http, BRIDGES)["items"] if i["name"] == name] == [name]

    assert http.post(f"{route}/stop").status_code == 200
    in_state(http, route, "stopped")
    assert wait_until(lambda: get(http, route)["status"] is None, 15), get(http, route)
    assert http.delete(route).status_code == 204
    assert http.get(route).status_code == 404
    with contextlib.suppress(Exception):  # the bridge's persistent session on the broker
        forgotten = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"lakeport-{name}",
                                clean_session=True)
        forgotten.connect("127.0.0.1", 1883, 10)
        forgotten.disconnect()


def test_one_server_runs_the_rules_and_another_takes_over(tmp_path: Any) -> None:
    """Two servers on one PostgreSQL store: the first runs the rule, the second does not;
    once the first is gone, the second runs it (each on topics of its own engine here)."""
    urls = postgres_database()
    store_url = next(urls)
    try:
        with contextlib.ExitStack() as stack:
            first = stack.enter_context(running_platform(platform_settings(
                store_url, tmp_path / "first")))
            second = running_platform(platform_settings(store_url, tmp_path / "second"))
            with contextlib.ExitStack() as later:
                two = later.enter_context(second)
                http_one = stack.enter_context(first.client())
                http_two = later.enter_context(two.client(two.key_for("alice")))
                raw, hot, name = unique("raw"), unique("hot"), unique("lead-rule")
                for http in (http_one, http_two):
                    make_topic(http, raw)
                    make_topic(http, hot)
                rule(http_two, {"name": name, "sql": f'SELECT asset, value FROM "{raw}"',
                                "actions": [{"type": "topic", "topic": hot}]})
                managers = [p.app.state.routing for p in (first, two)]
                assert wait_until(lambda: managers[0].find("rule", name) is not None, 15)
                in_state(http_two, f"{RULES}/{name}", "running")
                assert managers[1].find("rule", name) is None
                produce(http_one, raw, readings(1))
                assert arrived(first, hot, 1) == [{"asset": "pump-1", "value": 1}]
                stack.close()  # the first server goes
                assert wait_until(lambda: managers[1].find("rule", name) is not None, 20)
                produce(http_two, raw, readings(2))
                assert arrived(two, hot, 1) == [{"asset": "pump-1", "value": 2}]
    finally:
        next(urls, None)


def test_a_bridge_that_cannot_connect_for_good_fails_with_its_error(served: Any) -> None:
    from test_access_matrix import operator_key

    platform, http = served
    topic, name = unique("tls-in"), unique("tls-bridge")
    body = {"name": name, "url": "mqtts://127.0.0.1:1883", "subscribe": ["x/#"],
            "to_topic": topic, "ca_file": "/nonexistent/ca.pem"}
    # a file on the server's machine is an operator's to name (a path tells what exists)
    refused = http.post(BRIDGES, json=body)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["message"] == (
        f"bridge {name!r}: ca_file: a file on the server's machine is an operator's to name")
    http = platform.client(operator_key(platform, "ops"))
    created = http.post(BRIDGES, json=body)
    assert created.status_code == 201, created.text
    route = f"{BRIDGES}/{name}"
    failed = in_state(http, route, "failed")
    assert failed["error"] == "TLS: no such file '/nonexistent/ca.pem'", failed
    assert http.delete(route).status_code == 204

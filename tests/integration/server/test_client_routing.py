"""Rules and bridges through ``lakeport.client`` against a real server, on SQLite and
PostgreSQL: a rule created from a spec runs on a topic's messages (rows out to a topic,
dropped rows counted), is listed, shown with its stats, stopped and started again without
losing or repeating rows, updated and deleted; ``rules.test`` gives the rows of a statement on
a topic's newest messages and a bad statement's position; secrets come back as ``***``; a
bridge from the machine's Mosquitto into a topic is created, shown, stopped and deleted. A bad
spec or rule file fails locally, in one line, before any request."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import require_service
from lakeport.client import SyncClient
from lakeport.client.routing import load_rule_file, rule_spec
from lakeport.errors import Conflict, Invalid, NotFound
from lakeport.routing.spec import RuleSpec, TopicAction
from server_fixtures import Platform, platform_settings, postgres_database, running_platform
from servers import port_open
from waiting import wait_until

pytestmark = pytest.mark.timeout(180)
HOT = 'SELECT asset, value FROM "raw" WHERE value > 80'
WAIT = 60


@pytest.fixture(scope="module", params=["sqlite"])
def routing_server(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """One server for the module's tests (each uses topics and names of its own). The client
    and the command line run on SQLite: what differs between the stores is the server's, and
    test_routing_api.py runs it on both."""
    folder = tmp_path_factory.mktemp("routing")
    urls = iter([f"sqlite:///{folder / 'store.db'}"]) if request.param == "sqlite" \
        else postgres_database()
    store_url = next(urls)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("LAKEPORT_HOME", str(folder / "home"))
            with running_platform(platform_settings(store_url, folder)) as platform:
                yield platform
    finally:
        next(urls, None)  # drops the PostgreSQL database


@pytest.fixture
def client(routing_server: Platform) -> Iterator[SyncClient]:
    with SyncClient(routing_server.url, routing_server.api_key) as made:
        yield made


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def readings(values: list[float], asset: str = "pump-1") -> list[dict[str, Any]]:
    return [{"asset": asset, "value": value} for value in values]


def entries(client: SyncClient, topic: str) -> int:
    try:
        return int(client.topics.info(topic).get("entries") or 0)
    except NotFound:
        return 0


def halted(client: SyncClient, name: str) -> bool:
    """Whether a rule is stopped and no longer runs (the server shows no live stats)."""
    record = client.routing.rules.get(name)
    return record["state"] == "stopped" and record.get("stats") is None


def hot_spec(name: str, source: str, target: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "sql": HOT.replace('"raw"', f'"{source}"'),
            "actions": [{"type": "topic", "topic": target}], **fields}


# -- without a server --------------------------------------------------------------------------
def test_a_bad_spec_fails_locally_naming_the_field() -> None:
    with pytest.raises(Invalid, match="bad rule field actions"):
        rule_spec(name="r", sql=HOT, actions=[])
    with pytest.raises(Invalid, match=r"bad rule field actions\.0\.mqtt\.publish"):
        rule_spec(name="r", sql=HOT, actions=[{"type": "mqtt", "url": "mqtt://h:1883"}])
    with pytest.raises(Invalid, match="bad rule field colour"):
        rule_spec(name="r", sql=HOT, actions=[{"type": "observations"}], colour="red")
    spec = RuleSpec(name="r", sql=HOT, actions=[TopicAction(topic="t")])
    assert rule_spec(spec) is spec
    assert rule_spec(spec, lateness="5s").lateness == "5s"
    with SyncClient("http://127.0.0.1:9", "lpk_none", retries=0) as offline:
        with pytest.raises(Invalid, match="bad rule field sql"):  # no request is made
            offline.routing.rules.create(name="r", actions=[{"type": "observations"}])
        with pytest.raises(Invalid, match="a bridge runs one way"):
            offline.routing.bridges.create("b", url="mqtt://127.0.0.1:1883")


def test_rule_files_are_checked_with_their_line(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(f"name: hot\nsql: '{HOT}'\nactions:\n  - {{type: topic, topic: hot}}\n")
    assert load_rule_file(good)["actions"] == [{"type": "topic", "topic": "hot"}]
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: hot\nsql: [unclosed\nactions: []\n")
    with pytest.raises(Invalid, match=r"broken.yaml line \d+, column \d+"):
        load_rule_file(broken)
    twice = tmp_path / "twice.yaml"
    twice.write_text("name: a\nname: b\n")
    with pytest.raises(Invalid, match=r"twice\.yaml line 2, column 1: duplicate key 'name'"):
        load_rule_file(twice)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(f"name: hot\nsql: '{HOT}'\nactions:\n  - type: topic\n"
                       "    topic: hot\n    colour: red\n")
    with pytest.raises(Invalid, match=r"unknown\.yaml line 6: bad rule field "
                       r"actions\.0\.colour: Extra inputs"):
        load_rule_file(unknown)
    as_json = tmp_path / "rule.json"
    as_json.write_text('{"name": "hot",\n "sql": }')
    with pytest.raises(Invalid, match=r"rule.json line 2, column 9: not valid JSON"):
        load_rule_file(as_json)
    with pytest.raises(Invalid, match=r"missing\.yaml: no such file"):
        load_rule_file(tmp_path / "missing.yaml")


# -- rules -------------------------------------------------------------------------------------
def test_a_rule_runs_stops_starts_and_goes(client: SyncClient) -> None:
    source, target, name = unique("raw"), unique("hot"), unique("rule")
    client.topics.create(source)
    client.topics.produce_batch(source, readings([70, 85, 90, 60, 81]))
    created = client.routing.rules.create(hot_spec(name, source, target), lateness="2s")
    assert created["name"] == name and created["desired"] == "running"
    assert wait_until(lambda: entries(client, target) == 3, WAIT), "the rule's rows out"
    record = client.routing.rules.get(name)
    assert record["state"] == "running" and record["owner"] == "alice"
    assert record["lateness"] == "2s" and record["actions"] == [
        {"type": "topic", "topic": target}]
    assert wait_until(lambda: client.routing.rules.stats(name)["rows_in"] == 5, WAIT)
    stats = client.routing.rules.stats(name)
    assert (stats["rows_out"], stats["dropped"], stats["errors"]) == (3, 2, 0)
    assert name in [row["name"] for row in client.routing.rules.list()]

    stopped = client.routing.rules.stop(name)
    assert stopped["desired"] == "stopped"
    assert wait_until(lambda: halted(client, name), WAIT)
    client.topics.produce_batch(source, readings([99, 10]))
    assert entries(client, target) == 3  # nothing moves while it is stopped
    client.routing.rules.start(name)
    assert wait_until(lambda: entries(client, target) == 4, WAIT), "the row sent while stopped"
    assert wait_until(lambda: client.routing.rules.get(name)["state"] == "running", WAIT)

    with pytest.raises(Conflict):
        client.routing.rules.create(hot_spec(name, source, target))
    updated = client.routing.rules.update(name, hot_spec(name, source, target,
                                                         description="only the hot ones"))
    assert updated["description"] == "only the hot ones"
    with pytest.raises(Invalid, match="keeps its name"):
        client.routing.rules.update(name, hot_spec("other", source, target))

    client.routing.rules.delete(name)
    with pytest.raises(NotFound):
        client.routing.rules.get(name)
    assert name not in [row["name"] for row in client.routing.rules.list()]


def test_a_rule_created_stopped_waits(client: SyncClient) -> None:
    source, target, name = unique("raw"), unique("hot"), unique("rule")
    client.topics.create(source)
    client.topics.produce_batch(source, readings([95]))
    created = client.routing.rules.create(RuleSpec.parse(**hot_spec(name, source, target)),
                                          start=False)
    assert (created["desired"], created["state"]) == ("stopped", "stopped")
    client.routing.rules.start(name)
    assert wait_until(lambda: entries(client, target) == 1, WAIT)
    client.routing.rules.delete(name)


def test_trying_a_statement(client: SyncClient) -> None:
    source = unique("raw")
    client.topics.create(source)
    client.topics.produce_batch(source, [*readings([70, 85, 90]), {"asset": "pump-2"},
                                         "not an object"])
    result = client.routing.rules.test(f'SELECT asset, value * 2 AS twice FROM "{source}" '
                                       "WHERE value > 80", sample=10)
    assert result["columns"] == ["asset", "twice"]
    assert sorted(result["rows"]) == [["pump-1", 170], ["pump-1", 180]]
    assert result["rows_in"] == 5
    assert len(result["errors"]) >= 1 and all("seqno" in e for e in result["errors"])
    newest = client.routing.rules.test(f'SELECT value FROM "{source}" WHERE value > 0',
                                       sample=1)
    assert newest["rows_in"] == 1
    with pytest.raises(Invalid, match=r"bad rule at 2:12: Invalid expression"):
        client.routing.rules.test(f'SELECT asset,\n  value +* 2 FROM "{source}"')
    with pytest.raises(Invalid, match=r"bad rule at 1:8: .*nosuch"):
        client.routing.rules.create(name=unique("bad"), sql=f'SELECT nosuch(value) FROM '
                                    f'"{source}"', actions=[{"type": "topic", "topic": "x"}])
    with pytest.raises(Invalid, match="bad sample 0"):
        client.routing.rules.test(f'SELECT asset FROM "{source}"', sample=0)


def test_secrets_come_back_hidden(client: SyncClient) -> None:
    source, name = unique("raw"), unique("rule")
    client.topics.create(source)
    client.routing.rules.create(
        name=name, sql=f'SELECT asset, value FROM "{source}"', start=False,
        actions=[{"type": "mqtt", "url": "mqtt://127.0.0.1:1883", "publish": "p/{asset}",
                  "username": "edge", "password": "s3cret-rule"},
                 {"type": "webhook", "url": "http://127.0.0.1:9/hook",
                  "headers": {"authorization": "Bearer s3cret-token"}}])
    record = client.routing.rules.get(name)
    assert record["actions"][0]["password"] == "***"
    assert record["actions"][1]["headers"] == {"authorization": "***"}
    shown = repr(record) + repr(client.routing.rules.list())
    assert "s3cret" not in shown
    client.routing.rules.delete(name)


def test_the_async_client_creates_a_rule(routing_server: Platform,
                                         client: SyncClient) -> None:
    from lakeport.client import Client

    source, target, name = unique("raw"), unique("hot"), unique("rule")
    client.topics.create(source)
    client.topics.produce_batch(source, readings([88]))

    async def scenario() -> dict[str, Any]:
        async with Client(routing_server.url, routing_server.api_key) as made:
            await made.routing.rules.create(hot_spec(name, source, target))
            while (await made.routing.rules.stats(name))["rows_out"] < 1:
                await asyncio.sleep(0.1)
            stats = await made.routing.rules.stats(name)
            await made.routing.rules.delete(name)
            return stats

    stats = asyncio.run(asyncio.wait_for(scenario(), WAIT))
    assert stats["rows_out"] == 1 and stats["rows_in"] == 1


# -- bridges -----------------------------------------------------------------------------------
def test_a_bridge_from_the_machine_s_mosquitto(client: SyncClient) -> None:
    if not port_open(1883):
        require_service("Mosquitto", "no MQTT broker at 127.0.0.1:1883")
    name, target, prefix = unique("bridge"), unique("bridged"), unique("lp-test")
    created = client.routing.bridges.create(
        name, url="mqtt://127.0.0.1:1883", subscribe=[f"{prefix}/#"], to_topic=target,
        fields=f"{prefix}/{{asset}}/{{datastream}}", username="edge", password="s3cret-b")
    assert created["name"] == name and created["desired"] == "running"
    assert wait_until(lambda: (client.routing.bridges.get(name).get("status") or {})
                      .get("connected"), WAIT), "the bridge connects"
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", "1883", "-q", "1",
                    "-t", f"{prefix}/pump-1/temperature", "-m", "21.5"], check=True,
                   timeout=30)
    assert wait_until(lambda: entries(client, target) == 1, WAIT), "the message bridged"
    record = client.routing.bridges.get(name)
    assert record["password"] == "***" and "s3cret" not in repr(record)
    assert record["status"]["messages_in"] == 1
    listed = {row["name"]: row for row in client.routing.bridges.list()}
    assert (listed[name]["direction"], listed[name]["topic"]) == ("ingest", target)
    updated = client.routing.bridges.update(
        name, url="mqtt://127.0.0.1:1883", subscribe=[f"{prefix}/#"], to_topic=target,
        fields=f"{prefix}/{{asset}}/{{datastream}}/+", username="edge", password="***")
    assert updated["fields"].endswith("/+") and updated["password"] == "***"
    client.routing.bridges.stop(name)
    assert wait_until(lambda: client.routing.bridges.get(name)["state"] == "stopped", WAIT)
    client.routing.bridges.delete(name)
    with pytest.raises(NotFound):
        client.routing.bridges.get(name)

"""``lakeport rules`` and the server side of ``lakeport bridge`` as a user runs them against a
real server (SQLite and PostgreSQL): a rule created from flags and one from a YAML file run on
a topic's messages; ls and show give their name and state, stats their counts (also with
--watch), stop, start and rm do what they say; ``rules test`` prints the rows of a statement;
a bad statement, a bad file and a bad combination of flags are one line and exit 1; a
password is never printed. Help with an example per command is checked in process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_client_routing import entries, readings, routing_server, unique  # noqa: F401

from conftest import require_service
from e2e._cli import LAKEPORT, assert_user_error
from lakeport.cli.rules import build_actions, build_spec
from lakeport.client import SyncClient
from lakeport.errors import Invalid
from server_fixtures import Platform
from servers import port_open
from waiting import wait_until

pytestmark = pytest.mark.timeout(240)
WAIT = 60
OFFLINE = "http://127.0.0.1:9"
"""A server URL nothing answers at: commands that must fail before any request use it."""


class Cli:
    def __init__(self, url: str, key: str) -> None:
        self.env = {**os.environ, "LAKEPORT_URL": url, "LAKEPORT_API_KEY": key}

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*LAKEPORT, *args], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, env=self.env)

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self(*args)
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)


@pytest.fixture
def cli(routing_server: Platform) -> Cli:  # noqa: F811
    return Cli(routing_server.url, routing_server.api_key)


@pytest.fixture
def client(routing_server: Platform) -> Iterator[SyncClient]:  # noqa: F811
    with SyncClient(routing_server.url, routing_server.api_key) as made:
        yield made


# -- without a server --------------------------------------------------------------------------
def test_every_command_s_help_has_an_example() -> None:
    from typer.testing import CliRunner

    from lakeport.cli.main import app

    runner = CliRunner()
    group = runner.invoke(app, ["rules", "--help"], terminal_width=200)
    assert group.exit_code == 0 and "Example: lakeport rules create" in group.output
    commands = [("rules", name) for name in ("create", "ls", "show", "start", "stop", "rm",
                                             "stats", "test")]
    commands += [("bridge", name) for name in ("create", "ls", "show", "start", "stop", "rm")]
    for group_name, name in commands:
        result = runner.invoke(app, [group_name, name, "--help"], terminal_width=200)
        assert result.exit_code == 0, result.output
        assert f"Example: lakeport {group_name} {name}" in result.output, (group_name, name)
    bridge_create = runner.invoke(app, ["bridge", "create", "--help"], terminal_width=200)
    for option in ("--subscribe", "--to", "--from", "--publish", "--fields", "--password",
                   "--stopped", "--api-key"):  # bridge run's options, and the server's
        assert option in bridge_create.output, option


def test_the_spec_the_flags_make() -> None:
    actions = build_actions(to_topic=["a", "b"], to_mqtt="mqtt://h:1883", publish="p/{asset}",
                            to_amqp="amqp://h:5672/", exchange="x", routing_key="k.{asset}",
                            username="edge", password="pw", to_observations=True,
                            to_webhook=["http://h/hook"])
    assert [action["type"] for action in actions] == ["topic", "topic", "mqtt", "amqp",
                                                      "observations", "webhook"]
    assert actions[2] == {"type": "mqtt", "url": "mqtt://h:1883", "publish": "p/{asset}",
                          "qos": 1, "username": "edge", "password": "pw"}
    assert actions[3]["routing_key"] == "k.{asset}" and actions[3]["password"] == "pw"
    spec = build_spec("r", 'SELECT * FROM "t"', actions[:1], event_time="", lateness="5s")
    assert spec["event_time"] is None and spec["lateness"] == "5s"
    for wrong, message in (({"to_mqtt": "mqtt://h"}, "--to-mqtt needs --publish"),
                           ({"publish": "p"}, "--publish goes with --to-mqtt"),
                           ({"to_amqp": "amqp://h"}, "--to-amqp needs --exchange"),
                           ({"password": "x", "to_topic": ["t"]}, "--password go with"),
                           ({}, "a rule needs an action")):
        with pytest.raises(Invalid, match=message):
            build_actions(**wrong)
    with pytest.raises(Invalid, match="--lateness"):
        build_spec("r", 'SELECT * FROM "t"', actions[:1], lateness="soon")


def test_bad_files_and_flags_are_one_line_before_any_request(tmp_path: Path) -> None:
    cli = Cli(OFFLINE, "lpk_none")
    broken = tmp_path / "rule.yaml"
    broken.write_text("name: hot\nsql: 'SELECT * FROM \"raw\"'\nactions:\n  - {type: topic\n")
    assert_user_error(cli("rules", "create", "-f", str(broken)), "rule.yaml line 5, column 1")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("name: hot\nsql: 'SELECT * FROM \"raw\"'\nactions:\n"
                       "  - type: mqtt\n    url: mqtt://127.0.0.1:1883\n    colour: red\n")
    line = assert_user_error(cli("rules", "create", "-f", str(unknown)), "unknown.yaml line 4")
    assert "actions.0.publish" in line
    assert_user_error(cli("rules", "create", "-f", str(unknown), "--sql", "SELECT 1"),
                      "--sql does not go with -f")
    assert_user_error(cli("rules", "create", "r", "--sql", 'SELECT * FROM "t"', "--to-mqtt",
                          "mqtt://127.0.0.1:1883"), "--to-mqtt needs --publish")
    assert_user_error(cli("rules", "create", "r", "--to-topic", "t"), "--sql")
    assert_user_error(cli("rules", "test", "SELECT 1", "--lateness", "soon"), "--lateness")
    assert_user_error(cli("bridge", "create", "b", "mqtt://127.0.0.1:1883", "--to", "t"),
                      "at least one topic filter")


# -- against the server ------------------------------------------------------------------------
def test_rules_from_flags_and_from_a_file(cli: Cli, client: SyncClient, tmp_path: Path) -> None:
    source, hot, name = unique("raw"), unique("hot"), unique("flags")
    client.topics.create(source)
    client.topics.produce_batch(source, readings([70, 85, 90]))
    created = cli.ok("rules", "create", name, "--sql",
                     f'SELECT asset, value FROM "{source}" WHERE value > 80',
                     "--to-topic", hot, "--lateness", "1s")
    assert f"created rule {name}" in created.stderr
    assert wait_until(lambda: entries(client, hot) == 2, WAIT), "the rule's rows"

    averages, file_rule = unique("avg"), unique("file")
    rule_file = tmp_path / "rule.yaml"
    rule_file.write_text(f"name: {file_rule}\n"
                         f"sql: 'SELECT asset, value FROM \"{source}\" WHERE value < 80'\n"
                         f"description: the cold ones\nactions:\n"
                         f"  - {{type: topic, topic: {averages}}}\n")
    cli.ok("rules", "create", "-f", str(rule_file), "--stopped")
    assert cli.json("rules", "show", file_rule)["desired"] == "stopped"

    listed = cli.ok("rules", "ls").stdout
    for rule in (name, file_rule):
        assert rule in listed
    assert [row["state"] for row in cli.json("rules", "ls") if row["name"] == file_rule] \
        == ["stopped"]
    shown = cli.ok("rules", "show", name).stdout
    assert name in shown and "running" in shown and f"topic {hot}" in shown

    assert wait_until(lambda: cli.json("rules", "stats", name)["rows_in"] == 3, WAIT)
    stats = cli.json("rules", "stats", name)
    assert (stats["rows_out"], stats["dropped"]) == (2, 1)
    table = cli.ok("rules", "stats", name).stdout
    assert "rows_out" in table and "dropped" in table

    assert "started rule" in cli.ok("rules", "start", file_rule).stderr
    assert wait_until(lambda: entries(client, averages) == 1, WAIT), "the file rule's row"
    assert "stopped rule" in cli.ok("rules", "stop", name).stderr
    assert wait_until(lambda: cli.json("rules", "show", name)["state"] == "stopped", WAIT)
    for rule in (name, file_rule):
        assert f"deleted rule {rule}" in cli.ok("rules", "rm", rule).stderr
    assert_user_error(cli("rules", "show", name), name)
    assert name not in cli.ok("rules", "ls").stdout


def test_stats_watch_follows_a_rule(cli: Cli, client: SyncClient) -> None:
    source, hot, name = unique("raw"), unique("hot"), unique("watched")
    client.topics.create(source)
    client.routing.rules.create(name=name, sql=f'SELECT value FROM "{source}" WHERE value > 80',
                                actions=[{"type": "topic", "topic": hot}])
    watch = subprocess.Popen([*LAKEPORT, "rules", "stats", name, "--watch"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=cli.env, stdin=subprocess.DEVNULL)
    try:
        assert watch.stdout is not None
        first = watch.stdout.readline()
        assert " 0 in" in first, first
        client.topics.produce_batch(source, readings([95, 96]))
        lines = [first]
        while "2 out" not in lines[-1] and watch.poll() is None and len(lines) < WAIT:
            lines.append(watch.stdout.readline())  # one a second
        assert "2 out" in lines[-1], lines
        watch.send_signal(signal.SIGINT)
        assert watch.wait(timeout=30) == 0, watch.stderr.read() if watch.stderr else ""
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    client.routing.rules.delete(name)


def test_trying_a_statement_prints_its_rows(cli: Cli, client: SyncClient) -> None:
    source = unique("raw")
    client.topics.create(source)
    client.topics.produce_batch(source, [*readings([70, 85], "pump-7"), "not an object"])
    result = cli.ok("rules", "test", f'SELECT asset, value FROM "{source}" WHERE value > 80',
                    "--sample", "10")
    assert "pump-7" in result.stdout and "85" in result.stdout and "70" not in result.stdout
    assert "1 row from 3 messages, 1 dropped, 1 error" in result.stderr
    rows = cli.json("rules", "test", f'SELECT asset, value FROM "{source}"')
    assert rows["columns"] == ["asset", "value"]
    assert_user_error(cli("rules", "test", f'SELECT asset,\n  value +* 2 FROM "{source}"'),
                      "bad rule at 2:12")
    assert_user_error(cli("rules", "create", unique("bad"), "--sql",
                          f'SELECT asset FROM "{source}" WHERE value >', "--to-topic", "x"),
                      "bad rule at 1:")


def test_passwords_are_never_printed(cli: Cli, client: SyncClient) -> None:
    source, name = unique("raw"), unique("secret")
    client.topics.create(source)
    cli.ok("rules", "create", name, "--sql", f'SELECT asset, value FROM "{source}"',
           "--to-mqtt", "mqtt://127.0.0.1:1883", "--publish", "plant/{asset}",
           "--username", "edge", "--password", "s3cret-pw", "--stopped")
    for args in (("rules", "show", name), ("rules", "show", name, "--json"),
                 ("rules", "ls"), ("rules", "ls", "--json")):
        result = cli.ok(*args)
        assert "s3cret" not in result.stdout + result.stderr, args
    assert "***" in cli.ok("rules", "show", name).stdout
    cli.ok("rules", "rm", name)


def test_bridges_on_the_server(cli: Cli, client: SyncClient) -> None:
    if not port_open(1883):
        require_service("Mosquitto", "no MQTT broker at 127.0.0.1:1883")
    name, target, prefix = unique("bridge"), unique("bridged"), unique("lp-cli")
    created = cli.ok("bridge", "create", name, "mqtt://127.0.0.1:1883", "--subscribe",
                     f"{prefix}/#", "--to", target, "--fields", f"{prefix}/{{asset}}",
                     "--password", "s3cret-b", "--username", "edge")
    assert f"created bridge {name}" in created.stderr
    assert wait_until(lambda: (cli.json("bridge", "show", name).get("status") or {})
                      .get("connected"), WAIT), "the bridge connects"
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-q", "1", "-t", f"{prefix}/pump-1",
                    "-m", '{"value": 3}'], check=True, timeout=30)
    assert wait_until(lambda: entries(client, target) == 1, WAIT), "the message bridged"
    listed = cli.ok("bridge", "ls").stdout
    assert name in listed and target in listed
    shown = cli.ok("bridge", "show", name)
    assert name in shown.stdout and "***" in shown.stdout
    assert "s3cret" not in shown.stdout + cli.ok("bridge", "show", name, "--json").stdout
    assert "stopped bridge" in cli.ok("bridge", "stop", name).stderr
    assert wait_until(lambda: cli.json("bridge", "show", name)["state"] == "stopped", WAIT)
    assert "started bridge" in cli.ok("bridge", "start", name).stderr
    assert f"deleted bridge {name}" in cli.ok("bridge", "rm", name).stderr
    assert_user_error(cli("bridge", "show", name), name)

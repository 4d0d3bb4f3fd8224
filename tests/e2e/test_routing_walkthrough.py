"""The walk-through of docs/server/routing.md as a user runs it: ``lakeport serve``, then the
page's blocks in a shell, against the machine's Mosquitto (``mosquitto_pub``) and RabbitMQ.

A bridge created over the CLI brings ``mosquitto_pub`` readings into ``raw-sensor-data``
(the bare ``85.2`` of the issue among them); a rule averaging per asset every 10 s sends its
rows to a RabbitMQ topic exchange, read back with aio-pika by the page's script, and to a
topic; a second rule routes the reading above 80 to the observation store, which
``lakeport observations latest`` shows. The queue's output is checked against the page's.

The MQTT topic prefix and the exchange are made unique for the run (the machine's brokers are
shared), everything else runs as the page says."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import require_service
from e2e._cli import LAKEPORT
from servers import lakeport_server, port_open
from waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
PAGE = Path(__file__).resolve().parents[2] / "docs" / "server" / "routing.md"


def page_blocks() -> dict[str, str]:
    """The code blocks that start with ``# NAME`` (``# rules.sh: ...``), by name."""
    blocks = re.findall(r"```[a-z]*\n(# ([\w.-]+)(?::[^\n]*)?\n.*?)```", PAGE.read_text(),
                        re.DOTALL)
    return {name: text for text, name in blocks}


def page_output(command: str) -> list[str]:
    """The lines the page shows under ``$ <command>``."""
    text = PAGE.read_text()
    found = re.search(rf"```\n\$ {re.escape(command)}\n(.*?)```", text, re.DOTALL)
    assert found, f"the page shows no output of {command!r}"
    return found.group(1).strip().splitlines()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, str]]:
    for port, name in ((1883, "Mosquitto"), (5672, "RabbitMQ")):
        if not port_open(port):
            require_service(name, f"no {name} at 127.0.0.1:{port}")
    bin_folder = str(Path(sys.executable).parent)
    env = {**os.environ, "LAKEPORT_HOME": str(tmp_path / "home"),
           "PATH": f"{bin_folder}:{os.environ.get('PATH', '')}"}
    for name in ("LAKEPORT_URL", "LAKEPORT_API_KEY"):
        env.pop(name, None)
    store = f"sqlite:///{tmp_path / 'store.db'}"
    key = subprocess.run([*LAKEPORT, "keys", "create", "--user", "alice", "--store", store],
                         capture_output=True, text=True, env=env, check=True).stdout.strip()
    command = [*LAKEPORT, "serve", "--store", store, "--lake", (tmp_path / "lake").as_uri(),
               "--streams", (tmp_path / "streams").as_uri(), "--workers", "0"]
    with lakeport_server(command, env) as (url, _):
        env.update(LAKEPORT_URL=url, LAKEPORT_API_KEY=key)
        yield env


def test_mqtt_to_rules_to_rabbitmq_and_observations(served: dict[str, str],
                                                    tmp_path: Path) -> None:
    env = served
    prefix, exchange = f"plant{uuid.uuid4().hex[:8]}", f"lp-averages-{uuid.uuid4().hex[:8]}"

    def unique(text: str) -> str:
        return text.replace("plant/", f"{prefix}/").replace("plant-averages", exchange)

    blocks = {unique(name): unique(text) for name, text in page_blocks().items()}
    work = tmp_path / "work"
    work.mkdir()
    for name, text in blocks.items():
        (work / name).write_text(text)

    def shell(name: str, *args: str) -> str:
        done = subprocess.run(["bash", "-e", name, *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (name, done.stdout, done.stderr)
        return done.stdout

    def cli(*args: str) -> Any:
        done = subprocess.run([*LAKEPORT, *args, "--json"], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, (args, done.stderr)
        return json.loads(done.stdout)

    shell("bridge.sh")
    assert wait_until(lambda: (cli("bridge", "show", "plant-in").get("status") or {})
                      .get("connected") is True, 30), cli("bridge", "show", "plant-in")
    shell("rules.sh")
    shown = subprocess.run([*LAKEPORT, "rules", "show", exchange], env=env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and '"password":"***"' in shown.stdout, shown.stdout
    for rule in (exchange, "hot-readings"):
        assert wait_until(lambda r=rule: cli("rules", "show", r)["state"] == "running", 30)

    shell("devices.sh")
    reader = subprocess.run([sys.executable, "averages_queue.py", "read", "3"], cwd=work,
                            env=env, capture_output=True, text=True, timeout=60)
    assert reader.returncode == 0, reader.stderr
    assert reader.stdout.strip().splitlines() == page_output("python averages_queue.py read 3")

    # the bare 85.2 of mosquitto_pub is in raw-sensor-data, and above 80: an observation
    def latest() -> list[dict[str, Any]]:
        return cli("observations", "latest", "--sensor", "pump-01")

    assert wait_until(lambda: any(row.get("value") == 85.2 for row in latest()), 30), latest()
    table = subprocess.run([*LAKEPORT, "observations", "latest", "--sensor", "pump-01"],
                           env=env, capture_output=True, text=True, timeout=60)
    shown_rows = [line.split() for line in table.stdout.strip().splitlines()]
    page_rows = [line.split() for line in page_output(
        "lakeport observations latest --sensor pump-01")]
    # as the page shows, but for the time: the reading's arrival
    assert [row[:3] + row[4:] for row in shown_rows] == [row[:3] + row[4:] for row in page_rows]
    stats = cli("rules", "stats", exchange)
    assert stats["rows_out"] == 3 and stats["lag"] == 0, stats

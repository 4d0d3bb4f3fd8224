"""``kill -9`` of the server in the middle of a 50-node workflow instance, on SQLite and
PostgreSQL: restarted on the same store, the instance finishes with every node run exactly
once, as the tasks' own marks show (each run of a node leaves a file of its own), and as
the store says (one run per node).

The worker is a process of its own (not the server's child), so the tasks it runs outlive
the server: it reports their ends once the server is back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from servers import free_port, lakeport_server, stop
from waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

API = "/api/v1"
WIDE, DEEP = 5, 10


def _cli(env: dict[str, str], *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "lakeport.cli", *args], env=env,
                          capture_output=True, text=True, check=True).stdout.strip()


def _nodes() -> list[dict[str, object]]:
    """Ten levels of five nodes, each after every node of the level before."""
    made = []
    for level in range(DEEP):
        for column in range(WIDE):
            name = f"n{level}_{column}"
            made.append({"name": name, "task": "mark", "parameters": {"node": name},
                         "after": [f"n{level - 1}_{up}" for up in range(WIDE)] if level else []})
    return made


def test_kill_9_mid_instance_runs_every_node_once(store_url: str, tmp_path: Path) -> None:
    home, marks = tmp_path / "home", tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "LAKEPORT_HOME": str(home), "LAKEPORT_STORE": store_url}
    headers = {"x-api-key": _cli(env, "keys", "create", "--user", "alice")}
    worker_key = _cli(env, "keys", "create", "--user", "w", "--worker")
    port = free_port()
    serve = [sys.executable, "-m", "lakeport.cli", "serve", "--workers", "0"]
    script = (f'sleep 0.1\nmktemp "{marks}/$LAKEPORT_PARAM_NODE.XXXXXX" > /dev/null\n').encode()
    worker = None
    try:
        with lakeport_server(serve, env=env, port=port) as (url, server), \
                httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            worker = subprocess.Popen(
                [sys.executable, "-m", "lakeport.cli", "worker", "--name", "w1",
                 "--concurrency", "4", "--runtimes", "sh"],
                env={**env, "LAKEPORT_URL": url, "LAKEPORT_API_KEY": worker_key},
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            assert http.post(f"{API}/tasks/projects", json={"name": "plant"}).status_code == 201
            deployed = http.put(f"{API}/tasks/projects/plant/tasks/mark",
                                data={"spec": json.dumps({"runtime": "sh"})},
                                files={"executable": ("main.sh", script)})
            assert deployed.status_code == 201, deployed.text
            applied = http.put(f"{API}/workflows/marks", json={"project": "plant",
                                                                "nodes": _nodes()})
            assert applied.status_code == 201, applied.text
            instance = http.post(f"{API}/workflows/marks/instances", json={}).json()["id"]
            assert wait_until(lambda: len(list(marks.iterdir())) >= 18, 60), \
                http.get(f"{API}/workflows/instances/{instance}").json()
            server.send_signal(signal.SIGKILL)
            server.wait()
        with lakeport_server(serve, env=env, port=port) as (url, _), \
                httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            def state() -> str:
                return str(http.get(f"{API}/workflows/instances/{instance}").json()["state"])

            assert wait_until(lambda: state() != "running", 120), "the instance did not end"
            record = http.get(f"{API}/workflows/instances/{instance}").json()
    finally:
        if worker is not None:
            stop(worker, timeout=15)
    assert record["state"] == "succeeded", record
    runs = {node["name"]: {attempt["run"] for attempt in node["attempts"]}
            for node in record["nodes"]}
    assert all(len(found) == 1 for found in runs.values()), runs
    ran = Counter(path.name.split(".")[0] for path in marks.iterdir())
    assert ran == Counter({node["name"]: 1 for node in _nodes()})

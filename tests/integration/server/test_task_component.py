"""A data component as a task (runtime ``component``): deployed with its code as the
dependencies zip and its configuration as the executable, run by the local worker of
``lakeport serve`` on the worker's storage tables; its job summary lands with the run's
files, and its state comes back on the next run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server_fixtures import Platform, platform_settings, running_platform
from task_helpers import zip_bytes
from waiting import wait_until

API = "/api/v1/tasks"
COMPONENT = Path(__file__).parents[2] / "fixtures" / "components" / "scaler"


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[tuple[Platform, httpx.Client, Path]]:
    """A server with its local worker, whose storage tables are in ``tables/``."""
    from lakeport.tables import TableStore

    tables = tmp_path / "tables"
    source = tmp_path / "readings.csv"
    source.write_text("id,value\na,1.5\nb,2\n")
    TableStore(str(tables)).load("in.c-main.readings", source)
    monkeypatch.setenv("LAKEPORT_TABLES", str(tables))  # the worker's environment
    settings = platform_settings(f"sqlite:///{tmp_path / 'store.db'}", tmp_path, workers=1)
    with running_platform(settings) as platform, platform.client() as http:
        assert http.post(f"{API}/projects", json={"name": "plant"}).status_code == 201
        yield platform, http, tables


def output(http: httpx.Client, run_id: int) -> str:
    """What the run printed: stdout, then stderr (where the runner echoes the component)."""
    return "".join(http.get(f"{API}/runs/{run_id}/logs", params={"stream": stream}).text
                   for stream in ("stdout", "stderr"))


def run_to_end(http: httpx.Client, task: str) -> dict:
    run_id = http.post(f"{API}/projects/plant/tasks/{task}/start", json={}).json()["id"]

    def ended() -> bool:
        return http.get(f"{API}/runs/{run_id}").json()["state"] not in ("queued", "running")

    assert wait_until(ended, 60), http.get(f"{API}/runs/{run_id}").json()
    return http.get(f"{API}/runs/{run_id}").json()


def deploy(http: httpx.Client, task: str, config: dict, **spec: object) -> None:
    answer = http.put(f"{API}/projects/plant/tasks/{task}", data={"spec": json.dumps({
        "runtime": "component", **spec})}, files={
        "executable": ("config.json", json.dumps(config).encode()),
        "dependencies": ("dependencies.zip", zip_bytes({
            "main.py": (COMPONENT / "main.py").read_bytes()}))})
    assert answer.status_code == 201, answer.text


def test_a_component_task_loads_its_output_and_keeps_its_state(served: tuple) -> None:
    _, http, tables = served
    deploy(http, "scale", json.loads((COMPONENT / "config.json").read_text()))
    first = run_to_end(http, "scale")
    assert first["state"] == "succeeded", (first, output(http, first["id"]))
    assert "scaled 2 rows; run 1" in output(http, first["id"])
    job = http.get(f"/api/v1/files/tasks/plant/scale/{first['id']}/out/job.json").json()
    assert job["state"] == "success" and job["config_id"] == "plant.scale"
    assert job["tables_out"][0]["destination"] == "out.c-main.scaled"

    from lakeport.tables import TableStore

    scaled = TableStore(str(tables)).read("out.c-main.scaled").sort_by("id").to_pylist()
    assert scaled == [{"id": "a", "value": "3.0"}, {"id": "b", "value": "4.0"}]
    second = run_to_end(http, "scale")
    assert second["state"] == "succeeded"
    assert "scaled 2 rows; run 2" in output(http, second["id"])


def test_a_workflow_chains_two_components_through_a_table(served: tuple) -> None:
    """The second node reads the table the first one wrote; each node keeps its own state
    from one instance to the next."""
    _, http, tables = served
    first = json.loads((COMPONENT / "config.json").read_text())
    second = json.loads((COMPONENT / "config.json").read_text())
    second["storage"]["input"]["tables"][0]["source"] = "out.c-main.scaled"
    second["storage"]["output"]["tables"][0]["destination"] = "out.c-main.quadrupled"
    deploy(http, "scale", first)
    deploy(http, "again", second)
    made = http.put("/api/v1/workflows/chain", json={"project": "plant",
                                                      "edges": [["scale", "again"]]})
    assert made.status_code == 201, made.text
    for number in (1, 2):
        instance = http.post("/api/v1/workflows/chain/instances", json={}).json()

        def done(instance_id: int = instance["id"]) -> bool:
            state = http.get(f"/api/v1/workflows/instances/{instance_id}").json()["state"]
            return state not in ("queued", "running")

        assert wait_until(done, 90)
        record = http.get(f"/api/v1/workflows/instances/{instance['id']}").json()
        assert record["state"] == "succeeded", record
        for node in record["nodes"]:
            run_id = node["attempts"][-1]["run"]
            assert f"run {number}" in output(http, run_id), node

    from lakeport.tables import TableStore

    quadrupled = TableStore(str(tables)).read("out.c-main.quadrupled").sort_by("id").to_pylist()
    assert quadrupled == [{"id": "a", "value": "6.0"}, {"id": "b", "value": "8.0"}]


def stored_bytes(*folders: Path) -> list[bytes]:
    """Every file under ``folders`` but the store's database."""
    return [path.read_bytes() for folder in folders for path in folder.rglob("*")
            if path.is_file() and ".db" not in path.suffix]


def test_hash_parameters_are_sealed_at_rest_and_open_for_the_run(
        served: tuple, tmp_path: Path, lakeport_home: Path) -> None:
    """A ``#`` parameter is encrypted in the lake (the key in the server's secret store),
    the component gets the value itself, and neither the server nor the worker (whose
    folder is in the lakeport home) keeps it in the clear."""
    _, http, _ = served
    config = json.loads((COMPONENT / "config.json").read_text())
    config["parameters"]["#token"] = "s3cr3t-value"
    deploy(http, "sealed", config)
    stored = stored_bytes(tmp_path, lakeport_home)
    assert not any(b"s3cr3t-value" in data for data in stored)
    assert any(b"LAKEPORT::SEALED::" in data for data in stored)
    run = run_to_end(http, "sealed")
    assert run["state"] == "succeeded", (run, output(http, run["id"]))
    assert "token open, 12 chars" in output(http, run["id"])
    assert (lakeport_home / "worker").is_dir()
    assert not any(b"s3cr3t-value" in data for data in stored_bytes(tmp_path, lakeport_home))
    # the key is no secret a task's environment can name
    deploy(http, "peek", config, env={"KEY": "<% secrets.component-key %>"})
    peek = run_to_end(http, "peek")
    assert peek["state"] == "failed" and "secret 'component-key' does not exist" in \
        peek["reason"], peek


def test_a_sealed_task_is_copied_only_by_who_may_deploy_it(served: tuple) -> None:
    """A copy runs with the opened configuration and code its maker chooses: copying a task
    with a sealed configuration needs write on it, not just read."""
    platform, http, _ = served
    config = json.loads((COMPONENT / "config.json").read_text())
    config["parameters"]["#token"] = "s3cr3t-value"
    deploy(http, "sealed", config)
    with platform.client("bob") as bob:  # bob's key: bob is a user now
        assert http.put("/api/v1/grants/project/plant",
                        json={"user": "bob", "permission": "read"}).status_code == 201
        assert bob.get(f"{API}/projects/plant/tasks/sealed").status_code == 200
        assert bob.post(f"{API}/projects", json={"name": "bobs"}).status_code == 201
        refused = bob.post(f"{API}/projects/plant/tasks/sealed/copy",
                           json={"name": "mine", "project": "bobs"})
        assert refused.status_code == 403 and "sealed" in refused.text, refused.text
    copied = http.post(f"{API}/projects/plant/tasks/sealed/copy", json={"name": "again"})
    assert copied.status_code == 201, copied.text


def test_a_kept_executable_becomes_a_configuration_only_when_uploaded_again(
        served: tuple) -> None:
    _, http, _ = served
    answer = http.put(f"{API}/projects/plant/tasks/switch", data={"spec": json.dumps({
        "runtime": "py"})}, files={"executable": ("config.json", b'{"parameters": {}}')})
    assert answer.status_code == 201, answer.text
    switched = http.put(f"{API}/projects/plant/tasks/switch", params={"overwrite": "true"},
                        data={"spec": json.dumps({"runtime": "component"})})
    assert switched.status_code == 422, switched.text
    assert "upload it again" in switched.json()["error"]["message"]


def test_a_configuration_that_is_not_one_is_refused_at_deploy(served: tuple) -> None:
    _, http, _ = served
    for body, message in ((b"{not json", "bad task: the configuration config.json: not JSON"),
                          (b'{"parameters": {}, "colour": 1}', "colour: unknown key")):
        answer = http.put(f"{API}/projects/plant/tasks/bad", data={"spec": json.dumps({
            "runtime": "component"})}, files={"executable": ("config.json", body)})
        assert answer.status_code == 422, answer.text
        assert message in answer.json()["error"]["message"], answer.text
    assert http.get(f"{API}/projects/plant/tasks/bad").status_code == 404


def test_a_failing_component_fails_its_run_with_the_components_message(served: tuple) -> None:
    _, http, _ = served
    config = json.loads((COMPONENT / "config.json").read_text())
    config["storage"]["input"]["tables"][0]["source"] = "in.c-main.missing"
    deploy(http, "broken", config)
    run = run_to_end(http, "broken")
    assert run["state"] == "failed" and "exit code 1" in run["reason"], run
    assert "in.c-main.missing" in output(http, run["id"])

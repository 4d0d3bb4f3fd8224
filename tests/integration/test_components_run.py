"""The runner end to end: a component written only against the public component library runs
unchanged; exit codes, timeouts, masking, state, usage, actions and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from _components import FIXTURES, platform

from lakeport.components import sum_usage
from waiting import wait_until

KBC_CONFIG = {
    "storage": {
        "input": {"tables": [{"source": "in.c-main.readings", "destination": "readings.csv"}]},
        "output": {"tables": []},
    },
    "parameters": {"multiplier": 3, "destination": "out.c-main.tripled",
                   "#token": "s3cr3t-t0ken"},
}


def test_a_library_component_runs_unchanged(tmp_path: Path) -> None:
    p = platform(tmp_path)
    p.load("in.c-main.readings", "id,value\n1,10\n2,0.5\n", primary_key=["id"])
    first = p.run(KBC_CONFIG, "kbc_multiply", keep=True)
    assert first.succeeded, first.message
    manifest = json.loads((p.last_data / "in/tables/readings.csv.manifest").read_text())
    assert manifest["id"] == "in.c-main.readings"
    assert manifest["columns"] == ["id", "value"] and manifest["primary_key"] == ["id"]
    assert manifest["rows_count"] == 2 and manifest["last_change_date"]
    assert json.loads((p.last_data / "in/state.json").read_text()) == {}
    assert p.rows("out.c-main.tripled") == [{"id": "1", "value": "30.0", "run": "1"},
                                            {"id": "2", "value": "1.5", "run": "1"}]
    assert p.tables.info("out.c-main.tripled").primary_key == ["id"]
    assert first.usage == [{"metric": "rows", "value": 2}]
    assert first.tables_out[0]["destination"] == "out.c-main.tripled"

    second = p.run(KBC_CONFIG, "kbc_multiply", keep=True)
    assert second.succeeded, second.message
    assert json.loads((p.last_data / "in/state.json").read_text())["runs"] == 1
    assert p.states.read("cfg").state["runs"] == 2
    assert {r["run"] for r in p.rows("out.c-main.tripled")} == {"2"}  # upserted by id
    jobs = p.jobs.list("cfg")
    assert [j.state for j in jobs] == ["success", "success"]
    assert sum_usage(j.usage for j in jobs) == {"rows": 4}
    log = p.jobs.log_path(second.id).read_text()
    assert "multiplied 2 rows" in log and "s3cr3t-t0ken" not in log and "***" in log


def test_the_environment_has_what_the_library_reads(tmp_path: Path) -> None:
    p = platform(tmp_path)
    env_file = tmp_path / "env.json"
    job = p.run({"parameters": {"env_to": str(env_file)}}, config_id="cfg-env",
                parent_run_id="77", row=None)
    env = json.loads(env_file.read_text())
    assert env["KBC_RUNID"] == job.run_id and job.run_id.startswith("77.")
    assert env["KBC_CONFIGID"] == "cfg-env" and env["KBC_COMPONENTID"] == "scripted"
    for name in ("KBC_DATADIR", "KBC_PROJECTID", "KBC_STACKID", "KBC_BRANCHID"):
        assert env[name]


def test_exit_codes(tmp_path: Path) -> None:
    p = platform(tmp_path)
    ok = p.run({"parameters": {"stdout": ["hello"]}})
    assert (ok.state, ok.exit_code, ok.message) == ("success", 0, "done")
    user = p.run({"parameters": {"stderr": ["detail", "the API key is not valid"], "exit": 1}})
    assert (user.state, user.error_type, user.exit_code) == ("error", "user", 1)
    assert user.message == "the API key is not valid"
    app = p.run({"parameters": {"stderr": ["Traceback", "KeyError: 'x'"], "exit": 2}})
    assert (app.state, app.error_type, app.exit_code) == ("error", "application", 2)
    assert "exit code 2" in app.message and "KeyError: 'x'" in app.message


def test_a_timeout_kills_the_process_group(tmp_path: Path) -> None:
    p = platform(tmp_path)
    pid_file = tmp_path / "child.pid"
    job = p.run({"parameters": {"spawn_sleeper": str(pid_file), "sleep": 120}}, timeout=1)
    assert job.state == "error" and "timed out after 1 s" in job.message
    assert job.duration < 30
    child = int(pid_file.read_text())

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        status = Path(f"/proc/{child}/stat").read_text().split()[2]
        return status == "Z"

    assert wait_until(gone, 10), "the component's child process was killed"


def test_secret_parameters_are_masked_everywhere(tmp_path: Path) -> None:
    p = platform(tmp_path)
    config = {"parameters": {"db": {"#password": "hunter2-xyz"}, "user": "ann",
                             "stdout": ["connecting with hunter2-xyz"],
                             "stderr": ["login failed for ann with password hunter2-xyz"],
                             "exit": 1}}
    job = p.run(config)
    assert job.message == "login failed for ann with password ***"
    log = p.jobs.log_path(job.id).read_text()
    assert "hunter2-xyz" not in log and "connecting with ***" in log
    assert "hunter2-xyz" not in p.jobs.path.read_text()


def test_state_is_kept_only_on_success_and_an_empty_state_removes_it(tmp_path: Path) -> None:
    p = platform(tmp_path)
    p.run({"parameters": {"write": {"out/state.json": '{"cursor": 5}'}}})
    assert p.states.read("cfg").state == {"cursor": 5}
    failed = p.run({"parameters": {"write": {"out/state.json": '{"cursor": 9}'}, "exit": 1}})
    assert failed.state == "error" and p.states.read("cfg").state == {"cursor": 5}
    p.run({"parameters": {}}, keep=True)  # no out/state.json: the state is removed
    assert json.loads((p.last_data / "in/state.json").read_text()) == {"cursor": 5}
    assert p.states.read("cfg").state == {}
    p.run({"parameters": {}}, keep=True)
    assert json.loads((p.last_data / "in/state.json").read_text()) == {}


def test_two_concurrent_runs_give_one_state_and_one_conflict(tmp_path: Path) -> None:
    p = platform(tmp_path)
    gate = tmp_path / "gate"
    slow_config = {"parameters": {"wait_for": str(gate),
                                  "write": {"out/state.json": '{"by": "slow"}'}}}
    result = {}
    slow = threading.Thread(target=lambda: result.setdefault("job", p.run(slow_config)))
    slow.start()
    assert wait_until(lambda: Path(str(gate) + ".started").exists(), 30), "the slow run"
    fast = p.run({"parameters": {"write": {"out/state.json": '{"by": "fast"}'}}})
    assert fast.succeeded
    gate.write_text("")
    slow.join(60)
    job = result["job"]
    assert job.state == "error"
    assert "changed by another run" in job.message and "'cfg'" in job.message
    assert p.states.read("cfg").state == {"by": "fast"}


def test_usage_is_validated_strictly(tmp_path: Path) -> None:
    p = platform(tmp_path)
    good = p.run({"parameters": {"write": {
        "out/usage.json": '[{"metric": "API calls", "value": 150}]'}}})
    assert good.usage == [{"metric": "API calls", "value": 150}]
    for bad, why in [('{"metric": "x", "value": 1}', "an array expected"),
                     ('[{"metric": "x", "value": 1, "unit": "s"}]', "unknown key 'unit'"),
                     ('[{"metric": "x", "value": "many"}]', "value must be a number"),
                     ("[", "not valid JSON")]:
        job = p.run({"parameters": {"write": {"out/usage.json": bad}}})
        assert job.state == "error" and why in job.message, job.message
        assert job.message.startswith("out/usage.json")


def test_a_synchronous_action_returns_json(tmp_path: Path) -> None:
    p = platform(tmp_path)
    job = p.run({"action": "testConnection", "parameters": {}})
    assert job.succeeded and job.result == {"action": "testConnection", "status": "ok"}


def _cli(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAKEPORT_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "lakeport.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_run_jobs_create_and_test(tmp_path: Path) -> None:
    home = tmp_path / "home"
    p = platform(tmp_path)
    p.tables = type(p.tables)(home / "tables")
    p.load("in.c-main.readings", "id,value\n1,10\n")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(KBC_CONFIG))
    ran = _cli("component", "run", str(FIXTURES / "kbc_multiply"), "--config", str(config),
               "--config-id", "tripler", cwd=tmp_path, home=home)
    assert ran.returncode == 0, ran.stderr
    assert "success" in ran.stderr and "s3cr3t-t0ken" not in ran.stderr
    jobs = _cli("component", "jobs", "--json", cwd=tmp_path, home=home)
    assert json.loads(jobs.stdout.splitlines()[0])["usage"] == [{"metric": "rows", "value": 1}]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**KBC_CONFIG, "parameter": {}}))
    failed = _cli("component", "run", str(FIXTURES / "kbc_multiply"), "--config", str(bad),
                  cwd=tmp_path, home=home)
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines()[-1] == f"error: {bad}: parameter: unknown key"

    created = _cli("component", "create", "demo", cwd=tmp_path, home=home)
    assert created.returncode == 0, created.stderr
    tested = _cli("component", "test", "demo", cwd=tmp_path, home=home)
    assert tested.returncode == 0 and "1 cases passed" in tested.stdout, tested.stdout
    state = tmp_path / "demo/tests/basic/expected/data/out/state.json"
    state.write_text('{"runs": 99}')
    (tmp_path / "demo/tests/basic/expected/exit_code").write_text("1")
    tested = _cli("component", "test", "demo", cwd=tmp_path, home=home)
    assert tested.returncode == 1
    assert "exit code 0, expected 1" in tested.stdout
    assert '-  "runs": 99' in tested.stdout and '+  "runs": 5' in tested.stdout

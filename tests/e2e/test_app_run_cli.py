"""``lakeport app create|run|test`` as a user runs them: subprocesses on the embedded engine.

Every test has its own ``LAKEPORT_HOME`` (tests/conftest.py), so the default ``file://``
engine starts empty; apps and the simulator share it as they would on one machine.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from e2e._cli import LAKEPORT
from lakeport.apps.secrets import SecretStore
from lakeport.errors import NotFound
from lakeport.home import default_streams_url
from lakeport.streams import open_engine
from waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

WAIT = 30.0  # seconds to wait for something that must happen
SENT = re.compile(r"^sent (\d+) messages? to (.+)$")


def lakeport(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LAKEPORT, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60, stdin=subprocess.DEVNULL)


def assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit code 1, no traceback, a last line ``error: ...`` holding ``fragments``."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    return line


def sent_count(result: subprocess.CompletedProcess[str]) -> tuple[int, str]:
    """The N and topics of the simulator's final ``sent N messages to <topics>`` line."""
    assert result.returncode == 0, result.stderr
    match = SENT.match(result.stdout.strip().splitlines()[-1])
    assert match, result.stdout
    return int(match.group(1)), match.group(2)


class RunningApp:
    """``lakeport app run ...`` in the background, its stdout and stderr read as lines."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.process = subprocess.Popen(
            [*LAKEPORT, "app", "run", *args], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
        self.stdout: list[str] = []
        self.stderr: queue.Queue[str] = queue.Queue()
        self.stderr_lines: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout.append),
                             daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr.put),
                             daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, put) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            put(line.rstrip("\n"))

    def wait_for_log(self, fragment: str) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.process.poll() is not None and self.stderr.empty():
                raise AssertionError(f"the app exited with {self.process.returncode}: "
                                     + "\n".join(self.stderr_lines))
            try:
                line = self.stderr.get(timeout=0.2)
            except queue.Empty:
                continue
            self.stderr_lines.append(line)
            if fragment in line:
                return
        raise AssertionError(f"no {fragment!r} in the app's log: " + "\n".join(self.stderr_lines))

    def stop(self) -> tuple[int, list[str]]:
        """SIGTERM, as docker stop or systemd would; the exit code and the stdout lines."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        for reader in self._readers:  # they end at the end of the app's output
            reader.join(WAIT)
            assert not reader.is_alive(), "the app's output did not end after it exited"
        return self.process.returncode, self.stdout

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def wait_for(probe, expected, what: str) -> None:  # type: ignore[no-untyped-def]
    """Poll ``probe()`` until it returns ``expected``; fail naming the last value seen."""
    seen = [None]

    def met() -> bool:
        seen[0] = probe()
        return seen[0] == expected

    assert wait_until(met, WAIT), f"timed out waiting for {what}: {seen[0]!r}, not {expected!r}"


async def _topic_state(topic: str, consumer: str) -> tuple[int, int | None]:
    """The topic's last seqno and the lag of ``consumer`` on it (None if it has none)."""
    async with open_engine(default_streams_url()) as engine:
        try:
            info = await engine.topic_info(topic)
        except NotFound:
            return 0, None
    lag = next((c.lag for c in info.consumers if c.name == consumer), None)
    return info.last_seqno, lag


def topic_state(topic: str, consumer: str = "") -> tuple[int, int | None]:
    return asyncio.run(_topic_state(topic, consumer))


# -- create --------------------------------------------------------------------------------
@pytest.mark.parametrize("app_type", ["app", "importer", "exporter", "docker"])
def test_created_app_validates_and_passes_its_own_test(tmp_path: Path, app_type: str) -> None:
    name = f"demo-{app_type}"
    created = lakeport("app", "create", name, "--type", app_type, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    folder = tmp_path / name
    for file in ("app.yaml", "main.py", "requirements.txt", "Dockerfile", "README.md",
                 "test_app.py", "schemas/configuration.json"):
        assert (folder / file).is_file(), file
    assert 'ENTRYPOINT ["python", "main.py"]' in (folder / "Dockerfile").read_text()
    assert f"name: {name}\n" in (folder / "app.yaml").read_text()
    schema = json.loads((folder / "schemas/configuration.json").read_text())
    assert schema["properties"]
    for option, spec in schema["properties"].items():  # every option documented
        assert {"title", "description", "default"} <= set(spec), option

    validated = lakeport("app", "validate", name, cwd=tmp_path)
    assert validated.returncode == 0, validated.stdout + validated.stderr

    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"{name}/test_app.py"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert " passed" in tested.stdout


def test_create_refuses_a_bad_name_and_a_non_empty_folder(tmp_path: Path) -> None:
    assert_user_error(lakeport("app", "create", "Demo_App", cwd=tmp_path),
                      "bad app name 'Demo_App'")
    assert_user_error(lakeport("app", "create", "demo", "--type", "cron", cwd=tmp_path),
                      "bad app type 'cron'")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert_user_error(lakeport("app", "create", "taken", cwd=tmp_path),
                      "taken: folder exists and is not empty")
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "taken" / "app.yaml").exists()


# -- run + simulator -----------------------------------------------------------------------
def test_app_receives_every_simulated_message(tmp_path: Path) -> None:
    assert lakeport("app", "create", "demo-app", cwd=tmp_path).returncode == 0
    app = RunningApp("demo-app", cwd=tmp_path)
    try:
        app.wait_for_log("connected")
        sent, topics = sent_count(lakeport(
            "app", "test", "simulator", "demo-app", "--duration", "3s", "--rate", "50/s",
            "--pattern", "sine", "--assets", "5", cwd=tmp_path))
        assert (sent, topics) == (150, "asset-data")
        # every input read and acked; the app's temperature_avg outputs land beside them
        wait_for(lambda: topic_state("asset-data", "demo-app"), (2 * sent, 0),
                 "the app to read every message and publish its outputs (last seqno, lag)")
        code, stdout = app.stop()
    finally:
        app.kill()
    assert code == 0
    assert stdout[-1] == f"received {sent} messages"
    recommendations, _ = topic_state("recommendations")
    assert recommendations >= 1  # the sine rises above the threshold (75) for some assets


def _parquet_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(path).num_rows for path in folder.rglob("*.parquet"))


def test_exporter_writes_every_simulated_message_to_parquet(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    assert lakeport("app", "create", "demo-exporter", "--type", "exporter",
                    cwd=tmp_path).returncode == 0
    output = tmp_path / "demo-exporter" / "output"
    app = RunningApp("demo-exporter", "--set", "batch_rows=40", "--set", "max_delay=0.3",
                     cwd=tmp_path)
    try:
        app.wait_for_log("connected")
        sent, _ = sent_count(lakeport(
            "app", "test", "simulator", "demo-exporter", "--duration", "3s", "--rate", "50/s",
            cwd=tmp_path))
        assert sent == 150
        wait_for(lambda: _parquet_rows(output), sent, "the exporter to write every row")
        code, stdout = app.stop()
    finally:
        app.kill()
    assert code == 0
    assert f"received {sent} messages" in stdout
    # <topic>/date=YYYY-MM-DD/<topic>-<first>-<last>.parquet
    files = list(output.glob("asset-data/date=*/asset-data-*.parquet"))
    ranges = sorted(tuple(map(int, p.stem.rsplit("-", 2)[1:])) for p in files)
    assert ranges[0][0] == 1 and ranges[-1][1] == sent
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))
    assert not list(output.rglob(".*"))  # no partial files left
    rows = [row for path in files for row in pq.read_table(path).to_pylist()]
    assert len(rows) == sent
    for column in ("value_number", "value_string", "value_bool", "value_object"):
        assert any(row[column] is not None for row in rows), column
    assert {row["asset"] for row in rows} == {f"asset-{n:02d}" for n in range(1, 11)}


def test_importer_gets_control_changes(tmp_path: Path) -> None:
    assert lakeport("app", "create", "demo-importer", "--type", "importer",
                    cwd=tmp_path).returncode == 0
    app = RunningApp("demo-importer", "--set", "poll_interval=0.2", cwd=tmp_path)
    try:
        app.wait_for_log("connected")
        sent, topics = sent_count(lakeport(
            "app", "test", "simulator", "demo-importer", "--duration", "1s", "--rate", "20/s",
            "--assets", "4", cwd=tmp_path))
        assert (sent, topics) == (20, "control-changes")
        wait_for(lambda: topic_state("control-changes", "demo-importer"), (sent, 0),
                 "the importer to read every control change (last seqno, lag)")
        code, stdout = app.stop()
    finally:
        app.kill()
    assert code == 0
    assert f"received {sent} messages ({sent} control changes applied)" in stdout
    published, _ = topic_state("asset-data")
    assert published > 0


def test_simulator_sends_nothing_to_a_docker_app(tmp_path: Path) -> None:
    assert lakeport("app", "create", "web", "--type", "docker", cwd=tmp_path).returncode == 0
    result = lakeport("app", "test", "simulator", "web", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sent 0 messages"
    assert "docker apps read no data streams" in result.stderr


# -- run: environment, configuration, exit codes -------------------------------------------
ENV_PROBE = """\
import json, os, sys
print(json.dumps({
    "configuration": json.loads(os.environ["LAKEPORT_APP_CONFIGURATION"]),
    "app_dir": os.environ["LAKEPORT_APP_DIR"],
    "streams": os.environ["LAKEPORT_STREAMS"],
    "token": os.environ["API_TOKEN"],
    "cwd": os.getcwd(),
}))
sys.exit(3)
"""


def test_run_sets_the_environment_and_returns_the_exit_code(tmp_path: Path) -> None:
    assert lakeport("app", "create", "probe", "--type", "docker", cwd=tmp_path).returncode == 0
    folder = tmp_path / "probe"
    manifest = (folder / "app.yaml").read_text()
    manifest = manifest.replace("      - name: LOG_LEVEL\n        value: INFO\n",
                                "      - name: API_TOKEN\n        value: <% secrets.api-token %>\n")
    (folder / "app.yaml").write_text(manifest)
    (folder / "main.py").write_text(ENV_PROBE)
    missing = lakeport("app", "run", "probe", cwd=tmp_path)
    assert_user_error(missing, "secret 'api-token' does not exist", "the app was not started")

    SecretStore().create("api-token", "s3cret")
    (tmp_path / "config.yaml").write_text("port: 9000\ngreeting: from file\n")
    result = lakeport("app", "run", "probe", "--config", "config.yaml", "--set", "port=9100",
                      "--url", "memory://probe", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    seen = json.loads(result.stdout)
    assert seen["configuration"] == {"port": 9100, "greeting": "from file"}
    assert Path(seen["app_dir"]) == Path(seen["cwd"]) == folder.resolve()
    assert seen["streams"] == "memory://probe"
    assert seen["token"] == "s3cret"


def test_run_builds_the_apps_environment_from_its_requirements(tmp_path: Path) -> None:
    """A requirement lakeport does not have is installed into the app's own environment
    (with progress on stderr) and reused by the next run; a missing one is one line."""
    assert lakeport("app", "create", "needs", "--type", "docker", cwd=tmp_path).returncode == 0
    folder = tmp_path / "needs"
    (folder / "requirements.txt").write_text("six==1.16.0\n")
    (folder / "main.py").write_text("import sys, six\nprint(six.__version__, sys.prefix)\n")
    first = lakeport("app", "run", "needs", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    version, prefix = first.stdout.split()
    assert version == "1.16.0" and prefix != sys.prefix
    assert "building the app's environment" in first.stderr
    again = lakeport("app", "run", "needs", cwd=tmp_path)
    assert again.stdout == first.stdout and "building" not in again.stderr

    (folder / "requirements.txt").write_text("six==1.16.0\nno-such-package-lakeport-test\n")
    assert_user_error_last_line(lakeport("app", "run", "needs", cwd=tmp_path),
                                "no-such-package-lakeport-test", "requirements.txt")


def assert_user_error_last_line(result: subprocess.CompletedProcess[str],
                                *fragments: str) -> None:
    """Progress lines, then one ``error: ...`` line naming each fragment; exit 1."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, (result.returncode, result.stderr)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(f in last for f in fragments), result.stderr


def test_run_refuses_a_configuration_that_breaks_its_schema(tmp_path: Path) -> None:
    assert lakeport("app", "create", "demo-exporter", "--type", "exporter",
                    cwd=tmp_path).returncode == 0
    result = lakeport("app", "run", "demo-exporter", "--set", "batch_rows=many", cwd=tmp_path)
    assert_user_error(result, "configuration.batch_rows: 'many' is not of type 'integer'",
                      "1 problem in demo-exporter")
    assert not (tmp_path / "demo-exporter" / "output").exists()
    assert_user_error(lakeport("app", "run", "demo-exporter", "--set", "batch_rows",
                               cwd=tmp_path), "bad --set 'batch_rows'")


# -- csv -----------------------------------------------------------------------------------
def test_csv_replay_sends_typed_rows(tmp_path: Path) -> None:
    assert lakeport("app", "create", "demo-app", cwd=tmp_path).returncode == 0
    rows = "".join(f"2026-01-01T10:00:0{i}Z,pump-1,temperature,{20 + i}\n" for i in range(5))
    (tmp_path / "data.csv").write_text("time,asset,datastream,value\n" + rows)
    result = lakeport("app", "test", "csv", "demo-app", "data.csv", "--replay", "--speed", "50",
                      cwd=tmp_path)
    assert sent_count(result) == (5, "asset-data")
    assert topic_state("asset-data")[0] == 5


def test_csv_with_a_bad_line_sends_nothing(tmp_path: Path) -> None:
    assert lakeport("app", "create", "demo-app", cwd=tmp_path).returncode == 0
    (tmp_path / "data.csv").write_text(
        "time,asset,datastream,value\n"
        + "".join(f"2026-01-01T10:00:0{i}Z,pump-1,temperature,{i}\n" for i in range(5))
        + "2026-01-01T10:00:06Z,pump-1,temperature,abc\n")
    result = lakeport("app", "test", "csv", "demo-app", "data.csv", cwd=tmp_path)
    line = assert_user_error(
        result, "data.csv line 7: value 'abc' is not a number for datastream temperature")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "nothing was sent" in line
    assert topic_state("asset-data")[0] == 0


# -- run: signals --------------------------------------------------------------------------
SIGNAL_PROBE = """\
import os, signal, time
received = []
signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
print(os.getpid(), flush=True)
while not received:
    time.sleep(0.01)
time.sleep(0.3)  # a window for a second signal: "signals 1" then shows that none came
print("signals", len(received), flush=True)
"""


def _probe_app(tmp_path: Path, code: str) -> Path:
    assert lakeport("app", "create", "probe", "--type", "docker", cwd=tmp_path).returncode == 0
    (tmp_path / "probe" / "main.py").write_text(code)
    return tmp_path / "probe"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not reaped yet) counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def test_ctrl_c_reaches_the_app_once_and_it_exits_0(tmp_path: Path) -> None:
    _probe_app(tmp_path, SIGNAL_PROBE)
    runner = subprocess.Popen([*LAKEPORT, "app", "run", "probe"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL, process_group=0)
    try:
        assert runner.stdout is not None
        runner.stdout.readline()  # the app runs and handles signals
        os.killpg(runner.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the group
        out, err = runner.communicate(timeout=WAIT)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 0, err
    assert out.strip().splitlines()[-1] == "signals 1"


def test_the_app_does_not_outlive_a_killed_runner(tmp_path: Path) -> None:
    _probe_app(tmp_path, SIGNAL_PROBE)
    runner = subprocess.Popen([*LAKEPORT, "app", "run", "probe"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              stdin=subprocess.DEVNULL)
    assert runner.stdout is not None
    app_pid = int(runner.stdout.readline())
    runner.kill()
    runner.wait()
    try:
        wait_for(lambda: _pid_alive(app_pid), False, "the app to end with its runner")
    finally:
        if _pid_alive(app_pid):
            os.kill(app_pid, signal.SIGKILL)


def test_configure_changes_a_running_app_or_is_refused(tmp_path: Path) -> None:
    assert lakeport("app", "create", "demo-app", cwd=tmp_path).returncode == 0
    assert lakeport("app", "create", "demo-exporter", "--type", "exporter",
                    cwd=tmp_path).returncode == 0
    app = RunningApp("demo-app", cwd=tmp_path)
    try:
        app.wait_for_log("connected")
        result = lakeport("app", "configure", "demo-app", "--set", "threshold=99", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        app.wait_for_log("configuration updated")
        # a value that breaks the app's JSON Schema is refused before anything is sent
        assert_user_error(lakeport("app", "configure", "demo-app", "--set", 'threshold="hot"',
                                   cwd=tmp_path), "configuration.threshold", "nothing was sent")
        code, _ = app.stop()
    finally:
        app.kill()
    assert code == 0
    # the exporter's manifest does not allow runtime updates
    assert_user_error(lakeport("app", "configure", "demo-exporter", "--set", "batch_rows=5",
                               cwd=tmp_path), "does not allow runtime configuration updates")

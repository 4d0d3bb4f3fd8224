"""The ``lakeport`` command as a user runs it: a subprocess on the embedded engine.

Every test runs in its own ``LAKEPORT_HOME`` (see ``tests/conftest.py``), so the default
``file://`` engine starts empty.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from e2e._cli import LAKEPORT, assert_user_error

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

REPO = Path(__file__).resolve().parents[2]
WAIT = 20.0  # seconds to wait for something that must happen


def lakeport(*args: str, stdin: str | None = None, cwd: Path | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LAKEPORT, *args], input=stdin, capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, stdin=None if stdin is not None
                          else subprocess.DEVNULL)


class Running:
    """A ``lakeport`` process in the background whose stdout lines can be awaited."""

    def __init__(self, *args: str, cwd: Path | None = None) -> None:
        self.process = subprocess.Popen(
            [*LAKEPORT, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, cwd=cwd,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def line(self, timeout: float = WAIT) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output line within {timeout}s") from None

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str]:
        """Send ``signum``, wait for the exit; return the exit code and stderr."""
        self.process.send_signal(signum)
        try:
            _, stderr = self.process.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        return self.process.returncode, stderr

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def wait_until_open(topic: str, consumer: str) -> None:
    """Wait until ``consumer`` is open on ``topic`` (``topics show --json`` lists it)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        result = lakeport("topics", "show", topic, "--json")
        if result.returncode == 0:
            consumers = json.loads(result.stdout)["consumers"]
            if any(c["name"] == consumer and c["active"] for c in consumers):
                return
        time.sleep(0.1)
    raise AssertionError(f"consumer {consumer!r} did not open on {topic!r}")


def consume_payloads(topic: str, *extra: str) -> list[str]:
    result = lakeport("topics", "consume", topic, "--payload-only", "--position", "beginning",
                      *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


# -- the example ------------------------------------------------------------------
def test_produce_then_consume_prints_the_payload():
    produced = lakeport("topics", "produce", "raw-sensor-data", '{"temp": 10}')
    assert produced.returncode == 0, produced.stderr
    consumed = lakeport("topics", "consume", "raw-sensor-data", "--payload-only",
                        "--position", "beginning", "--timeout", "2s")
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout == '{"temp": 10}\n'


def test_produce_print_seqno_and_consume_records():
    first = lakeport("topics", "produce", "readings", '{"temp": 1}', "--print-seqno",
                     "--key", "pump-01", "--header", "site=north")
    assert first.stdout == "1\n"
    more = lakeport("topics", "produce", "readings", "-", "--print-seqno",
                    stdin='{"temp": 2}\n\n{"temp": 3}\n')
    assert more.returncode == 0, more.stderr
    assert more.stdout == "2\n3\n"

    consumed = lakeport("topics", "consume", "readings")
    assert consumed.returncode == 0, consumed.stderr
    records = [json.loads(line) for line in consumed.stdout.splitlines()]
    assert [r["seqno"] for r in records] == [1, 2, 3]
    assert [r["payload"] for r in records] == [{"temp": 1}, {"temp": 2}, {"temp": 3}]
    assert records[0]["producer"] == "cli" and records[0]["time"].endswith("Z")
    assert records[0]["key"] == "pump-01" and records[0]["headers"] == {"site": "north"}


def test_consume_filters_limits_and_string_topics():
    lakeport("topics", "create", "notes", "--format", "string")
    lakeport("topics", "produce", "notes", "-", stdin="pump ok\nvalve stuck\npump hot\n")
    assert consume_payloads("notes", "--match", "^pump") == ["pump ok", "pump hot"]
    assert consume_payloads("notes", "--no-match", "ok") == ["valve stuck", "pump hot"]
    assert consume_payloads("notes", "-n", "1") == ["pump ok"]


def test_a_named_consumer_resumes_at_unread():
    lakeport("topics", "produce", "jobs", "-", stdin="1\n2\n3\n")
    first = lakeport("topics", "consume", "jobs", "--consumer", "worker", "--payload-only",
                     "-n", "2")
    assert first.stdout.splitlines() == ["1", "2"]
    rest = lakeport("topics", "consume", "jobs", "--consumer", "worker", "--payload-only")
    assert rest.stdout.splitlines() == ["3"]


def test_topic_admin_commands():
    created = lakeport("topics", "create", "metrics", "--max-size", "512MB", "--max-age", "7d",
                       "--persistence", "ram")
    assert created.returncode == 0, created.stderr
    assert_user_error(lakeport("topics", "create", "metrics"), "already exists")
    lakeport("topics", "produce", "metrics", '{"v": 1}')
    info = json.loads(lakeport("topics", "show", "metrics", "--json").stdout)
    assert info["max_size"] == 512 << 20 and info["max_age"] == 7 * 86400
    assert info["persistence"] == "ram"
    assert (info["first_seqno"], info["last_seqno"], info["entries"]) == (1, 1, 1)
    lakeport("topics", "produce", "metrics", '{"v": 2}')
    read = lakeport("topics", "consume", "metrics", "--consumer", "reader", "--limit", "1")
    assert read.returncode == 0, read.stderr
    (reader,) = json.loads(lakeport("topics", "show", "metrics", "--json").stdout)["consumers"]
    assert (reader["lag"], reader["oldest_unacked"][:4]) == (1, info["newest"][:4])
    shown = lakeport("topics", "show", "metrics")
    assert "oldest unacked" in shown.stdout and re.search(r"reader .* 1 +\d+\.\ds", shown.stdout)
    listed = lakeport("topics", "list")
    assert listed.returncode == 0 and "metrics" in listed.stdout
    assert lakeport("topics", "delete", "metrics", "--yes").returncode == 0
    assert_user_error(lakeport("topics", "show", "metrics"), "metrics")


# -- bad input: one line, exit 1, nothing stored is harmed ----------------------------------
@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["topics", "produce", "raw-sensor-data", "{not json"], ["not valid JSON"]),
        (["topics", "consume", "raw-sensor-data", "--position", "middle"], ["bad position"]),
        (["topics", "list", "--url", "kafka://broker:9092"],
         ["kafka", "file://", "memory://", "nats://"]),
        (["topics", "create", "bad name!"], ["bad name"]),
        (["topics", "consume", "raw-sensor-data", "--timeout", "soon"], ["--timeout"]),
        (["topics", "consume", "raw-sensor-data", "--bogus"], ["--bogus"]),
        (["flow", "run", "no_such_module:process"], ["no_such_module"]),
    ],
    ids=["invalid-json", "unknown-position", "unknown-scheme", "bad-topic-name", "bad-timeout",
         "unknown-option", "missing-step-module"],
)
def test_bad_input_is_one_line_and_exit_1(args, fragments):
    lakeport("topics", "produce", "raw-sensor-data", '{"temp": 10}')
    assert_user_error(lakeport(*args), *fragments)
    assert consume_payloads("raw-sensor-data") == ['{"temp": 10}']


def test_unreachable_nats_is_one_line():
    assert_user_error(lakeport("topics", "list", "--url", "nats://127.0.0.1:1"), "127.0.0.1:1")


def test_a_bad_stdin_line_is_named_and_the_lines_before_it_are_stored():
    result = lakeport("topics", "produce", "raw-sensor-data", "-",
                      stdin='{"temp": 1}\n{"temp": 2}\n{oops\n{"temp": 4}\n')
    assert_user_error(result, "stdin line 3", "not valid JSON")
    assert consume_payloads("raw-sensor-data") == ['{"temp": 1}', '{"temp": 2}']


def test_a_bad_stdin_line_ends_the_command_while_stdin_is_still_open():
    process = subprocess.Popen(
        [*LAKEPORT, "topics", "produce", "raw-sensor-data", "-"], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert process.stdin is not None and process.stderr is not None
    try:
        process.stdin.write('{"temp": 1}\nnot json\n')
        process.stdin.flush()  # and stdin stays open
        returncode = process.wait(timeout=WAIT)
        stderr = process.stderr.read()
    finally:
        process.kill()
        process.stdin.close()
        process.wait()
    assert "Fatal Python error" not in stderr, stderr
    assert_user_error(subprocess.CompletedProcess([], returncode, "", stderr), "stdin line 2")
    assert consume_payloads("raw-sensor-data") == ['{"temp": 1}']


def test_a_second_exclusive_consumer_is_refused():
    lakeport("topics", "produce", "raw-sensor-data", '{"temp": 10}')
    first = Running("topics", "consume", "raw-sensor-data", "--consumer", "c1", "--follow",
                    "--payload-only")
    try:
        assert first.line() == '{"temp": 10}'
        second = lakeport("topics", "consume", "raw-sensor-data", "--consumer", "c1",
                          "--timeout", "1s")
        assert_user_error(second, "c1", "exclusive")
        code, stderr = first.stop()
        assert code == 0, stderr
    finally:
        first.kill()


# -- following and chained steps ------------------------------------------------------------
def test_step_from_the_cli_and_a_follower_see_each_message_as_it_arrives():
    lakeport("topics", "create", "transformed-data")
    follower = Running("topics", "consume", "transformed-data", "--payload-only", "--follow")
    step = Running("flow", "run", "examples.demo_step:process", cwd=REPO)
    try:
        wait_until_open("transformed-data", f"cli-{follower.process.pid}")
        for temp in (10, 11):
            lakeport("topics", "produce", "raw-sensor-data", json.dumps({"temp": temp}))
            assert json.loads(follower.line()) == {"temp": temp, "processed": True}

        code, stderr = step.stop()
        assert code == 0, stderr
        assert "stopped step process" in stderr
        info = json.loads(lakeport("topics", "show", "raw-sensor-data", "--json").stdout)
        assert {"name": "process", "acked": 2} in [
            {"name": c["name"], "acked": c["acked"]} for c in info["consumers"]
        ]
        code, stderr = follower.stop(signal.SIGINT)
        assert code == 0, stderr
    finally:
        step.kill()
        follower.kill()


def test_a_restarted_step_adds_no_duplicates(tmp_path):
    (tmp_path / "steps.py").write_text(
        "from lakeport.streams.flow import step\n\n"
        "@step(input='in', output='out')\n"
        "def double(payload):\n"
        "    return {'value': payload['value'] * 2}\n"
    )
    lakeport("topics", "produce", "in", "-", stdin="".join(
        json.dumps({"value": v}) + "\n" for v in range(3)))
    for _ in range(2):
        ran = lakeport("flow", "run", "steps:double", "--no-follow", cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr
    assert consume_payloads("out") == [json.dumps({"value": v * 2}) for v in range(3)]


def test_a_failing_transform_exits_2_with_its_traceback_and_acks_nothing(tmp_path):
    (tmp_path / "broken.py").write_text(
        "from lakeport.streams.flow import step\n\n"
        "@step(input='in', output='out')\n"
        "def boom(payload):\n"
        "    raise ValueError('sensor value out of range')\n"
    )
    lakeport("topics", "produce", "in", '{"value": 1}')
    ran = lakeport("flow", "run", "broken:boom", "--no-follow", cwd=tmp_path)
    assert ran.returncode == 2
    assert "Traceback" in ran.stderr and "sensor value out of range" in ran.stderr
    info = json.loads(lakeport("topics", "show", "in", "--json").stdout)
    assert [c["acked"] for c in info["consumers"] if c["name"] == "boom"] == [0]


def test_demo_runs_the_pipeline_into_the_lake_and_ends_with_a_summary(tmp_path: Path):
    from servers import free_port

    result = lakeport("demo", "--duration", "2s", "--rate", "100", "--assets", "2",
                      "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "demo done" in result.stdout
    info = json.loads(lakeport("topics", "show", "transformed-data", "--json").stdout)
    assert info["entries"] > 0
    import duckdb

    [(rows, distinct)] = duckdb.sql(
        f"SELECT count(*), count(DISTINCT seqno) FROM "
        f"read_parquet('{tmp_path}/lake/transformed-data/**/*.parquet')").fetchall()
    assert rows == distinct == info["entries"], "every transformed reading landed once"
    lines = result.stdout.splitlines()
    query = lines[next(i for i, line in enumerate(lines) if line.startswith("Query the lake")) + 1]
    assert "duckdb" not in query, "the query needs only what scripts/demo installs"
    queried = subprocess.run(query, shell=True, cwd=tmp_path, capture_output=True, text=True,
                             timeout=60)
    assert queried.returncode == 0, queried.stderr
    groups = [line.split() for line in queried.stdout.splitlines()]
    assert groups[0] == ["asset", "datastream", "count", "mean"]
    assert [group[:2] for group in groups[1:]] == [
        [asset, datastream] for asset in ("pump-01", "pump-02")
        for datastream in ("pressure", "temperature", "vibration")]
    assert sum(int(group[2]) for group in groups[1:]) == rows
    payload = json.loads(lakeport("topics", "consume", "transformed-data", "--payload-only",
                                  "-n", "1").stdout)
    assert payload["processed"] is True and payload["asset"] == "pump-01"


def test_the_demo_data_can_be_queried_on_the_server_while_the_demo_runs(
        tmp_path: Path, lakeport_home: Path) -> None:
    import httpx

    from servers import free_port

    port = free_port()
    demo = Running("demo", "--duration", "60s", "--rate", "200", "--assets", "2",
                   "--port", str(port), cwd=tmp_path)
    try:
        deadline = time.monotonic() + WAIT
        latest: list = []
        while not latest and time.monotonic() < deadline:
            time.sleep(0.3)
            try:
                settings = json.loads((lakeport_home / "client.json").read_text())
                answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/observations/latest",
                                   params={"sensor": "pump-01"},
                                   headers={"x-api-key": settings["api_key"]}, timeout=5)
            except (OSError, ValueError, KeyError, httpx.HTTPError):
                continue
            if answer.status_code == 200:
                latest = answer.json()["items"]
        assert settings["url"] == f"http://127.0.0.1:{port}"
        assert {item["property"] for item in latest} == {"temperature", "pressure", "vibration"}
        code, stderr = demo.stop(signal.SIGINT)
        assert code == 0, stderr
    finally:
        demo.kill()


def test_help_teaches_with_examples_and_version_prints():
    helped = lakeport("topics", "consume", "--help")
    assert helped.returncode == 0
    assert "--payload-only" in helped.stdout and "lakeport topics consume" in helped.stdout
    assert lakeport("version").stdout.startswith("lakeport ")


# -- the same example against NATS JetStream ------------------------------------------------
@pytest.mark.nats
def test_produce_then_consume_through_nats(nats_url):
    topic = f"e2e-{uuid.uuid4().hex[:12]}"
    try:
        produced = lakeport("topics", "produce", topic, '{"temp": 10}', "--url", nats_url)
        assert produced.returncode == 0, produced.stderr
        consumed = lakeport("topics", "consume", topic, "--payload-only", "--position",
                            "beginning", "--timeout", "2s", "--url", nats_url)
        assert consumed.returncode == 0, consumed.stderr
        assert consumed.stdout == '{"temp": 10}\n'
    finally:
        lakeport("topics", "delete", topic, "--yes", "--url", nats_url)


def test_environment_selects_the_engine(tmp_path):
    url = (tmp_path / "other-streams").as_uri()
    env_result = subprocess.run(
        [*LAKEPORT, "topics", "produce", "elsewhere", '{"a": 1}'],
        env={**os.environ, "LAKEPORT_STREAMS": url}, capture_output=True, text=True, timeout=60,
    )
    assert env_result.returncode == 0, env_result.stderr
    assert consume_payloads("elsewhere", "--url", url) == ['{"a": 1}']
    assert_user_error(lakeport("topics", "show", "elsewhere"), "elsewhere")

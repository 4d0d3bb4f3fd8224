"""The task service keeps its promises when processes die (issue 14, "Reliability").

* ``kill -9`` of the server (``lakeport serve --workers 0``) while runs are queued and running
  on a separate ``lakeport worker``: after a restart on the same store and lake every run
  succeeds, no run's process runs twice at the same time, and a cron task's slots are each
  fired once, none skipped, across two restarts (one while a slot came due). SQLite and
  PostgreSQL.
* ``kill -9`` of a worker mid-run: the run is ``lost`` within ``task_lost_after``, retried on
  the second worker, the killed attempt's partial log is kept, and its task process is gone.
* Two workers in network namespaces of their own (``ip netns`` + veth, made here; skipped
  where the machine does not allow it) share the runs of one server and take over each
  other's run when one is killed.

Task processes note what they do in a journal outside their run folder: ``start``, ``tick``
(every 50 ms) and ``end`` lines with the run, their pid and the time; a process killed with
SIGKILL writes no ``end``, so its interval ends at its last tick.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from servers import free_port
from task_helpers import alive, store_key
from waiting import wait_until

API = "/api/v1/tasks"
CLI = [sys.executable, "-m", "lakeport.cli"]
LOST_AFTER = 3.0
PERIOD = 20
"""Seconds between the cron task's slots (``*/20 * * * * *``: a seconds field first)."""
ENDED = ("succeeded", "failed", "cancelled", "lost")

JOURNALED = b"""import os, sys, time
journal = os.environ["JOURNAL"]
run, pid = os.environ["LAKEPORT_RUN_ID"], os.getpid()
net = os.readlink("/proc/self/ns/net")


def note(what):
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{what} {run} {pid} {time.time():.6f} {net}\\n".encode())
    finally:
        os.close(fd)


note("start")
print(f"attempt {os.environ['LAKEPORT_ATTEMPT']} of run {run} started", flush=True)
seconds = float(os.environ.get("LAKEPORT_PARAM_SECONDS", "1"))
if os.environ.get("HOLD_FIRST") and os.environ["LAKEPORT_ATTEMPT"] == "1":
    seconds = 600
end = time.time() + seconds
while time.time() < end:
    note("tick")
    time.sleep(0.05)
note("end")
print("done", flush=True)
"""


# -- processes ------------------------------------------------------------------------------
def cli_env(home: Path, store_url: str | None = None) -> dict[str, str]:
    env = {**os.environ, "LAKEPORT_HOME": str(home)}
    if store_url is not None:
        env["LAKEPORT_STORE"] = store_url
    for name in ("LAKEPORT_URL", "LAKEPORT_API_KEY"):
        env.pop(name, None)
    return env



def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def start_server(home: Path, store_url: str, port: int, host: str = "127.0.0.1",
                 log: Path | None = None) -> subprocess.Popen[bytes]:
    """``lakeport serve --workers 0 --task-lost-after 3`` as its own process, once it answers."""
    out = open(log or home.parent / "serve.log", "ab")  # noqa: SIM115 - the child owns it
    process = subprocess.Popen(
        [*CLI, "serve", "--host", host, "--port", str(port), "--workers", "0",
         "--task-lost-after", f"{LOST_AFTER:g}"],
        env=cli_env(home, store_url), stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    out.close()
    url = f"http://{host}:{port}"
    assert wait_until(lambda: healthy(url) or process.poll() is not None, 60), \
        "lakeport serve did not answer /health"
    assert process.poll() is None, f"lakeport serve exited: {(log or home.parent / 'serve.log')}"
    return process


def start_worker(folder: Path, url: str, key: str, name: str, concurrency: int,
                 netns: str | None = None) -> subprocess.Popen[bytes]:
    """A ``lakeport worker`` process (inside network namespace ``netns`` when given)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = open(folder / "worker.log", "ab")  # noqa: SIM115 - the child owns it
    argv = [*CLI, "worker", "--url", url, "--api-key", key, "--name", name, "--runtimes", "py",
            "--concurrency", str(concurrency), "--folder", str(folder / "work")]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    process = subprocess.Popen(argv, env=cli_env(folder / "home"), stdin=subprocess.DEVNULL,
                               stdout=out, stderr=out)
    out.close()
    return process


def kill_9(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


@contextlib.contextmanager
def killed_at_exit(processes: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    """``kill -9`` of every process in ``processes`` (as it is then) when the block ends."""
    try:
        yield
    finally:
        for process in processes:
            with contextlib.suppress(Exception):
                kill_9(process)



# -- the API --------------------------------------------------------------------------------
def deploy(http: httpx.Client, task: str, journal: Path, **spec: Any) -> None:
    spec = {"runtime": "py", "retries": {"count": 5, "backoff": 0},
            "env": {"JOURNAL": str(journal), **spec.pop("env", {})}, **spec}
    answer = http.put(f"{API}/projects/plant/tasks/{task}",
                      data={"spec": json.dumps(spec)},
                      files={"executable": ("main.py", JOURNALED)})
    assert answer.status_code == 201, answer.text


def start(http: httpx.Client, task: str, **parameters: str) -> int:
    answer = http.post(f"{API}/projects/plant/tasks/{task}/start",
                       json={"parameters": parameters})
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def run_of(http: httpx.Client, run_id: int) -> dict[str, Any]:
    answer = http.get(f"{API}/runs/{run_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def runs_of(http: httpx.Client, task: str) -> list[dict[str, Any]]:
    answer = http.get(f"{API}/projects/plant/tasks/{task}/runs", params={"limit": 1000})
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def all_ended(http: httpx.Client, run_ids: list[int]) -> bool:
    try:
        return all(run_of(http, run_id)["state"] in ENDED for run_id in run_ids)
    except httpx.TransportError:
        return False


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- the journal ------------------------------------------------------------------------------
def journal_lines(journal: Path) -> list[tuple[str, int, int, float, str]]:
    if not journal.exists():
        return []
    lines = []
    for line in journal.read_text().splitlines():
        what, run, pid, at, net = line.split(" ", 4)
        lines.append((what, int(run), int(pid), float(at), net))
    return lines


def started(journal: Path) -> set[tuple[int, int]]:
    """(run, pid) of every process that started."""
    return {(run, pid) for what, run, pid, _, _ in journal_lines(journal) if what == "start"}


def overlaps(journal: Path) -> list[str]:
    """Processes of the same run whose lifetimes (first to last line) overlap."""
    spans: dict[int, dict[int, list[float]]] = defaultdict(dict)
    for _, run, pid, at, _ in journal_lines(journal):
        span = spans[run].setdefault(pid, [at, at])
        span[0], span[1] = min(span[0], at), max(span[1], at)
    found = []
    for run, by_pid in spans.items():
        ordered = sorted((span[0], span[1], pid) for pid, span in by_pid.items())
        for (_, end, pid), (begin, _, other) in itertools.pairwise(ordered):
            if begin <= end:
                found.append(f"run {run}: pid {other} started at {begin:.3f} while pid {pid} "
                             f"ran until {end:.3f}")
    return found


# -- 1. kill -9 of the server -----------------------------------------------------------------
def _sleep_until(moment: float) -> None:
    """Wait for a wall-clock time (a cron slot is a time of the clock: nothing to poll)."""
    time.sleep(max(moment - time.time(), 0))


def _server_killed_twice(store_url: str, tmp_path: Path, user_key: str, worker_key: str
                         ) -> None:
    """Runs on a worker and a cron task across two ``kill -9`` of the server on ``store_url``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    home = tmp_path / "home"
    journal = tmp_path / "journal.txt"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    processes: list[subprocess.Popen[bytes]] = []
    with killed_at_exit(processes), \
            httpx.Client(base_url=url, headers={"x-api-key": user_key}, timeout=30) as http:
        processes.append(start_server(home, store_url, port))
        processes.append(start_worker(tmp_path / "w1", url, worker_key, "w1", concurrency=3))
        assert http.post(f"{API}/projects", json={"name": "plant"}).status_code == 201
        deploy(http, "job", journal)
        # The cron task's first slot is the next one of the clock; the server is killed a
        # moment before a slot (down across it) and again right after the next server fired it.
        if PERIOD - time.time() % PERIOD < 13:
            _sleep_until((time.time() // PERIOD + 1) * PERIOD + 0.2)
        created = time.time()
        deploy(http, "tick", journal, env={"LAKEPORT_PARAM_SECONDS": "0.2"},
               schedule={"kind": "cron", "expression": f"*/{PERIOD} * * * * *",
                         "catchup": "all"})
        first_slot = (created // PERIOD + 1) * PERIOD
        slot = first_slot

        _sleep_until(slot - 10)
        run_ids = [start(http, "job", seconds="2.5") for _ in range(8)]
        assert wait_until(lambda: len(started(journal)) >= 3, 20), "no run started"
        kill_9(processes[0])
        killed_at = time.time()
        assert killed_at < slot - 0.5, "the first kill came after the slot it was meant for"
        running = {run for run, _ in started(journal)}
        assert running and set(run_ids) - running, "runs both running and queued at the kill"

        _sleep_until(slot + 0.3)
        processes.append(start_server(home, store_url, port))
        assert wait_until(lambda: any(r["slot"] and parse_time(r["slot"]) == slot
                                      for r in runs_of(http, "tick")), 20), \
            f"the slot missed while the server was down did not fire: {runs_of(http, 'tick')}"
        kill_9(processes[-1])
        assert time.time() < slot + PERIOD - 5, "the second kill came a slot late"
        processes.append(start_server(home, store_url, port))

        assert wait_until(lambda: all_ended(http, run_ids), 90), \
            [run_of(http, r)["state"] for r in run_ids]
        runs = [run_of(http, run_id) for run_id in run_ids]
        assert [r["state"] for r in runs] == ["succeeded"] * len(runs), runs
        assert not overlaps(journal), overlaps(journal)

        # The cron task: one run per slot, no slot left out, each one ran
        assert wait_until(lambda: all(r["state"] in ENDED for r in runs_of(http, "tick")), 30)
        tick = runs_of(http, "tick")
        slots = sorted(parse_time(r["slot"]) for r in tick)
        assert len(slots) == len(set(slots)), f"a slot fired twice: {slots}"
        assert slots == [first_slot + PERIOD * n for n in range(len(slots))], \
            f"slots from {first_slot} skipped or out of place: {slots}"
        assert slot in slots
        assert {r["state"] for r in tick} == {"succeeded"}, tick


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_kill_9_of_the_server_loses_no_run_doubles_none_and_keeps_cron_slots(
        tmp_path: Path) -> None:
    """On SQLite and PostgreSQL at once: both wait for the same slot of the clock."""
    from server_fixtures import postgres_database

    without_postgres = None
    with contextlib.ExitStack() as stack:
        stores = {"sqlite": f"sqlite:///{tmp_path / 'sqlite' / 'store' / 'lakeport.db'}"}
        try:
            stores["postgresql"] = stack.enter_context(
                contextlib.contextmanager(postgres_database)())
        except pytest.skip.Exception as exc:  # a failure instead under REQUIRE_SERVICES=1
            without_postgres = str(exc)
        keys = {kind: (store_key(url, "alice"), store_key(url, "w", worker=True))
                for kind, url in stores.items()}  # here: migrating stores in threads fails
        with ThreadPoolExecutor(len(stores)) as pool:
            done = {kind: pool.submit(_server_killed_twice, url, tmp_path / kind, *keys[kind])
                    for kind, url in stores.items()}
        for kind, future in done.items():
            try:
                future.result()
            except AssertionError as exc:
                raise AssertionError(f"on {kind}: {exc}") from exc
    if without_postgres:
        pytest.skip(f"passed on SQLite; not run on PostgreSQL: {without_postgres}")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_run_that_ended_while_the_server_was_down_is_reported_when_it_is_back(
        tmp_path: Path) -> None:
    """Without retries: the result of a process that ended during the outage is applied once
    the server is back, so the run succeeds with one attempt (not lost, not run again)."""
    store_url = f"sqlite:///{tmp_path / 'store' / 'lakeport.db'}"
    home, journal = tmp_path / "home", tmp_path / "journal.txt"
    user_key, worker_key = store_key(store_url, "alice"), store_key(store_url, "w", worker=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    processes: list[subprocess.Popen[bytes]] = []
    with killed_at_exit(processes), \
            httpx.Client(base_url=url, headers={"x-api-key": user_key}, timeout=30) as http:
        processes.append(start_server(home, store_url, port))
        processes.append(start_worker(tmp_path / "w1", url, worker_key, "w1", concurrency=1))
        assert http.post(f"{API}/projects", json={"name": "plant"}).status_code == 201
        deploy(http, "job", journal, retries={"count": 0})
        run_id = start(http, "job", seconds="1")
        assert wait_until(lambda: started(journal), 30), run_of(http, run_id)
        kill_9(processes[0])
        down_at = time.time()
        assert wait_until(lambda: any(line[0] == "end" for line in journal_lines(journal)), 10)
        _sleep_until(down_at + 2 * LOST_AFTER)  # an outage longer than task_lost_after
        processes.append(start_server(home, store_url, port))
        assert wait_until(lambda: all_ended(http, [run_id]), 30), run_of(http, run_id)
        run = run_of(http, run_id)
        assert (run["state"], run["attempts"]) == ("succeeded", 1), run
        assert len(started(journal)) == 1


# -- 2. kill -9 of a worker -----------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_kill_9_of_a_worker_loses_its_run_in_time_and_it_is_retried_on_the_other(
        store_url: str, tmp_path: Path) -> None:
    from server_fixtures import platform_settings, running_platform

    journal = tmp_path / "journal.txt"
    settings = platform_settings(store_url, tmp_path, workers=0, task_lost_after=LOST_AFTER)
    processes: list[subprocess.Popen[bytes]] = []
    with running_platform(settings) as platform, platform.client() as http, \
            killed_at_exit(processes):
        key = store_key(store_url, "w", worker=True)
        workers = {name: start_worker(tmp_path / name, platform.url, key, name, concurrency=1)
                   for name in ("w1", "w2")}
        processes.extend(workers.values())
        assert http.post(f"{API}/projects", json={"name": "plant"}).status_code == 201
        deploy(http, "hold", journal, env={"HOLD_FIRST": "1"})
        run_id = start(http, "hold")
        assert wait_until(lambda: started(journal), 30), run_of(http, run_id)
        ((_, pid),) = started(journal)
        assert wait_until(lambda: "attempt 1 of run" in http.get(
            f"{API}/runs/{run_id}/logs").text, 10), "the partial log reached the server"
        first = run_of(http, run_id)["attempt_list"][0]
        victim = first["worker"]
        (other,) = set(workers) - {victim}

        kill_9(workers[victim])
        killed_at = time.time()
        assert wait_until(lambda: run_of(http, run_id)["attempt_list"][0]["state"] == "lost",
                          LOST_AFTER + 10), run_of(http, run_id)
        lost = next(e for e in run_of(http, run_id)["events"]
                    if e["state"] == "lost" and e["attempt"] == 1)
        assert parse_time(lost["at"]) - killed_at <= LOST_AFTER + 1.5, \
            f"lost {parse_time(lost['at']) - killed_at:.1f} s after the kill"
        assert wait_until(lambda: not alive(pid), 10), "the killed worker's task still runs"

        assert wait_until(lambda: run_of(http, run_id)["state"] in ENDED, 60), \
            run_of(http, run_id)
        run = run_of(http, run_id)
        assert run["state"] == "succeeded", run
        assert [(a["number"], a["worker"], a["state"]) for a in run["attempt_list"]] == \
            [(1, victim, "lost"), (2, other, "succeeded")], run
        assert not overlaps(journal), overlaps(journal)

        partial = http.get(f"{API}/runs/{run_id}/logs", params={"attempt": 1})
        assert partial.status_code == 200
        assert partial.text == f"attempt 1 of run {run_id} started\n"
        assert http.get(f"{API}/runs/{run_id}/logs").text == \
            f"attempt 2 of run {run_id} started\ndone\n"
        filed = f"/api/v1/files/tasks/plant/hold/{run_id}/attempt-1/stdout.log"
        assert wait_until(lambda: http.get(filed).status_code == 200, 15), \
            "the lost attempt's log was not filed in the lake"
        assert http.get(filed).text == partial.text


@pytest.mark.timeout(60)
def test_a_claim_whose_worker_went_away_takes_no_run(tmp_path: Path) -> None:
    """A worker killed while its long poll waits on the server must not be handed the next
    run (it would be lost once more, on a dead worker, before a live one gets it)."""
    from server_fixtures import platform_settings, running_platform

    settings = platform_settings(f"sqlite:///{tmp_path / 'store.db'}", tmp_path, workers=0,
                                 task_lost_after=LOST_AFTER)
    with running_platform(settings) as platform, platform.client() as http:
        key = store_key(settings.store_url, "w", worker=True)
        assert http.post(f"{API}/projects", json={"name": "plant"}).status_code == 201
        deploy(http, "job", tmp_path / "journal.txt")
        with pytest.raises(httpx.TimeoutException):  # the worker goes away mid-poll
            httpx.post(f"{platform.url}{API}/claim", headers={"x-api-key": key}, timeout=1,
                       json={"worker": "gone", "runtimes": ["py"], "wait": 10})
        run_id = start(http, "job")
        assert wait_until(lambda: run_of(http, run_id)["attempts"] > 0, 1.5) is False, \
            run_of(http, run_id)["attempt_list"]


# -- 3. workers in network namespaces of their own --------------------------------------------
def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def two_hosts() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """Two network namespaces, each joined to this one by a veth pair; (the address the server
    listens on, [(namespace, its address)]). The second namespace reaches the server's
    address through its own veth (a route via the host side). Skips where not permitted."""
    if sys.platform != "linux" or shutil.which("ip") is None:
        pytest.skip("network namespaces need Linux and iproute2's ip")
    tag = uuid.uuid4().hex[:6]
    octet = 200 + int(tag, 16) % 50
    third = int(tag[:2], 16) % 120 * 2
    names = [f"lp-{tag}-{n}" for n in (1, 2)]
    made: list[str] = []
    links: list[str] = []
    try:
        try:
            _ip("netns", "add", names[0])
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot make a network namespace here: {exc.stderr.strip()}")
        made.append(names[0])
        _ip("netns", "add", names[1])
        made.append(names[1])
        hosts = []
        server = f"10.{octet}.{third}.1"
        for n, name in enumerate(names):
            outside, inside = f"lph{tag}{n}", f"lpn{tag}{n}"
            net = f"10.{octet}.{third + n}"
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            links.append(outside)
            _ip("link", "set", inside, "netns", name)
            _ip("addr", "add", f"{net}.1/24", "dev", outside)
            _ip("link", "set", outside, "up")
            _ip("-n", name, "addr", "add", f"{net}.2/24", "dev", inside)
            _ip("-n", name, "link", "set", inside, "up")
            _ip("-n", name, "link", "set", "lo", "up")
            _ip("-n", name, "route", "add", "default", "via", f"{net}.1")
            hosts.append((name, f"{net}.2"))
        yield server, hosts
    finally:
        for link in links:
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("link", "del", link)
        for name in made:
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "del", name)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_workers_on_two_network_namespaces_share_runs_and_take_over(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'store' / 'lakeport.db'}"
    home = tmp_path / "home"
    journal = tmp_path / "journal.txt"
    processes: list[subprocess.Popen[bytes]] = []
    with two_hosts() as (address, hosts), killed_at_exit(processes):
        user_key = store_key(store_url, "alice")
        worker_key = store_key(store_url, "w", worker=True)
        port = free_port()
        url = f"http://{address}:{port}"
        processes.append(start_server(home, store_url, port, host=address))
        workers = {}
        for netns, _ in hosts:
            # one run at a time: a worker with a free slot has a claim waiting on the server
            # when it is killed (see test_a_claim_whose_worker_went_away_takes_no_run)
            workers[netns] = start_worker(tmp_path / netns, url, worker_key, netns,
                                          concurrency=1, netns=netns)
        processes.extend(workers.values())
        with httpx.Client(base_url=url, headers={"x-api-key": user_key}, timeout=30) as http:
            assert http.post(f"{API}/projects", json={"name": "plant"}).status_code == 201
            deploy(http, "job", journal)
            run_ids = [start(http, "job", seconds="1") for _ in range(8)]
            assert wait_until(lambda: all_ended(http, run_ids), 60), \
                [run_of(http, r)["state"] for r in run_ids]
            runs = [run_of(http, run_id) for run_id in run_ids]
            assert [r["state"] for r in runs] == ["succeeded"] * len(runs), runs
            by_worker = defaultdict(list)
            for run in runs:
                by_worker[run["attempt_list"][-1]["worker"]].append(run["id"])
            assert set(by_worker) == set(workers), f"runs not spread: {dict(by_worker)}"
            host_net = os.readlink("/proc/self/ns/net")
            nets = {net for *_, net in journal_lines(journal)}
            assert len(nets) == 2 and host_net not in nets, \
                f"tasks ran in {nets}, not in the two namespaces"

            deploy(http, "hold", journal, env={"HOLD_FIRST": "1"})
            run_id = start(http, "hold")
            assert wait_until(lambda: run_of(http, run_id)["state"] == "running" and
                              run_of(http, run_id)["attempt_list"][0]["pid"], 30)
            victim = run_of(http, run_id)["attempt_list"][0]["worker"]
            (other,) = set(workers) - {victim}
            kill_9(workers[victim])
            assert wait_until(lambda: run_of(http, run_id)["state"] in ENDED, 60), \
                run_of(http, run_id)
            run = run_of(http, run_id)
            assert run["state"] == "succeeded", run
            assert [(a["worker"], a["state"]) for a in run["attempt_list"]] == \
                [(victim, "lost"), (other, "succeeded")], run
            assert not overlaps(journal), overlaps(journal)

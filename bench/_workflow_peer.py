"""The peer of ``bench/workflows.py``: the same graph of no-op ``sh`` tasks through Prefect 3.

Two halves. Imported by the bench (lakeport's venv): :func:`prefect_python` makes Prefect's
own virtualenv once under ``~/.cache/lakeport-bench/prefect-venv`` (so lakeport's venv never
gets Prefect's dependencies) and :func:`run_peer` runs this file there. Run as a script in
that venv: ``python _workflow_peer.py WIDTH DEPTH`` runs the graph in a flow on Prefect's
default task runner (threads, 8 workers), an ephemeral API server on a temporary SQLite file,
and prints one JSON object: the flow's wall time, the tasks' own time, and Prefect's version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path(os.environ.get("LAKEPORT_BENCH_CACHE", Path.home() / ".cache" / "lakeport-bench"))
VENV = CACHE / "prefect-venv"
REQUIREMENT = "prefect>=3,<4"
SLOTS = 8


def upstream(level: int, index: int, width: int) -> list[tuple[int, int]]:
    """The nodes that (level, index) runs after: the same index and the next one (wrapping)
    on the level before; none on level 0. The bench's shape, shared with lakeport's side."""
    if level == 0:
        return []
    return sorted({(level - 1, index), (level - 1, (index + 1) % width)})


# -- the bench's side (lakeport's venv) --------------------------------------------------------
def prefect_python(say: object = print) -> tuple[Path | None, str]:
    """Prefect's venv's python, installed once (``python -m venv`` + pip from the machine's
    index); None and why when it cannot be had."""
    python = VENV / "bin" / "python"
    check = [str(python), "-c", "import prefect; print(prefect.__version__)"]
    if python.exists():
        done = subprocess.run(check, capture_output=True, text=True, timeout=120)
        if done.returncode == 0:
            return python, done.stdout.strip()
    say(f"peer: installing {REQUIREMENT} into {VENV} (once)")  # type: ignore[operator]
    CACHE.mkdir(parents=True, exist_ok=True)
    steps = [[sys.executable, "-m", "venv", "--clear", str(VENV)],
             [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              REQUIREMENT]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:
            return None, f"{' '.join(step[-2:])} failed: {done.stderr.strip()[-200:]}"
    done = subprocess.run(check, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        return None, f"prefect does not import: {done.stderr.strip()[-200:]}"
    return python, done.stdout.strip()


def run_peer(width: int, depth: int, folder: Path, timeout: float = 1800,
             say: object = print) -> dict[str, object]:
    """Run the graph through Prefect in its venv; its JSON answer, or {"error": why}."""
    python, version = prefect_python(say)
    if python is None:
        return {"error": version}
    home = folder / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PREFECT_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ALLOW_EPHEMERAL_MODE="true",
               PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
               PREFECT_LOGGING_LEVEL="WARNING", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_TO_API_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180")
    say(f"peer: Prefect {version}, {width * depth:,} tasks")  # type: ignore[operator]
    try:
        done = subprocess.run([str(python), __file__, str(width), str(depth)], env=env,
                              cwd=folder, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"Prefect did not finish the graph in {timeout:.0f} s",
                "version": version}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": f"Prefect run failed ({done.returncode}): "
                         f"{(done.stderr or done.stdout).strip()[-300:]}", "version": version}
    return json.loads(lines[-1])


# -- Prefect's side (its venv) -----------------------------------------------------------------
def main(width: int, depth: int) -> None:
    import prefect
    from prefect import flow, task
    from prefect.task_runners import ThreadPoolTaskRunner

    durations: list[float] = []

    @task(name="noop")
    def noop() -> None:
        began = time.perf_counter()
        subprocess.run(["sh", "-c", "true"], check=True)
        durations.append(time.perf_counter() - began)

    @flow(name="warm-up", task_runner=ThreadPoolTaskRunner(max_workers=SLOTS))
    def warm_up() -> None:
        noop.submit().result()

    @flow(name="bench", task_runner=ThreadPoolTaskRunner(max_workers=SLOTS),
          log_prints=False)
    def graph() -> None:
        futures: dict[tuple[int, int], object] = {}
        for level in range(depth):
            for index in range(width):
                futures[level, index] = noop.with_options(name=f"n{level}_{index}").submit(
                    wait_for=[futures[up] for up in upstream(level, index, width)])
        for future in futures.values():
            future.result()  # type: ignore[attr-defined]

    warm = time.perf_counter()
    warm_up()  # the ephemeral API server starts here, outside the timing
    started = time.perf_counter()
    durations.clear()
    graph()
    wall = time.perf_counter() - started
    print(json.dumps({"version": prefect.__version__, "tasks": len(durations),
                      "wall_s": wall, "task_s": sum(durations),
                      "startup_s": started - warm, "slots": SLOTS}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))

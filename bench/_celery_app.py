"""The Celery side of ``bench/tasks.py``: one task that runs ``python -u main.py`` in a folder
of its own as a process of its own, as a lakeport ``py`` run is (the same interpreter, the same
trivial script; lakeport forks it from its launcher's interpreter, Celery starts it afresh).

The broker comes from ``LAKEPORT_BENCH_AMQP``; results go back over the broker (``rpc://``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from celery import Celery

BROKER = os.environ.get("LAKEPORT_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
QUEUE = os.environ.get("LAKEPORT_BENCH_QUEUE", "lakeport-bench")
SCRIPT = b""

app = Celery("lakeport_bench", broker=BROKER, backend="rpc://")
app.conf.update(task_default_queue=QUEUE, worker_hijack_root_logger=False,
                broker_connection_retry_on_startup=True, task_serializer="json",
                result_serializer="json", accept_content=["json"])


@app.task(name="lakeport_bench.run_main")
def run_main() -> int:
    """Write main.py into a fresh folder, run it as its own process, return its exit code."""
    folder = tempfile.mkdtemp(prefix="celery-run-")
    try:
        with open(os.path.join(folder, "main.py"), "wb") as handle:
            handle.write(SCRIPT)
        done = subprocess.run([sys.executable, "-u", "main.py"], cwd=folder,
                              stdin=subprocess.DEVNULL, capture_output=True, check=False)
        return done.returncode
    finally:
        shutil.rmtree(folder, ignore_errors=True)

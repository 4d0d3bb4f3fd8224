"""``kill -9`` of the runner while it loads an output table leaves the table exactly as it
was before the load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from _components import FIXTURES, platform


def test_kill_9_during_an_output_load_leaves_the_table_as_before(tmp_path: Path) -> None:
    p = platform(tmp_path)
    p.load("out.c-main.big", "id,v\n1,old\n2,old\n", primary_key=["id"])
    before = p.rows("out.c-main.big")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "storage": {"output": {"tables": [{"source": "big.csv",
                                           "destination": "out.c-main.big"}]}},
        "parameters": {"csv_rows": {"path": "out/tables/big.csv", "rows": 3_000_000}}}))
    env = {**os.environ, "LAKEPORT_HOME": str(tmp_path / "home")}
    runner = subprocess.Popen(
        [sys.executable, "-m", "lakeport.cli", "component", "run", str(FIXTURES / "scripted"),
         "--config", str(config), "--tables-root", str(tmp_path / "lake")],
        env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert runner.stderr is not None
        seen = []
        for line in runner.stderr:
            seen.append(line)
            if line.startswith("loading out/tables/big.csv into out.c-main.big"):
                runner.send_signal(signal.SIGKILL)
                break
        assert runner.wait(60) == -signal.SIGKILL, "".join(seen)
    finally:
        runner.kill()
        runner.wait()
    assert p.rows("out.c-main.big") == before
    assert p.tables.info("out.c-main.big").rows == 2

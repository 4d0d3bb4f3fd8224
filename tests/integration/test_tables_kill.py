"""``kill -9`` in the middle of a big load leaves the table exactly as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from lakeport.tables import TableStore
from waiting import wait_until

pytestmark = pytest.mark.crash

T = "in.c-main.readings"
LOADER = textwrap.dedent("""
    import sys
    from lakeport.tables import TableStore
    store = TableStore(sys.argv[1])
    print("loading", flush=True)
    store.load(sys.argv[2], sys.argv[3], incremental=sys.argv[4] == "incremental")
    print("loaded", flush=True)
""")


def read_bytes(pid: int) -> int:
    """Bytes the process has read so far (``rchar`` of /proc/<pid>/io)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


@pytest.mark.parametrize("mode", ["full", "incremental"])
def test_kill_9_during_a_load_leaves_the_table_as_before(tmp_path: Path, mode: str) -> None:
    if not Path("/proc/self/io").exists():
        pytest.skip("needs /proc/<pid>/io to see the load under way")
    store = TableStore(tmp_path / "lake")
    store.create(T, ["id", "site", "value", "note"], primary_key=["id"])
    store.load(T, pa.table({"id": ["a", "b"], "site": ["n", "s"], "value": ["1", "2"],
                            "note": ["x", "y"]}))
    before = store.info(T)
    snapshot = sorted(store.read(T).to_pylist(), key=lambda r: r["id"])

    count = 2_000_000
    big = tmp_path / "big.csv"
    pacsv.write_csv(pa.table({
        "id": pa.array([str(i) for i in range(count)]),
        "site": pa.array(["north"] * count), "value": pa.array([f"{i}.5" for i in range(count)]),
        "note": pa.array(["a note with, a comma"] * count)}), big)
    size = big.stat().st_size

    process = subprocess.Popen(
        [sys.executable, "-c", LOADER, str(store.root), T, str(big), mode],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "loading"
        start = read_bytes(process.pid)
        assert wait_until(lambda: process.poll() is not None
                          or read_bytes(process.pid) - start > size // 4, 60), \
            "the load never got going"
        assert process.poll() is None, "the load finished before it could be killed"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    assert process.returncode == -signal.SIGKILL

    after = TableStore(store.root).info(T)
    assert (after.version, after.rows) == (before.version, before.rows)
    assert sorted(store.read(T).to_pylist(), key=lambda r: r["id"]) == snapshot
    # the table keeps working: the next load commits as usual
    result = store.load(T, pa.table({"id": ["c"], "site": ["e"], "value": ["3"],
                                     "note": ["z"]}), incremental=True)
    assert result.version == before.version + 1
    assert store.info(T).rows == before.rows + 1

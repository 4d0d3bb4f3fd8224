"""Importing lakeport, creating a client or opening an engine leaves the process as it was;
the ``lakeport`` command (and a program that calls ``lakeport.tune_process()``) tunes it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from lakeport.client.config import ClientConfig
from lakeport.client.http import READ_SIZE, Http

REPO = Path(__file__).resolve().parents[2]

STATE = """
import json, os, sys
import httpcore
import lakeport.allocator as allocator
import pyarrow
print(json.dumps({
    "environ": dict(os.environ),
    "read_num_bytes": httpcore.AsyncHTTP11Connection.READ_NUM_BYTES,
    "tuned": allocator._tuned,
    "mallopt": allocator._applied,
    "arrow_pool": pyarrow.default_memory_pool().backend_name,
}))
"""


def _run(code: str, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("MALLOC_") and k not in (
                   "ARROW_DEFAULT_MEMORY_POOL", "LAKEPORT_MALLOC_TUNING")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**environ, **env}, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _before() -> dict:
    """A fresh interpreter that never imported lakeport."""
    return _run(STATE.replace("import lakeport.allocator as allocator\n", "")
                .replace('"tuned": allocator._tuned,', "").replace(
                    '"mallopt": allocator._applied,', ""))


def test_importing_lakeport_and_using_it_as_a_library_changes_nothing(tmp_path: Path) -> None:
    before = _before()
    after = _run(f"""
import asyncio, os, sys
environ = dict(os.environ)
import httpcore
import lakeport
client = lakeport.Client("http://127.0.0.1:1", "k")
sync = lakeport.SyncClient("http://127.0.0.1:1", "k")
async def engine():
    async with lakeport.open_engine({str(tmp_path.as_uri())!r}) as engine:
        await engine.create_topic("t")
asyncio.run(engine())
assert dict(os.environ) == environ
{STATE}""")
    assert after["environ"] == before["environ"]
    assert after["read_num_bytes"] == before["read_num_bytes"]
    assert after["arrow_pool"] == before["arrow_pool"]
    assert after["tuned"] is False and after["mallopt"] is False


def test_a_library_user_opts_in_with_tune_process() -> None:
    after = _run(f"import lakeport\nassert lakeport.tune_process()\n{STATE}")
    assert after["tuned"] is True and after["mallopt"] is True
    assert after["arrow_pool"] == "system"
    assert "ARROW_DEFAULT_MEMORY_POOL" not in after["environ"]


COMMAND = """
import sys
sys.argv = [{argv0!r}, "version"]
from lakeport.cli.main import main
try:
    main()
except SystemExit as exc:
    assert exc.code == 0, exc.code
"""


def test_the_lakeport_command_tunes_its_own_process_only() -> None:
    before = _before()
    # as the console script starts it: tuned before anything imports pyarrow
    after = _run(COMMAND.format(argv0=str(REPO / ".venv" / "bin" / "lakeport")) + STATE)
    assert after["tuned"] is True and after["mallopt"] is True
    assert after["arrow_pool"] == "system"
    assert after["environ"] == before["environ"], "children inherit nothing"
    assert after["read_num_bytes"] == before["read_num_bytes"]
    # main() called another way tunes too
    after = _run(COMMAND.format(argv0="other") + STATE)
    assert after["tuned"] is True and after["mallopt"] is True


def test_python_m_lakeport_cli_is_the_lakeport_command_too() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys\n"
         "sys.orig_argv = [sys.executable, '-m', 'lakeport.cli', 'version']\n"
         "import lakeport.allocator as allocator, pyarrow, os\n"
         "print(allocator._tuned, allocator._applied, pyarrow.default_memory_pool().backend_name,"
         " 'ARROW_DEFAULT_MEMORY_POOL' in os.environ)"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")
             and k not in ("ARROW_DEFAULT_MEMORY_POOL", "LAKEPORT_MALLOC_TUNING")})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "system", "False"]


def test_lakeport_malloc_tuning_0_leaves_the_command_untuned() -> None:
    before = _before()
    after = _run(COMMAND.format(argv0="lakeport") + "import lakeport\n"
                 "assert not lakeport.tune_process()\n" + STATE, LAKEPORT_MALLOC_TUNING="0")
    assert after["tuned"] is False and after["mallopt"] is False
    assert after["arrow_pool"] == before["arrow_pool"]


async def test_the_client_reads_a_large_body_in_big_chunks() -> None:
    """The 1 MB read size holds for lakeport's client (httpcore's own default is 64 KB)."""
    import httpcore

    body = bytes(8 << 20)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    http = Http(ClientConfig(url=f"http://127.0.0.1:{port}", retries=0))
    try:
        async with server, http.stream("GET", "/big") as response:
            sizes = [len(chunk) async for chunk in response.aiter_raw()]
    finally:
        await http.aclose()
    assert sum(sizes) == len(body)
    assert httpcore.AsyncHTTP11Connection.READ_NUM_BYTES < READ_SIZE
    assert max(sizes) > httpcore.AsyncHTTP11Connection.READ_NUM_BYTES, sizes[:20]

"""The issue's "done when" flow as a user runs it: ``lakeport serve`` in the background, API keys
from ``lakeport keys create``, then sensors, a CSV of 100,000 observations, a DataFrame through
the client, a CSV download, and a file put, found by tag and shared with one user but not
another."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e._cli import LAKEPORT, assert_user_error
from lakeport.client import SyncClient
from servers import lakeport_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms
ROWS = 100_000


def lakeport(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LAKEPORT, *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def key_for(user: str) -> str:
    """A key made as a user makes it: ``lakeport keys create``."""
    result = lakeport("keys", "create", "--user", user)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key.startswith("lpk_")
    return key


def quick_key(user: str) -> str:
    """A key made in this process (saves starting a command for each user)."""
    import asyncio

    from lakeport.server.settings import default_store_url
    from lakeport.server.store import Store
    from lakeport.server.store.users import create_key

    async def make() -> str:
        async with Store(default_store_url()) as store:
            return await create_key(store, user)

    return asyncio.run(make())


@pytest.fixture
def server(lakeport_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``lakeport serve`` on a free port with everything under the test's lakeport home."""
    for name in ("LAKEPORT_STORE", "LAKEPORT_LAKE", "LAKEPORT_URL", "LAKEPORT_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with lakeport_server([*LAKEPORT, "serve"]) as (url, _):
        monkeypatch.setenv("LAKEPORT_URL", url)
        yield url


def ok(*args: str) -> subprocess.CompletedProcess[str]:
    result = lakeport(*args)
    assert result.returncode == 0, (args, result.stderr)
    return result


def test_the_done_when_flow(server: str, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob, carol = key_for("alice"), quick_key("bob"), quick_key("carol")
    monkeypatch.setenv("LAKEPORT_API_KEY", alice)

    ok("properties", "create", "temp", "--unit", "degC")
    ok("sensors", "create", "pump-1", "--description", "inlet pump")

    data = tmp_path / "readings.csv"
    with data.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["time", "temp"])
        writer.writerows([T0 + i * 1000, 20 + (i % 100) / 10] for i in range(ROWS))
    uploaded = ok("observations", "upload", str(data), "--sensor", "pump-1", "--json")
    assert '"stored": 100000' in uploaded.stdout
    # one reading a second from 05:30 IST on 1 January: IST days, not UTC days
    days = ok("observations", "aggregate", "--sensor", "pump-1", "--bucket", "1d",
              "--tz", "Asia/Kolkata", "--fn", "count,sum", "--json")
    assert [(d["bucket"], d["count"]) for d in json.loads(days.stdout)] == [
        ("2025-12-31T18:30:00.000Z", 66_600), ("2026-01-01T18:30:00.000Z", 33_400)]

    with SyncClient.from_env() as client:
        frame = client.observations.query("pump-1", "temp", format="dataframe")
    assert len(frame) == ROWS
    assert frame["time"].iloc[-1].value // 1_000_000 == T0 + (ROWS - 1) * 1000

    saved = tmp_path / "range.csv"
    ok("observations", "download", str(saved), "--sensor", "pump-1", "--property", "temp",
       "--start", str(T0), "--end", str(T0 + ROWS * 1000))
    with saved.open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == ROWS
    assert rows[0]["sensor"] == "pump-1" and float(rows[1]["value"]) == 20.1

    blob = tmp_path / "model.bin"
    blob.write_bytes(os.urandom(300_000))
    ok("files", "put", str(blob), "models/model.bin", "--tag", "model", "--meta", "stage=test")
    got = tmp_path / "got.bin"
    ok("files", "get", "models/model.bin", str(got))
    assert got.read_bytes() == blob.read_bytes()
    assert "models/model.bin" in ok("files", "search", "--tag", "model").stdout

    ok("files", "share", "models/model.bin", "bob")
    shared = subprocess.run([*LAKEPORT, "files", "get", "models/model.bin", "-",
                             "--api-key", bob], capture_output=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert shared.returncode == 0, shared.stderr
    assert shared.stdout == blob.read_bytes()
    assert_user_error(lakeport("files", "get", "models/model.bin", str(tmp_path / "no.bin"),
                               "--api-key", carol))
    assert not (tmp_path / "no.bin").exists()


def test_grants_and_operators_from_the_command_line(server: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob = quick_key("alice"), quick_key("bob")
    ops = key_for_admin("ops")
    monkeypatch.setenv("LAKEPORT_API_KEY", alice)
    ok("properties", "create", "temp")
    ok("sensors", "create", "pump-2")
    data = tmp_path / "bob.csv"
    data.write_text("time,temp\n2026-01-01T00:00:00Z,20.5\n")
    upload = ("observations", "upload", str(data), "--sensor", "pump-2", "--api-key", bob)
    assert_user_error(lakeport(*upload), "pump-2", "write")

    ok("grants", "add", "sensor", "pump-2", "--user", "bob", "--permission", "write")
    assert "bob" in ok("grants", "list", "sensor", "pump-2").stdout
    ok(*upload)
    ok("grants", "remove", "sensor", "pump-2", "--user", "bob")
    assert_user_error(lakeport(*upload), "pump-2")
    assert_user_error(lakeport("grants", "add", "sensor", "pump-2", "--user", "bob",
                               "--permission", "own"), "bad permission 'own'")

    assert_user_error(lakeport("sensors", "delete", "pump-2", "--api-key", bob), "admin")
    ok("observations", "delete", "--sensor", "pump-2", "--yes", "--api-key", ops)
    ok("sensors", "delete", "pump-2", "--api-key", ops)  # an operator reaches everything


def key_for_admin(user: str) -> str:
    """An operator's key, made as an operator makes it: ``lakeport keys create --admin``."""
    result = lakeport("keys", "create", "--user", user, "--admin")
    assert result.returncode == 0 and "operator" in result.stderr, result.stderr
    return result.stdout.strip()


def test_serve_on_a_taken_port_is_one_line() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = lakeport("serve", "--port", str(port))
    assert_user_error(result, f"127.0.0.1:{port}", "--port")

"""``kill -9`` of the server loses nothing it acknowledged, on SQLite and on PostgreSQL:
observation batches are all there or not at all, an uploaded file survives whole, and an
upload cut by the kill leaves no file behind."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from servers import lakeport_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

API = "/api/v1"
BATCH = 1_000
T0 = 1_767_225_600_000


def serving(home: Path, store_url: str
            ) -> AbstractContextManager[tuple[str, subprocess.Popen[str]]]:
    """``lakeport serve`` as its own process (so it can be killed) on a free port."""
    env = {**os.environ, "LAKEPORT_HOME": str(home), "LAKEPORT_STORE": store_url}
    return lakeport_server([sys.executable, "-m", "lakeport.cli", "serve", "--workers", "0"],
                           env=env)


def key(home: Path, store_url: str) -> str:
    env = {**os.environ, "LAKEPORT_HOME": str(home), "LAKEPORT_STORE": store_url}
    made = subprocess.run([sys.executable, "-m", "lakeport.cli", "keys", "create", "--user",
                           "plc"], env=env, capture_output=True, text=True, check=True)
    return made.stdout.strip()


def test_acknowledged_observations_and_files_survive_kill_9(store_url: str,
                                                            tmp_path: Path) -> None:
    home = tmp_path / "home"
    api_key = key(home, store_url)
    headers = {"x-api-key": api_key}
    acked = 0
    body = os.urandom(3 << 20)
    with serving(home, store_url) as (url, process), \
            httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        http.post(f"{API}/properties", json={"name": "flow", "data_type": "number"})
        http.post(f"{API}/sensors", json={"name": "meter-1"})
        put = http.put(f"{API}/files/kept/data.bin", content=body)
        assert put.status_code == 201

        stop = threading.Event()

        def insert() -> None:
            nonlocal acked
            batch = 0
            while not stop.is_set():
                rows = [[T0 + (batch * BATCH + i) * 1000, float(i)] for i in range(BATCH)]
                try:
                    answer = http.post(f"{API}/observations/batch", json={
                        "sensor": "meter-1", "components": ["time", "flow"], "dataArray": rows})
                except httpx.TransportError:
                    return  # the server is gone: this batch was not acknowledged
                if answer.status_code != 201:
                    return
                acked += BATCH
                batch += 1

        writer = threading.Thread(target=insert)
        writer.start()
        while acked < 20 * BATCH:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        writer.join(timeout=30)
        stop.set()

    with serving(home, store_url) as (url, _), \
            httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        count = http.get(f"{API}/observations/count",
                         params={"sensor": "meter-1", "property": "flow"}).json()["count"]
        assert count >= acked, "an acknowledged batch is missing"
        assert count % BATCH == 0 and count <= acked + BATCH, "a batch landed in part"
        kept = http.get(f"{API}/files/kept/data.bin")
        assert kept.status_code == 200 and kept.content == body
        info = http.get(f"{API}/info/kept/data.bin").json()
        assert info["checksum"] == "sha256:" + hashlib.sha256(body).hexdigest()


def test_an_upload_cut_by_kill_9_leaves_no_file(store_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    api_key = key(home, store_url)
    headers = {"x-api-key": api_key}
    with serving(home, store_url) as (url, process):
        sent = threading.Event()

        def chunks() -> Iterator[bytes]:
            for index in range(1_000):
                if index == 8:
                    sent.set()
                yield b"x" * (1 << 20)
                time.sleep(0.01)

        def upload() -> None:
            try:
                httpx.put(f"{url}{API}/files/cut/big.bin", content=chunks(), headers=headers,
                          timeout=60)
            except httpx.TransportError:
                pass

        uploader = threading.Thread(target=upload)
        uploader.start()
        assert sent.wait(30)
        process.send_signal(signal.SIGKILL)
        uploader.join(timeout=30)

    with serving(home, store_url) as (url, _), \
            httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        assert http.get(f"{API}/info/cut/big.bin").status_code == 404
        assert http.get(f"{API}/search", params={"name": "*big*"}).json()["items"] == []

"""The vendor's own export sample runs unchanged and is compared with lakeport's exporter.

``tests/fixtures/seed_export_app`` is the export application of the vendor's documentation:
its ``main.py`` exactly as printed there, its ``app.yaml`` and ``Dockerfile``, and the two
modules it imports written in the vendor's style (a DuckDB buffer, an uploader with
azure-storage-blob). ``lakeport app run`` installs its requirements into its own environment
and serves it the vendor's stream; ``lakeport app test simulator`` feeds it; it lands Parquet
files in Azurite. lakeport's own exporter app reads the same topic into another container.
Then both are killed with SIGKILL mid-stream and restarted: lakeport's lake has exactly one
row per reading, the sample's is measured (what its design duplicates or loses) and printed.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from _azurite import Azurite, azurite_server
from _kelvin_run import LAKEPORT, AppRun, Lakeport, payloads

from waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

SEED = Path(__file__).parent.parent / "fixtures" / "seed_export_app"
SENT = re.compile(r"sent (\d+) messages?")
WAIT = 120.0


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with azurite_server(tmp_path_factory.mktemp("azurite")) as server:
        yield server


def new_container(azurite: Azurite, prefix: str) -> str:
    from azure.storage.blob import BlobServiceClient

    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.create_container(name)
    return name


def parquet_rows(azurite: Azurite, container: str) -> list[dict[str, Any]]:
    """Every row of every Parquet blob in ``container``."""
    import pyarrow.parquet as pq
    from azure.storage.blob import ContainerClient

    rows: list[dict[str, Any]] = []
    with ContainerClient.from_connection_string(azurite.connection_string, container) as client:
        for blob in client.list_blobs():
            if blob.name.endswith(".parquet"):
                data = client.download_blob(blob.name).readall()
                rows.extend(pq.read_table(io.BytesIO(data)).to_pylist())
    return rows


@dataclass
class Lakes:
    """The two apps, each landing in its own container."""

    lakeport: Lakeport
    azurite: Azurite
    seed: Path
    exporter: Path
    seed_container: str
    lake_container: str

    def start(self) -> tuple[AppRun, AppRun]:
        vendor = self.lakeport.start_app(
            self.seed, "--set", "upload_interval=1", "--set", "batch_size=300",
            AZURE_BLOB_ENDPOINT=self.azurite.account_url)
        options = {"account_url": self.azurite.account_url, "account_key": self.azurite.key}
        ours = self.lakeport.start_app(
            self.exporter, "--set", f"to=abfs://{self.lake_container}@{self.azurite.account}/plant",
            "--set", f"sink_options={json.dumps(options)}", "--set", "batch_rows=300",
            "--set", "max_delay=1")
        return vendor, ours

    def simulate(self, seconds: float, rate: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*LAKEPORT, "app", "test", "simulator", str(self.seed), "--duration",
             f"{seconds}s", "--rate", f"{rate}/s", "--assets", "3"],
            env=self.lakeport.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def vendor_rows(self) -> list[tuple[int, str, str]]:
        return [(ms(r["timestamp"]), r["asset"], r["datastream"])
                for r in parquet_rows(self.azurite, self.seed_container)]

    def lake_rows(self) -> list[tuple[int, str, str]]:
        return [(ms(r["time"]), r["asset"], r["datastream"])
                for r in parquet_rows(self.azurite, self.lake_container)]


@pytest.fixture
def lakes(kelvin_home: Path, azurite: Azurite, tmp_path: Path) -> Lakes:
    lakeport = Lakeport(kelvin_home, (tmp_path / "streams").as_uri(), tmp_path)
    seed = Path(shutil.copytree(SEED, tmp_path / "azure-data-lake-uploader"))
    seed_container = new_container(azurite, "seed")
    for name, value in (("azure-account-name", azurite.account),
                        ("azure-account-key", azurite.key),
                        ("azure-storage-container", seed_container)):
        lakeport.run("secret", "create", name, "--value", value)
    created = lakeport.run("app", "create", "lake-feed", "--type", "exporter", "--dir",
                           str(tmp_path))
    assert created.returncode == 0, created.stderr
    return Lakes(lakeport, azurite, seed, tmp_path / "lake-feed", seed_container,
                 new_container(azurite, "lake"))


def settled(probe: Any, quiet: float = 4.0, timeout: float = WAIT) -> Any:
    """``probe()`` once it has not changed for ``quiet`` seconds."""
    state = {"last": probe(), "since": time.monotonic()}

    def still() -> bool:
        now = probe()
        if now != state["last"]:
            state.update(last=now, since=time.monotonic())
        return time.monotonic() - state["since"] >= quiet

    assert wait_until(still, timeout), f"still changing after {timeout:.0f}s"
    return state["last"]


def ms(value: Any) -> int:
    """A time (ISO text, or a datetime; naive is UTC) in epoch milliseconds."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def sent_readings(lakes: Lakes) -> list[tuple[int, str, str]]:
    return [(ms(p["time"]), p["asset"], p["datastream"])
            for p in payloads(lakes.lakeport.url, "asset-data")]


def measured(rows: list[tuple[int, str, str]], sent: list[tuple[int, str, str]]
             ) -> dict[str, int]:
    """Rows against readings: how many, how many repeated, how many readings have no row.

    Readings are counted by (time in ms, asset, datastream) with their multiplicity: two
    readings of one asset's datastream in the same millisecond are two readings, so a row
    is repeated only beyond the readings with its key."""
    keys, wanted = Counter(rows), Counter(sent)
    return {"readings": len(sent), "rows": len(rows),
            "duplicates": sum((keys - wanted).values()),
            "missing": sum((wanted - keys).values())}


def sent_count(process: subprocess.Popen[str]) -> int:
    stdout, stderr = process.communicate(timeout=WAIT)
    assert process.returncode == 0, stderr
    match = SENT.search(stdout)
    assert match, stdout
    return int(match.group(1))


def test_the_vendor_sample_runs_unchanged_and_only_lakeports_lake_is_exact_after_kill_9(
        lakes: Lakes, capsys: pytest.CaptureFixture[str]) -> None:
    vendor, ours = lakes.start()
    report: dict[str, dict[str, dict[str, int]]] = {}
    try:
        # 1. as the sample is meant to run
        sent = sent_count(lakes.simulate(3, 100))
        readings = sent_readings(lakes)
        assert len(readings) == sent
        assert wait_until(lambda: ours.alive() and len(lakes.lake_rows()) >= sent, WAIT), \
            ours.output()
        assert wait_until(lambda: vendor.alive() and lakes.vendor_rows(), WAIT), \
            f"the sample landed nothing in Azurite:\n{vendor.output()}"
        vendor_rows = settled(lakes.vendor_rows)
        report["running"] = {"vendor sample": measured(vendor_rows, readings),
                             "lakeport exporter": measured(lakes.lake_rows(), readings)}
        assert report["running"]["lakeport exporter"] == {
            "readings": sent, "rows": sent, "duplicates": 0, "missing": 0}

        # 2. kill -9 of both mid-stream, then a restart
        feeding = lakes.simulate(8, 100)
        before = len(lakes.lake_rows())
        assert wait_until(lambda: len(lakes.lake_rows()) >= before + 200, WAIT)
        for run in (vendor, ours):
            run.process.send_signal(signal.SIGKILL)
            run.process.wait(timeout=30)
        landed = len(lakes.vendor_rows())
        vendor, ours = lakes.start()
        sent += sent_count(feeding)
        readings = sent_readings(lakes)
        assert len(readings) == sent
        assert wait_until(lambda: ours.alive() and len(lakes.lake_rows()) >= sent, WAIT), \
            ours.output()
        assert wait_until(lambda: vendor.alive() and len(lakes.vendor_rows()) > landed, WAIT), \
            f"the restarted sample landed nothing more:\n{vendor.output()}"
        vendor_rows = settled(lakes.vendor_rows, quiet=8)
        lake = settled(lakes.lake_rows)
        assert vendor.alive() and ours.alive()
        report["after kill -9"] = {"vendor sample": measured(vendor_rows, readings),
                                   "lakeport exporter": measured(lake, readings)}
    finally:
        for run in (vendor, ours):
            run.stop()
    with capsys.disabled():
        print("\n" + json.dumps(report, indent=1))
    assert report["after kill -9"]["lakeport exporter"] == {
        "readings": sent, "rows": sent, "duplicates": 0, "missing": 0}

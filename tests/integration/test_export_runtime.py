"""The exporter on memory:// and file:// topics with the local sink: batches, keys, acks only
after the sink confirmed, retries, terminal errors, dead letters, restarts and the CLI
(including an S3 sink on moto's server that rejects the credentials)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
from _engines import memory_or_file_engine  # noqa: F401 (the engine fixture)

from lakeport.errors import Terminal, Transient
from lakeport.export.config import ExportConfig
from lakeport.export.runtime import Exporter
from lakeport.export.sinks import Batch
from lakeport.export.sinks.local import LocalSink
from lakeport.export.status import export_dir, read_status
from lakeport.streams import Consumer, Engine, open_engine
from waiting import eventually, wait_until

pytestmark = pytest.mark.timeout(60)
TOPIC = "transformed-data"


def reading(i: int) -> dict[str, Any]:
    return {"asset": f"pump-{i % 4}", "datastream": "temperature", "value": float(i),
            "time": "2026-04-05T06:07:08Z", "type": "number"}


async def produce(engine: Engine, count: int, start: int = 0, topic: str = TOPIC) -> None:
    async with engine.producer("sim", topic) as producer:
        await producer.produce_many([reading(i) for i in range(start, start + count)])


def config(lake: Path, **overrides: Any) -> ExportConfig:
    fields: dict[str, Any] = {"topics": [TOPIC], "to": lake.as_uri(), "name": "lake",
                              "until_idle": 0.3, "retry_initial": 0.01}
    fields.update(overrides)
    return ExportConfig(**fields)


def files(lake: Path) -> list[str]:
    return sorted(p.name for p in lake.rglob("*.parquet"))


def lake_rows(lake: Path) -> tuple[int, int]:
    return duckdb.sql(f"SELECT count(*), count(DISTINCT seqno) "
                      f"FROM read_parquet('{lake}/**/*.parquet')").fetchall()[0]


async def acked(engine: Engine, topic: str = TOPIC) -> int:
    info = await engine.topic_info(topic)
    return next((c.acked for c in info.consumers if c.name == "lake"), 0)


async def test_batches_are_cut_by_rows_with_deterministic_keys(engine: Engine,
                                                               tmp_path: Path) -> None:
    await produce(engine, 2500)
    lake = tmp_path / "lake"
    status = await Exporter(config(lake, batch_rows=1000), engine=engine).run()
    assert files(lake) == [f"{TOPIC}-1-1000.parquet", f"{TOPIC}-1001-2000.parquet",
                           f"{TOPIC}-2001-2500.parquet"]
    assert (lake / TOPIC / "date=2026-04-05").is_dir()
    assert lake_rows(lake) == (2500, 2500)
    assert (status.rows, status.files, status.batches, status.lag) == (2500, 3, 3, 0)
    assert await acked(engine) == 2500
    assert read_status("lake")["rows"] == 2500


async def test_a_partial_batch_is_written_after_max_delay(engine: Engine, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    stop = asyncio.Event()
    exporter = Exporter(config(lake, until_idle=None, max_delay=0.2), engine=engine)
    task = asyncio.create_task(exporter.run(stop))
    await produce(engine, 5)
    assert await eventually(lambda: files(lake)), "the first partial batch to be written"
    assert files(lake) == [f"{TOPIC}-1-5.parquet"]
    assert not task.done()
    await produce(engine, 3, start=5)
    assert await eventually(lambda: len(files(lake)) == 2), \
        f"the second partial batch to be written: {files(lake)}"
    stop.set()
    await task
    assert files(lake) == [f"{TOPIC}-1-5.parquet", f"{TOPIC}-6-8.parquet"]


async def test_stop_flushes_the_current_batch(engine: Engine, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    lake = tmp_path / "lake"
    stop = asyncio.Event()
    opened: list[Consumer] = []
    consumer = engine.consumer

    def watched_consumer(*args: Any, **kwargs: Any) -> Consumer:
        opened.append(consumer(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(engine, "consumer", watched_consumer)  # to see how far it has read
    exporter = Exporter(config(lake, until_idle=None, max_delay=3600), engine=engine)
    task = asyncio.create_task(exporter.run(stop))
    await produce(engine, 7)
    assert await eventually(lambda: opened and opened[0].position == 8), \
        "the exporter to read all 7 messages into its current batch"
    assert files(lake) == [] and await acked(engine) == 0  # max_delay keeps the batch open
    stop.set()
    status = await task
    assert status.rows == 7 and files(lake) == [f"{TOPIC}-1-7.parquet"]
    assert await acked(engine) == 7


class FlakySink(LocalSink):
    """Fails the first ``failures`` writes, and records the ack state at every write."""

    def __init__(self, url: str, failures: int, error: type[Exception] = Transient,
                 engine: Engine | None = None) -> None:
        super().__init__(url)
        self.failures = failures
        self.error = error
        self.engine = engine
        self.acked_at_write: list[int] = []

    async def write(self, batch: Batch, fmt: str = "parquet") -> list[str]:
        if self.engine is not None:
            self.acked_at_write.append(await acked(self.engine))
        if self.failures:
            self.failures -= 1
            raise self.error("the store is down for maintenance")
        return await super().write(batch, fmt)


async def test_acks_only_after_the_sink_confirmed_and_transient_errors_lose_nothing(
        engine: Engine, tmp_path: Path) -> None:
    await produce(engine, 300)
    lake = tmp_path / "lake"
    sink = FlakySink(lake.as_uri(), failures=3, engine=engine)
    status = await Exporter(config(lake, batch_rows=100), engine=engine, sink=sink).run()
    assert lake_rows(lake) == (300, 300)
    assert sink.acked_at_write == [0, 0, 0, 0, 100, 200]
    assert status.rows == 300 and "down for maintenance" in (status.last_error or "")
    assert await acked(engine) == 300


async def test_a_terminal_error_stops_the_exporter_with_nothing_acked(engine: Engine,
                                                                     tmp_path: Path) -> None:
    await produce(engine, 10)
    lake = tmp_path / "lake"
    sink = FlakySink(lake.as_uri(), failures=1, error=Terminal)
    with pytest.raises(Terminal, match="down for maintenance"):
        await Exporter(config(lake), engine=engine, sink=sink).run()
    assert await acked(engine) == 0
    assert files(lake) == []
    status = read_status("lake")
    assert status["state"] == "failed" and "down for maintenance" in status["last_error"]


async def test_the_healthcheck_fails_fast_on_an_unwritable_folder(engine: Engine,
                                                                  tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(Terminal, match="a-file"):
        await Exporter(config(blocker / "lake"), engine=engine).run()


async def test_payloads_that_are_not_readings_go_to_the_dead_letter_topic(
        engine: Engine, tmp_path: Path) -> None:
    await produce(engine, 3)
    async with engine.producer("other", TOPIC) as producer:
        await producer.produce({"asset": "pump-1"})  # seqno 4: no datastream, no value
    await produce(engine, 2, start=3)
    lake = tmp_path / "lake"
    status = await Exporter(config(lake), engine=engine).run()
    assert files(lake) == [f"{TOPIC}-1-6.parquet"]
    assert lake_rows(lake) == (5, 5) and status.dead_letters == 1
    async with engine.consumer("check", "dead-letter.export.lake", position="beginning",
                               follow=False) as consumer:
        letters = [m async for m in consumer]
    assert len(letters) == 1
    headers = letters[0].headers or {}
    assert headers["dead-letter-seqno"] == "4" and headers["dead-letter-topic"] == TOPIC
    assert headers["dead-letter-producer"] == "other"
    assert "datastream" in headers["dead-letter-reason"]
    assert orjson.loads(letters[0].data) == {"asset": "pump-1"}


async def test_after_a_crash_the_first_batch_ends_where_the_recorded_intent_ends(
        engine: Engine, tmp_path: Path) -> None:
    await produce(engine, 10)
    folder = export_dir("lake")
    (folder / f"intent-{TOPIC}.json").write_bytes(orjson.dumps({"first": 1, "last": 3}))
    lake = tmp_path / "lake"
    await Exporter(config(lake, batch_rows=100), engine=engine).run()
    assert files(lake) == [f"{TOPIC}-1-3.parquet", f"{TOPIC}-4-10.parquet"]
    assert not (folder / f"intent-{TOPIC}.json").exists()


async def test_a_stale_intent_is_ignored(engine: Engine, tmp_path: Path) -> None:
    await produce(engine, 10)
    lake = tmp_path / "lake"
    await Exporter(config(lake, batch_rows=4), engine=engine).run()
    (export_dir("lake") / f"intent-{TOPIC}.json").write_bytes(
        orjson.dumps({"first": 5, "last": 8}))
    await produce(engine, 5, start=10)
    await Exporter(config(lake, batch_rows=100), engine=engine).run()
    assert f"{TOPIC}-11-15.parquet" in files(lake)
    assert lake_rows(lake) == (15, 15)


async def test_several_topics_and_asset_partitions(engine: Engine, tmp_path: Path) -> None:
    await produce(engine, 8)
    await produce(engine, 4, topic="other-data")
    lake = tmp_path / "lake"
    await Exporter(config(lake, topics=[TOPIC, "other-data"], partition_by_asset=True),
                   engine=engine).run()
    assert len(list((lake / TOPIC / "date=2026-04-05").glob("asset=*"))) == 4
    assert (lake / "other-data" / "date=2026-04-05" / "asset=pump-0" /
            "other-data-1-4.parquet").exists()
    assert lake_rows(lake) == (12, 8)


def lakeport(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lakeport.cli", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def fill_topic(tmp_path: Path, count: int) -> str:
    """``count`` readings in a file:// streams folder under ``tmp_path``; its URL."""
    streams = (tmp_path / "streams").as_uri()

    async def fill() -> None:
        async with open_engine(streams) as opened:
            await produce(opened, count)

    asyncio.run(fill())
    return streams


def test_cli_exports_and_shows_status(tmp_path: Path) -> None:
    streams = fill_topic(tmp_path, 50)
    lake = tmp_path / "lake"
    done = lakeport("export", "run", "--topic", TOPIC, "--to", lake.as_uri(), "--name", "lake",
                    "--format", "csv", "--until-idle", "0.5s", "--url", streams)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in lake.rglob("*.csv")) == [f"{TOPIC}-1-50.csv"]
    shown = lakeport("export", "status", "lake")
    assert shown.returncode == 0 and "rows     50 in 1 batches" in shown.stdout
    record = orjson.loads(lakeport("export", "status", "lake", "--json").stdout)
    assert (record["state"], record["rows"], record["files"], record["lag"]) == \
        ("stopped", 50, 1, 0)
    missing = lakeport("export", "status", "nobody")
    assert missing.returncode == 1 and "no exporter named 'nobody'" in missing.stderr


def test_cli_unknown_scheme_lists_the_known_ones() -> None:
    done = lakeport("export", "run", "--topic", TOPIC, "--to", "nosuch://x")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "nosuch" in lines[0] and "s3://" in lines[0]
    assert "lakeport[s3]" in lines[0] and "Traceback" not in done.stderr


def consumers(streams: str) -> dict[str, dict[str, Any]]:
    """The topic's consumers by name, as ``lakeport topics show --json`` prints them."""
    shown = lakeport("topics", "show", TOPIC, "--json", "--url", streams)
    assert shown.returncode == 0, shown.stderr
    return {c["name"]: c for c in orjson.loads(shown.stdout)["consumers"]}


def test_cli_rejected_s3_secret_is_one_error_line_and_acks_nothing(tmp_path: Path) -> None:
    """moto checks signatures once the bucket, user and key exist (its first 3 requests)."""
    import boto3
    from _moto import MOTO_KEY, MOTO_REGION, MOTO_SECRET, moto_server

    streams = fill_topic(tmp_path, 5)
    before = consumers(streams)
    with moto_server(auth_actions=3) as url:
        admin = {"endpoint_url": url, "region_name": MOTO_REGION,
                 "aws_access_key_id": MOTO_KEY, "aws_secret_access_key": MOTO_SECRET}
        boto3.client("s3", **admin).create_bucket(Bucket="plant-lake")
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="exporter")
        key_id = iam.create_access_key(UserName="exporter")["AccessKey"]["AccessKeyId"]
        env = dict(os.environ, AWS_ENDPOINT_URL=url, AWS_DEFAULT_REGION=MOTO_REGION,
                   AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY="not-the-secret")
        done = lakeport("export", "run", "--topic", TOPIC, "--to", "s3://plant-lake/x",
                        "--name", "lake", "--until-idle", "0.5s", "--url", streams, env=env)

    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "not-the-secret" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert "rejected the credentials for s3://plant-lake" in errors[0]
    assert "SignatureDoesNotMatch" in errors[0]
    assert "lake" not in before
    assert consumers(streams).get("lake", {"acked": 0})["acked"] == 0
    drained = lakeport("export", "run", "--topic", TOPIC, "--to", (tmp_path / "lake").as_uri(),
                       "--name", "lake", "--until-idle", "0.5s", "--url", streams)
    assert drained.returncode == 0, drained.stderr
    assert files(tmp_path / "lake") == [f"{TOPIC}-1-5.parquet"]


def test_cli_bad_option_is_one_line() -> None:
    done = lakeport("export", "run", "--topic", TOPIC, "--to", "file:///tmp/x",
                    "--batch-rows", "0")
    assert done.returncode == 1 and "batch_rows" in done.stderr


def acked_on(streams: str) -> int:
    """What the exporter ``lake`` has acked on the topic, looked up from this process."""

    async def look() -> int:
        async with open_engine(streams) as opened:
            return await acked(opened)

    return asyncio.run(look())


def test_sigterm_flushes_the_current_batch_before_exit(tmp_path: Path) -> None:
    """The exporter reads 25 messages: 1-20 fill a batch, which lands and is acked; 21-25
    wait in the current batch (max_delay 1h) until SIGTERM flushes them."""
    streams = fill_topic(tmp_path, 25)
    lake = tmp_path / "lake"
    process = subprocess.Popen(
        [sys.executable, "-m", "lakeport.cli", "export", "run", "--topic", TOPIC,
         "--to", lake.as_uri(), "--name", "lake", "--max-delay", "1h", "--batch-rows", "20",
         "--url", streams],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # the reader cuts the next batch before the writer has landed this one
        assert wait_until(lambda: acked_on(streams) == 20, 30), \
            f"the first batch to be acked (acked {acked_on(streams)})"
        assert files(lake) == [f"{TOPIC}-1-20.parquet"]
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err.decode()
    assert files(lake) == [f"{TOPIC}-1-20.parquet", f"{TOPIC}-21-25.parquet"]
    assert acked_on(streams) == 25
    assert read_status("lake")["state"] == "stopped"

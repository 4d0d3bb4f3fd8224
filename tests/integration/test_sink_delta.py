"""The delta+file:// and delta+s3:// sinks: a local Delta table and one on moto's S3 server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import boto3
import duckdb
import polars as pl
import pyarrow as pa
import pytest
from _batches import make_batch
from _moto import MOTO_KEY, MOTO_REGION, MOTO_SECRET, moto_server
from deltalake import DeltaTable, write_deltalake

from lakeport.errors import Invalid, NotFound, Terminal
from lakeport.export.config import ExportConfig
from lakeport.export.runtime import Exporter
from lakeport.export.sinks import delta as delta_sink
from lakeport.export.sinks import open_sink
from lakeport.export.sinks.delta import DeltaSink
from lakeport.export.status import read_status
from lakeport.streams import open_engine

pytestmark = pytest.mark.timeout(60)


async def test_local_table_appends_one_commit_per_batch(tmp_path: Path) -> None:
    url = (tmp_path / "readings").as_uri().replace("file:", "delta+file:", 1)
    async with open_sink(url) as sink:
        assert isinstance(sink, DeltaSink)
        await sink.healthcheck()  # no table yet: the folder is enough
        await sink.write(make_batch(1, 4))
        await sink.write(make_batch(5, 8))
        await sink.healthcheck()  # the table it created has the expected schema

    table = DeltaTable(str(tmp_path / "readings"))
    assert table.version() == 1  # two commits: versions 0 and 1
    assert table.metadata().partition_columns == ["date"]
    assert table.transaction_version("lakeport/asset-data") == 8
    rows = pa.table(table.to_pyarrow_table()).sort_by("seqno")
    assert rows["seqno"].to_pylist() == list(range(1, 9))
    assert rows["date"].to_pylist()[2:4] == [date(2026, 5, 1), date(2026, 5, 2)]
    assert rows["value_number"].to_pylist() == [float(s) for s in range(1, 9)]


async def test_retried_batch_is_a_no_op(tmp_path: Path) -> None:
    url = f"delta+file://{tmp_path}/readings"
    async with open_sink(url) as sink:
        await sink.write(make_batch(1, 4))
        await sink.write(make_batch(5, 8))
        version = DeltaTable(str(tmp_path / "readings")).version()
        await sink.write(make_batch(5, 8))  # a retry after a crash before the ack
        await sink.write(make_batch(1, 4))  # an older batch: also already there
    table = DeltaTable(str(tmp_path / "readings"))
    assert table.version() == version
    assert pa.table(table.to_pyarrow_table()).num_rows == 8


async def test_topics_keep_their_own_transactions(tmp_path: Path) -> None:
    async with open_sink(f"delta+file://{tmp_path}/t") as sink:
        await sink.write(make_batch(1, 4, topic="line-a"))
        await sink.write(make_batch(1, 4, topic="line-b"))  # same seqnos, other topic
    assert pa.table(DeltaTable(str(tmp_path / "t")).to_pyarrow_table()).num_rows == 8


async def test_duckdb_reads_the_table(tmp_path: Path) -> None:
    async with open_sink(f"delta+file://{tmp_path}/readings") as sink:
        await sink.write(make_batch(1, 8))
    connection = duckdb.connect()
    connection.register("readings", DeltaTable(str(tmp_path / "readings")).to_pyarrow_dataset())
    count, total = connection.execute("select count(*), sum(seqno) from readings").fetchone()
    assert (count, total) == (8, 36)


async def test_readers_get_the_date_partition_as_a_date(tmp_path: Path) -> None:
    """deltalake, DuckDB and polars all read ``date`` as a DATE, equal to the UTC day of time."""
    async with open_sink(f"delta+file://{tmp_path}/readings") as sink:
        await sink.write(make_batch(1, 8))
    table = DeltaTable(str(tmp_path / "readings"))
    types = {field.name: str(field.type) for field in table.schema().fields}
    assert types["date"] == 'PrimitiveType("date")'
    assert table.metadata().partition_columns == ["date"]
    assert pa.table(table.to_pyarrow_table()).schema.field("date").type == pa.date32()

    connection = duckdb.connect()
    connection.register("readings", table.to_pyarrow_dataset())
    assert connection.execute(
        "select typeof(date), date, count(*) from readings group by all order by date"
    ).fetchall() == [("DATE", date(2026, 5, 1), 3), ("DATE", date(2026, 5, 2), 5)]
    assert connection.execute(
        "select count(*) from readings where date = DATE '2026-05-02'"
        " and cast(time AT TIME ZONE 'UTC' as date) = date"
    ).fetchone() == (5,)

    frame = pl.read_delta(str(tmp_path / "readings"))
    assert frame.schema["date"] == pl.Date
    assert frame.filter(pl.col("date") == date(2026, 5, 1)).height == 3


async def test_write_returns_the_data_files_of_its_commit(tmp_path: Path) -> None:
    """The locations a write returns are the Parquet files its commit added (what the
    exporter's status counts as files); a batch already in the table adds none."""
    async with open_sink(f"delta+file://{tmp_path}/readings") as sink:
        first = await sink.write(make_batch(1, 4))  # two days: two partitions, one commit
        second = await sink.write(make_batch(5, 8))
        again = await sink.write(make_batch(5, 8))
    table = DeltaTable(str(tmp_path / "readings"))
    assert len(first) == 2 and len(second) == 1 and again == []
    assert sorted(first + second) == sorted(table.file_uris())
    assert all(Path(f).is_file() and f.endswith(".parquet") for f in first + second)


async def test_incompatible_table_is_terminal_naming_columns(tmp_path: Path) -> None:
    write_deltalake(str(tmp_path / "other"), pa.table({"ts": [1], "temp": [2.0]}))
    async with open_sink(f"delta+file://{tmp_path}/other") as sink:
        with pytest.raises(Terminal, match=r"another schema: missing columns .*asset.*"
                                           r"unexpected columns temp, ts"):
            await sink.healthcheck()
        with pytest.raises(Terminal, match="another schema"):
            await sink.write(make_batch(1, 2))


async def test_missing_parent_folder_and_bad_options(tmp_path: Path) -> None:
    async with open_sink(f"delta+file://{tmp_path}/nope/table") as sink:
        with pytest.raises(NotFound, match="does not exist"):
            await sink.healthcheck()
    with pytest.raises(Invalid, match="Parquet only"):
        async with open_sink(f"delta+file://{tmp_path}/t") as sink:
            await sink.write(make_batch(1, 2), "csv")
    with pytest.raises(Invalid, match="unknown option 'partition' for delta"):
        open_sink(f"delta+file://{tmp_path}/t", {"partition": "x"})


async def test_files_another_writer_commits_meanwhile_are_not_counted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"delta+file://{tmp_path}/readings"
    async with open_sink(url) as sink:
        await sink.write(make_batch(1, 4))
    real = delta_sink.write_deltalake

    def after_a_rival(table_or_uri: object, data: pa.Table, **kwargs: object) -> None:
        real(str(tmp_path / "readings"), data.slice(0, 1), mode="append")  # commits first
        real(table_or_uri, data, **kwargs)

    monkeypatch.setattr(delta_sink, "write_deltalake", after_a_rival)
    async with open_sink(url) as sink:
        written = await sink.write(make_batch(5, 8))
    ours, rivals, before = (set(DeltaTable(str(tmp_path / "readings"), version=v).file_uris())
                            for v in (2, 1, 0))
    assert written == sorted(ours - rivals) and len(written) == 1
    assert not set(written) & (rivals - before)


async def test_the_exporter_status_counts_data_files_not_commits(tmp_path: Path) -> None:
    """Two batches of readings on two days: two commits of two Parquet files each."""
    topic = "asset-data"
    readings = [{"asset": "pump-1", "datastream": "t", "value": float(i), "type": "number",
                 "time": f"2026-05-0{1 + i % 2}T12:00:00Z"} for i in range(8)]
    async with open_engine(f"memory://{uuid.uuid4().hex}") as engine:
        async with engine.producer("sim", topic) as producer:
            await producer.produce_many(readings)
        config = ExportConfig(topics=[topic], to=f"delta+file://{tmp_path}/readings",
                              name="lake", batch_rows=4, until_idle=0.3, retry_initial=0.01)
        status = await Exporter(config, engine=engine).run()
    table = DeltaTable(str(tmp_path / "readings"))
    assert (status.rows, status.batches, table.version()) == (8, 2, 1)
    assert status.files == len(table.file_uris()) == 4
    assert status.last_file in table.file_uris()
    assert read_status("lake")["files"] == 4


# -- delta+s3 against moto ------------------------------------------------------------------
@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


def s3_options(endpoint: str) -> dict[str, object]:
    return {"endpoint_url": endpoint, "region": MOTO_REGION, "key": MOTO_KEY,
            "secret": MOTO_SECRET}


async def test_s3_table_on_moto_is_idempotent(endpoint: str) -> None:
    bucket = f"lake-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=endpoint, region_name=MOTO_REGION,
                 aws_access_key_id=MOTO_KEY,
                 aws_secret_access_key=MOTO_SECRET).create_bucket(Bucket=bucket)
    async with open_sink(f"delta+s3://{bucket}/tables/readings", s3_options(endpoint)) as sink:
        await sink.healthcheck()
        await sink.write(make_batch(1, 4))
        await sink.write(make_batch(5, 8))
        await sink.write(make_batch(5, 8))
        storage = sink.storage_options()

    table = DeltaTable(f"s3://{bucket}/tables/readings", storage_options=storage)
    assert table.version() == 1
    rows = pa.table(table.to_pyarrow_table())
    assert sorted(rows["seqno"].to_pylist()) == list(range(1, 9))


async def test_s3_missing_bucket_is_terminal(endpoint: str) -> None:
    async with open_sink("delta+s3://no-such-bucket/t", s3_options(endpoint)) as sink:
        with pytest.raises(NotFound, match="bucket 'no-such-bucket' does not exist"):
            await sink.healthcheck()
        with pytest.raises(NotFound, match="bucket 'no-such-bucket' does not exist"):
            await sink.write(make_batch(1, 2))


async def test_s3_wrong_secret_is_terminal() -> None:
    """moto checks signatures once its first two requests (creating the key) are done."""
    with moto_server(auth_actions=2) as url:
        iam = boto3.client("iam", endpoint_url=url, region_name=MOTO_REGION,
                           aws_access_key_id=MOTO_KEY, aws_secret_access_key=MOTO_SECRET)
        iam.create_user(UserName="exporter")
        key_id = iam.create_access_key(UserName="exporter")["AccessKey"]["AccessKeyId"]
        options = {**s3_options(url), "key": key_id, "secret": "not-the-secret"}
        async with open_sink("delta+s3://lake/t", options) as sink:
            with pytest.raises(Terminal, match="S3 rejected the credentials for s3://lake: "
                                               "SignatureDoesNotMatch"):
                await sink.healthcheck()
            with pytest.raises(Terminal, match="SignatureDoesNotMatch") as caught:
                await sink.write(make_batch(1, 2))
            assert "not-the-secret" not in str(caught.value)


async def test_partition_by_asset_partitions_a_new_table_by_asset(tmp_path: Path) -> None:
    """``partition_by_asset`` is honoured, not ignored: ``asset`` partitions below ``date``,
    names escaped in the folders (never leaving the table) and read back exactly."""
    names = ["x/../../../../escaped", "line 1/pump=7", "a%2Fb"]
    batch = make_batch(1, 3)
    batch = type(batch)(batch.topic, 1, 3, batch.table.set_column(
        1, "asset", pa.array(names, pa.string())))
    table_path = tmp_path / "lake" / "readings"
    table_path.parent.mkdir()
    async with open_sink(f"delta+file://{table_path}", {"partition_by_asset": True}) as sink:
        await sink.healthcheck()
        await sink.write(batch)
        await sink.write(make_batch(4, 6))
        await sink.healthcheck()
    table = DeltaTable(str(table_path))
    assert table.metadata().partition_columns == ["date", "asset"]
    rows = pa.table(table.to_pyarrow_table()).sort_by("seqno")
    assert rows["asset"].to_pylist() == [*names, "pump-1", "pump-2", "pump-0"]
    files = [p.relative_to(tmp_path) for p in tmp_path.rglob("*.parquet")]
    assert len(files) == 6
    assert all(f.parts[:2] == ("lake", "readings") and f.parts[3].startswith("asset=")
               and len(f.parts) == 5 for f in files), files
    assert not (tmp_path / "escaped").exists()

    date_only = f"delta+file://{tmp_path}/by-date"
    async with open_sink(date_only) as sink:
        await sink.write(make_batch(1, 2))
    async with open_sink(date_only, {"partition_by_asset": True}) as sink:
        with pytest.raises(Terminal, match=r"^option 'partition_by_asset' for .*partitioned "
                                           r"by date, not asset"):
            await sink.healthcheck()
        with pytest.raises(Terminal, match="option 'partition_by_asset'"):
            await sink.write(make_batch(3, 4))
    assert pa.table(DeltaTable(f"{tmp_path}/by-date").to_pyarrow_table()).num_rows == 2

"""The delta+file:// and delta+s3:// sinks: a local Delta table and one on moto's S3 server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pyarrow as pa
import pytest
from _batches import make_batch
from _moto import MOTO_KEY, MOTO_REGION, MOTO_SECRET, moto_server
from deltalake import DeltaTable, write_deltalake

from lakeport.errors import Invalid, NotFound, Terminal
from lakeport.export.sinks import open_sink
from lakeport.export.sinks.delta import DeltaSink

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
    assert rows["date"].to_pylist()[2:4] == ["2026-05-01", "2026-05-02"]
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
    duckdb = pytest.importorskip("duckdb")
    async with open_sink(f"delta+file://{tmp_path}/readings") as sink:
        await sink.write(make_batch(1, 8))
    connection = duckdb.connect()
    connection.register("readings", DeltaTable(str(tmp_path / "readings")).to_pyarrow_dataset())
    count, total = connection.execute("select count(*), sum(seqno) from readings").fetchone()
    assert (count, total) == (8, 36)


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
    with pytest.raises(Invalid, match="bad option 'partition'"):
        open_sink(f"delta+file://{tmp_path}/t", {"partition": "x"})


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

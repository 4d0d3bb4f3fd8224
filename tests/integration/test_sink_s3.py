"""The s3:// sink against moto's S3 server (a real HTTP server started by these tests)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import timedelta

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _batches import make_batch
from _moto import MOTO_KEY, MOTO_REGION, MOTO_SECRET, moto_server

from lakeport.errors import NotFound, Terminal, Transient
from lakeport.export.sinks import Batch, open_sink
from lakeport.export.sinks.s3 import S3Sink

pytestmark = pytest.mark.timeout(60)




@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


def s3_client(endpoint: str, key: str = MOTO_KEY, secret: str = MOTO_SECRET):
    return boto3.client("s3", endpoint_url=endpoint, region_name=MOTO_REGION,
                        aws_access_key_id=key, aws_secret_access_key=secret)


@pytest.fixture
def bucket(endpoint: str) -> str:
    name = f"lake-{uuid.uuid4().hex[:10]}"
    s3_client(endpoint).create_bucket(Bucket=name)
    return name


def sink_options(endpoint: str, **extra: object) -> dict[str, object]:
    return {"endpoint_url": endpoint, "region": MOTO_REGION, "key": MOTO_KEY,
            "secret": MOTO_SECRET, **extra}


def list_keys(endpoint: str, bucket: str) -> list[str]:
    response = s3_client(endpoint).list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in response.get("Contents", []))


def read_rows(endpoint: str, bucket: str) -> pa.Table:
    import s3fs

    fs = s3fs.S3FileSystem(key=MOTO_KEY, secret=MOTO_SECRET, endpoint_url=endpoint,
                           client_kwargs={"region_name": MOTO_REGION}, skip_instance_cache=True)
    files = [f"{bucket}/{key}" for key in list_keys(endpoint, bucket)]
    return pa.concat_tables(pq.read_table(f, filesystem=fs) for f in files)


async def test_two_batches_land_under_deterministic_keys(endpoint: str, bucket: str) -> None:
    async with open_sink(f"s3://{bucket}/plant-a", sink_options(endpoint)) as sink:
        assert isinstance(sink, S3Sink)
        await sink.healthcheck()
        first = await sink.write(make_batch(1, 4))
        second = await sink.write(make_batch(5, 8))

    assert first == [
        f"s3://{bucket}/plant-a/asset-data/date=2026-05-01/asset-data-1-4.parquet",
        f"s3://{bucket}/plant-a/asset-data/date=2026-05-02/asset-data-1-4.parquet",
    ]
    assert second == [f"s3://{bucket}/plant-a/asset-data/date=2026-05-02/asset-data-5-8.parquet"]
    assert list_keys(endpoint, bucket) == sorted(u.removeprefix(f"s3://{bucket}/")
                                                 for u in first + second)
    rows = read_rows(endpoint, bucket)
    assert sorted(rows["seqno"].to_pylist()) == list(range(1, 9))
    assert rows.schema.field("time").type == pa.timestamp("us", tz="UTC")


async def test_rewriting_a_batch_leaves_one_copy(endpoint: str, bucket: str) -> None:
    async with open_sink(f"s3://{bucket}/p", sink_options(endpoint)) as sink:
        await sink.write(make_batch(1, 4))
        keys = list_keys(endpoint, bucket)
        await sink.write(make_batch(1, 4))  # a retry after a crash before the ack
    assert list_keys(endpoint, bucket) == keys
    assert read_rows(endpoint, bucket).num_rows == 4


async def test_large_file_goes_up_as_multipart(endpoint: str, bucket: str) -> None:
    """A file of several parts is uploaded in parts and reads back whole."""
    batch = make_batch(1, 200_000, step=timedelta(microseconds=1))
    options = sink_options(endpoint, multipart_chunksize=5 * 1024 * 1024)
    noisy = batch.table.set_column(
        batch.table.schema.get_field_index("value_string"), "value_string",
        pa.array([os.urandom(64).hex() for _ in range(batch.rows)]),  # incompressible
    )
    async with open_sink(f"s3://{bucket}", options) as sink:
        [url] = await sink.write(Batch(batch.topic, 1, 200_000, noisy))
    key = url.removeprefix(f"s3://{bucket}/")
    head = s3_client(endpoint).head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] > 10 * 1024 * 1024
    assert "-" in head["ETag"]  # multipart ETags end in -<parts>
    assert read_rows(endpoint, bucket).num_rows == 200_000


async def test_missing_bucket_is_terminal_and_named(endpoint: str) -> None:
    async with open_sink("s3://no-such-bucket/x", sink_options(endpoint)) as sink:
        with pytest.raises(NotFound, match=r"bucket 'no-such-bucket' does not exist \(s3://no-such-bucket/x\)"):
            await sink.healthcheck()
        with pytest.raises(NotFound, match="no-such-bucket"):
            await sink.write(make_batch(1, 2))


async def test_unreachable_endpoint_is_transient() -> None:
    from servers import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    async with open_sink("s3://lake/x", sink_options(dead, retries=0, timeout=2)) as sink:
        with pytest.raises(Transient, match=f"cannot reach S3 at {dead}"):
            await sink.healthcheck()


async def test_wrong_secret_is_terminal_with_a_clear_message() -> None:
    """moto checks signatures once its first two requests (creating the key) are done."""
    with moto_server(auth_actions=2) as url:
        iam = boto3.client("iam", endpoint_url=url, region_name=MOTO_REGION,
                           aws_access_key_id=MOTO_KEY, aws_secret_access_key=MOTO_SECRET)
        iam.create_user(UserName="exporter")
        key_id = iam.create_access_key(UserName="exporter")["AccessKey"]["AccessKeyId"]

        wrong_secret = sink_options(url, key=key_id, secret="not-the-secret")
        async with open_sink("s3://lake/x", wrong_secret) as sink:
            with pytest.raises(Terminal, match=r"S3 rejected the credentials for s3://lake: "
                                               r"SignatureDoesNotMatch") as caught:
                await sink.healthcheck()
            assert "not-the-secret" not in str(caught.value)
            assert "not-the-secret" not in repr(sink.config)
            with pytest.raises(Terminal, match="SignatureDoesNotMatch"):
                await sink.write(make_batch(1, 2))

        unknown_key = sink_options(url, key="AKIAUNKNOWNKEY000000", secret="x")
        async with open_sink("s3://lake/x", unknown_key) as sink:
            with pytest.raises(Terminal, match=r"rejected the credentials.*InvalidAccessKeyId"):
                await sink.healthcheck()


def test_bad_url_and_unknown_option_are_invalid() -> None:
    from lakeport.errors import Invalid

    with pytest.raises(Invalid, match="expected s3://bucket/prefix"):
        open_sink("s3:///prefix-only")
    with pytest.raises(Invalid, match=r"unknown option 'endpoint' for s3://lake/x: use one of "):
        open_sink("s3://lake/x", {"endpoint": "http://x"})

"""Storage tables in an S3 lake (moto's S3 server): the same loads, exports and listing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pyarrow as pa
import pytest
from _moto import MOTO_KEY, MOTO_REGION, MOTO_SECRET, moto_server

from lakeport.tables import TableStore

T = "in.c-main.readings"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def store(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> TableStore:
    bucket = f"lake-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=endpoint, region_name=MOTO_REGION,
                 aws_access_key_id=MOTO_KEY,
                 aws_secret_access_key=MOTO_SECRET).create_bucket(Bucket=bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_REGION", MOTO_REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", MOTO_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", MOTO_SECRET)
    return TableStore(f"s3://{bucket}/lake")


def test_an_s3_lake_loads_upserts_exports_lists_and_deletes(store: TableStore,
                                                            tmp_path: Path) -> None:
    assert store.storage_options is not None
    assert store.storage_options["AWS_ALLOW_HTTP"] == "true"
    store.create(T, ["id", "site"], primary_key=["id"], description="on S3")
    store.load(T, pa.table({"id": ["1", "2", "3"], "site": ["n", "s", "s"]}))
    result = store.load(T, pa.table({"id": ["3", "4"], "site": ["S", "e"]}), incremental=True,
                        delete_where_column="site", delete_where_values=["s"])
    assert result.rows_deleted == 1 and result.version == 2
    assert sorted(store.read(T)["id"].to_pylist()) == ["1", "3", "4"]
    exported = store.export(T, tmp_path / "out.csv", where_column="id", where_values=["3"])
    assert exported.rows == 1
    assert (tmp_path / "out.csv").read_text().splitlines() == ['"id","site"', '"3","S"']
    store.create("out.c-x.other", ["a"])
    assert [i.id for i in store.list()] == [T, "out.c-x.other"]
    assert store.info(T).description == "on S3" and store.info(T).rows == 3
    store.delete(T)
    assert not store.exists(T)
    assert [i.id for i in store.list()] == ["out.c-x.other"]

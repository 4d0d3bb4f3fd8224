"""The ``abfs://`` sink against Azurite, a real Azure Storage emulator started for this module."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _azurite import (
    DEV_ACCOUNT,
    DEV_KEY,
    INSTALL_TIMEOUT_S,
    Azurite,
    azurite_server,
    find_azurite_blob,
    free_port,
)

from lakeport.errors import Invalid, NotFound, Terminal, Transient
from lakeport.export.sinks import open_sink
from lakeport.export.sinks.adls import AdlsSink, parse_abfs_url
from lakeport.export.sinks.base import Batch
from lakeport.readings import ROW_SCHEMA

# The first run on a machine installs Azurite with npm inside the module fixture.
pytestmark = pytest.mark.timeout(60 if find_azurite_blob() else 60 + INSTALL_TIMEOUT_S)

WRONG_KEY = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ=="


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with azurite_server(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture
def container(azurite: Azurite) -> Iterator[str]:
    """A fresh, empty container, deleted afterwards."""
    from azure.storage.blob import BlobServiceClient

    name = f"lake-{uuid.uuid4().hex[:12]}"
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    service.create_container(name)
    yield name
    service.delete_container(name)
    service.close()


def key_options(azurite: Azurite, key: str = DEV_KEY) -> dict[str, str]:
    return {"account_key": key, "account_url": azurite.account_url}


def readings(topic: str, first_seqno: int, count: int, start: datetime) -> Batch:
    """``count`` float readings one hour apart from ``start`` (so they may span dates)."""
    rows = {
        "time": [start + timedelta(hours=i) for i in range(count)],
        "asset": [f"pump-{i % 3}" for i in range(count)],
        "datastream": ["temperature"] * count,
        "value_number": [20.0 + i for i in range(count)],
        "value_string": [None] * count,
        "value_bool": [None] * count,
        "value_object": [None] * count,
        "unit": ["C"] * count,
        "seqno": list(range(first_seqno, first_seqno + count)),
        "producer": ["sim"] * count,
    }
    table = pa.Table.from_pydict(rows, schema=ROW_SCHEMA)
    return Batch(topic, first_seqno, first_seqno + count - 1, table)


def lake_files(azurite: Azurite, container: str) -> list[str]:
    from adlfs import AzureBlobFileSystem

    fs = AzureBlobFileSystem(connection_string=azurite.connection_string,
                             skip_instance_cache=True)
    return sorted(fs.find(container))


def read_lake(azurite: Azurite, container: str) -> pa.Table:
    """Every Parquet file in the container, read back with pyarrow over adlfs."""
    from adlfs import AzureBlobFileSystem

    fs = AzureBlobFileSystem(connection_string=azurite.connection_string,
                             skip_instance_cache=True)
    files = [f for f in fs.find(container) if f.endswith(".parquet")]
    return pa.concat_tables(pq.read_table(f, filesystem=fs) for f in files)


async def test_two_batches_land_under_deterministic_keys_and_read_back(
    azurite: Azurite, container: str
) -> None:
    start = datetime(2026, 3, 1, 22, tzinfo=UTC)
    first, second = readings("raw", 0, 4, start), readings("raw", 4, 3, start + timedelta(hours=4))
    url = f"abfs://{container}@{DEV_ACCOUNT}/plant-a"
    async with open_sink(url, key_options(azurite)) as sink:
        await sink.healthcheck()
        written = await sink.write(first) + await sink.write(second)

    keys = [
        "plant-a/raw/date=2026-03-01/raw-0-3.parquet",
        "plant-a/raw/date=2026-03-02/raw-0-3.parquet",
        "plant-a/raw/date=2026-03-02/raw-4-6.parquet",
    ]
    assert written == [f"abfs://{container}@{DEV_ACCOUNT}/{key}" for key in keys]
    assert lake_files(azurite, container) == [f"{container}/{key}" for key in keys]
    lake = read_lake(azurite, container).sort_by("seqno")
    assert lake["seqno"].to_pylist() == list(range(7))
    assert lake["value_number"].to_pylist() == [20.0, 21.0, 22.0, 23.0, 20.0, 21.0, 22.0]
    assert lake.schema.field("time").type == pa.timestamp("us", tz="UTC")


async def test_rewriting_a_batch_leaves_one_copy(azurite: Azurite, container: str) -> None:
    batch = readings("raw", 10, 5, datetime(2026, 3, 1, 1, tzinfo=UTC))
    async with open_sink(f"abfss://{container}@{DEV_ACCOUNT}/p", key_options(azurite)) as sink:
        first = await sink.write(batch)
        again = await sink.write(batch)
    assert first == again
    assert len(lake_files(azurite, container)) == 1
    assert read_lake(azurite, container)["seqno"].to_pylist() == list(range(10, 15))


async def test_a_file_larger_than_one_block_is_uploaded_in_blocks(
    azurite: Azurite, container: str
) -> None:
    from azure.storage.blob import BlobServiceClient

    block_size = 256 * 1024
    count = 100_000  # random floats do not compress: several blocks of Parquet
    start_us = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp() * 1_000_000)
    noise = pa.array(np.random.default_rng(7).random(count))
    table = pa.table(
        {
            "time": pa.array(start_us + np.arange(count) * 1000, pa.timestamp("us", tz="UTC")),
            "asset": pa.array(np.full(count, "pump-0")),
            "datastream": pa.array(np.full(count, "vibration")),
            "value_number": noise,
            "value_string": pa.nulls(count, pa.string()),
            "value_bool": pa.nulls(count, pa.bool_()),
            "value_object": pa.nulls(count, pa.string()),
            "unit": pa.nulls(count, pa.string()),
            "seqno": pa.array(np.arange(count)),
            "producer": pa.array(np.full(count, "sim")),
        },
        schema=ROW_SCHEMA,
    )
    batch = Batch("raw", 0, count - 1, table)
    options = key_options(azurite) | {"block_size": block_size}
    async with open_sink(f"abfs://{container}@{DEV_ACCOUNT}/big", options) as sink:
        written = await sink.write(batch)
    key = written[-1].split("/", 3)[3]
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    blob = service.get_blob_client(container, key)
    committed, _ = blob.get_block_list("committed")
    assert blob.get_blob_properties().size > block_size
    assert len(committed) > 1
    service.close()
    assert read_lake(azurite, container)["value_number"].to_pylist()[:3] == noise.to_pylist()[:3]


async def test_jsonl_lands_with_its_extension(azurite: Azurite, container: str) -> None:
    from adlfs import AzureBlobFileSystem

    batch = readings("raw", 0, 2, datetime(2026, 3, 1, tzinfo=UTC))
    async with open_sink(f"abfs://{container}@{DEV_ACCOUNT}/j", key_options(azurite)) as sink:
        [written] = await sink.write(batch, "jsonl")
    assert written.endswith("/j/raw/date=2026-03-01/raw-0-1.jsonl")
    fs = AzureBlobFileSystem(connection_string=azurite.connection_string,
                             skip_instance_cache=True)
    lines = fs.cat(f"{container}/{written.split('/', 3)[3]}").splitlines()
    assert [orjson.loads(line)["seqno"] for line in lines] == [0, 1]


async def test_partition_by_asset_adds_an_asset_partition(azurite: Azurite, container: str) -> None:
    batch = readings("raw", 0, 3, datetime(2026, 3, 1, 1, tzinfo=UTC))
    options = key_options(azurite) | {"partition_by_asset": True}
    async with open_sink(f"abfs://{container}@{DEV_ACCOUNT}", options) as sink:
        written = await sink.write(batch)
    assert [w.rsplit("/", 3)[1:3] for w in written] == [
        ["date=2026-03-01", f"asset=pump-{i}"] for i in range(3)
    ]
    assert read_lake(azurite, container).num_rows == 3


async def test_connection_string_from_the_environment(
    azurite: Azurite, container: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    async with open_sink(f"abfs://{container}/env") as sink:
        await sink.healthcheck()
        await sink.write(readings("raw", 0, 2, datetime(2026, 3, 1, tzinfo=UTC)))
    assert read_lake(azurite, container).num_rows == 2


async def test_sas_token_grants_access(azurite: Azurite, container: str) -> None:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    sas = generate_container_sas(
        DEV_ACCOUNT, container, account_key=DEV_KEY,
        permission=ContainerSasPermissions(read=True, write=True, create=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    options = {"sas_token": sas, "account_url": azurite.account_url}
    async with open_sink(f"abfs://{container}@{DEV_ACCOUNT}/sas", options) as sink:
        await sink.healthcheck()
        await sink.write(readings("raw", 0, 2, datetime(2026, 3, 1, tzinfo=UTC)))
    assert read_lake(azurite, container).num_rows == 2


async def test_missing_container_is_terminal_and_named(azurite: Azurite) -> None:
    url = f"abfs://nosuch@{DEV_ACCOUNT}/p"
    async with open_sink(url, key_options(azurite)) as sink:
        with pytest.raises(NotFound) as checked:
            await sink.healthcheck()
        with pytest.raises(Terminal) as written:
            await sink.write(readings("raw", 0, 1, datetime(2026, 3, 1, tzinfo=UTC)))
    expected = f"container 'nosuch' does not exist in account '{DEV_ACCOUNT}'"
    assert str(checked.value).startswith(expected)
    assert str(written.value).startswith(expected)


async def test_wrong_key_is_terminal_and_names_the_url(azurite: Azurite, container: str) -> None:
    url = f"abfs://{container}@{DEV_ACCOUNT}/p"
    async with open_sink(url, key_options(azurite, WRONG_KEY)) as sink:
        with pytest.raises(Terminal) as checked:
            await sink.healthcheck()
        with pytest.raises(Terminal) as written:
            await sink.write(readings("raw", 0, 1, datetime(2026, 3, 1, tzinfo=UTC)))
    for error in (checked.value, written.value):
        assert not isinstance(error, Transient)
        assert str(error).startswith(f"Azure rejected the credentials for {url}")
        assert WRONG_KEY not in str(error)


async def test_unreachable_endpoint_is_transient() -> None:
    options = {"account_key": DEV_KEY, "max_retries": 0,
               "account_url": f"http://127.0.0.1:{free_port()}/{DEV_ACCOUNT}"}
    async with open_sink(f"abfs://lake@{DEV_ACCOUNT}/p", options) as sink:
        with pytest.raises(Transient, match="cannot reach Azure Storage"):
            await sink.healthcheck()
        with pytest.raises(Transient, match="cannot reach Azure Storage"):
            await sink.write(readings("raw", 0, 1, datetime(2026, 3, 1, tzinfo=UTC)))


async def test_unusable_staging_folder_is_terminal(
    azurite: Azurite, container: str, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-folder"
    options = key_options(azurite) | {"tmp_dir": str(missing)}
    async with open_sink(f"abfs://{container}@{DEV_ACCOUNT}/p", options) as sink:
        with pytest.raises(Terminal, match=re.escape(f"cannot stage raw-0-0.parquet in {missing}")):
            await sink.write(readings("raw", 0, 1, datetime(2026, 3, 1, tzinfo=UTC)))
    assert lake_files(azurite, container) == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("abfs://lake@acct/plant/a", ("lake", "acct", "plant/a")),
        ("abfss://lake@acct.dfs.core.windows.net/p/", ("lake", "acct", "p")),
        ("abfs://lake", ("lake", None, "")),
    ],
)
def test_abfs_urls_parse(url: str, expected: tuple[str, str | None, str]) -> None:
    assert parse_abfs_url(url) == expected


@pytest.mark.parametrize("url", ["abfs://@acct/p", "abfs://lake@/p", "s3://lake@acct/p"])
def test_bad_abfs_urls_are_invalid(url: str) -> None:
    with pytest.raises(Invalid, match="bad ADLS URL"):
        parse_abfs_url(url)


def test_unknown_option_is_invalid() -> None:
    with pytest.raises(Invalid, match="'acount_key'"):
        AdlsSink("abfs://lake@acct/p", {"acount_key": "x"})


def test_no_account_anywhere_is_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_CONNECTION_STRING"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(Invalid, match="no storage account"):
        AdlsSink("abfs://lake/p")

"""The targets of the sink contract (``test_sink_contract.py``): for each sink a good target,
targets that must fail, faults that break a write half-way, and ways to look at what the sink
stored. Services: moto's S3 server, Azurite, a local Databricks REST server."""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _azurite import DEV_ACCOUNT, DEV_KEY, Azurite, azurite_server
from _batches import make_batch
from _databricks_api import TOKEN, FakeWorkspace
from _moto import MOTO_KEY, MOTO_REGION, MOTO_SECRET, moto_server
from deltalake import DeltaTable, write_deltalake

from lakeport.export import formats
from lakeport.export.sinks import Batch
from lakeport.export.sinks import delta as delta_sink
from lakeport.readings import ROW_SCHEMA
from lakeport.tables import TableStore
from lakeport.tables import loads as table_loads
from servers import free_port

SINKS = ("file", "s3", "abfs", "dbfs", "delta", "table")
VOLUME = "/Volumes/main/plant/landing"
WRONG_AZURE_KEY = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ=="
Fault = Callable[[pytest.MonkeyPatch], None]


def batch() -> Batch:
    """Six rows over two days: two partitions, so a write can fail between its files."""
    return make_batch(1, 6)


# -- faults ------------------------------------------------------------------------------
def fail_the_second_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second file of a write gets half its bytes, then an I/O error (EIO)."""
    real = formats.write_table
    calls = itertools.count()

    def half_then_fail(table: pa.Table, path: Path, fmt: str) -> int:
        size = real(table, path, fmt)
        if next(calls) == 1:
            with open(path, "r+b") as out:
                out.truncate(size // 2)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return size

    monkeypatch.setattr(formats, "write_table", half_then_fail)


def fail_the_delta_write_half_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """deltalake gets half the rows, then an I/O error (EIO) from the data stream."""
    real = delta_sink.write_deltalake

    def half_then_fail(table_or_uri: Any, data: pa.Table, **kwargs: Any) -> None:
        def batches() -> Iterator[pa.RecordBatch]:
            yield from data.slice(0, data.num_rows // 2).to_batches()
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        reader = pa.RecordBatchReader.from_batches(data.schema, batches())
        real(table_or_uri, reader, **kwargs)

    monkeypatch.setattr(delta_sink, "write_deltalake", half_then_fail)


def fail_the_table_load_half_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """The table load's Delta write gets half the rows, then an I/O error (EIO)."""
    real = table_loads.write_deltalake

    def half_then_fail(table_or_uri: Any, data: Any, **kwargs: Any) -> None:
        rows = data.read_all() if isinstance(data, pa.RecordBatchReader) else data

        def batches() -> Iterator[pa.RecordBatch]:
            yield from rows.slice(0, rows.num_rows // 2).to_batches()
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        reader = pa.RecordBatchReader.from_batches(rows.schema, batches())
        real(table_or_uri, reader, **kwargs)

    monkeypatch.setattr(table_loads, "write_deltalake", half_then_fail)


# -- a server that answers every request as a busy service ---------------------------------
@contextlib.contextmanager
def busy_server(status: int, body: bytes, headers: dict[str, str]) -> Iterator[str]:
    """An HTTP server on a free loopback port answering ``status`` to every request."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- one target per sink -------------------------------------------------------------------
@dataclass
class Case:
    """A sink URL and options that must fail, with a part of the expected message."""

    url: str
    options: dict[str, Any]
    message: str
    fault: Fault | None = None  # installed for the write (the target itself is fine)


@dataclass
class Target:
    """A sink's good target and ways to look at what it stored."""

    url: str
    options: dict[str, Any]
    landed: Callable[[], list[str]]  # the data files readers see, as write() names them
    leftovers: Callable[[], list[str]]  # anything else: temporaries, staged or orphan files
    objects: Callable[[], dict[str, bytes]]  # everything stored, with its bytes
    rows: Callable[[], pa.Table]  # the rows readers get
    fault: Fault = fail_the_second_file
    terminal: dict[str, Case] = field(default_factory=dict)
    transient: dict[str, Case] = field(default_factory=dict)


def parquet_rows(objects: dict[str, bytes]) -> pa.Table:
    tables = [pq.read_table(io.BytesIO(data)) for name, data in objects.items()
              if name.endswith(".parquet")]
    return pa.concat_tables(tables) if tables else ROW_SCHEMA.empty_table()


def staged_files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*"))


def file_target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    root = tmp_path / "lake"
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"a file, not a folder")

    def files() -> list[Path]:
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []

    def objects() -> dict[str, bytes]:
        return {str(p): p.read_bytes() for p in files()}

    return Target(
        url=root.as_uri(), options={},
        landed=lambda: [str(p) for p in files() if not p.name.startswith(".")],
        leftovers=lambda: [str(p) for p in files() if p.name.startswith(".")],
        objects=objects, rows=lambda: parquet_rows(objects()),
        terminal={"a file in the way": Case((blocker / "lake").as_uri(), {},
                                            "a part of the path is a file, not a folder")},
        transient={"an I/O error": Case(root.as_uri(), {}, "Input/output error",
                                        fault=fail_the_second_file)},
    )


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def moto_checking_keys() -> Iterator[tuple[str, str]]:
    """A moto server that checks signatures, and the id of a key it knows."""
    with moto_server(auth_actions=2) as url:
        iam = boto3.client("iam", endpoint_url=url, region_name=MOTO_REGION,
                           aws_access_key_id=MOTO_KEY, aws_secret_access_key=MOTO_SECRET)
        iam.create_user(UserName="exporter")
        yield url, iam.create_access_key(UserName="exporter")["AccessKey"]["AccessKeyId"]


def s3_target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    endpoint = request.getfixturevalue("moto")
    url, key_id = request.getfixturevalue("moto_checking_keys")
    staging = tmp_path / "staging"
    staging.mkdir()
    bucket = f"lake-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name=MOTO_REGION,
                          aws_access_key_id=MOTO_KEY, aws_secret_access_key=MOTO_SECRET)
    client.create_bucket(Bucket=bucket)

    def options(at: str = endpoint, **extra: Any) -> dict[str, Any]:
        return {"endpoint_url": at, "region": MOTO_REGION, "key": MOTO_KEY,
                "secret": MOTO_SECRET, "tmp_dir": str(staging), "retries": 0, "timeout": 5,
                **extra}

    def keys() -> list[str]:
        listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
        return sorted(item["Key"] for item in listed)

    def objects() -> dict[str, bytes]:
        return {key: client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys()}

    def leftovers() -> list[str]:
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return [f"unfinished upload of {u['Key']}" for u in uploads] + staged_files(staging)

    stack = contextlib.ExitStack()
    request.addfinalizer(stack.close)
    busy = stack.enter_context(busy_server(
        503, b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
        b"<Message>Please reduce your request rate.</Message></Error>",
        {"Content-Type": "application/xml"}))
    return Target(
        url=f"s3://{bucket}/plant", options=options(),
        landed=lambda: [f"s3://{bucket}/{key}" for key in keys()],
        leftovers=leftovers, objects=objects, rows=lambda: parquet_rows(objects()),
        terminal={
            "missing bucket": Case("s3://no-such-bucket/plant", options(),
                                   "bucket 'no-such-bucket' does not exist"),
            "bad credentials": Case("s3://lake/plant",
                                    options(url, key=key_id, secret="not-the-secret"),
                                    "S3 rejected the credentials"),
        },
        transient={
            "connection refused": Case(f"s3://{bucket}/plant",
                                       options(f"http://127.0.0.1:{free_port()}"),
                                       "cannot reach S3"),
            "throttled": Case(f"s3://{bucket}/plant", options(busy), "S3 is busy (SlowDown)"),
        },
    )


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with azurite_server(tmp_path_factory.mktemp("azurite")) as server:
        yield server


def abfs_target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    from azure.storage.blob import BlobServiceClient

    azurite: Azurite = request.getfixturevalue("azurite")
    staging = tmp_path / "staging"
    staging.mkdir()
    name = f"lake-{uuid.uuid4().hex[:12]}"
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.get_container_client(name)
    container.create_container()
    request.addfinalizer(service.close)

    def options(at: str = azurite.account_url, key: str = DEV_KEY) -> dict[str, Any]:
        return {"account_key": key, "account_url": at, "tmp_dir": str(staging),
                "max_retries": 0, "timeout": 5}

    def committed() -> list[str]:
        return sorted(blob.name for blob in container.list_blobs())

    def objects() -> dict[str, bytes]:
        return {blob: container.download_blob(blob).readall() for blob in committed()}

    def leftovers() -> list[str]:
        every = {blob.name for blob in container.list_blobs(include=["uncommittedblobs"])}
        return sorted(every - set(committed())) + staged_files(staging)

    stack = contextlib.ExitStack()
    request.addfinalizer(stack.close)
    busy = stack.enter_context(busy_server(
        503, b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>'
        b"<Message>The server is busy.</Message></Error>",
        {"Content-Type": "application/xml", "x-ms-error-code": "ServerBusy"}))
    return Target(
        url=f"abfs://{name}@{DEV_ACCOUNT}/plant", options=options(),
        landed=lambda: [f"abfs://{name}@{DEV_ACCOUNT}/{blob}" for blob in committed()],
        leftovers=leftovers, objects=objects, rows=lambda: parquet_rows(objects()),
        terminal={
            "missing container": Case(f"abfs://nosuch@{DEV_ACCOUNT}/plant", options(),
                                      "container 'nosuch' does not exist"),
            "bad credentials": Case(f"abfs://{name}@{DEV_ACCOUNT}/plant",
                                    options(key=WRONG_AZURE_KEY),
                                    "Azure rejected the credentials"),
        },
        transient={
            "connection refused": Case(
                f"abfs://{name}@{DEV_ACCOUNT}/plant",
                options(f"http://127.0.0.1:{free_port()}/{DEV_ACCOUNT}"),
                "cannot reach Azure Storage"),
            "throttled": Case(f"abfs://{name}@{DEV_ACCOUNT}/plant",
                              options(f"{busy}/{DEV_ACCOUNT}"), "Azure Storage is busy (503"),
        },
    )


def dbfs_target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    for name in list(os.environ):
        if name.startswith("DATABRICKS_"):
            monkeypatch.delenv(name)
    stack = contextlib.ExitStack()
    request.addfinalizer(stack.close)
    workspace = stack.enter_context(FakeWorkspace())
    workspace.state.volumes.add(VOLUME)
    staging = tmp_path / "staging"
    staging.mkdir()

    def options(host: str = workspace.host, token: str = TOKEN) -> dict[str, Any]:
        return {"host": host, "token": token, "retry_timeout_seconds": 1,
                "connect_timeout": 2, "tmp_dir": str(staging)}

    def objects() -> dict[str, bytes]:
        return {path: data for path, data in sorted(workspace.state.files.items())
                if path.startswith(f"{VOLUME}/sensors/")}

    busy = stack.enter_context(busy_server(
        429, json.dumps({"error_code": "TOO_MANY_REQUESTS", "message": "slow down"}).encode(),
        {"Content-Type": "application/json", "Retry-After": "1"}))
    return Target(
        url=f"dbfs:{VOLUME}/sensors", options=options(),
        landed=lambda: [f"dbfs:{path}" for path in objects()],
        leftovers=lambda: staged_files(staging), objects=objects,
        rows=lambda: parquet_rows(objects()),
        terminal={
            "missing volume": Case("dbfs:/Volumes/main/plant/nosuch/sensors", options(),
                                   "volume /Volumes/main/plant/nosuch does not exist"),
            "bad credentials": Case(f"dbfs:{VOLUME}/sensors", options(token="dapi-wrong"),
                                    "the credentials were rejected"),
        },
        transient={
            "connection refused": Case(f"dbfs:{VOLUME}/sensors",
                                       options(f"http://127.0.0.1:{free_port()}"),
                                       "cannot reach Databricks"),
            "throttled": Case(f"dbfs:{VOLUME}/sensors", options(busy), f"Databricks at {busy}"),
        },
    )


def delta_target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    path = tmp_path / "readings"
    other = tmp_path / "other"
    write_deltalake(str(other), pa.table({"ts": [1], "temp": [2.0]}))

    def table() -> DeltaTable | None:
        return DeltaTable(str(path)) if DeltaTable.is_deltatable(str(path)) else None

    def files() -> list[Path]:
        return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []

    def landed() -> list[str]:
        current = table()
        return sorted(current.file_uris()) if current is not None else []

    def leftovers() -> list[str]:
        log = path / "_delta_log"
        return [str(p) for p in files()
                if (p.parent != log and str(p) not in landed()) or "tmp" in p.name]

    def rows() -> pa.Table:
        current = table()
        if current is None:
            return ROW_SCHEMA.empty_table()
        return pa.table(current.to_pyarrow_table()).drop_columns(["date"])

    return Target(
        url=f"delta+file://{path}", options={},
        landed=landed, leftovers=leftovers,
        objects=lambda: {str(p): p.read_bytes() for p in files()}, rows=rows,
        fault=fail_the_delta_write_half_way,
        terminal={
            "missing folder": Case(f"delta+file://{tmp_path}/nope/readings", {},
                                   "does not exist"),
            "another table": Case(f"delta+file://{other}", {}, "has another schema"),
        },
        transient={"an I/O error": Case(f"delta+file://{path}", {}, "Input/output error",
                                        fault=fail_the_delta_write_half_way)},
    )


def table_target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    root = tmp_path / "lake"
    root.mkdir()
    path = root / "in" / "c-edge" / "readings"
    TableStore(root).create("in.c-edge.other", ["ts", "temp"])

    def table() -> DeltaTable | None:
        return DeltaTable(str(path)) if DeltaTable.is_deltatable(str(path)) else None

    def files() -> list[Path]:
        return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []

    def landed() -> list[str]:
        current = table()
        return sorted(current.file_uris()) if current is not None else []

    def leftovers() -> list[str]:
        log = path / "_delta_log"
        return [str(p) for p in files()
                if (p.parent != log and str(p) not in landed()) or "tmp" in p.name]

    def rows() -> pa.Table:
        current = table()
        if current is None:
            return ROW_SCHEMA.empty_table()
        return pa.table(current.to_pyarrow_table()).select(ROW_SCHEMA.names)

    url = f"table://in.c-edge.readings?root={root}"
    return Target(
        url=url, options={}, landed=landed, leftovers=leftovers,
        objects=lambda: {str(p): p.read_bytes() for p in files()}, rows=rows,
        fault=fail_the_table_load_half_way,
        terminal={
            "missing folder": Case(f"table://in.c-edge.readings?root={tmp_path}/nope", {},
                                   "does not exist"),
            "another table": Case(f"table://in.c-edge.other?root={root}", {},
                                  "has other columns"),
        },
        transient={"an I/O error": Case(url, {}, "Input/output error",
                                        fault=fail_the_table_load_half_way)},
    )


TARGETS: dict[str, Callable[[pytest.FixtureRequest, Path], Target]] = {
    "file": file_target, "s3": s3_target, "abfs": abfs_target, "dbfs": dbfs_target,
    "delta": delta_target, "table": table_target,
}



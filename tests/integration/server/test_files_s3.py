"""The file service with its bytes in S3 (moto's S3 server, a real HTTP server)."""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from _moto import MOTO_KEY, MOTO_REGION, MOTO_SECRET, moto_server

from server_fixtures import Platform, platform_settings, running_platform

API = "/api/v1"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def s3_platform(endpoint: str, store_url: str, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Platform, str]]:
    """A server whose lake is ``s3://<new bucket>/lake``; yields it and the bucket."""
    for name, value in (("AWS_ENDPOINT_URL", endpoint), ("AWS_ACCESS_KEY_ID", MOTO_KEY),
                        ("AWS_SECRET_ACCESS_KEY", MOTO_SECRET),
                        ("AWS_DEFAULT_REGION", MOTO_REGION)):
        monkeypatch.setenv(name, value)
    bucket = f"lake-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=endpoint, region_name=MOTO_REGION).create_bucket(
        Bucket=bucket)
    settings = platform_settings(store_url, tmp_path, lake_url=f"s3://{bucket}/lake")
    with running_platform(settings) as platform:
        yield platform, bucket


def objects(endpoint: str, bucket: str) -> list[str]:
    listing = boto3.client("s3", endpoint_url=endpoint, region_name=MOTO_REGION) \
        .list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in listing.get("Contents", [])]


def test_files_live_in_s3(s3_platform: tuple[Platform, str], endpoint: str) -> None:
    platform, bucket = s3_platform
    body = bytes(range(256)) * (11 * 4096)  # 11 MB: a multipart upload of several parts
    with platform.client() as http:
        created = http.put(f"{API}/files/plant/big.bin", content=body)
        assert created.status_code == 201, created.text
        assert created.json()["checksum"] == "sha256:" + hashlib.sha256(body).hexdigest()
        stored = objects(endpoint, bucket)
        assert len(stored) == 1 and stored[0].startswith("lake/objects/")

        assert http.get(f"{API}/files/plant/big.bin").content == body
        part = http.get(f"{API}/files/plant/big.bin", headers={"Range": "bytes=5000000-5000009"})
        assert part.status_code == 206 and part.content == body[5_000_000:5_000_010]

        http.put(f"{API}/files/plant/big.bin", content=b"small",
                 params={"overwrite": "true"}).raise_for_status()
        http.post(f"{API}/files/plant/big.bin", content=b"+more",
                  params={"op": "append"}).raise_for_status()
        assert http.get(f"{API}/files/plant/big.bin").content == b"small+more"
        assert len(objects(endpoint, bucket)) == 1

        http.put(f"{API}/files/plant/t.csv", content=b"a,b\n1,2\n").raise_for_status()
        assert http.get(f"{API}/table/plant/t.csv").json()["rows"] == [[1, 2]]

        assert http.delete(f"{API}/dirs/plant", params={"recursive": "true"}).status_code == 204
    assert objects(endpoint, bucket) == []


def test_the_orphan_sweep_lists_and_deletes_in_s3(s3_platform: tuple[Platform, str],
                                                 endpoint: str) -> None:
    import asyncio

    from lakeport.server.files.lake import lake_for
    from lakeport.server.files.sweep import sweep_orphans
    from lakeport.server.store import Store

    platform, bucket = s3_platform
    with platform.client() as http:
        http.put(f"{API}/files/kept.bin", content=b"kept").raise_for_status()
    boto3.client("s3", endpoint_url=endpoint, region_name=MOTO_REGION).put_object(
        Bucket=bucket, Key="lake/objects/ab/orphan", Body=b"cut short")

    async def sweep() -> int:
        lake = await lake_for(platform.settings.lake_url).open()
        async with Store(platform.settings.store_url) as store:
            return await sweep_orphans(lake, store, older_than=0)

    assert asyncio.run(sweep()) == 1
    remaining = objects(endpoint, bucket)
    assert len(remaining) == 1 and "orphan" not in remaining[0]
    with platform.client() as http:
        assert http.get(f"{API}/files/kept.bin").content == b"kept"


S3_SETTINGS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION")


@pytest.mark.parametrize("given", [
    frozenset(chosen) for size in range(len(S3_SETTINGS) + 1)
    for chosen in itertools.combinations(S3_SETTINGS, size)])
def test_the_lake_reads_the_s3_settings_the_sink_reads(
        given: frozenset[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``AWS_ENDPOINT_URL_S3`` before ``AWS_ENDPOINT_URL``, ``AWS_REGION`` before
    ``AWS_DEFAULT_REGION``: the same for the file service's lake and the s3:// sink."""
    from lakeport.export.sinks.s3 import S3Sink
    from lakeport.server.files.lake import lake_for

    for name in S3_SETTINGS:
        if name in given:
            monkeypatch.setenv(name, f"http://{name.lower()}:9000" if "URL" in name
                               else name.lower())
        else:
            monkeypatch.delenv(name, raising=False)
    endpoint = next((f"http://{n.lower()}:9000" for n in S3_SETTINGS[:2] if n in given), None)
    region = next((n.lower() for n in S3_SETTINGS[2:] if n in given), None)

    fs = lake_for("s3://bucket/lake").fs  # type: ignore[attr-defined]
    sink = S3Sink("s3://bucket/lake")

    assert fs.endpoint_url == sink.config.resolved_endpoint() == endpoint
    assert fs.client_kwargs.get("region_name") == sink.config.resolved_region() == region


def test_only_storage_options_reads_the_storage_environment() -> None:
    """The lake and the S3 / ADLS / Delta sinks take endpoint, region and Azure credentials
    from ``lakeport.storage_options``: none of them reads the environment itself."""
    import ast

    import lakeport

    root = Path(lakeport.__file__).parent
    modules = [*sorted((root / "server" / "files" / "lake").glob("*.py")),
               *(root / "export" / "sinks" / f"{name}.py" for name in ("s3", "adls", "delta"))]
    readers = [f"{path.relative_to(root)}:{node.lineno}" for path in modules
               for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")
               and isinstance(node.value, ast.Name) and node.value.id == "os"]
    assert readers == []

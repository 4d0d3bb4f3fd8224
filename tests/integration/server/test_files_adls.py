"""The file service with its bytes in Azure Blob / ADLS (Azurite, a real Azure Storage emulator
started for this module)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _azurite import INSTALL_TIMEOUT_S, Azurite, azurite_server, find_azurite_blob

from server_fixtures import Platform, platform_settings, running_platform

API = "/api/v1"

# The first run on a machine installs Azurite with npm inside the module fixture.
pytestmark = pytest.mark.timeout(90 if find_azurite_blob() else 90 + INSTALL_TIMEOUT_S)


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with azurite_server(tmp_path_factory.mktemp("azurite")) as server:
        yield server


def blobs(azurite: Azurite, container: str) -> list[str]:
    from azure.storage.blob import ContainerClient

    client = ContainerClient.from_connection_string(azurite.connection_string, container)
    return [blob.name for blob in client.list_blobs()]


@pytest.fixture
def adls_platform(azurite: Azurite, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Platform, str]]:
    """A server (SQLite store) whose lake is ``abfs://<new container>@<account>/lake``."""
    from azure.storage.blob import BlobServiceClient

    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    container = f"lake-{uuid.uuid4().hex[:10]}"
    BlobServiceClient.from_connection_string(azurite.connection_string) \
        .create_container(container)
    settings = platform_settings(f"sqlite:///{tmp_path / 'store.db'}", tmp_path,
                                 lake_url=f"abfs://{container}@{azurite.account}/lake")
    with running_platform(settings) as platform:
        yield platform, container


def test_files_live_in_the_container(adls_platform: tuple[Platform, str],
                                     azurite: Azurite) -> None:
    platform, container = adls_platform
    body = bytes(range(256)) * 40_000  # 10 MB: several blocks
    with platform.client() as http:
        put = http.put(f"{API}/files/plant/big.bin", content=body)
        assert put.status_code == 201, put.text
        assert put.json()["checksum"] == "sha256:" + hashlib.sha256(body).hexdigest()
        stored = blobs(azurite, container)
        assert len(stored) == 1 and stored[0].startswith("lake/objects/")

        assert http.get(f"{API}/files/plant/big.bin").content == body
        part = http.get(f"{API}/files/plant/big.bin", headers={"Range": "bytes=100-109"})
        assert part.status_code == 206 and part.content == body[100:110]

        http.put(f"{API}/files/plant/big.bin", content=b"small",
                 params={"overwrite": "true"}).raise_for_status()
        assert http.get(f"{API}/files/plant/big.bin").content == b"small"
        assert len(blobs(azurite, container)) == 1, "the replaced object is gone"

        assert http.delete(f"{API}/files/plant/big.bin").status_code == 204
    assert blobs(azurite, container) == []

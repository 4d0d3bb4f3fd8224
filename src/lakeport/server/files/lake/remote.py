"""A lake in object storage through fsspec: ``s3://bucket/prefix`` (s3fs) and
``abfs://container@account/prefix`` (adlfs).

Endpoint, region and credentials come from the environment as for the exporter's sinks
(:mod:`lakeport.storage_options`): ``AWS_ENDPOINT_URL(_S3)``, ``AWS_REGION`` /
``AWS_DEFAULT_REGION`` and the AWS credential chain; ``AZURE_STORAGE_CONNECTION_STRING``,
``AZURE_STORAGE_ACCOUNT_KEY`` or ``AZURE_STORAGE_SAS_TOKEN``, else ``DefaultAzureCredential``.
Closing a write commits the upload, so readers never see half an object.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from lakeport.errors import Invalid
from lakeport.server.files.lake.base import Lake
from lakeport.storage_options import AzureCredentials, s3_endpoint, s3_region

REMOTE_BLOCK = 8 * 1024 * 1024
"""Block size of remote objects (S3 multipart parts must be at least 5 MB)."""


class RemoteLake(Lake):
    """Objects in a bucket or container, below the URL's prefix."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        scheme = urlsplit(url).scheme
        if scheme not in _FILESYSTEMS:
            raise Invalid(f"bad lake URL {url!r}: use s3://bucket/prefix "
                          "or abfs://container@account/prefix")
        extra, filesystem = _FILESYSTEMS[scheme]
        try:
            self.fs, self.prefix = filesystem(url.split("?", 1)[0])
        except ImportError as exc:
            raise Invalid(f"the lake URL {url!r} needs {exc.name}: "
                          f"pip install 'lakeport[{extra}]'") from exc

    def location(self, key: str) -> str:
        """``bucket/prefix/key``: where ``key`` lives for the filesystem."""
        return f"{self.prefix}/{key}"

    def check(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.ls(self.prefix, detail=False)

    def open_write(self, key: str) -> BinaryIO:
        return self.fs.open(self.location(key), "wb", block_size=REMOTE_BLOCK)

    def finish_write(self, handle: BinaryIO, key: str) -> None:
        handle.close()

    def open_read(self, key: str) -> BinaryIO:
        return self.fs.open(self.location(key), "rb", block_size=REMOTE_BLOCK)

    def delete_now(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.location(key))

    def object_ages(self) -> dict[str, float]:
        now = time.time()
        ages: dict[str, float] = {}
        for path, info in self.fs.find(f"{self.prefix}/objects", detail=True).items():
            modified = info.get("LastModified") or info.get("last_modified") or info.get("mtime")
            stamp = modified.timestamp() if hasattr(modified, "timestamp") else modified
            ages[path[len(self.prefix) + 1:]] = now - float(stamp) if stamp else 0.0
        return ages


def _s3(url: str) -> tuple[Any, str]:
    """The s3fs filesystem of ``s3://bucket/prefix`` and the objects' prefix ``bucket/prefix``."""
    import s3fs

    from lakeport.export.sinks.s3 import parse_s3_url

    bucket, prefix = parse_s3_url(url)
    region = s3_region()
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint(), skip_instance_cache=True,
                           client_kwargs={"region_name": region} if region else {})
    return fs, "/".join(p for p in (bucket, prefix) if p)


def _azure(url: str) -> tuple[Any, str]:
    """The adlfs filesystem of ``abfs://container@account/prefix`` and the objects' prefix
    ``container/prefix``."""
    import adlfs

    from lakeport.export.sinks.adls import parse_abfs_url

    container, account, prefix = parse_abfs_url(url)
    credentials = AzureCredentials.resolve(account)
    options: dict[str, Any] = {"skip_instance_cache": True}
    if credentials.connection_string:
        options["connection_string"] = credentials.connection_string
    else:
        options["account_name"] = credentials.account
        if credentials.account_key:
            options["account_key"] = credentials.account_key
        elif credentials.sas_token:
            options["sas_token"] = credentials.sas_token
        else:
            options["anon"] = False  # DefaultAzureCredential
    return adlfs.AzureBlobFileSystem(**options), "/".join(p for p in (container, prefix) if p)


_FILESYSTEMS: dict[str, tuple[str, Callable[[str], tuple[Any, str]]]] = {
    "s3": ("s3", _s3), "abfs": ("azure", _azure), "abfss": ("azure", _azure),
}
"""URL scheme → (the pip extra it needs, its filesystem and the objects' prefix)."""


__all__ = ["RemoteLake"]

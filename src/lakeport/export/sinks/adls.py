"""Azure Data Lake Storage Gen2 / Blob Storage sink: ``abfs://container@account/prefix``.

Each partition of a batch is written to a local temporary file, then uploaded block by block
(never the whole file in memory) to ``<prefix>/<topic>/<partition>/<topic>-<first>-<last>.<ext>``
inside the container. The key depends only on the batch, so a retried write overwrites the
same blob: one copy per row. Blob uploads commit the block list atomically, so readers never
see half a file.

Credentials, first match wins: ``connection_string`` (or ``AZURE_STORAGE_CONNECTION_STRING``),
``account_key`` (``AZURE_STORAGE_ACCOUNT_KEY``), ``sas_token`` (``AZURE_STORAGE_SAS_TOKEN``),
else ``DefaultAzureCredential`` (managed identity, ``az login``, ``AZURE_CLIENT_ID``/...).
``account_url`` points at another endpoint (Azurite, sovereign clouds, private links).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity.aio import DefaultAzureCredential  # when no key, SAS or connection string
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import BlobServiceClient, ContainerClient, ExponentialRetry
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from lakeport.errors import Invalid, LakeportError, NotFound, Terminal, Transient, Unavailable
from lakeport.export.formats import check_format
from lakeport.export.sinks.base import Batch, Sink, parse_options, staged
from lakeport.storage_options import (
    ENV_ACCOUNT_KEY,
    ENV_ACCOUNT_NAME,
    ENV_CONNECTION_STRING,
    ENV_SAS_TOKEN,
    AzureCredentials,
    setting,
)


class AdlsOptions(BaseModel):
    """Options of the ``abfs://`` sink; unset secrets fall back to the ``AZURE_STORAGE_*`` env."""

    model_config = ConfigDict(extra="forbid")

    account_name: str | None = None
    account_key: SecretStr | None = None
    sas_token: SecretStr | None = None
    connection_string: SecretStr | None = None
    account_url: str | None = Field(
        None, description="Blob endpoint, e.g. http://127.0.0.1:10000/devstoreaccount1"
    )
    partition_by_asset: bool = Field(
        False, description="Add an asset=<name> partition below date="
    )
    max_retries: int = Field(1, ge=0, description="Retries inside one call to Azure")
    timeout: float = Field(30.0, gt=0, description="Seconds to connect and per read")
    block_size: int = Field(
        4 * 1024 * 1024, ge=64 * 1024, le=4000 * 1024 * 1024,
        description="Upload block size: a larger file is sent as blocks of this size",
    )
    max_concurrency: int = Field(2, ge=1, description="Blocks uploaded in parallel per file")
    tmp_dir: Path | None = Field(None, description="Where partition files are staged")


def parse_abfs_url(url: str) -> tuple[str, str | None, str]:
    """``abfs[s]://container@account[.dfs.core.windows.net]/prefix`` → (container, account, prefix).

    The account may be missing (``abfs://container/prefix``): it then comes from the options,
    the connection string or ``AZURE_STORAGE_ACCOUNT_NAME``.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("abfs", "abfss"):
        raise Invalid(f"bad ADLS URL {url!r}: expected abfs://container@account/prefix")
    rest = rest.split("?", 1)[0]
    location, _, prefix = rest.partition("/")
    container, at, host = location.partition("@")
    account = host.split(".", 1)[0] if at else None
    if not container or (at and not account):
        raise Invalid(f"bad ADLS URL {url!r}: expected abfs://container@account/prefix")
    return container, account, prefix.strip("/")


class AdlsSink(Sink):
    """Lands batches as blobs in an Azure Storage container (ADLS Gen2 or plain Blob)."""

    scheme = "abfs"
    extra = "azure"

    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(url, options)
        self.config: AdlsOptions = parse_options(AdlsOptions, self.options, self.describe())
        self.container, url_account, self.prefix = parse_abfs_url(url)
        credentials = AzureCredentials.resolve(url_account or self.config.account_name,
                                               connection_string=self.config.connection_string)
        connection, self.account = credentials.connection_string, credentials.account
        if not self.account and not connection:
            raise Invalid(
                f"no storage account for {self.describe()}: use abfs://container@account/prefix "
                f"or set {ENV_ACCOUNT_NAME}"
            )
        self._service: BlobServiceClient | None = None
        self._container: ContainerClient | None = None
        self._credential: Any = None

    # -- clients ---------------------------------------------------------------------------
    @staticmethod
    def _secret(value: SecretStr | None, env: str) -> str | None:
        return setting(value, env)

    def _account_url(self) -> str:
        if self.config.account_url:
            return self.config.account_url.rstrip("/")
        return f"https://{self.account}.blob.core.windows.net"

    async def open(self) -> None:
        client_options: dict[str, Any] = {
            # Bounds the memory of one upload to block_size x max_concurrency.
            "max_single_put_size": self.config.block_size,
            "max_block_size": self.config.block_size,
            # The SDK's default storage backoff waits 15 s and more; the exporter retries too.
            "retry_policy": ExponentialRetry(
                initial_backoff=0.5, increment_base=2, random_jitter_range=0.5,
                retry_total=self.config.max_retries,
            ),
            "connection_timeout": self.config.timeout,
            "read_timeout": self.config.timeout,
        }
        connection = self._secret(self.config.connection_string, ENV_CONNECTION_STRING)
        try:
            if connection:  # its BlobEndpoint (or AccountName) names the endpoint
                self._service = BlobServiceClient.from_connection_string(
                    connection, **client_options
                )
            else:
                self._service = BlobServiceClient(
                    self._account_url(), credential=self._make_credential(), **client_options
                )
        except ValueError as exc:
            raise Invalid(
                f"bad Azure credentials or endpoint for {self.describe()}: {exc}"
            ) from exc
        self.account = self.account or self._service.account_name
        self._container = self._service.get_container_client(self.container)

    def _make_credential(self) -> Any:
        key = self._secret(self.config.account_key, ENV_ACCOUNT_KEY)
        if key:
            return {"account_name": self.account, "account_key": key}
        sas = self._secret(self.config.sas_token, ENV_SAS_TOKEN)
        if sas:
            return sas.lstrip("?")
        self._credential = DefaultAzureCredential()
        return self._credential

    async def close(self) -> None:
        if self._service is not None:
            await self._service.close()
            self._service = self._container = None
        if self._credential is not None:
            await self._credential.close()
            self._credential = None

    def _client(self) -> ContainerClient:
        if self._container is None:
            raise Terminal(f"the sink {self.describe()} is not open: use 'async with sink:'")
        return self._container

    # -- the Sink API ----------------------------------------------------------------------
    async def healthcheck(self) -> None:
        """Check that the container exists and the credentials may list it.

        Listing (not container properties) works with account keys, Entra ID roles and
        container-scoped SAS tokens alike.
        """
        prefix = f"{self.prefix}/" if self.prefix else None
        try:
            pages = self._client().list_blobs(name_starts_with=prefix, results_per_page=1).by_page()
            async for _page in pages:
                break
        except (AzureError, OSError, TimeoutError) as exc:
            raise self._translate(exc, "check the container") from exc

    async def write(self, batch: Batch, fmt: str = "parquet") -> list[str]:
        """Upload one blob per partition of ``batch``; return their ``abfs://`` URLs."""
        extension = check_format(fmt).extension
        written = []
        for partition, table in batch.partitions(self.config.partition_by_asset):
            key = batch.object_key(self.prefix, partition, extension)
            await self._upload(table, key, fmt)
            written.append(self._blob_url(key))
        return written

    async def _upload(self, table: pa.Table, key: str, fmt: str) -> None:
        name = Path(key).name
        async with staged(table, name, fmt, self.config.tmp_dir, self.describe()) as (path, size):
            await self._upload_file(path, size, key, fmt)

    async def _upload_file(self, path: Path, size: int, key: str, fmt: str) -> None:
        settings = ContentSettings(content_type=check_format(fmt).content_type)
        try:
            with path.open("rb") as stream:
                await self._client().upload_blob(
                    key,
                    stream,
                    length=size,
                    overwrite=True,
                    content_settings=settings,
                    max_concurrency=self.config.max_concurrency,
                )
        except (AzureError, OSError, TimeoutError) as exc:
            raise self._translate(exc, f"upload {key}") from exc

    # -- errors ----------------------------------------------------------------------------
    def describe(self) -> str:
        return self.url.split("?", 1)[0]

    def _blob_url(self, key: str) -> str:
        scheme = self.url.partition("://")[0]
        return f"{scheme}://{self.container}@{self.account}/{key}"

    def _translate(self, exc: BaseException, action: str) -> LakeportError:
        """Map an Azure SDK or network error to Transient / Terminal with one clear line."""
        where = self.describe()
        code = getattr(exc, "error_code", None)
        code = str(getattr(code, "value", code)) if code else None
        status = getattr(exc, "status_code", None)
        if isinstance(exc, (ServiceRequestError, ServiceResponseError, OSError, TimeoutError)):
            endpoint = self._service.url.rstrip("/") if self._service else self._account_url()
            return Unavailable(f"cannot reach Azure Storage at {endpoint} "
                               f"for {where}: {_first_line(exc)}")
        if code == "ContainerNotFound" or (
            isinstance(exc, ResourceNotFoundError) and action == "check the container"
        ):
            return NotFound(
                f"container {self.container!r} does not exist in account {self.account!r}: "
                f"create it or fix the URL {where}"
            )
        if (
            isinstance(exc, ClientAuthenticationError)
            or code in ("AuthenticationFailed", "AuthorizationFailure")
            or status == 401
        ):
            # AuthorizationFailure is also what an account firewall answers: say so.
            network = ", or the account's network rules" if code == "AuthorizationFailure" else ""
            return Terminal(
                f"Azure rejected the credentials for {where}: check {ENV_ACCOUNT_KEY}, "
                f"{ENV_SAS_TOKEN} or {ENV_CONNECTION_STRING}{network} "
                f"({code or _first_line(exc)})"
            )
        if status == 403:
            return Terminal(
                f"Azure denied access to {where} ({code or 'forbidden'}): the credentials need "
                f"read, write, create and list permission on container {self.container!r}"
            )
        if (isinstance(exc, HttpResponseError) and status in (408, 429)) or (status or 0) >= 500:
            return Transient(f"Azure Storage is busy ({status} {code}) while trying to {action} "
                             f"for {where}")
        return Terminal(f"Azure Storage refused to {action} for {where}: "
                        f"{code or _first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


__all__ = ["AdlsOptions", "AdlsSink", "parse_abfs_url"]

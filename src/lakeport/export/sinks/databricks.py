"""Databricks Unity Catalog volume sink: ``dbfs:/Volumes/<catalog>/<schema>/<volume>/<path>``.

Files are written locally, then streamed to the volume with the Files API (``databricks-sdk``),
overwriting the same deterministic path on a retry. Authentication: OAuth M2M
(``DATABRICKS_CLIENT_ID`` / ``DATABRICKS_CLIENT_SECRET``) or a token (``DATABRICKS_TOKEN`` /
``DATABRICKS_ACCESS_TOKEN``); workspace from ``DATABRICKS_HOST`` / ``DATABRICKS_SERVER_HOSTNAME``.
Options (:class:`DatabricksOptions`) override the environment; an unknown option is an error.

With ``DATABRICKS_DELTA_TABLE`` and a cluster or warehouse id, an ingestion job is created (or
reset) once per sink on the first write; see :mod:`lakeport.export.sinks.databricks_jobs`.
"""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.errors import (
    DatabricksError,
    InternalError,
    PermissionDenied,
    TemporarilyUnavailable,
    TooManyRequests,
    Unauthenticated,
)
from databricks.sdk.errors import NotFound as DatabricksNotFound
from databricks.sdk.service.jobs import JobSettings
from databricks.sdk.service.workspace import ImportFormat
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from lakeport.errors import Invalid, NotFound, Terminal, Transient, Unavailable
from lakeport.export.formats import check_format
from lakeport.export.sinks import databricks_jobs as jobs
from lakeport.export.sinks.base import Batch, Sink, parse_options, staged
from lakeport.storage_options import setting

_ENV = {
    "host": ("DATABRICKS_HOST", "DATABRICKS_SERVER_HOSTNAME"),
    "client_id": ("DATABRICKS_CLIENT_ID",),
    "client_secret": ("DATABRICKS_CLIENT_SECRET",),
    "token": ("DATABRICKS_TOKEN", "DATABRICKS_ACCESS_TOKEN"),
    "job_cluster_id": ("DATABRICKS_JOB_CLUSTER_ID",),
    "job_warehouse_id": ("DATABRICKS_JOB_WAREHOUSE_ID",),
    "delta_table": ("DATABRICKS_DELTA_TABLE",),
}
DEFAULT_JOB_WORKSPACE_DIR = "/Shared/lakeport"


class DatabricksOptions(BaseModel):
    """Options of the ``dbfs:/Volumes/...`` sink; unset ones come from ``DATABRICKS_*``."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = Field(None, description="Workspace URL (DATABRICKS_HOST)")
    client_id: str | None = Field(None, description="OAuth M2M client id")
    client_secret: SecretStr | None = Field(None, description="OAuth M2M client secret")
    token: SecretStr | None = Field(None, description="Personal access token")
    job_cluster_id: str | None = Field(None, description="Cluster of the Auto Loader job")
    job_warehouse_id: str | None = Field(None, description="SQL warehouse of the COPY INTO job")
    delta_table: str | None = Field(None, description="<catalog>.<schema>.<table> the job fills")
    job_workspace_dir: str = Field(DEFAULT_JOB_WORKSPACE_DIR,
                                   description="Workspace folder of the COPY INTO SQL file")
    retry_timeout_seconds: int = Field(120, ge=1, description="The SDK's retry budget per call")
    connect_timeout: float = Field(10.0, gt=0, description="Seconds to reach the workspace")
    partition_by_asset: bool = Field(False, description="Add an asset=<name> partition below date=")
    tmp_dir: Path | None = Field(None, description="Where files are staged before upload")


def parse_volume_url(url: str) -> tuple[str, str]:
    """``dbfs:/Volumes/c/s/v/a/b`` → (``/Volumes/c/s/v``, ``a/b``)."""
    path = url.removeprefix("dbfs:")
    if path.startswith("//"):  # dbfs:///Volumes/...
        path = path[2:]
    parts = [p for p in path.split("/") if p]
    if len(parts) < 4 or parts[0] != "Volumes":
        raise Invalid(
            f"bad Databricks volume URL {url!r}: expected "
            "dbfs:/Volumes/<catalog>/<schema>/<volume>[/<path>]"
        )
    return "/" + "/".join(parts[:4]), "/".join(parts[4:])


class DatabricksVolumeSink(Sink):
    """Lands batches as files in a Unity Catalog volume through the Databricks Files API."""

    scheme = "dbfs"
    extra = "databricks"

    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(url, options)
        self.volume, self.prefix = parse_volume_url(url)
        self.landing = "/".join(p for p in (self.volume, self.prefix) if p)
        self.config: DatabricksOptions = parse_options(DatabricksOptions, self.options,
                                                       self.describe())
        self.settings = {key: setting(getattr(self.config, key), *envs)
                         for key, envs in _ENV.items()}
        host = self.settings["host"]
        if not host:
            raise Invalid(
                "no Databricks workspace for the dbfs:/ sink: set DATABRICKS_HOST "
                "(or DATABRICKS_SERVER_HOSTNAME)"
            )
        self.host = host if "://" in host else f"https://{host}"
        table = self.settings["delta_table"]
        self.delta_table = jobs.check_table_name(table) if table else None
        self.job_kind = ("autoloader" if self.settings["job_cluster_id"]
                         else "copy_into" if self.settings["job_warehouse_id"] else None)
        if self.job_kind and not self.delta_table:
            raise Invalid("an ingestion job (DATABRICKS_JOB_CLUSTER_ID or "
                          "DATABRICKS_JOB_WAREHOUSE_ID) needs DATABRICKS_DELTA_TABLE="
                          "<catalog>.<schema>.<table>")
        if self.job_kind == "autoloader" and not self.prefix:
            raise Invalid(f"the Auto Loader job needs a folder inside the volume: use "
                          f"dbfs:{self.volume}/<folder> instead of {url!r}")
        self.job_workspace_dir = self.config.job_workspace_dir.rstrip("/")
        self.job_id: int | None = None
        self._client: WorkspaceClient | None = None
        self._job_lock = asyncio.Lock()
        self._job_ready = False

    # -- clients and errors -----------------------------------------------------------------
    def _make_client(self) -> WorkspaceClient:
        s = self.settings
        common: dict[str, Any] = {
            "host": self.host,
            "retry_timeout_seconds": self.config.retry_timeout_seconds,
            "disable_experimental_files_api_client": True,  # one streamed PUT per file
        }
        if s["client_id"] and s["client_secret"]:
            discovery_url = f"{self.host}/oidc/.well-known/oauth-authorization-server"
            # The SDK fetches this at sign-in with its own 5-minute retry budget: probe it once
            # first so that an unreachable workspace is reported at once.
            requests.get(discovery_url, timeout=self.config.connect_timeout)
            return WorkspaceClient(config=Config(
                client_id=s["client_id"], client_secret=s["client_secret"],
                auth_type="oauth-m2m", discovery_url=discovery_url, **common))
        if s["token"]:
            return WorkspaceClient(config=Config(token=s["token"], auth_type="pat", **common))
        raise Invalid("no Databricks credentials: set DATABRICKS_CLIENT_ID and "
                      "DATABRICKS_CLIENT_SECRET (OAuth M2M) or DATABRICKS_TOKEN")

    async def _workspace(self) -> WorkspaceClient:
        if self._client is None:
            self._client = await self._call(self._make_client, what="sign in")
        return self._client

    async def _call(self, fn: Any, *args: Any, what: str, **kwargs: Any) -> Any:
        """Run a blocking SDK call in a thread, translating its errors into lakeport's."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except (Invalid, Terminal, Transient):
            raise
        except Exception as exc:
            raise self._translate(exc, what) from exc

    def _translate(self, exc: Exception, what: str) -> Exception:
        if isinstance(exc, TimeoutError) and isinstance(exc.__cause__, DatabricksError):
            exc = exc.__cause__  # the SDK's retries ran out: the last answer says why
        where = f"Databricks at {self.host} ({what})"
        detail = str(exc).split(". Config:")[0].strip()
        bad_credentials = (f"{where}: the credentials were rejected ({detail}); check "
                           "DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET or DATABRICKS_TOKEN")
        if isinstance(exc, Unauthenticated):
            return Terminal(bad_credentials)
        if isinstance(exc, PermissionDenied):
            return Terminal(f"{where}: permission denied ({detail}); grant the principal "
                            "USE CATALOG, USE SCHEMA, READ VOLUME and WRITE VOLUME")
        if isinstance(exc, TooManyRequests | TemporarilyUnavailable | InternalError):
            return Transient(f"{where}: busy, will retry ({detail})")
        if isinstance(exc, DatabricksNotFound):
            return NotFound(f"{where}: not found ({detail})")
        if isinstance(exc, DatabricksError):
            return Terminal(f"{where}: refused ({detail})")
        if isinstance(exc, requests.ConnectionError | requests.Timeout | TimeoutError):
            return Unavailable(f"cannot reach {where}: {detail}")
        lowered = detail.lower()
        if any(w in lowered for w in ("connection", "timed out", "unreachable", "max retries")):
            return Unavailable(f"cannot reach {where}: {detail}")
        if any(w in lowered for w in ("invalid_client", "unauthorized", "401", "invalid access")):
            return Terminal(bad_credentials)
        if isinstance(exc, ValueError):  # the SDK's configuration and sign-in errors
            return Terminal(f"{where}: {detail}")
        return Transient(f"{where}: unexpected error, will retry ({type(exc).__name__}: "
                         f"{detail})")

    async def close(self) -> None:
        self._client = None

    # -- sink API ---------------------------------------------------------------------------
    def _missing_volume(self) -> NotFound:
        return NotFound(f"volume {self.volume} does not exist or is not visible to this "
                        "principal (create it, or grant READ VOLUME and WRITE VOLUME on it)")

    async def healthcheck(self) -> None:
        w = await self._workspace()
        try:
            await self._call(w.files.get_directory_metadata, self.volume,
                             what=f"read volume {self.volume}")
        except NotFound as exc:
            raise self._missing_volume() from exc

    async def write(self, batch: Batch, fmt: str = "parquet") -> list[str]:
        extension = check_format(fmt).extension
        w = await self._workspace()
        if self.job_kind and not self._job_ready:
            await self.ensure_job()
        written = []
        for partition, rows in batch.partitions(self.config.partition_by_asset):
            key = batch.object_key(self.prefix, partition, extension)
            remote = f"{self.volume}/{key}"
            await self._upload_table(w, rows, remote, fmt)
            written.append(f"dbfs:{remote}")
        return written

    async def _upload_table(self, w: WorkspaceClient, rows: pa.Table, remote: str,
                            fmt: str) -> None:
        name = remote.rsplit("/", 1)[-1]
        async with staged(rows, name, fmt, self.config.tmp_dir, self.describe()) as (local, _):
            try:
                await self._call(self._upload_file, w, local, remote, what=f"upload {remote}")
            except NotFound as exc:
                raise self._missing_volume() from exc

    @staticmethod
    def _upload_file(w: WorkspaceClient, local: Path, remote: str) -> None:
        with local.open("rb") as stream:  # streamed by the HTTP client, never read whole
            w.files.upload(remote, stream, overwrite=True)

    # -- ingestion job ----------------------------------------------------------------------
    @property
    def job_name(self) -> str:
        assert self.delta_table
        return jobs.job_name(self.delta_table, self.landing, self.host)

    async def ensure_job(self) -> int | None:
        """Create the ingestion job, or reset the one of the same name; once per sink."""
        if not self.job_kind:
            return None
        async with self._job_lock:
            if self._job_ready:
                return self.job_id
            w = await self._workspace()
            settings = await self._job_settings(w)
            existing = await self._call(
                lambda: [j.job_id for j in w.jobs.list(name=settings.name)],
                what=f"list jobs named {settings.name}",
            )
            if existing:
                self.job_id = existing[0]
                await self._call(w.jobs.reset, self.job_id, settings,
                                 what=f"update job {settings.name}")
            else:
                created = await self._call(lambda: w.jobs.create(**settings.as_shallow_dict()),
                                           what=f"create job {settings.name}")
                self.job_id = created.job_id
            self._job_ready = True
            return self.job_id

    async def _job_settings(self, w: WorkspaceClient) -> JobSettings:
        assert self.delta_table
        name = self.job_name
        if self.job_kind == "autoloader":
            state = f"{self.volume}/_lakeport/{name}"
            script = jobs.autoloader_script(self.landing, f"{state}/checkpoint",
                                            self.delta_table)
            script_path = f"{state}/autoloader.py"
            try:
                await self._call(w.files.upload, script_path, io.BytesIO(script.encode()),
                                 overwrite=True, what=f"upload {script_path}")
            except NotFound as exc:
                raise self._missing_volume() from exc
            return jobs.autoloader_job(name, self.landing, script_path,
                                       str(self.settings["job_cluster_id"]))
        sql_path = f"{self.job_workspace_dir}/{name}.sql"
        sql = jobs.copy_into_sql(self.landing, self.delta_table)
        await self._call(w.workspace.mkdirs, self.job_workspace_dir,
                         what=f"create workspace folder {self.job_workspace_dir}")
        await self._call(w.workspace.import_, sql_path,
                         content=base64.b64encode(sql.encode()).decode(),
                         format=ImportFormat.AUTO, overwrite=True,
                         what=f"write {sql_path}")
        return jobs.copy_into_job(name, self.landing, sql_path,
                                  str(self.settings["job_warehouse_id"]))


"""Delta Lake tables: ``delta+file:///path/table`` and ``delta+s3://bucket/path/table``.

Each batch is appended with ``deltalake.write_deltalake`` as ONE commit that also records an
app transaction ``(<app_id>/<topic>, last seqno)``. Before writing, the sink reads that
transaction's version from the table and skips the batch when it is already there, so a
batch retried after a crash is a no-op: exactly one copy of every row.

The table has the columns of :data:`lakeport.readings.ROW_SCHEMA` plus ``date`` (the UTC
date of ``time``, a Delta ``date``), and is partitioned by ``date`` (option
``partition_by_date``) and, with ``partition_by_asset``, by ``asset`` below it (deltalake
escapes the value in the folder name and keeps the exact name in the log). It is created on
the first write; the schema is enforced (an existing table with other columns is a Terminal
error naming them, and so is ``partition_by_asset`` on a table not partitioned by asset).

``delta+s3://`` takes the options of the ``s3://`` sink (endpoint, region, key, secret,
token) and passes them to deltalake as storage options; on plain-HTTP endpoints (MinIO,
moto) ``AWS_ALLOW_HTTP`` is set. deltalake 1.x commits safely to S3 with conditional
writes (no DynamoDB lock needed); stores without them need ``allow_unsafe_rename`` and a
single writer per table.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Schema, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, SchemaMismatchError
from pydantic import Field

from lakeport.errors import Invalid, LakeportError, NotFound, Terminal, Transient, Unavailable
from lakeport.export.sinks.base import Batch, Sink, os_error, parse_options
from lakeport.export.sinks.s3 import S3Options, S3Sink, parse_s3_url
from lakeport.readings import ROW_SCHEMA

DATE_COLUMN = "date"
ASSET_COLUMN = "asset"
TABLE_SCHEMA = ROW_SCHEMA.append(pa.field(DATE_COLUMN, pa.date32(), nullable=False))
CREDENTIAL_CODES = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied",
                    "ExpiredToken", "InvalidToken", "403 Forbidden")
OS_ERROR = re.compile(r"os error (\d+)|\[Errno (\d+)\]")
NETWORK_HINTS = ("connect", "connection", "timed out", "timeout", "dns error", "os error 111")


class DeltaOptions(S3Options):
    """Options of the ``delta+`` sinks: the S3 options plus the table's own."""

    app_id: str = Field(
        "lakeport",
        description="Names this writer's app transactions (<app_id>/<topic>); give each "
        "exporter writing to the same table its own",
    )
    partition_by_date: bool = Field(True, description="Partition a new table by date")
    allow_unsafe_rename: bool = Field(
        False, description="S3 stores without conditional writes: one writer per table only"
    )
    target_file_size: int | None = Field(None, gt=0, description="Bytes per data file")


def add_date_column(table: pa.Table) -> pa.Table:
    """``table`` cast to the Delta table's schema: ROW_SCHEMA plus ``date`` from ``time``."""
    try:
        rows = table.select(ROW_SCHEMA.names).cast(ROW_SCHEMA)
    except (KeyError, pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise Invalid(f"batch rows do not match the lake row schema: {exc}") from exc
    return rows.append_column(TABLE_SCHEMA.field(DATE_COLUMN), rows["time"].cast(pa.date32()))


class DeltaSink(Sink):
    """Appends batches to a Delta Lake table, one idempotent commit per batch."""

    scheme = "delta+file"
    extra = "delta"

    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(url, options)
        self.config: DeltaOptions = parse_options(DeltaOptions, self.options, self.describe())
        scheme = url.partition("://")[0]
        if scheme == "delta+file":
            parts = urlsplit(url)
            path = unquote(parts.path)
            if parts.netloc not in ("", "localhost") or not path or path == "/":
                raise Invalid(f"bad Delta URL {url!r}: expected delta+file:///path/to/table")
            self.table_uri = str(Path(path))
            self.bucket: str | None = None
        elif scheme == "delta+s3":
            self.bucket, key = parse_s3_url(url, "delta+s3")
            if not key:
                raise Invalid(f"bad Delta URL {url!r}: expected delta+s3://bucket/path/to/table")
            self.table_uri = f"s3://{self.bucket}/{key}"
        else:
            raise Invalid(f"bad Delta URL {url!r}: expected delta+file:// or delta+s3://")

    # -- storage ---------------------------------------------------------------------------
    def storage_options(self) -> dict[str, str] | None:
        """deltalake storage options for ``delta+s3://`` (None for local tables)."""
        if self.bucket is None:
            return None
        config = self.config
        options: dict[str, str] = {}
        endpoint = config.resolved_endpoint()
        if endpoint:
            options["AWS_ENDPOINT_URL"] = endpoint
            if endpoint.startswith("http://"):
                options["AWS_ALLOW_HTTP"] = "true"
        if config.resolved_region():
            options["AWS_REGION"] = config.resolved_region() or ""
        if config.key:
            options["AWS_ACCESS_KEY_ID"] = config.key
        if config.secret:
            options["AWS_SECRET_ACCESS_KEY"] = config.secret.get_secret_value()
        if config.token:
            options["AWS_SESSION_TOKEN"] = config.token.get_secret_value()
        if config.profile:
            options["AWS_PROFILE"] = config.profile
        if config.allow_unsafe_rename:
            options["AWS_S3_ALLOW_UNSAFE_RENAME"] = "true"
        return options

    def partition_columns(self) -> list[str]:
        """The partition columns of a new table: ``date`` and/or ``asset``, as configured."""
        return [name for name, chosen in ((DATE_COLUMN, self.config.partition_by_date),
                                          (ASSET_COLUMN, self.config.partition_by_asset))
                if chosen]

    def _check_partitions(self, table: DeltaTable) -> None:
        """``partition_by_asset`` needs a table partitioned by asset (a table's partitions
        are fixed when it is created)."""
        columns = table.metadata().partition_columns
        if self.config.partition_by_asset and ASSET_COLUMN not in columns:
            raise Terminal(f"option 'partition_by_asset' for {self.describe()}: the existing "
                           f"table is partitioned by {', '.join(columns) or 'nothing'}, not "
                           "asset — use a new table path or drop the option")

    def app_id(self, topic: str) -> str:
        return f"{self.config.app_id}/{topic}"

    def _open_table(self) -> DeltaTable | None:
        options = self.storage_options()
        if not DeltaTable.is_deltatable(self.table_uri, storage_options=options):
            return None
        return DeltaTable(self.table_uri, storage_options=options)

    # -- the Sink API ----------------------------------------------------------------------
    async def healthcheck(self) -> None:
        """The bucket / parent folder is reachable and an existing table has our schema."""
        if self.bucket is not None:
            await self._check_bucket()
        else:
            self._check_folder()
        try:
            await asyncio.to_thread(self._check_schema)
        except LakeportError:
            raise
        except Exception as exc:
            raise self._translate(exc, "open the table") from exc

    def _check_folder(self) -> None:
        """A local table's parent folder exists and is writable (deltalake would create it:
        a mistyped path must not start a new table somewhere else)."""
        parent = Path(self.table_uri).parent
        if not parent.is_dir():
            raise NotFound(f"folder {str(parent)!r} does not exist ({self.describe()}): "
                           "create it or fix the URL")
        if not os.access(parent, os.W_OK):
            raise Terminal(f"folder {str(parent)!r} is not writable ({self.describe()})")

    async def _check_bucket(self) -> None:
        s3_options = self.config.model_dump(include=set(S3Options.model_fields))
        async with S3Sink(self.table_uri, s3_options) as probe:
            await probe.healthcheck()

    def _check_schema(self) -> None:
        table = self._open_table()
        if table is None:
            return
        expected = {f.name: str(f.type) for f in Schema.from_arrow(TABLE_SCHEMA).fields}
        actual = {f.name: str(f.type) for f in table.schema().fields}
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        changed = sorted(n for n in set(expected) & set(actual) if expected[n] != actual[n])
        if missing or extra or changed:
            problems = []
            if missing:
                problems.append(f"missing columns {', '.join(missing)}")
            if extra:
                problems.append(f"unexpected columns {', '.join(extra)}")
            if changed:
                problems.append("other types for "
                                + ", ".join(f"{n} ({actual[n]}, expected {expected[n]})"
                                            for n in changed))
            raise Terminal(f"the Delta table {self.describe()} has another schema: "
                           f"{'; '.join(problems)} — use a new table path")
        self._check_partitions(table)

    async def write(self, batch: Batch, fmt: str = "parquet") -> list[str]:
        """Append ``batch`` as one commit, unless its app transaction is already in the table;
        return the data files the commit added (none when the batch was already there)."""
        if fmt != "parquet":
            raise Invalid(f"a Delta table stores Parquet only, not {fmt!r}: drop the format "
                          f"option for {self.describe()}")
        if batch.rows == 0:
            return []
        rows = add_date_column(batch.table)
        try:
            return await asyncio.to_thread(self._append, batch, rows)
        except LakeportError:
            raise
        except Exception as exc:
            raise self._translate(exc, f"append seqnos {batch.first_seqno}-{batch.last_seqno}")\
                from exc

    def _append(self, batch: Batch, rows: pa.Table) -> list[str]:
        app_id = self.app_id(batch.topic)
        table = self._open_table()
        before: set[str] = set()
        before_version = -1
        if table is not None:
            done = table.transaction_version(app_id)
            if done is not None and done >= batch.last_seqno:
                return []  # this batch (or a later one) is already committed
            self._check_partitions(table)
            before, before_version = set(table.file_uris()), table.version()
        elif self.bucket is None:
            self._check_folder()
        partition_by = (self.partition_columns() or None) if table is None else None
        write_deltalake(
            table if table is not None else self.table_uri,
            rows,
            mode="append",
            partition_by=partition_by,
            storage_options=self.storage_options() if table is None else None,
            target_file_size=self.config.target_file_size,
            commit_properties=CommitProperties(
                app_transactions=[Transaction(app_id=app_id, version=batch.last_seqno)]
            ),
        )
        return self._added_files(table, before, before_version, app_id, batch.last_seqno)

    def _added_files(self, table: DeltaTable | None, before: set[str], before_version: int,
                     app_id: str, seqno: int) -> list[str]:
        """The data files of the commit recording ``(app_id, seqno)``: those its version has
        and the version before lacks (commits of other writers are left out)."""
        if table is None:
            table = DeltaTable(self.table_uri, storage_options=self.storage_options())
        version = table.version()
        while version - 1 > before_version:  # other writers committed too: find ours
            earlier = DeltaTable(self.table_uri, version=version - 1,
                                 storage_options=self.storage_options())
            if earlier.transaction_version(app_id) != seqno:
                before = set(earlier.file_uris())
                break
            table, version = earlier, version - 1
        return sorted(set(table.file_uris()) - before)

    # -- errors ----------------------------------------------------------------------------
    def describe(self) -> str:
        return self.url.split("?", 1)[0]

    def _translate(self, exc: BaseException, action: str) -> LakeportError:
        """Map a deltalake / object store error to Transient or Terminal with one clear line."""
        where = self.describe()
        text = str(exc)
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        if isinstance(exc, SchemaMismatchError):
            return Terminal(f"the Delta table {where} has another schema: {first}")
        if isinstance(exc, CommitFailedError):
            return Transient(f"another writer committed to {where} first; retry ({first})")
        if "NoSuchBucket" in text:
            return NotFound(f"bucket {self.bucket!r} does not exist ({where}): create it or "
                            "fix the URL")
        code = next((c for c in CREDENTIAL_CODES if c in text), None)
        if code:
            return Terminal(f"S3 rejected the credentials for s3://{self.bucket}: {code}")
        if any(hint in text.lower() for hint in NETWORK_HINTS):
            return Unavailable(f"cannot reach the Delta table {where}: {first}")
        failed = OS_ERROR.search(text)
        if failed:  # deltalake reports file errors as text: "os error 28", "[Errno 5]"
            code = int(failed.group(1) or failed.group(2))
            return os_error(OSError(code, os.strerror(code)), f"could not {action} for {where}",
                            "free space or fix the folder's permissions, then restart")
        if isinstance(exc, OSError):
            return Transient(f"storage error while trying to {action} for {where}: {first}")
        return Terminal(f"could not {action} for {where}: {first}")


__all__ = ["TABLE_SCHEMA", "DeltaOptions", "DeltaSink", "add_date_column"]

"""Amazon S3 and S3-compatible stores (MinIO, Ceph, R2, moto...): ``s3://bucket/prefix``.

Each partition of a batch is written to a local temporary file, then uploaded with s3fs:
small files in one ``PutObject``, larger ones as a multipart upload of ``multipart_chunksize``
parts (the file is streamed from disk, never held in memory whole). The key is
``<prefix>/<topic>/<partition>/<topic>-<first>-<last>.<ext>`` and depends only on the batch,
so a retried write overwrites the same object: one copy per row. S3 makes an object visible
only once its upload completed, so readers never see half a file.

Settings, first match wins: the sink options, then the environment (``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL``, ``AWS_REGION`` / ``AWS_DEFAULT_REGION``), then the standard AWS chain
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``~/.aws``, instance roles).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from lakeport.errors import Invalid, LakeportError, NotFound, Terminal, Transient, Unavailable
from lakeport.export.formats import check_format
from lakeport.export.sinks.base import Batch, Sink, parse_options, staged
from lakeport.storage_options import s3_endpoint, s3_region

CREDENTIAL_ERRORS = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
     "InvalidSecurity", "TokenRefreshRequired", "AuthorizationHeaderMalformed"}
)
BUSY_ERRORS = frozenset(
    {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling",
     "RequestTimeTooSkewed"}
)


class S3Options(BaseModel):
    """Options of the ``s3://`` and ``delta+s3://`` sinks; unset ones come from the AWS chain."""

    model_config = ConfigDict(extra="forbid")

    endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint, e.g. http://127.0.0.1:9000 (else AWS)"
    )
    region: str | None = Field(None, description="Region, e.g. eu-central-1")
    key: str | None = Field(None, description="Access key id (else the AWS credential chain)")
    secret: SecretStr | None = Field(None, description="Secret access key")
    token: SecretStr | None = Field(None, description="Session token of temporary credentials")
    profile: str | None = Field(None, description="A profile of ~/.aws/config")
    partition_by_asset: bool = Field(False, description="Add an asset=<name> partition below date=")
    multipart_chunksize: int = Field(
        8 * 1024 * 1024, ge=5 * 1024 * 1024,
        description="Part size of multipart uploads (files of two parts or more use them)",
    )
    retries: int = Field(2, ge=0, description="Retries inside one call to S3")
    timeout: float = Field(30.0, gt=0, description="Seconds to connect and per read")
    tmp_dir: Path | None = Field(None, description="Where partition files are staged")

    def resolved_endpoint(self) -> str | None:
        return s3_endpoint(self.endpoint_url)

    def resolved_region(self) -> str | None:
        return s3_region(self.region)


def parse_s3_url(url: str, scheme: str = "s3") -> tuple[str, str]:
    """``s3://bucket/prefix`` → ``(bucket, prefix)``."""
    head, sep, rest = url.partition("://")
    bucket, _, prefix = rest.partition("/")
    if not sep or head != scheme or not bucket:
        raise Invalid(f"bad S3 URL {url!r}: expected {scheme}://bucket/prefix")
    return bucket, prefix.strip("/")


class S3Sink(Sink):
    """Lands batches as objects in an S3 bucket."""

    scheme = "s3"
    extra = "s3"

    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(url, options)
        self.bucket, self.prefix = parse_s3_url(url)
        self.config: S3Options = parse_options(S3Options, self.options, self.describe())
        self._fs: Any = None

    # -- client ----------------------------------------------------------------------------
    async def open(self) -> None:
        import s3fs

        config = self.config
        client_kwargs: dict[str, Any] = {}
        if config.resolved_region():
            client_kwargs["region_name"] = config.resolved_region()
        fs_kwargs: dict[str, Any] = {}
        if config.profile:
            fs_kwargs["profile"] = config.profile
        self._fs = s3fs.S3FileSystem(
            asynchronous=True,
            skip_instance_cache=True,
            endpoint_url=config.resolved_endpoint(),
            key=config.key,
            secret=config.secret.get_secret_value() if config.secret else None,
            token=config.token.get_secret_value() if config.token else None,
            client_kwargs=client_kwargs,
            config_kwargs={
                "connect_timeout": config.timeout,
                "read_timeout": config.timeout,
                "retries": {"max_attempts": config.retries + 1, "mode": "standard"},
            },
            **fs_kwargs,
        )
        self._fs.retries = 1  # s3fs's own retry loop: the runtime retries Transient errors
        try:
            await self._fs.set_session()
        except Exception as exc:
            self._fs = None
            raise self._translate(exc, "connect") from exc

    async def close(self) -> None:
        fs, self._fs = self._fs, None
        creator = getattr(fs, "_s3creator", None)
        if creator is not None and hasattr(creator, "__aexit__"):
            await creator.__aexit__(None, None, None)

    def _client(self) -> Any:
        if self._fs is None:
            raise Terminal(f"the sink {self.describe()} is not open: use 'async with sink:'")
        return self._fs

    # -- the Sink API ----------------------------------------------------------------------
    async def healthcheck(self) -> None:
        """Check that the bucket exists and the credentials are accepted (one list request)."""
        fs = self._client()
        try:
            await fs._s3.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        except Exception as exc:
            raise self._translate(exc, "list the bucket") from exc

    async def write(self, batch: Batch, fmt: str = "parquet") -> list[str]:
        """Upload one object per partition of ``batch``; return their ``s3://`` URLs."""
        extension = check_format(fmt).extension
        written = []
        for partition, table in batch.partitions(self.config.partition_by_asset):
            key = batch.object_key(self.prefix, partition, extension)
            await self._upload(table, key, fmt)
            written.append(f"s3://{self.bucket}/{key}")
        return written

    async def _upload(self, table: pa.Table, key: str, fmt: str) -> None:
        fs = self._client()
        name = Path(key).name
        async with staged(table, name, fmt, self.config.tmp_dir, self.describe()) as (path, _):
            try:
                await fs._put_file(
                    str(path),
                    f"{self.bucket}/{key}",
                    chunksize=self.config.multipart_chunksize,
                    max_concurrency=1,
                    ContentType=check_format(fmt).content_type,
                )
            except Exception as exc:
                raise self._translate(exc, f"upload {key}") from exc

    # -- errors ----------------------------------------------------------------------------
    def describe(self) -> str:
        return self.url.split("?", 1)[0]

    def _translate(self, exc: BaseException, action: str) -> LakeportError:
        return translate_s3_error(exc, self.bucket, self.describe(), action,
                                  self.config.resolved_endpoint())


def translate_s3_error(exc: BaseException, bucket: str, where: str, action: str,
                       endpoint: str | None) -> LakeportError:
    """Map a botocore / s3fs / network error to Transient or Terminal with one clear line."""
    if isinstance(exc, LakeportError):
        return exc
    response = _error_response(exc)
    if response is None:
        return _translate_network(exc, where, endpoint)
    code = str(response.get("Error", {}).get("Code") or "")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code == "NoSuchBucket" or (code in ("404", "NotFound") and action == "list the bucket"):
        return NotFound(f"bucket {bucket!r} does not exist ({where}): create it or fix the URL")
    if code in CREDENTIAL_ERRORS:
        return Terminal(f"S3 rejected the credentials for s3://{bucket}: {code} (check the "
                        "key/secret options or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)")
    if code in ("AccessDenied", "403") or status == 403:
        return Terminal(f"S3 rejected the credentials for s3://{bucket}: {code or 403} (they "
                        f"need s3:ListBucket and s3:PutObject on {where})")
    if code in BUSY_ERRORS or status in (408, 429) or (status or 0) >= 500:
        return Transient(f"S3 is busy ({code or status}) while trying to {action} for {where}")
    message = str(response.get("Error", {}).get("Message") or "").strip()
    return Terminal(f"S3 refused to {action} for {where}: {code or status}"
                    + (f" ({message})" if message else ""))


def _error_response(exc: BaseException) -> dict[str, Any] | None:
    """The botocore error response behind ``exc`` (s3fs wraps it in an OSError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        response = getattr(current, "response", None)
        if isinstance(response, dict) and "Error" in response:
            return response
        current = current.__cause__ or current.__context__
    return None


def _translate_network(exc: BaseException, where: str, endpoint: str | None) -> LakeportError:
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError, NoCredentialsError, PartialCredentialsError

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return Terminal(f"no AWS credentials for {where}: set AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY (or the key/secret options, or a profile)")
    if isinstance(exc, (BotoConnectionError, HTTPClientError, OSError, TimeoutError)):
        target = endpoint or "AWS S3"
        return Unavailable(f"cannot reach S3 at {target} for {where}: {_first_line(exc)}")
    return Terminal(f"S3 failed for {where}: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


__all__ = ["S3Options", "S3Sink", "parse_s3_url", "translate_s3_error"]

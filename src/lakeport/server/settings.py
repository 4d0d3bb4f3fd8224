"""What ``lakeport serve`` runs with: address, platform store, lake and topics."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lakeport.forward.config import ForwardConfig
from lakeport.home import default_streams_url, lakeport_home
from lakeport.streams.types import parse_size

DEFAULT_PORT = 8400
MiB = 1 << 20


def default_store_url() -> str:
    """SQLite under the lakeport home (``LAKEPORT_STORE`` overrides)."""
    import os

    return os.environ.get("LAKEPORT_STORE") or \
        f"sqlite:///{lakeport_home() / 'server' / 'lakeport.db'}"


def default_lake_url() -> str:
    """A folder under the lakeport home for data-lake files (``LAKEPORT_LAKE`` overrides)."""
    import os

    return os.environ.get("LAKEPORT_LAKE") or (lakeport_home() / "datalake").as_uri()


class ServerSettings(BaseModel):
    """Settings of one server process. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535, description="port (0: any free)")
    store_url: str = Field(default_factory=default_store_url,
                           description="platform store: sqlite:///path or postgresql://...")
    lake_url: str = Field(default_factory=default_lake_url,
                          description="where data-lake file bytes live: file://, s3://, abfs://")
    streams_url: str = Field(default_factory=default_streams_url,
                             description="topic engine behind the gateway and the recorder")
    record_topics: list[str] = Field(
        default_factory=list,
        description="topics of sensor readings the recorder stores as observations")
    max_body_bytes: int = Field(
        default=64 * MiB, gt=0,
        description="largest request body of the API routes other than file uploads and CSV "
                    "(lakeport serve --max-body); 413 above it")
    max_upload_bytes: int = Field(
        default=1 << 40, gt=0,
        description="largest body of a file upload or append (PUT/POST /api/v1/files/...; "
                    "lakeport serve --max-upload)")
    max_csv_bytes: int = Field(
        default=256 * MiB, gt=0,
        description="largest CSV upload (POST /api/v1/observations/csv; lakeport serve --max-csv)")
    max_header_bytes: int = Field(
        default=64 << 10, ge=1024,
        description="largest request line plus headers; 431 above it")
    header_timeout: float = Field(
        default=10.0, gt=0,
        description="seconds a connection has to send a request's line and headers "
                    "(lakeport serve --header-timeout); 408 and closed after it")
    body_timeout: float = Field(
        default=60.0, gt=0,
        description="seconds a request body may stop arriving (lakeport serve "
                    "--body-timeout); 408 and closed after it")
    max_fetch_bytes: int = Field(
        default=4 * MiB, gt=0,
        description="payload bytes in one WebSocket fetch reply at most (always at least one "
                    "message; lakeport serve --max-fetch)")

    task_lost_after: float = Field(
        default=30.0, gt=0, le=86_400,
        description="seconds after a worker's last heartbeat when its run is marked lost and "
                    "retried (lakeport serve --task-lost-after)")

    task_log_cap: int = Field(
        default=16 * MiB, ge=64 << 10,
        description="bytes of each task log stream kept per attempt (the tail; lakeport serve "
                    "--task-log-cap)")
    workers: int = Field(
        default=0, ge=0, le=64,
        description="task workers the server starts beside itself (lakeport serve --workers; "
                    "1 there by default)")
    worker_concurrency: int = Field(
        default=4, ge=1, le=1024,
        description="runs at once per local worker (lakeport serve --worker-concurrency)")

    forward: list[ForwardConfig] = Field(
        default_factory=list,
        description="edge topics this server forwards to a central side while it runs "
                    "(lakeport serve --forward TOPIC=URL; docs/forwarding.md)")

    @field_validator("max_body_bytes", "max_upload_bytes", "max_csv_bytes", "max_header_bytes",
                     "max_fetch_bytes", "task_log_cap", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return parse_size(value) if isinstance(value, str) else value


__all__ = ["DEFAULT_PORT", "ServerSettings", "default_lake_url", "default_store_url"]

"""What ``lakeport serve`` runs with: address, platform store, lake and topics."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from lakeport.home import default_streams_url, lakeport_home

DEFAULT_PORT = 8400


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


__all__ = ["DEFAULT_PORT", "ServerSettings", "default_lake_url", "default_store_url"]

"""The configuration of one exporter (CLI options and an exporter app's ``app.yaml``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lakeport.streams.types import parse_duration, parse_size, validate_topic_name


class ExportConfig(BaseModel):
    """What to export, where to, and how batches are cut. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topics: list[str] = Field(min_length=1, description="topics to export")
    to: str = Field(min_length=1, description="sink URL: file:///path, s3://bucket/prefix, ...")
    name: str | None = Field(
        default=None,
        description="exporter name = its consumer name (default export-<first topic>)",
    )
    format: Literal["parquet", "csv", "jsonl"] = "parquet"
    batch_rows: int = Field(default=100_000, gt=0, description="rows per batch at most")
    batch_bytes: int = Field(default=128 << 20, gt=0, description="payload bytes per batch at most")
    max_delay: float = Field(default=60.0, gt=0, description="seconds a partial batch waits")
    partition_by_asset: bool = Field(default=False, description="add asset=... partitions")
    streams_url: str | None = Field(default=None, description="streams engine URL")
    sink_options: dict[str, Any] = Field(default_factory=dict)
    until_idle: float | None = Field(
        default=None, gt=0, description="stop once the topics were drained and idle this long"
    )
    retry_initial: float = Field(default=0.5, gt=0, description="first retry delay (s)")
    retry_max: float = Field(default=30.0, gt=0, description="longest retry delay (s)")
    status_interval: float = Field(default=1.0, gt=0, description="status file period (s)")

    @field_validator("topics")
    @classmethod
    def _topics(cls, value: list[str]) -> list[str]:
        for topic in value:
            validate_topic_name(topic)
        if len(set(value)) != len(value):
            raise ValueError("a topic is listed twice")
        return value

    @field_validator("batch_bytes", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return parse_size(value) if isinstance(value, str) else value

    @field_validator("max_delay", "until_idle", "retry_initial", "retry_max", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str | timedelta) else value

    @model_validator(mode="after")
    def _name(self) -> ExportConfig:
        if self.name is None:
            object.__setattr__(self, "name", f"export-{self.topics[0]}")
        validate_topic_name(self.name or "")
        return self

    @property
    def exporter_name(self) -> str:
        return self.name or f"export-{self.topics[0]}"

"""Where the client connects and how patiently: URL, API key, timeouts, retries.

``ClientConfig.from_env()`` reads ``LAKEPORT_URL`` and ``LAKEPORT_API_KEY``, falling back to
``$LAKEPORT_HOME/client.json`` (``{"url": ..., "api_key": ...}``) for whatever is unset.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from lakeport.errors import Invalid
from lakeport.home import home_folder

DEFAULT_URL = "http://127.0.0.1:8400"
CONFIG_FILE = "client.json"


class ClientConfig(BaseModel):
    """Connection settings of a :class:`~lakeport.client.Client`. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(default=DEFAULT_URL, description="server base URL, e.g. http://host:8400")
    api_key: SecretStr | None = Field(default=None, description="an API key (lpk_...)")
    timeout: float = Field(default=30.0, gt=0, description="seconds to wait for a response")
    connect_timeout: float = Field(default=10.0, gt=0, description="seconds to connect")
    retries: int = Field(default=3, ge=0, description="retries of transient failures")
    backoff: float = Field(default=0.25, ge=0, description="first retry delay, doubled each time")
    max_backoff: float = Field(default=5.0, ge=0, description="longest delay between retries")

    def key(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key is not None else None

    @classmethod
    def from_env(cls, **overrides: Any) -> ClientConfig:
        """Settings from ``LAKEPORT_URL`` / ``LAKEPORT_API_KEY``, else the config file."""
        values: dict[str, Any] = read_config_file()
        if os.environ.get("LAKEPORT_URL"):
            values["url"] = os.environ["LAKEPORT_URL"]
        if os.environ.get("LAKEPORT_API_KEY"):
            values["api_key"] = os.environ["LAKEPORT_API_KEY"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return build(values, "client settings")


def config_path() -> Path:
    """``$LAKEPORT_HOME/client.json`` (``~/.lakeport/client.json`` by default)."""
    return home_folder() / CONFIG_FILE


def read_config_file() -> dict[str, Any]:
    """The config file's settings, or nothing when there is no file."""
    path = config_path()
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, orjson.JSONDecodeError) as exc:
        raise Invalid(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise Invalid(f"{path}: expected a JSON object like {{\"url\": ..., \"api_key\": ...}}")
    build(data, str(path))
    return data


def build(values: dict[str, Any], where: str) -> ClientConfig:
    try:
        return ClientConfig(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "settings"
        raise Invalid(f"{where}: {field}: {first['msg']}") from None


__all__ = ["CONFIG_FILE", "DEFAULT_URL", "ClientConfig", "config_path", "read_config_file"]

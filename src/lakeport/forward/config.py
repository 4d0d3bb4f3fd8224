"""What one forwarder does: from which edge topic to which central topic, as which site."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lakeport.errors import Invalid
from lakeport.streams.types import parse_size, validate_topic_name

SITE_HEADER = "lakeport-site"
"""The header naming the site a forwarded message came from."""

_OPTIONS = {"from_topic": "--from", "to_url": "--to", "batch_size": "--batch", "": "options"}
_SITE_RE = re.compile(r"^[0-9A-Za-z_.-]{1,100}$")


def default_site() -> str:
    """This machine's host name (up to its first dot), as a site name."""
    name = socket.gethostname().split(".")[0] or "edge"
    return re.sub(r"[^0-9A-Za-z_-]", "-", name)[:100]


def _checked(check: Callable[[Any], Any], value: Any) -> Any:
    """``check(value)``, its Invalid as the ValueError pydantic reports with the field."""
    try:
        return check(value)
    except Invalid as exc:
        raise ValueError(str(exc)) from None


class ForwardConfig(BaseModel):
    """One forwarder. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    from_topic: str = Field(description="the edge topic to forward")
    to_url: str = Field(description="the central engine: http(s)://host:port?api_key=..., "
                                    "nats://host:4222, file:///path")
    to_topic: str | None = Field(default=None, description="the central topic (default: "
                                                           "prefix + from_topic)")
    prefix: str = Field(default="", description="put before from_topic for the central name")
    site: str = Field(default_factory=default_site,
                      description="this site's name: in msg_ids and the lakeport-site header")
    name: str | None = Field(default=None, description="the edge consumer's name (default: "
                                                      "forward:<central host>:<central topic>)")
    max_rate: int | None = Field(default=None, gt=0,
                                 description="bytes per second on the wire at most")
    batch_size: int = Field(default=100_000, ge=1, le=100_000,
                            description="messages per request at most")

    @field_validator("from_topic", "to_topic", "name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _checked(validate_topic_name, value)

    @field_validator("site")
    @classmethod
    def _site(cls, value: str) -> str:
        if not _SITE_RE.fullmatch(value):
            raise ValueError(f"bad site {value!r}: use 1-100 of A-Z a-z 0-9 _ . -")
        return value

    @field_validator("to_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if not parts.scheme or not (parts.netloc or parts.path):
            raise ValueError(f"bad URL {value.split('?', 1)[0]!r}: use http://host:port?api_key=..."
                             " or nats://host:4222")
        return value

    @field_validator("max_rate", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            text = text[:-2] if text.lower().endswith("/s") else text
            return _checked(parse_size, text)
        return value

    @property
    def target(self) -> str:
        """The central topic's name."""
        return validate_topic_name(self.to_topic or self.prefix + self.from_topic)

    @property
    def consumer_name(self) -> str:
        """The edge consumer's name: it holds the acked position across restarts."""
        if self.name:
            return self.name
        host = urlsplit(self.to_url).netloc.rpartition("@")[2] or "local"
        return validate_topic_name(f"forward:{host}:{self.target}"[:200])

    @property
    def id_prefix(self) -> str:
        """msg_ids are ``<site>:<edge topic>:<edge seqno>``."""
        return f"{self.site}:{self.from_topic}:"

    @property
    def shown_url(self) -> str:
        """``to_url`` without its query (where an API key goes)."""
        return self.to_url.split("?", 1)[0]

    @classmethod
    def parse(cls, **options: Any) -> ForwardConfig:
        """A config from command-line options: Invalid naming the first bad option."""
        try:
            config = cls(**{k: v for k, v in options.items() if v is not None})
            config.target  # noqa: B018 - checks prefix + from_topic is a valid name
            return config
        except ValidationError as exc:
            error = exc.errors()[0]
            field = str(error["loc"][0]) if error["loc"] else ""
            option = _OPTIONS.get(field, "--" + field.replace("_", "-"))
            message = error["msg"].removeprefix("Value error, ")
            raise Invalid(f"{option}: {message}") from None
        except Invalid as exc:
            raise Invalid(f"--prefix: {exc}") from None

    @classmethod
    def from_spec(cls, spec: str, **options: Any) -> ForwardConfig:
        """``TOPIC=URL`` (``lakeport serve --forward``) plus the other options."""
        topic, sep, url = spec.partition("=")
        if not sep or not topic or not url:
            raise Invalid(f"--forward: bad {spec.split('?', 1)[0]!r}: use TOPIC=URL, e.g. "
                          "raw-sensor-data=http://central:8400?api_key=...")
        return cls.parse(from_topic=topic, to_url=url, **options)


__all__ = ["SITE_HEADER", "ForwardConfig", "default_site"]

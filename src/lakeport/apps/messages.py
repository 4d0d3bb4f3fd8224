"""The messages apps exchange, and the topics they travel on.

Every message is a JSON object with a ``type`` on one of four topics (the convention every
app, importer, exporter and the simulator follow):

| topic                | messages                                                      |
|----------------------|---------------------------------------------------------------|
| ``asset-data``       | data: ``Number``, ``String``, ``Boolean``, ``Object``          |
| ``control-changes``  | ``ControlChange``                                             |
| ``recommendations``  | ``Recommendation``                                            |
| ``data-tags``        | ``DataTag``                                                   |

Per app there are two more: ``app-config.<app>`` carries configuration updates at run time
and ``dead-letter.<app>`` receives messages whose handler kept failing. ``LAKEPORT_TOPIC_PREFIX``
(e.g. ``plant-a.``) puts every topic of a deployment under a prefix.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, ValidationError

from lakeport.errors import Invalid

ASSET_DATA = "asset-data"
CONTROL_CHANGES = "control-changes"
RECOMMENDATIONS = "recommendations"
DATA_TAGS = "data-tags"


def topic_name(base: str) -> str:
    """The deployment's name for a conventional topic (``LAKEPORT_TOPIC_PREFIX`` + base)."""
    return os.environ.get("LAKEPORT_TOPIC_PREFIX", "") + base


def config_topic(app: str) -> str:
    return topic_name(f"app-config.{app}")


def dead_letter_topic(app: str) -> str:
    return topic_name(f"dead-letter.{app}")


def _now() -> datetime:
    return datetime.now(UTC)


class AppMessage(BaseModel):
    """Common fields: the asset it is about and when it happened (UTC)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    topic: ClassVar[str] = ASSET_DATA

    asset: str = Field(min_length=1)
    time: datetime = Field(default_factory=_now)
    _seqno: int = PrivateAttr(default=0)

    @property
    def seqno(self) -> int:
        """The seqno of the topic message this was read from (0 if not read from a topic)."""
        return self._seqno

    def to_payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class DataMessage(AppMessage):
    """A value of an asset's data stream."""

    datastream: str = Field(min_length=1)
    unit: str | None = None


class Number(DataMessage):
    type: Literal["number"] = "number"
    value: float


class String(DataMessage):
    type: Literal["string"] = "string"
    value: str


class Boolean(DataMessage):
    type: Literal["boolean"] = "boolean"
    value: bool


class Object(DataMessage):
    type: Literal["object"] = "object"
    value: dict[str, Any]


class ControlChange(AppMessage):
    """Ask the asset's connector to set ``datastream`` to ``value`` before ``expiration``."""

    topic: ClassVar[str] = CONTROL_CHANGES
    type: Literal["control_change"] = "control_change"
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    datastream: str = Field(min_length=1)
    value: float | str | bool | dict[str, Any]
    expiration: datetime = Field(default_factory=lambda: _now() + timedelta(minutes=10))
    retries: int = Field(default=0, ge=0)


class Recommendation(AppMessage):
    """A suggestion for an operator, optionally with the control changes it would apply."""

    topic: ClassVar[str] = RECOMMENDATIONS
    type: Literal["recommendation"] = "recommendation"
    kind: str = Field(min_length=1)
    description: str = ""
    control_changes: list[ControlChange] = Field(default_factory=list)
    expiration: datetime | None = None


class DataTag(AppMessage):
    """A labelled time range of an asset (an event, a fault, a batch)."""

    topic: ClassVar[str] = DATA_TAGS
    type: Literal["data_tag"] = "data_tag"
    tag_name: str = Field(min_length=1)
    start: datetime
    end: datetime
    description: str = ""
    datastreams: list[str] = Field(default_factory=list)


MESSAGE_CLASSES = {"number": Number, "string": String, "boolean": Boolean, "object": Object}

AnyMessage = Annotated[
    Number | String | Boolean | Object | ControlChange | Recommendation | DataTag,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyMessage)


def parse_message(payload: Any, seqno: int = 0) -> AppMessage:
    """The typed message of a topic payload; Invalid (naming the problem) if it is not one."""
    try:
        message = _ADAPTER.validate_python(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise Invalid(f"not an app message ({where}: {first['msg']})") from None
    message._seqno = seqno
    return message

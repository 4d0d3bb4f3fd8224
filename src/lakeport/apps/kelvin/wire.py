"""The vendor stream protocol's message JSON, to and from lakeport's app messages.

Every line on the stream is one JSON object ``{"type", "resource", "id", "timestamp",
"payload"}``. ``type`` is ``data;pt=<number|string|boolean|object>`` (objects may carry
``icd=<name>``), ``control``, ``recommendation``, ``datatag``, ``custom-action-create;type=<t>``,
``custom-action-result`` or ``runtime_manifest``; ``resource`` is a KRN: ``krn:ad:<asset>/<ds>``
(an asset's datastream), ``krn:asset:<asset>``, ``krn:datastream:<ds>``.

:func:`to_vendor` turns what the app reads into such an object; :func:`from_vendor` turns what
the app writes into a lakeport message, or raises :class:`Unmappable` with the reason.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from lakeport.apps.messages import (
    AppMessage,
    Boolean,
    ControlChange,
    DataMessage,
    DataTag,
    Number,
    Object,
    Recommendation,
    String,
)
from lakeport.errors import Invalid

DATA_CLASSES: dict[str, type[DataMessage]] = {
    "number": Number, "string": String, "boolean": Boolean, "object": Object}
_DATETIME: TypeAdapter[datetime] = TypeAdapter(datetime)
_ID_NAMESPACE = uuid.UUID("6f1d3c52-57a4-4c59-9d0e-6b9a7f0e4c21")


class Unmappable(Invalid):
    """A message the app wrote that lakeport has no place for (the reason says why)."""


# -- small pieces --------------------------------------------------------------------------
def timestamp(when: datetime) -> str:
    """RFC 3339 in UTC with microseconds, as the vendor writes it."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: Any, where: str) -> datetime:
    try:
        parsed = _DATETIME.validate_python(value)
    except ValidationError:
        raise Unmappable(f"{where}: not a timestamp ({value!r})") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def message_id(topic: str, seqno: int) -> str:
    """The same id every time the message at ``seqno`` of ``topic`` is delivered."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{topic}:{seqno}"))


def asset_datastream_krn(asset: str, datastream: str) -> str:
    return f"krn:ad:{asset}/{datastream}"


def asset_krn(asset: str) -> str:
    return f"krn:asset:{asset}"


def app_krn(app: str, version: str) -> str:
    return f"krn:wlappv:lakeport/{app}:{app}/{version}"


def parse_krn(text: Any, where: str = "resource") -> tuple[str, str]:
    """``krn:<namespace>:<id>`` → ``(namespace, id)``."""
    if not isinstance(text, str):
        raise Unmappable(f"{where}: a KRN string is required (got {text!r})")
    parts = text.split(":", 2)
    if len(parts) != 3 or parts[0] != "krn" or not parts[1] or not parts[2]:
        raise Unmappable(f"{where}: {text!r} is not a KRN (krn:<namespace>:<id>)")
    return parts[1], parts[2]


def parse_asset_datastream(text: Any, where: str = "resource") -> tuple[str, str]:
    namespace, ident = parse_krn(text, where)
    asset, _, datastream = ident.partition("/")
    if namespace != "ad" or not asset or not datastream:
        raise Unmappable(f"{where}: {text!r} is not an asset datastream "
                         "(krn:ad:<asset>/<datastream>)")
    return asset, datastream


def parse_asset(text: Any, where: str = "resource") -> str:
    namespace, ident = parse_krn(text, where)
    if namespace == "ad":
        return parse_asset_datastream(text, where)[0]
    if namespace != "asset":
        raise Unmappable(f"{where}: {text!r} is not an asset (krn:asset:<asset>)")
    return ident


def parse_type(text: Any) -> tuple[str, dict[str, str]]:
    """``data;pt=number`` → ``("data", {"pt": "number"})``."""
    if not isinstance(text, str) or not text:
        raise Unmappable(f"type: a message type string is required (got {text!r})")
    kind, *parts = text.split(";")
    components = {}
    for part in parts:
        key, _, value = part.partition("=")
        components[key] = value
    return kind, components


def data_type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    return "object" if isinstance(value, dict) else "number"


def _envelope(kind: str, resource: str, ident: str, when: datetime,
              payload: Any) -> dict[str, Any]:
    return {"type": kind, "resource": resource, "id": ident, "timestamp": timestamp(when),
            "payload": payload}


# -- lakeport → app ------------------------------------------------------------------------
def data_line(asset: str, datastream: str, data_type: str, value: Any, ident: str,
              when: datetime) -> dict[str, Any]:
    return _envelope(f"data;pt={data_type}", asset_datastream_krn(asset, datastream), ident,
                     when, value)


def _control_payload(change: ControlChange) -> dict[str, Any]:
    return {"payload": change.value, "retries": change.retries,
            "expiration_date": timestamp(change.expiration)}


def to_vendor(message: AppMessage, ident: str, *, control_as_data: dict[str, str] | None = None,
              ) -> dict[str, Any]:
    """The stream JSON of a message the app reads.

    ``control_as_data`` maps the datastreams whose control changes the app receives as data
    (an app's ``control_changes.inputs``) to their data type; other control changes travel
    as ``control`` messages (what importers receive).
    """
    if isinstance(message, DataMessage):
        return data_line(message.asset, message.datastream, message.type, message.value,
                         ident, message.time)
    if isinstance(message, ControlChange):
        if control_as_data is not None and message.datastream in control_as_data:
            return data_line(message.asset, message.datastream,
                             control_as_data[message.datastream], message.value, ident,
                             message.time)
        return _envelope("control", asset_datastream_krn(message.asset, message.datastream),
                         ident, message.time, _control_payload(message))
    if isinstance(message, Recommendation):
        changes = [{**_control_payload(c), "resource": asset_datastream_krn(c.asset, c.datastream)}
                   for c in message.control_changes]
        payload: dict[str, Any] = {"resource": asset_krn(message.asset), "type": message.kind,
                                   "description": message.description,
                                   "actions": {"control_changes": changes, "custom_actions": []}}
        if message.expiration is not None:
            payload["expiration_date"] = timestamp(message.expiration)
        return _envelope("recommendation", asset_krn(message.asset), ident, message.time,
                         payload)
    if isinstance(message, DataTag):
        return _envelope("datatag", asset_krn(message.asset), ident, message.time, {
            "start_date": timestamp(message.start), "end_date": timestamp(message.end),
            "tag_name": message.tag_name, "resource": asset_krn(message.asset),
            "description": message.description,
            "contexts": [f"krn:datastream:{name}" for name in message.datastreams]})
    raise Invalid(f"no stream form for {type(message).__name__}")  # pragma: no cover


@dataclass(frozen=True)
class ActionRequest:
    """A custom action for an app: what ``lakeport app action`` sends, what an app creates."""

    id: str
    type: str
    resource: str
    title: str = ""
    description: str | None = None
    expiration: datetime = field(default_factory=lambda: datetime.now(UTC) + timedelta(hours=1))
    payload: dict[str, Any] = field(default_factory=dict)

    def to_vendor(self) -> dict[str, Any]:
        body: dict[str, Any] = {"title": self.title or self.type,
                                "expiration_date": timestamp(self.expiration),
                                "payload": self.payload}
        if self.description is not None:
            body["description"] = self.description
        return _envelope(f"custom-action-create;type={self.type}", self.resource, self.id,
                         datetime.now(UTC), body)

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"id": self.id, "type": self.type, "resource": self.resource,
                                  "title": self.title, "expiration": timestamp(self.expiration),
                                  "payload": self.payload}
        if self.description is not None:
            record["description"] = self.description
        return record

    @classmethod
    def from_record(cls, record: Any) -> ActionRequest:
        if not isinstance(record, dict):
            raise Invalid(f"a custom action is a JSON object, not {type(record).__name__}")
        try:
            return cls(id=str(record["id"]), type=str(record["type"]),
                       resource=str(record["resource"]), title=str(record.get("title") or ""),
                       description=record.get("description"),
                       expiration=parse_time(record["expiration"], "expiration"),
                       payload=dict(record.get("payload") or {}))
        except KeyError as exc:
            raise Invalid(f"custom action without {exc.args[0]!r}") from None


@dataclass(frozen=True)
class ActionResult:
    """The app's answer to a custom action."""

    action_id: str
    success: bool
    message: str | None = None
    response: dict[str, Any] | None = None
    resource: str | None = None

    def to_record(self) -> dict[str, Any]:
        return {"action_id": self.action_id, "success": self.success, "message": self.message,
                "response": self.response, "resource": self.resource}


# -- app → lakeport ------------------------------------------------------------------------
def from_vendor(line: Any, *, units: dict[str, str] | None = None,
                ) -> AppMessage | ActionRequest | ActionResult:
    """The lakeport form of a message the app wrote; :class:`Unmappable` with the reason."""
    if not isinstance(line, dict):
        raise Unmappable(f"a stream message is a JSON object, not {type(line).__name__}")
    kind, components = parse_type(line.get("type"))
    payload = line.get("payload")
    when = parse_time(line["timestamp"], "timestamp") if line.get("timestamp") else None
    common: dict[str, Any] = {} if when is None else {"time": when}
    try:
        if kind == "data":
            return _data(line, components, payload, common, units or {})
        if kind == "control":
            asset, datastream = parse_asset_datastream(line.get("resource"))
            return _control(asset, datastream, _object(payload, "payload"), common,
                            ident=str(line.get("id") or uuid.uuid4().hex))
        if kind == "recommendation":
            return _recommendation(line, _object(payload, "payload"), common)
        if kind == "datatag":
            return _data_tag(line, _object(payload, "payload"), common)
        if kind == "custom-action-result":
            body = _object(payload, "payload")
            if "id" not in body or not isinstance(body.get("success"), bool):
                raise Unmappable("custom-action-result: payload needs id and success")
            return ActionResult(str(body["id"]), body["success"], body.get("message"),
                                body.get("response"), line.get("resource"))
        if kind == "custom-action-create":
            body = _object(payload, "payload")
            return ActionRequest(
                id=str(line.get("id") or uuid.uuid4()), type=components.get("type", ""),
                resource=str(line.get("resource") or ""), title=str(body.get("title") or ""),
                description=body.get("description"),
                expiration=parse_time(body.get("expiration_date"), "payload.expiration_date"),
                payload=dict(body.get("payload") or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise Unmappable(f"{kind}: {where}: {first['msg']}") from None
    raise Unmappable(f"message type {line.get('type')!r} has no lakeport topic")


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Unmappable(f"{where}: an object is required (got {type(value).__name__})")
    return value


def _data(line: dict[str, Any], components: dict[str, str], payload: Any,
          common: dict[str, Any], units: dict[str, str]) -> DataMessage:
    asset, datastream = parse_asset_datastream(line.get("resource"))
    primitive = components.get("pt") or "object"
    cls = DATA_CLASSES.get(primitive)
    if cls is None:
        raise Unmappable(f"data type {primitive!r} is not one of {', '.join(DATA_CLASSES)}")
    if primitive == "number" and (isinstance(payload, bool)
                                  or not isinstance(payload, int | float)):
        raise Unmappable(f"data;pt=number: payload {payload!r} is not a number")
    if primitive != "number" and data_type_of(payload) != primitive:
        raise Unmappable(f"data;pt={primitive}: payload {payload!r} is not a {primitive}")
    unit = units.get(datastream)
    return cls(asset=asset, datastream=datastream, value=payload, unit=unit, **common)


def _control(asset: str, datastream: str, body: dict[str, Any], common: dict[str, Any], *,
             ident: str) -> ControlChange:
    fields: dict[str, Any] = {"asset": asset, "datastream": datastream, "id": ident,
                              "value": body.get("payload"), **common}
    if body.get("expiration_date") is not None:
        fields["expiration"] = parse_time(body["expiration_date"], "payload.expiration_date")
    elif body.get("expiration_delta") is not None:
        fields["expiration"] = datetime.now(UTC) + timedelta(
            seconds=float(body["expiration_delta"]))
    retries = body.get("retries", body.get("retry"))
    if retries is not None:
        fields["retries"] = retries
    return ControlChange(**fields)


def _recommendation(line: dict[str, Any], body: dict[str, Any],
                    common: dict[str, Any]) -> Recommendation:
    asset = parse_asset(body.get("resource") or line.get("resource"))
    actions = body.get("actions") or {}
    changes = []
    for index, change in enumerate(actions.get("control_changes") or []):
        change = _object(change, f"payload.actions.control_changes[{index}]")
        where = f"payload.actions.control_changes[{index}].resource"
        cc_asset, cc_datastream = parse_asset_datastream(change.get("resource"), where)
        changes.append(_control(cc_asset, cc_datastream, change, {},
                                ident=str(change.get("control_change_id") or uuid.uuid4().hex)))
    fields: dict[str, Any] = {"asset": asset, "kind": body.get("type"),
                              "description": body.get("description") or "",
                              "control_changes": changes, **common}
    if body.get("expiration_date") is not None:
        fields["expiration"] = parse_time(body["expiration_date"], "payload.expiration_date")
    return Recommendation(**fields)


def _data_tag(line: dict[str, Any], body: dict[str, Any], common: dict[str, Any]) -> DataTag:
    asset = parse_asset(body.get("resource") or line.get("resource"))
    start = parse_time(body.get("start_date"), "payload.start_date")
    end = parse_time(body["end_date"], "payload.end_date") if body.get("end_date") else start
    datastreams = []
    for index, context in enumerate(body.get("contexts") or []):
        namespace, ident = parse_krn(context, f"payload.contexts[{index}]")
        datastreams.append(ident.rsplit("/", 1)[-1] if namespace == "ad" else ident)
    return DataTag(asset=asset, tag_name=body.get("tag_name"), start=start, end=end,
                   description=body.get("description") or "", datastreams=datastreams, **common)

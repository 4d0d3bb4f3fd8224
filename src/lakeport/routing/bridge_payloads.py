"""What a bridge makes of one message, apart from any broker protocol: the ingest payload read
into readings and the topic templates.

:func:`read_payload` reads a broker message's payload as its :data:`PayloadFormat` says (``auto``,
``json``, ``number``, ``text``, or the ``sos`` JSON, one reading per observation) and merges in
the fields of its topic; :class:`LevelTemplate` takes those fields from a broker topic's levels
(``plant/{site}/{asset}/{datastream}``); :class:`TopicTemplate` makes an egress broker topic from
a stored message's JSON fields (:func:`message_fields`). A message that cannot be read or routed
raises :class:`Unreadable`, whose reason goes with it to the dead-letter topic.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

import orjson

from lakeport.errors import Invalid

if TYPE_CHECKING:
    from lakeport.streams import Message

PayloadFormat = Literal["auto", "json", "number", "text", "sos"]
"""How an ingest bridge reads a broker message's payload (see the package documentation)."""

_FIELD = re.compile(r"\{([A-Za-z_][\w.-]*)\}")


class Unreadable(Exception):
    """A message that cannot be bridged: it goes to the dead-letter topic with this reason."""


class LevelTemplate:
    """``plant/{site}/{asset}/{datastream}``: a broker topic's levels into fields (``+`` skips
    a level, a trailing ``#`` allows more)."""

    def __init__(self, template: str, separator: str = "/") -> None:
        self.template, self.separator = template, separator
        levels = template.split(separator)
        self.rest = levels[-1] == "#"
        if self.rest:
            levels.pop()
        self.names: list[tuple[int, str]] = []
        self.fixed: list[tuple[int, str]] = []
        for index, level in enumerate(levels):
            match = _FIELD.fullmatch(level)
            if match:
                self.names.append((index, match.group(1)))
            elif any(c in level for c in "{}#") or ("+" in level and level != "+"):
                raise Invalid(f"bad fields template {template!r}: each level is {{name}}, +, "
                              "a fixed word, or # at the end")
            elif level != "+":
                self.fixed.append((index, level))
        self.count = len(levels)

    def match(self, topic: str) -> dict[str, str]:
        """The fields of ``topic``; none when it does not fit the template."""
        levels = topic.split(self.separator)
        if len(levels) != self.count and not (self.rest and len(levels) > self.count):
            return {}
        if any(levels[i] != word for i, word in self.fixed):
            return {}
        return {name: levels[i] for i, name in self.names}


class TopicTemplate:
    """``plant/{asset}/out``: a broker topic from a message's JSON fields (dots for nested);
    ``wildcards`` may not be in it, nor in a field's value."""

    def __init__(self, template: str, wildcards: str = "+#") -> None:
        self.template, self.wildcards = template, wildcards
        self.parts = _FIELD.split(template)  # literal, name, literal, name, ..., literal
        literal = "".join(self.parts[0::2])
        if not template or any(c in literal for c in wildcards + "{}"):
            raise Invalid(f"bad publish template {template!r}: a topic with {{field}} parts, "
                          f"no {' or '.join(wildcards)}")

    @property
    def fields(self) -> bool:
        return len(self.parts) > 1

    def render(self, payload: Any) -> str:
        parts = self.parts
        out = [parts[0]]
        for index in range(1, len(parts), 2):
            value: Any = payload
            for key in parts[index].split("."):
                if not isinstance(value, dict) or key not in value:
                    raise Unreadable(f"no field {parts[index]!r} for the topic template "
                                     f"{self.template!r}")
                value = value[key]
            if isinstance(value, dict | list) or value is None:
                raise Unreadable(f"field {parts[index]!r} is not a name for a topic")
            text = str(value).lower() if isinstance(value, bool) else str(value)
            if any(c in text for c in self.wildcards):
                raise Unreadable(f"field {parts[index]!r} ({text!r}) would be a wildcard")
            out.append(text)
            out.append(parts[index + 1])
        return "".join(out)


def read_payload(head: dict[str, Any], payload: bytes, mode: PayloadFormat
                 ) -> list[dict[str, Any]]:
    """The readings of one broker message: ``head`` (its topic's fields) and the payload read
    as ``mode`` says; Unreadable says why not."""
    if mode == "text":
        return [{**head, "value": _text(payload)}]
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        if mode != "auto":
            raise Unreadable(f"payload is not {'a number' if mode == 'number' else 'JSON'}"
                             ) from None
        return [{**head, "value": _text(payload)}]
    if mode == "number" and type(value) not in (int, float):
        raise Unreadable("payload is not a number")
    if mode == "sos":
        return sos_readings(head, value)
    if type(value) is dict:
        return [{**head, **value, **head}]  # head's keys first, and they win
    return [{**head, "value": value}]


def message_fields(message: Message) -> Any:
    """A topic message's JSON fields, for a topic template."""
    try:
        return orjson.loads(message.data)
    except orjson.JSONDecodeError:
        raise Unreadable("the message is not JSON: the topic template needs its fields"
                         ) from None


def _text(payload: bytes) -> str:
    try:
        return payload.decode()
    except UnicodeDecodeError:
        raise Unreadable("payload is not UTF-8 text") from None


def sos_readings(head: dict[str, Any], value: Any) -> list[dict[str, Any]]:
    """The readings of the SOS JSON ``{"sensor", "feature", "observations": {name: value},
    "time"}``: one per observation, with ``head``'s fields; Unreadable says why it is not."""
    if type(value) is not dict or not isinstance(value.get("sensor"), str) or \
            type(value.get("observations")) is not dict or not value["observations"]:
        raise Unreadable('not SOS JSON: expected {"sensor": ..., "observations": {...}}')
    unknown = set(value) - {"sensor", "feature", "observations", "time"}
    if unknown:
        raise Unreadable(f"not SOS JSON: unknown key {sorted(unknown)[0]!r}")
    sensor = value["sensor"]
    common = {**head, "asset": sensor, "sensor": sensor}
    if value.get("feature") is not None:
        common["feature"] = value["feature"]
    if value.get("time") is not None:
        common["time"] = value["time"]
    return [{**common, "datastream": name, "value": reading}
            for name, reading in value["observations"].items()]


__all__ = ["LevelTemplate", "PayloadFormat", "TopicTemplate", "Unreadable", "message_fields",
           "read_payload", "sos_readings"]

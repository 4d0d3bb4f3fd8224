"""``client.routing``: rules (a SQL statement over a topic and its actions) and bridges (a
broker and a lakeport topic) that the server runs.

>>> await client.routing.rules.create(name="hot", sql='SELECT * FROM "raw" WHERE value > 80',
...                                   actions=[{"type": "topic", "topic": "hot"}])
>>> await client.routing.rules.stats("hot")        # rows_in, rows_out, lag, rate, ...
>>> await client.routing.rules.test('SELECT asset, value FROM "raw"', sample=10)
>>> await client.routing.bridges.create("plant", url="mqtt://127.0.0.1:1883",
...                                     subscribe=["plant/#"], to_topic="raw")

A spec is checked locally first (:class:`~lakeport.routing.spec.RuleSpec`,
:class:`~lakeport.routing.bridge.BridgeConfig`): a bad field is :class:`Invalid` naming it
before any request. Secrets go to the server as given and come back as ``***``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, SecretStr, ValidationError

from lakeport.client import paging
from lakeport.client.http import Http
from lakeport.client.results import ResultFormat, check_format, shape
from lakeport.client.transfer import quote_segment
from lakeport.errors import Invalid
from lakeport.yamlfile import line_of, load_mapping_file

if TYPE_CHECKING:
    from lakeport.routing.bridge import BridgeConfig
    from lakeport.routing.spec import RuleSpec

RULE_COLUMNS = ("name", "owner", "state", "desired", "sql", "actions", "error", "updated")
BRIDGE_COLUMNS = ("name", "owner", "url", "direction", "topic", "state", "desired", "error",
                  "updated")
ACTION_TYPES = frozenset({"topic", "mqtt", "amqp", "observations", "webhook"})
STATS_FIELDS = ("rows_in", "rows_out", "dropped", "late", "errors", "blocks", "acked", "lag",
                "rate", "action_errors", "state")


def _plain(value: Any) -> Any:
    """A dumped model's value with its secrets revealed (the server needs them)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _body(model: BaseModel, **exclude_unset: bool) -> dict[str, Any]:
    body: dict[str, Any] = _plain(model.model_dump(warnings=False, **exclude_unset))
    return body


def _where(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """A rule field's path without the action type pydantic puts after the action's index
    (``actions.0.mqtt.publish`` is ``actions.0.publish``)."""
    if len(loc) > 2 and loc[0] == "actions" and isinstance(loc[1], int) \
            and loc[2] in ACTION_TYPES:
        return (*loc[:2], *loc[3:])
    return loc


def _flat(record: dict[str, Any], body: str) -> dict[str, Any]:
    """A record whose spec or config is nested under ``body`` with those fields at the top,
    next to its name, owner, states and stats."""
    nested = record.get(body)
    if not isinstance(nested, Mapping):
        return record
    rest = {key: value for key, value in record.items() if key != body}
    return {"name": rest.pop("name", nested.get("name")), **nested, **rest}


def rule_spec(spec: RuleSpec | Mapping[str, Any] | None = None, **fields: Any) -> RuleSpec:
    """A checked :class:`RuleSpec` from a spec, a mapping or keywords (keywords win)."""
    from lakeport.routing.spec import RuleSpec

    if isinstance(spec, RuleSpec):
        if not fields:
            return spec
        spec = _plain(spec.model_dump(warnings=False))
    if spec is not None and not isinstance(spec, Mapping):
        raise Invalid(f"bad rule {spec!r}: use a RuleSpec, a mapping or keywords")
    return RuleSpec.parse(**{**(spec or {}), **fields})


def load_rule_file(path: str | Path) -> dict[str, Any]:
    """The rule in a ``.yaml``/``.yml`` or ``.json`` file (the fields of a RuleSpec), checked:
    Invalid in one line naming the file (and the line, where it can) when it cannot be read,
    is not YAML or JSON, gives a key twice or is not a valid rule."""
    from lakeport.routing.spec import RuleSpec

    data, nodes = load_mapping_file(path, "rule", "name, sql and actions")
    label = str(path)
    try:
        RuleSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = _where(tuple(first["loc"]))
        line = line_of(nodes, loc)
        where = f"{label} line {line}: " if line is not None else f"{label}: "
        field = ".".join(str(part) for part in loc)
        problem = str(first["msg"]).removeprefix("Value error, ")
        raise Invalid(f"{where}bad rule field {field}: {problem}" if field
                      else f"{where}bad rule: {problem}") from None
    return data


class Rules:
    """Rules: a SQL statement over a topic whose output rows go to actions."""

    def __init__(self, http: Http) -> None:
        self._http = http

    @staticmethod
    def _path(name: str) -> str:
        return f"/rules/{quote_segment(name)}"

    async def create(self, spec: RuleSpec | Mapping[str, Any] | str | Path | None = None, *,
                     start: bool = True, **fields: Any) -> dict[str, Any]:
        """Create a rule from a :class:`RuleSpec`, a mapping, the path of a rule file, or
        keywords (``name``, ``sql``, ``actions``, ``event_time``, ``lateness``,
        ``dead_letter_topic``, ``description``); it runs at once unless ``start=False``.
        The rule's record (Conflict when the name is taken)."""
        if isinstance(spec, str | Path):
            spec = load_rule_file(spec)
        body = {**_body(rule_spec(spec, **fields)), "start": start}
        return _flat(await self._http.json("POST", "/rules", json=body), "spec")

    async def list(self, *, limit: int | None = None, format: ResultFormat = "json") -> Any:
        """The rules the caller may read: name, owner, sql, action types, desired and actual
        state, error (every page, at most ``limit``)."""
        check_format(format)
        items = [_flat(item, "spec") for item in
                 await paging.collect(self._http, "/rules", limit=limit)]
        return shape(items, format, RULE_COLUMNS if format == "table" else None)

    async def get(self, name: str) -> dict[str, Any]:
        """A rule: its spec's fields (secrets as ``***``), owner, ``desired`` and actual
        ``state``, ``error``, ``created``, ``updated`` and ``stats``."""
        return _flat(await self._http.json("GET", self._path(name)), "spec")

    async def update(self, name: str, spec: RuleSpec | Mapping[str, Any] | None = None,
                     **fields: Any) -> dict[str, Any]:
        """Replace a rule's spec (a running rule restarts with it); the rule's record."""
        from lakeport.routing.spec import RuleSpec

        named = spec.name if isinstance(spec, RuleSpec) else \
            spec.get("name") if isinstance(spec, Mapping) else None
        checked = rule_spec(spec, **{"name": fields.pop("name", named or name), **fields})
        if checked.name != name:
            raise Invalid(f"rule {name!r}: the spec names {checked.name!r} (a rule keeps its "
                          "name)")
        return _flat(await self._http.json("PUT", self._path(name), json=_body(checked)),
                     "spec")

    async def delete(self, name: str) -> None:
        """Stop a rule and delete it."""
        await self._http.request("DELETE", self._path(name))

    async def start(self, name: str) -> dict[str, Any]:
        """Run a stopped (or failed) rule; its record."""
        return _flat(await self._http.json("POST", f"{self._path(name)}/start", safe=True),
                     "spec")

    async def stop(self, name: str) -> dict[str, Any]:
        """Stop a rule (it resumes where it stopped when started again); its record."""
        return _flat(await self._http.json("POST", f"{self._path(name)}/stop", safe=True),
                     "spec")

    async def stats(self, name: str) -> dict[str, Any]:
        """A rule's counters: rows_in, rows_out, dropped, late, errors, blocks, acked, lag,
        rate, action_errors (per action) and state."""
        return await self._http.json("GET", f"{self._path(name)}/stats")

    async def test(self, sql: str, sample: int = 100, *, event_time: str | None = "time",
                   lateness: str | float = 0) -> dict[str, Any]:
        """Run a statement on the newest ``sample`` messages of its topic without creating
        a rule: ``columns``, ``rows`` (lists), ``errors`` (seqno, reason), ``rows_in`` and
        ``dropped``. A bad statement is Invalid with its line:column."""
        if sample < 1:
            raise Invalid(f"bad sample {sample}: use 1 or more")
        body = {"sql": sql, "sample": sample, "event_time": event_time, "lateness": lateness}
        return await self._http.json("POST", "/rules/test", json=body, safe=True)


class Bridges:
    """Bridges the server runs between a broker and a lakeport topic."""

    def __init__(self, http: Http) -> None:
        self._http = http

    @staticmethod
    def _path(name: str) -> str:
        return f"/bridges/{quote_segment(name)}"

    async def create(self, name: str | None = None, *, start: bool = True,
                     config: BridgeConfig | Mapping[str, Any] | None = None,
                     **fields: Any) -> dict[str, Any]:
        """Create a bridge from :class:`BridgeConfig` fields (``url``, ``subscribe`` and
        ``to_topic`` for ingest, ``from_topic`` and ``publish`` for egress, the connection
        options) or a ``config``; it runs at once unless ``start=False``. Its record."""
        from lakeport.routing.bridge import BridgeConfig

        given = config.model_dump(exclude_unset=True) if isinstance(config, BridgeConfig) \
            else dict(config or {})
        if name is not None:
            given["name"] = name
        checked = BridgeConfig.parse(**_plain({**given, **fields}))
        if checked.name is None:
            raise Invalid("a bridge on the server needs a name")
        body = {**_body(checked, exclude_unset=True), "start": start}
        return _flat(await self._http.json("POST", "/bridges", json=body), "config")

    async def list(self, *, limit: int | None = None, format: ResultFormat = "json") -> Any:
        """The bridges: name, owner, url, direction, topic, desired and actual state, error
        (every page, at most ``limit``)."""
        check_format(format)
        items = [_flat(item, "config") for item in
                 await paging.collect(self._http, "/bridges", limit=limit)]
        return shape(items, format, BRIDGE_COLUMNS if format == "table" else None)

    async def get(self, name: str) -> dict[str, Any]:
        """A bridge: its config (password ``***``), desired and actual state, and ``status``
        (connected, messages_in, messages_out, duplicates, dead_letters, rate, last_error,
        retry_in)."""
        return _flat(await self._http.json("GET", self._path(name)), "config")

    async def update(self, name: str, config: BridgeConfig | Mapping[str, Any] | None = None,
                     **fields: Any) -> dict[str, Any]:
        """Replace a bridge's config (a running bridge restarts with it; a password given
        as ``***`` keeps the stored one); its record."""
        from lakeport.routing.bridge import BridgeConfig

        given = config.model_dump(exclude_unset=True) if isinstance(config, BridgeConfig) \
            else dict(config or {})
        checked = BridgeConfig.parse(**_plain({**given, **fields, "name": name}))
        body = _body(checked, exclude_unset=True)
        return _flat(await self._http.json("PUT", self._path(name), json=body), "config")

    async def delete(self, name: str) -> None:
        """Stop a bridge and delete it."""
        await self._http.request("DELETE", self._path(name))

    async def start(self, name: str) -> dict[str, Any]:
        """Run a stopped (or failed) bridge; its record."""
        return _flat(await self._http.json("POST", f"{self._path(name)}/start", safe=True),
                     "config")

    async def stop(self, name: str) -> dict[str, Any]:
        """Stop a bridge; its record."""
        return _flat(await self._http.json("POST", f"{self._path(name)}/stop", safe=True),
                     "config")


class Routing:
    """``rules`` and ``bridges`` of the server."""

    def __init__(self, http: Http) -> None:
        self.rules = Rules(http)
        self.bridges = Bridges(http)


__all__ = ["BRIDGE_COLUMNS", "RULE_COLUMNS", "STATS_FIELDS", "Bridges", "Routing", "Rules",
           "load_rule_file", "rule_spec"]

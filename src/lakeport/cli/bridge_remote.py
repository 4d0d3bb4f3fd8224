"""``lakeport bridge create|ls|show|start|stop|rm``: bridges that a lakeport server runs (and
keeps running across its restarts), beside ``lakeport bridge run``, which runs one in the
foreground. ``create`` takes the options of ``bridge run``: they are read from its signature,
so the two commands always offer the same ones."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import typer

from lakeport.cli.bridge import app, run_
from lakeport.cli.common import duration, short_time, stderr
from lakeport.cli.remote import (
    ApiKeyOption,
    JsonOption,
    LimitOption,
    ServerOption,
    call,
    show_record,
    show_records,
)
from lakeport.errors import Invalid

NameArg = Annotated[str, typer.Argument(help="The bridge's name.", show_default=False)]
LIST_COLUMNS = ("name", "owner", "direction", "url", "topic", "state", "desired", "error",
                "updated")
STATUS_FIELDS = ("connected", "messages_in", "messages_out", "duplicates", "dead_letters",
                 "rate", "last_error", "retry_in")
"""What ``bridge show`` gives of a running bridge's status."""
_LOCAL = ("broker", "name", "url")
"""Parameters of ``bridge run`` that ``bridge create`` gives in its own way (NAME and URL
arguments, --url of the server)."""
_FIELDS = {"to": "to_topic", "batch": "batch_size"}
"""Option names of ``bridge run`` whose BridgeConfig field is named otherwise."""


def config_fields(options: Mapping[str, Any]) -> dict[str, Any]:
    """BridgeConfig fields from the values of ``bridge run``'s options (only those given:
    the server fills in the rest)."""
    from lakeport.routing.bridge import BridgeConfig

    defaults = {name: param.default for name, param in _RUN.items()}
    fields: dict[str, Any] = {}
    for option, value in options.items():
        if value is None or value == [] or value == defaults.get(option):
            continue
        field = _FIELDS.get(option, option)
        if option == "session_expiry":
            value = int(duration(value, "--session-expiry") or 0)
        elif option == "topic_field":
            value = value or None
        if field not in BridgeConfig.model_fields:  # pragma: no cover - a new run option
            raise Invalid(f"bridge option {option!r} has no config field")
        fields[field] = value
    return fields


def _create(name: str, broker: str, as_json: bool, url: str | None, api_key: str | None,
            start: bool, **options: Any) -> None:
    fields = config_fields(options)
    record = call(url, api_key,
                  lambda c: c.routing.bridges.create(name, url=broker, start=start, **fields))
    if as_json:
        show_record(record, True)
    else:
        stderr.print(f"created bridge {record.get('name', name)} ({_state(record)})",
                     markup=False)


_RUN = {name: param for name, param in
        inspect.signature(run_, eval_str=True).parameters.items() if name not in ("url",)}


def _create_command() -> Callable[..., None]:
    """``bridge create NAME URL [the options of bridge run]``, with the server's options."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter("name", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=NameArg),
        _RUN["broker"].replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD),
        *(param.replace(kind=keyword) for name, param in _RUN.items() if name not in _LOCAL),
        inspect.Parameter("stopped", keyword, default=False, annotation=Annotated[
            bool, typer.Option("--stopped", help="Create the bridge without starting it.")]),
        inspect.Parameter("as_json", keyword, default=False, annotation=JsonOption),
        inspect.Parameter("url", keyword, default=None, annotation=ServerOption),
        inspect.Parameter("api_key", keyword, default=None, annotation=ApiKeyOption),
    ]

    def create(name: str, broker: str, *, stopped: bool = False, as_json: bool = False,
               url: str | None = None, api_key: str | None = None, **options: Any) -> None:
        _create(name, broker, as_json, url, api_key, not stopped, **options)

    create.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    create.__annotations__ = {}
    create.__doc__ = """Create a bridge that the server runs (and runs again after a restart)
    until it is stopped; it starts at once unless --stopped. The options are those of
    lakeport bridge run.

    Example: lakeport bridge create plant-in mqtt://127.0.0.1:1883 --subscribe 'plant/#'
    --to raw-sensor-data --fields 'plant/{site}/{asset}/{datastream}'

    The password is given as it is (or in LAKEPORT_BRIDGE_PASSWORD): the server keeps it as
    a secret of the bridge and shows it as ***.

    Example: lakeport bridge create alerts-out mqtt://127.0.0.1:1883 --from alerts
    --publish 'plant/{asset}/alert' --username edge --password "$MQTT_PASSWORD"
    """
    return create


app.command("create")(_create_command())


def _state(record: Mapping[str, Any]) -> str:
    state = str(record.get("state"))
    return f"{state} (stopping)" if record.get("desired") == "stopped" \
        and state != "stopped" else state


def _ends(record: Mapping[str, Any]) -> tuple[str, str]:
    """Where a bridge reads and where it writes."""
    if record.get("from_topic"):
        return str(record["from_topic"]), f"{record.get('url')} {record.get('publish')}"
    return (f"{record.get('url')} {','.join(record.get('subscribe') or ())}",
            str(record.get("to_topic")))


@app.command("ls")
def ls(limit: LimitOption = None, as_json: JsonOption = False, url: ServerOption = None,
       api_key: ApiKeyOption = None) -> None:
    """List the bridges the server runs, with their state and counts.

    Example: lakeport bridge ls
    """
    rows = call(url, api_key, lambda c: c.routing.bridges.list(limit=limit))
    if not as_json:
        rows = [{**row, "updated": short_time(row.get("updated"))} for row in rows]
    show_records(rows, as_json, None if as_json else LIST_COLUMNS,
                 "no bridges: make one with lakeport bridge create NAME URL ...")


@app.command()
def show(name: NameArg, as_json: JsonOption = False, url: ServerOption = None,
         api_key: ApiKeyOption = None) -> None:
    """Show a bridge: its options (the password as ***), state and status.

    Example: lakeport bridge show plant-in
    """
    record = call(url, api_key, lambda c: c.routing.bridges.get(name))
    if as_json:
        show_record(record, True)
        return
    status = record.get("status") or {}
    source, target = _ends(record)
    shown: dict[str, Any] = {"bridge": record.get("name"), "state": _state(record),
                             "error": record.get("error"), "source": source,
                             "target": target, "owner": record.get("owner")}
    shown.update({key: value for key, value in record.items()
                  if key not in (*shown, "name", "desired", "status", "created", "updated")
                  and value not in (None, [], "")})
    shown.update({key: status[key] for key in STATUS_FIELDS if status.get(key) is not None})
    shown.update({"created": short_time(record.get("created")),
                  "updated": short_time(record.get("updated"))})
    shown = {key: value for key, value in shown.items() if value is not None}
    show_record(shown, False)


def _control(action: str, done: str, doc: str) -> None:
    def command(name: NameArg, as_json: JsonOption = False, url: ServerOption = None,
                api_key: ApiKeyOption = None) -> None:
        record = call(url, api_key, lambda c: getattr(c.routing.bridges, action)(name))
        if as_json:
            show_record(record, True)
        else:
            stderr.print(f"{done} bridge {name} ({_state(record)})", markup=False)

    command.__doc__ = f"{doc}\n\nExample: lakeport bridge {action} plant-in"
    app.command(action)(command)


_control("start", "started", "Run a stopped or failed bridge on the server.")
_control("stop", "stopped", "Stop a bridge on the server (it stays, stopped, until started).")


@app.command()
def rm(name: NameArg, url: ServerOption = None, api_key: ApiKeyOption = None) -> None:
    """Stop a bridge on the server and delete it.

    Example: lakeport bridge rm plant-in
    """
    call(url, api_key, lambda c: c.routing.bridges.delete(name))
    stderr.print(f"deleted bridge {name}", markup=False)


__all__ = ["config_fields"]

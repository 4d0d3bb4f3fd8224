"""``lakeport rules ...``: rules that a lakeport server runs: a SQL statement over a topic whose
output rows go to topics, MQTT, AMQP, the observation store or a webhook (create from flags or
a YAML file, list, show, start, stop, remove, watch their stats, try a statement)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lakeport.cli.common import duration, short_time, stderr, stdout, stop_on_signals
from lakeport.cli.remote import (
    ApiKeyOption,
    JsonOption,
    LimitOption,
    ServerOption,
    call,
    print_table,
    show_record,
    show_records,
)
from lakeport.errors import Invalid

if TYPE_CHECKING:
    from lakeport.client import Client

app = typer.Typer(
    help="Rules: a SQL statement over a topic, run by the server; each output row goes to "
    "the rule's actions (topics, MQTT, AMQP, the observation store, a webhook). A rule "
    "reads its topic exactly once and acks a block only when every action confirmed it; "
    "a rule keeps running across server restarts until it is stopped.\n\n"
    "Example: lakeport rules create hot --sql 'SELECT asset, value FROM \"raw\" WHERE value "
    "> 80' --to-topic hot-readings && lakeport rules stats hot --watch",
    no_args_is_help=True,
)
NameArg = Annotated[str, typer.Argument(help="The rule's name.", show_default=False)]
LIST_COLUMNS = ("name", "owner", "state", "desired", "actions", "error", "updated", "sql")
STATS_COLUMNS = ("state", "rows_in", "rows_out", "dropped", "late", "errors", "blocks", "acked",
                 "lag", "rate")
SHOWN_ERRORS = 10
"""Row errors that ``rules test`` lists (the count covers all)."""
POLL = 1.0
"""Seconds between two looks at a rule's stats with --watch."""


# -- building a spec ---------------------------------------------------------------------------
def build_actions(*, to_topic: Sequence[str] = (), to_mqtt: str | None = None,
                  publish: str | None = None, qos: int = 1, to_amqp: str | None = None,
                  exchange: str | None = None, exchange_type: str = "topic",
                  routing_key: str = "", username: str | None = None,
                  password: str | None = None, to_observations: bool = False,
                  to_webhook: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The actions the --to-* options give, in that order; Invalid naming the option that is
    missing or out of place."""
    if publish is not None and to_mqtt is None:
        raise Invalid("--publish goes with --to-mqtt URL")
    if to_mqtt is not None and publish is None:
        raise Invalid("--to-mqtt needs --publish TEMPLATE (the MQTT topic of each row, e.g. "
                      "'plant/{asset}/avg')")
    if (exchange is not None or routing_key) and to_amqp is None:
        raise Invalid("--exchange and --routing-key go with --to-amqp URL")
    if to_amqp is not None and exchange is None:
        raise Invalid("--to-amqp needs --exchange NAME")
    if (username is not None or password is not None) and to_mqtt is None and to_amqp is None:
        raise Invalid("--username and --password go with --to-mqtt or --to-amqp")
    login = {key: value for key, value in (("username", username), ("password", password))
             if value is not None}
    actions: list[dict[str, Any]] = [{"type": "topic", "topic": topic} for topic in to_topic]
    if to_mqtt is not None:
        actions.append({"type": "mqtt", "url": to_mqtt, "publish": publish, "qos": qos, **login})
    if to_amqp is not None:
        actions.append({"type": "amqp", "url": to_amqp, "exchange": exchange,
                        "exchange_type": exchange_type, "routing_key": routing_key, **login})
    if to_observations:
        actions.append({"type": "observations"})
    actions.extend({"type": "webhook", "url": hook} for hook in to_webhook)
    if not actions:
        raise Invalid("a rule needs an action: --to-topic, --to-mqtt, --to-amqp, "
                      "--to-observations or --to-webhook (or a file with -f)")
    return actions


def build_spec(name: str | None, sql: str | None, actions: list[dict[str, Any]], *,
               event_time: str | None = None, lateness: str | None = None,
               dead_letter_topic: str | None = None,
               description: str | None = None) -> dict[str, Any]:
    """A checked rule spec (as the server takes it) from the options of ``rules create``."""
    from lakeport.client.routing import rule_spec

    if not name:
        raise Invalid("give the rule's NAME (or -f FILE)")
    if not sql:
        raise Invalid("give the statement with --sql 'SELECT ... FROM \"topic\"' (or -f FILE)")
    fields: dict[str, Any] = {"name": name, "sql": sql, "actions": actions}
    if event_time is not None:
        fields["event_time"] = event_time or None
    if lateness is not None:
        duration(lateness, "--lateness")
        fields["lateness"] = lateness
    if dead_letter_topic is not None:
        fields["dead_letter_topic"] = dead_letter_topic
    if description is not None:
        fields["description"] = description
    rule_spec(**fields)  # checked here: a bad field names itself before any request
    return fields


def _action_text(action: Mapping[str, Any] | str) -> str:
    if isinstance(action, str):  # lists give the action types only
        return action
    kind = action.get("type")
    if kind == "topic":
        return f"topic {action.get('topic')}"
    if kind == "mqtt":
        return f"mqtt {action.get('url')} {action.get('publish')}"
    if kind == "amqp":
        return (f"amqp {action.get('url')} {action.get('exchange')}"
                + (f" {action['routing_key']}" if action.get("routing_key") else ""))
    if kind == "webhook":
        return f"webhook {action.get('url')}"
    return str(kind)


def _state(record: Mapping[str, Any]) -> str:
    state = str(record.get("state"))
    return f"{state} (stopping)" if record.get("desired") == "stopped" \
        and state != "stopped" else state


# -- commands ----------------------------------------------------------------------------------
@app.command()
def create(
    name: Annotated[str | None, typer.Argument(
        help="The rule's name (with -f: replaces the file's name).", show_default=False)]
    = None,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", help="A rule file (.yaml, .yml or .json) with the fields name, sql, "
        "actions and optionally event_time, lateness, dead_letter_topic, description.",
        show_default=False)] = None,
    sql: Annotated[str | None, typer.Option(
        "--sql", help="The statement: SELECT ... FROM \"topic\" [WHERE ...] [GROUP BY ..., "
        "TUMBLING(10s)].", show_default=False)] = None,
    to_topic: Annotated[list[str] | None, typer.Option(
        "--to-topic", help="Action: produce each row to this lakeport topic (repeatable).",
        show_default=False)] = None,
    to_mqtt: Annotated[str | None, typer.Option(
        "--to-mqtt", help="Action: publish each row to this MQTT broker (mqtt://host:1883).",
        show_default=False)] = None,
    publish: Annotated[str | None, typer.Option(
        "--publish", help="--to-mqtt: the topic template, e.g. 'plant/{asset}/avg'.",
        show_default=False)] = None,
    qos: Annotated[int, typer.Option("--qos", min=0, max=1, help="--to-mqtt: QoS 0 or 1.")]
    = 1,
    to_amqp: Annotated[str | None, typer.Option(
        "--to-amqp", help="Action: publish each row to this AMQP broker "
        "(amqp://host:5672/).", show_default=False)] = None,
    exchange: Annotated[str | None, typer.Option(
        "--exchange", help="--to-amqp: the exchange.", show_default=False)] = None,
    exchange_type: Annotated[str, typer.Option(
        "--exchange-type", help="--to-amqp: direct, topic, fanout or headers (declared so "
        "when missing).")] = "topic",
    routing_key: Annotated[str, typer.Option(
        "--routing-key", help="--to-amqp: the routing key template, e.g. "
        "'plant.{asset}.avg'.", show_default=False)] = "",
    username: Annotated[str | None, typer.Option(
        "--username", help="--to-mqtt/--to-amqp: log in as this user.", show_default=False)]
    = None,
    password: Annotated[str | None, typer.Option(
        "--password", help="--to-mqtt/--to-amqp: the password (the server keeps it as "
        "a secret and shows it as ***).",
        show_default=False)] = None,
    to_observations: Annotated[bool, typer.Option(
        "--to-observations", help="Action: store each row as an observation (asset, "
        "datastream, value, optional time and unit).")] = False,
    to_webhook: Annotated[list[str] | None, typer.Option(
        "--to-webhook", help="Action: POST the rows as a JSON array to this URL "
        "(repeatable).", show_default=False)] = None,
    event_time: Annotated[str | None, typer.Option(
        "--event-time", help="The payload field with the event time (default time; '' for "
        "the topic's time).", show_default=False)] = None,
    lateness: Annotated[str | None, typer.Option(
        "--lateness", help="How long after a window's end rows may still come, e.g. 5s.",
        show_default=False)] = None,
    dead_letter_topic: Annotated[str | None, typer.Option(
        "--dead-letter-topic", help="Where rows that fail go (default "
        "dead-letter.rule.NAME).", show_default=False)] = None,
    description: Annotated[str | None, typer.Option(
        "--description", help="What the rule is for.", show_default=False)] = None,
    stopped: Annotated[bool, typer.Option(
        "--stopped", help="Create the rule without starting it.")] = False,
    as_json: JsonOption = False, url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Create a rule, from options or from a file; it starts at once unless --stopped.

    The spec is checked before anything is sent: a bad file is one line with its line
    number, a bad statement one line with its line:column.

    Example: lakeport rules create hot --sql 'SELECT asset, value FROM "raw" WHERE value >
    80' --to-topic hot-readings --to-mqtt mqtt://127.0.0.1:1883 --publish 'plant/{asset}/hot'

    Example file (lakeport rules create -f averages.yaml):

    name: averages
    sql: SELECT asset, avg(value) AS mean FROM "raw" GROUP BY asset, TUMBLING(1m)
    lateness: 5s
    actions:
      - {type: topic, topic: averages}
      - {type: amqp, url: "amqp://127.0.0.1:5672/", exchange: averages,
         routing_key: "plant.{asset}.avg", username: edge, password: s3cret}
    """
    options = {"--sql": sql, "--to-topic": to_topic, "--to-mqtt": to_mqtt,
               "--publish": publish, "--qos": qos != 1, "--to-amqp": to_amqp,
               "--exchange": exchange, "--exchange-type": exchange_type != "topic",
               "--routing-key": routing_key or None, "--username": username,
               "--password": password, "--to-observations": to_observations or None,
               "--to-webhook": to_webhook, "--event-time": event_time,
               "--lateness": lateness, "--dead-letter-topic": dead_letter_topic,
               "--description": description}
    if file is not None:
        from lakeport.client.routing import load_rule_file

        given = next((option for option, value in options.items() if value), None)
        if given is not None:
            raise Invalid(f"{given} does not go with -f: put it in the file")
        spec = load_rule_file(file)
        if name is not None:
            spec["name"] = name
    else:
        actions = build_actions(
            to_topic=to_topic or (), to_mqtt=to_mqtt, publish=publish, qos=qos,
            to_amqp=to_amqp, exchange=exchange, exchange_type=exchange_type,
            routing_key=routing_key, username=username, password=password,
            to_observations=to_observations, to_webhook=to_webhook or ())
        spec = build_spec(name, sql, actions, event_time=event_time, lateness=lateness,
                          dead_letter_topic=dead_letter_topic, description=description)
    record = call(url, api_key, lambda c: c.routing.rules.create(spec, start=not stopped))
    if as_json:
        show_record(record, True)
    else:
        stderr.print(f"created rule {record['name']} ({_state(record)})", markup=False)


@app.command("ls")
def ls(limit: LimitOption = None, as_json: JsonOption = False, url: ServerOption = None,
       api_key: ApiKeyOption = None) -> None:
    """List the rules with their state, actions and counts.

    Example: lakeport rules ls
    """
    rows = call(url, api_key, lambda c: c.routing.rules.list(limit=limit))
    if not as_json:
        rows = [{**row, "actions": ", ".join(_action_text(a) for a in row.get("actions") or ()),
                 "updated": short_time(row.get("updated"))} for row in rows]
    show_records(rows, as_json, None if as_json else LIST_COLUMNS,
                 "no rules: make one with lakeport rules create NAME --sql ... --to-topic T")


@app.command()
def show(name: NameArg, as_json: JsonOption = False, url: ServerOption = None,
         api_key: ApiKeyOption = None) -> None:
    """Show a rule: its statement, actions (secrets as ***), state and stats.

    Example: lakeport rules show hot
    """
    from lakeport.client.results import to_table

    record = call(url, api_key, lambda c: c.routing.rules.get(name))
    if as_json:
        show_record(record, True)
        return
    shown = {"rule": record.get("name"), "state": _state(record),
             "error": record.get("error"), "owner": record.get("owner"),
             "sql": record.get("sql"),
             "event_time": record.get("event_time") or "(the topic's time)",
             "lateness": record.get("lateness") or None,
             "dead_letter_topic": record.get("dead_letter_topic"),
             "description": record.get("description") or None,
             "created": short_time(record.get("created")),
             "updated": short_time(record.get("updated"))}
    stats = record.get("stats") or {}
    shown.update({key: stats[key] for key in STATS_COLUMNS[1:] if key in stats})
    if stats.get("action_errors"):
        shown["action_errors"] = stats["action_errors"]
    show_record({key: value for key, value in shown.items() if value is not None}, False)
    actions = [{"action": _action_text(action),
                "options": {key: value for key, value in action.items()
                            if key not in ("type", "topic", "url", "publish", "exchange",
                                           "routing_key") and value not in (None, {}, False)}
                or None} for action in record.get("actions") or ()]
    if actions:
        table = to_table(actions, ["action", "options"])
        table.box = None
        print_table(table)


def _control(action: str, done: str, doc: str) -> None:
    def command(name: NameArg, as_json: JsonOption = False, url: ServerOption = None,
                api_key: ApiKeyOption = None) -> None:
        record = call(url, api_key, lambda c: getattr(c.routing.rules, action)(name))
        if as_json:
            show_record(record, True)
        else:
            stderr.print(f"{done} rule {name} ({_state(record)})", markup=False)

    command.__doc__ = f"{doc}\n\nExample: lakeport rules {action} hot"
    app.command(action)(command)


_control("start", "started", "Run a stopped or failed rule; it reads on from where it stopped.")
_control("stop", "stopped", "Stop a rule; what it has not acked is read again when it starts.")


@app.command()
def rm(name: NameArg, url: ServerOption = None, api_key: ApiKeyOption = None) -> None:
    """Stop a rule and delete it.

    Example: lakeport rules rm hot
    """
    call(url, api_key, lambda c: c.routing.rules.delete(name))
    stderr.print(f"deleted rule {name}", markup=False)


def stats_line(stats: Mapping[str, Any]) -> str:
    """A rule's stats on one line."""
    text = (f"{stats.get('state')}: {stats.get('rows_in', 0):,} in, "
            f"{stats.get('rows_out', 0):,} out, {stats.get('dropped', 0):,} dropped, "
            f"{stats.get('late', 0):,} late, {stats.get('errors', 0):,} errors, "
            f"lag {stats.get('lag', 0):,}, {float(stats.get('rate') or 0):,.1f}/s")
    failing = {label: count for label, count in (stats.get("action_errors") or {}).items()
               if count}
    if failing:
        text += "; action errors: " + ", ".join(f"{k} {v:,}" for k, v in failing.items())
    problem = stats.get("error") or stats.get("last_error")
    return f"{text}; {problem}" if problem else text


async def _watch(client: Client, name: str, as_json: bool) -> None:
    from rich.live import Live
    from rich.text import Text

    from lakeport.cli.common import json_line, write_out

    live_view = stdout.is_terminal and not as_json
    with stop_on_signals() as stop:
        live = Live(Text(""), console=stdout, auto_refresh=False) if live_view else None
        with live or contextlib.nullcontext():
            while not stop.is_set():
                stats = await client.routing.rules.stats(name)
                if live is not None:
                    live.update(Text(stats_line(stats)), refresh=True)
                elif as_json:
                    write_out(json_line(stats))
                else:
                    write_out(f"{stats_line(stats)}\n".encode())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL)


@app.command()
def stats(name: NameArg,
          watch: Annotated[bool, typer.Option(
              "--watch", help="Show the stats again every second until Ctrl-C.")] = False,
          as_json: JsonOption = False, url: ServerOption = None,
          api_key: ApiKeyOption = None) -> None:
    """Show a rule's counts: rows in and out, dropped by WHERE, late, errors, the lag behind
    its topic, the rate and each action's errors.

    Example: lakeport rules stats hot --watch
    """
    if watch:
        call(url, api_key, lambda c: _watch(c, name, as_json))
        return
    record = call(url, api_key, lambda c: c.routing.rules.stats(name))
    if as_json:
        show_record(record, True)
        return
    extra = {key: record[key] for key in ("action_errors", "error", "last_error")
             if record.get(key)}
    show_record({key: record.get(key) for key in STATS_COLUMNS} | extra, False)


@app.command("test")
def test_(sql: Annotated[str, typer.Argument(
              help="The statement: SELECT ... FROM \"topic\" ...", show_default=False)],
          sample: Annotated[int, typer.Option(
              "--sample", min=1, help="Run it on this many of the topic's newest messages.")]
          = 100,
          event_time: Annotated[str, typer.Option(
              "--event-time", help="The payload field with the event time ('' for the "
              "topic's time).")] = "time",
          lateness: Annotated[str, typer.Option(
              "--lateness", help="How long after a window's end rows may still come.")]
          = "0s",
          as_json: JsonOption = False, url: ServerOption = None,
          api_key: ApiKeyOption = None) -> None:
    """Try a statement on the newest messages of its topic, without creating a rule: the rows
    it gives, and the messages it could not read.

    Example: lakeport rules test 'SELECT asset, value FROM "raw" WHERE value > 80' --sample 50
    """
    from lakeport.client.results import to_table

    duration(lateness, "--lateness")
    result = call(url, api_key, lambda c: c.routing.rules.test(
        sql, sample, event_time=event_time or None, lateness=lateness))
    if as_json:
        show_record(result, True)
        return
    columns = [str(column) for column in result.get("columns") or ()]
    rows = [dict(zip(columns, row, strict=False)) for row in result.get("rows") or ()]
    errors = list(result.get("errors") or ())
    if rows:
        table = to_table(rows, columns)
        table.box = None
        print_table(table)
    for error in errors[:SHOWN_ERRORS]:
        stderr.print(f"seqno {error.get('seqno')}: {error.get('reason')}", markup=False,
                     soft_wrap=True)
    stderr.print(f"{_count(len(rows), 'row')} from "
                 f"{_count(int(result.get('rows_in') or 0), 'message')}, "
                 f"{result.get('dropped', 0):,} dropped, {_count(len(errors), 'error')}",
                 markup=False)


def _count(number: int, thing: str) -> str:
    return f"{number:,} {thing}{'' if number == 1 else 's'}"


__all__ = ["app", "build_actions", "build_spec", "stats_line"]

"""What the commands over a running server share: ``--url``, ``--api-key``, ``--json``, running
a client call, and printing records as tables."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.table import Table

from lakeport.cli.common import json_line, run, stderr, stdout, write_out
from lakeport.errors import Invalid

if TYPE_CHECKING:
    from lakeport.client import Client

T = TypeVar("T")

ServerOption = Annotated[str | None, typer.Option(
    "--url", envvar="LAKEPORT_URL", show_envvar=True, show_default=False,
    help="lakeport server URL (default: $LAKEPORT_HOME/client.json, else "
    "http://127.0.0.1:8400).")]
ApiKeyOption = Annotated[str | None, typer.Option(
    "--api-key", envvar="LAKEPORT_API_KEY", show_envvar=True, show_default=False,
    help="API key (make one with: lakeport keys create --user NAME).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
NameArg = Annotated[str, typer.Argument(help="Unique name (A-Z a-z 0-9 and + _ = : @ . -).",
                                        show_default=False)]
LimitOption = Annotated[int | None, typer.Option(
    "--limit", help="At most this many (default: all).", show_default=False)]


def call(url: str | None, api_key: str | None,
         action: Callable[[Client], Awaitable[T]]) -> T:
    """Run ``action`` with a client for ``url`` and ``api_key`` (else the environment)."""
    from lakeport.client import Client

    async def go() -> T:
        async with Client.from_env(url=url, api_key=api_key) as client:
            return await action(client)

    return run(go())


def parse_json(text: str | None, option: str) -> Any:
    """The JSON value of an option's text (None stays None), naming the option when bad."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"{option}: not valid JSON ({exc})") from None


def print_table(table: Table) -> None:
    """Print a table whole: cells fold in a terminal, lines are never cut in a pipe or file."""
    for column in table.columns:
        column.overflow = "fold"
    if stdout.is_terminal:
        stdout.print(table)
    else:
        Console(highlight=False, width=100_000).print(table)


def show_records(rows: Sequence[Mapping[str, Any]], as_json: bool,
                 columns: Sequence[str] | None = None, empty: str = "nothing found") -> None:
    """Print records as a table (or a JSON array)."""
    from lakeport.client.results import to_table

    if as_json:
        write_out(json_line(list(rows)))
        return
    if not rows:
        stderr.print(empty, markup=False)
        return
    table = to_table(rows, columns)
    table.box = None
    print_table(table)


def show_record(record: Mapping[str, Any], as_json: bool) -> None:
    """Print one record as field/value lines (or a JSON object)."""
    from lakeport.client.results import record_table

    if as_json:
        write_out(json_line(record))
        return
    table = record_table(record)
    table.box = None
    table.show_header = False
    print_table(table)


__all__ = ["ApiKeyOption", "JsonOption", "LimitOption", "NameArg", "ServerOption", "call",
           "parse_json", "print_table", "show_record", "show_records"]

"""``lakeport grants add|list|remove``: give users access to topics, sensors, features and
observed properties on a running server (files: ``lakeport files share``)."""

from __future__ import annotations

from typing import Annotated

import typer

from lakeport.cli.common import stderr
from lakeport.cli.remote import (
    ApiKeyOption,
    JsonOption,
    NameArg,
    ServerOption,
    call,
    show_record,
    show_records,
)

app = typer.Typer(
    help="Access to topics, sensors, features and observed properties for other users: read, "
    "write (produce on topics) or admin. The owner and operators (keys create --admin) "
    "always have full access; see docs/server/access.md.\n\n"
    "Example: lakeport grants add topic raw-sensor-data --user bob --permission read",
    no_args_is_help=True,
)
KindArg = Annotated[str, typer.Argument(help="topic, sensor, feature or property.",
                                        show_default=False)]
UserOption = Annotated[str, typer.Option("--user", help="The user the grant is for.",
                                         show_default=False)]


@app.command("add")
def add(kind: KindArg, name: NameArg, user: UserOption,
        permission: Annotated[str, typer.Option(
            "--permission", help="read, write (produce on topics) or admin.")] = "read",
        as_json: JsonOption = False, url: ServerOption = None,
        api_key: ApiKeyOption = None) -> None:
    """Grant USER a permission on a resource (replaces the one they had).

    Example: lakeport grants add sensor pump-1 --user bob --permission write
    """
    record = call(url, api_key, lambda c: c.grants.grant(kind, name, user,  # type: ignore[arg-type]
                                                         permission))
    show_record(record, as_json)


@app.command("list")
def list_(kind: KindArg, name: NameArg, as_json: JsonOption = False,
          url: ServerOption = None, api_key: ApiKeyOption = None) -> None:
    """List the grants on a resource (only your own without admin access to it)."""
    from lakeport.client.grants import COLUMNS

    rows = call(url, api_key, lambda c: c.grants.list(kind, name))  # type: ignore[arg-type]
    show_records(rows, as_json, None if as_json else COLUMNS,
                 f"no grants on {kind} {name}")


@app.command("remove")
def remove(kind: KindArg, name: NameArg, user: UserOption, url: ServerOption = None,
           api_key: ApiKeyOption = None) -> None:
    """Take USER's grant on a resource away (access through it ends at once)."""
    call(url, api_key, lambda c: c.grants.revoke(kind, name, user))  # type: ignore[arg-type]
    stderr.print(f"removed {user}'s grant on {kind} {name}", markup=False)


__all__ = ["app"]

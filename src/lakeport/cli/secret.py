"""``lakeport secret create|update|list|delete``: the local secret store."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from lakeport.cli.common import stderr
from lakeport.errors import Invalid

app = typer.Typer(
    help="Secrets for app manifests (<% secrets.NAME %>), stored under the lakeport home.",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(
    help="The secret's name: lowercase letters, digits and '-' (e.g. azure-key).",
    show_default=False)]
ValueOption = Annotated[str | None, typer.Option(
    "--value", help="The value (it stays in your shell history: --from-stdin avoids that).",
    show_default=False)]
StdinOption = Annotated[bool, typer.Option(
    "--from-stdin", help="Read the value from standard input (one trailing newline is "
    "dropped).")]


def _value(value: str | None, from_stdin: bool) -> str:
    if value is not None and from_stdin:
        raise Invalid("give the value with --value or --from-stdin, not both")
    if from_stdin:
        text = sys.stdin.read()
        return text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")
    if value is not None:
        return value
    if sys.stdin.isatty():
        return typer.prompt("value", hide_input=True, err=True)
    raise Invalid("give the value with --value V or --from-stdin")


@app.command("create")
def create(name: NameArgument, value: ValueOption = None, from_stdin: StdinOption = False
           ) -> None:
    """Store a new secret. Example: lakeport secret create azure-key --from-stdin < key.txt"""
    from lakeport.apps.secrets import SecretStore, validate_secret_name

    validate_secret_name(name)
    SecretStore().create(name, _value(value, from_stdin))
    stderr.print(f"created secret {name}", markup=False)


@app.command("update")
def update(name: NameArgument, value: ValueOption = None, from_stdin: StdinOption = False
           ) -> None:
    """Replace the value of an existing secret."""
    from lakeport.apps.secrets import SecretStore

    store = SecretStore()
    if not store.exists(name):
        store.get(name)  # raises NotFound naming the command that creates it
    store.update(name, _value(value, from_stdin))
    stderr.print(f"updated secret {name}", markup=False)


@app.command("list")
def list_secrets() -> None:
    """Print the name of every secret, one per line (values are never printed)."""
    from lakeport.apps.secrets import SecretStore

    names = SecretStore().names()
    if not names:
        stderr.print("no secrets yet: lakeport secret create NAME --value ...", markup=False)
    for name in names:
        print(name)


@app.command("delete")
def delete(name: NameArgument) -> None:
    """Remove a secret."""
    from lakeport.apps.secrets import SecretStore

    SecretStore().delete(name)
    stderr.print(f"deleted secret {name}", markup=False)

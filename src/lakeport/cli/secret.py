"""``lakeport secret create|update|list|delete``: the local secret store."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Secrets for app manifests (<% secrets.NAME %>), stored under the lakeport home.",
    no_args_is_help=True,
)

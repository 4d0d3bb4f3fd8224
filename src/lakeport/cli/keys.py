"""``lakeport keys create|list|revoke``: API keys of the platform server's users."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from lakeport.cli.common import run, stderr, stdout
from lakeport.cli.serve import StoreOption

app = typer.Typer(
    help="API keys for the platform server (stored hashed in its store).",
    no_args_is_help=True,
)


def _store_url(store: str | None) -> str:
    from lakeport.server.settings import default_store_url

    return store or default_store_url()


@app.command("create")
def create(
    user: Annotated[str, typer.Option("--user", help="The user the key acts as (created when "
                                      "new).", show_default=False)],
    label: Annotated[str, typer.Option(help="A note to tell keys apart.")] = "",
    admin: Annotated[bool | None, typer.Option(
        "--admin/--no-admin", show_default=False,
        help="Give the user the operator role (full access to every user's resources), or "
        "take it away; without either the user's role stays as it is.")] = None,
    worker: Annotated[bool | None, typer.Option(
        "--worker/--no-worker", show_default=False,
        help="Give the user the worker role (lakeport worker: claim task runs and report "
        "them, nothing else), or take it away.")] = None,
    store: StoreOption = None,
) -> None:
    """Make an API key and print it (it is shown only this once).

    Example: export LAKEPORT_API_KEY=$(lakeport keys create --user alice)
    """
    from lakeport.server.store import Store
    from lakeport.server.store.users import create_key

    async def make() -> str:
        async with Store(_store_url(store)) as opened:
            return await create_key(opened, user, label, admin=admin, worker=worker)

    key = run(make())
    print(key)
    role = " (an operator: full access)" if admin else \
        " (a worker: claims task runs)" if worker else ""
    stderr.print(f"created an API key for {user}{role}; send it as the x-api-key header",
                 markup=False)


@app.command("list")
def list_(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's keys.",
                                             show_default=False)] = None,
    store: StoreOption = None,
) -> None:
    """List keys by prefix (never the keys themselves)."""
    from rich.table import Table

    from lakeport.server.store import Store
    from lakeport.server.store.users import list_keys

    async def read() -> list:
        async with Store(_store_url(store)) as opened:
            return await list_keys(opened, user)

    table = Table("prefix", "user", "label", "created", "state")
    for info in run(read()):
        created = datetime.fromtimestamp(info.created_ms / 1000, UTC).isoformat(timespec="seconds")
        table.add_row(info.prefix, info.user, info.label, created,
                      "revoked" if info.revoked else "active")
    stdout.print(table)


@app.command("revoke")
def revoke(
    prefix: Annotated[str, typer.Argument(help="The key's prefix (from keys list) or the key.",
                                          show_default=False)],
    store: StoreOption = None,
) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    from lakeport.server.store import Store
    from lakeport.server.store.users import revoke_key

    async def drop() -> None:
        async with Store(_store_url(store)) as opened:
            await revoke_key(opened, prefix)

    run(drop())
    stderr.print("revoked", markup=False)


__all__ = ["app"]

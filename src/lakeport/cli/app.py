"""``lakeport app ...``: validate, scaffold, run, feed and deploy apps described by app.yaml."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Apps described by an app.yaml manifest: create, validate, run, test with simulated "
    "data, deploy.",
    no_args_is_help=True,
)
test_app = typer.Typer(
    help="Feed an app with data shaped by its manifest (simulated or from a CSV file).",
    no_args_is_help=True,
)
app.add_typer(test_app, name="test")

# The commands live in their own modules and register themselves on the apps above.
from lakeport.cli import app_manifest, app_run  # noqa: E402, F401

"""The ``lakeport`` console command.

A user error (:class:`~lakeport.errors.LakeportError`, a bad option, a timeout) prints one
red line ``error: ...`` on stderr and exits 1; anything unexpected exits 2 with the traceback.
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from collections.abc import Sequence
from typing import Annotated

import typer

from lakeport import __version__
from lakeport.allocator import tune_process
from lakeport.cli import app as apps
from lakeport.cli import (
    bridge,
    bridge_remote,  # noqa: F401  (adds bridge create, ls, ... on a server)
    export,
    files,
    flow,
    forward,
    grants,
    keys,
    observations,
    projects,
    rules,
    secret,
    sensors,
    tasks,
    topics,
    workflows,
)
from lakeport.cli.common import PipeClosed, silence_stdout, stderr
from lakeport.cli.demo import demo
from lakeport.cli.serve import serve
from lakeport.cli.worker import worker
from lakeport.errors import LakeportError

try:  # typer >= 0.24 carries its own copy of click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older typer on click
    from click.exceptions import (  # type: ignore[no-redef]
        ClickException,
        NoArgsIsHelpError,
        UsageError,
    )

app = typer.Typer(
    name="lakeport",
    help="Move industrial sensor data from the edge into data lakes.\n\n"
    "Start with: lakeport demo   (a live pipeline on the embedded engine), "
    "then: lakeport topics --help",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(topics.app, name="topics")
app.add_typer(flow.app, name="flow")
app.add_typer(apps.app, name="app")
app.add_typer(secret.app, name="secret")
app.add_typer(export.app, name="export")
app.add_typer(keys.app, name="keys")
app.add_typer(sensors.app, name="sensors")
app.add_typer(sensors.features_app, name="features")
app.add_typer(sensors.properties_app, name="properties")
app.add_typer(observations.app, name="observations")
app.add_typer(files.app, name="files")
app.add_typer(grants.app, name="grants")
app.add_typer(forward.app, name="forward")
app.add_typer(bridge.app, name="bridge")
app.add_typer(projects.app, name="projects")
app.add_typer(tasks.app, name="tasks")
app.add_typer(workflows.app, name="workflows")
app.add_typer(rules.app, name="rules")
app.add_typer(__import__("lakeport.cli.tables").cli.tables.app, name="tables")
app.add_typer(__import__("lakeport.cli.component").cli.component.app, name="component")
app.command()(demo)
app.command()(serve)
app.command()(worker)


def _print_version(value: bool) -> None:
    if value:
        print(f"lakeport {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the version and exit.")] = False,
) -> None:
    """Move industrial sensor data from the edge into data lakes."""


@app.command()
def version() -> None:
    """Print the lakeport version."""
    print(f"lakeport {__version__}")


def _error(message: str) -> int:
    stderr.print(f"error: {message}", style="red", markup=False, soft_wrap=True)
    return 1


def _usage_error(exc: UsageError) -> int:
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return _error(exc.format_message().replace("\n", " ") + hint)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line and exit with 0 (done), 1 (user error) or 2 (bug)."""
    tune_process()  # lakeport's own process: allocators tuned for bulk data (allocator.py)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="lakeport", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        exc.show()
        code = 0
    except UsageError as exc:
        code = _usage_error(exc)
    except ClickException as exc:
        code = _error(exc.format_message())
    except LakeportError as exc:
        code = _error(str(exc))
    except TimeoutError as exc:
        code = _error(f"timed out: {exc}" if str(exc) else "timed out")
    except PipeClosed:
        silence_stdout()
        code = 0
    except typer.Abort:
        code = _error("aborted")
    except (KeyboardInterrupt, asyncio.CancelledError):
        code = 130
    except Exception:
        traceback.print_exc()
        code = 2
    sys.exit(code if isinstance(code, int) else 0)

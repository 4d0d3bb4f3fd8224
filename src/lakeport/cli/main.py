"""The ``lakeport`` console command.

A user error (:class:`~lakeport.errors.LakeportError`, a bad option, a timeout) prints one
red line ``error: ...`` on stderr and exits 1; anything unexpected exits 2 with the traceback.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import traceback
from collections.abc import Sequence
from typing import Annotated

import typer

from lakeport import __version__
from lakeport.allocator import tune_process
from lakeport.cli.common import PipeClosed, silence_stdout, stderr
from lakeport.errors import LakeportError

try:  # typer >= 0.24 carries its own copy of click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older typer on click
    from click.exceptions import (  # type: ignore[no-redef]
        ClickException,
        NoArgsIsHelpError,
        UsageError,
    )

COMMANDS: dict[str, tuple[str, str]] = {
    "topics": ("lakeport.cli.topics", "app"),
    "flow": ("lakeport.cli.flow", "app"),
    "app": ("lakeport.cli.app", "app"),
    "secret": ("lakeport.cli.secret", "app"),
    "export": ("lakeport.cli.export", "app"),
    "keys": ("lakeport.cli.keys", "app"),
    "sensors": ("lakeport.cli.sensors", "app"),
    "features": ("lakeport.cli.sensors", "features_app"),
    "properties": ("lakeport.cli.sensors", "properties_app"),
    "observations": ("lakeport.cli.observations", "app"),
    "files": ("lakeport.cli.files", "app"),
    "grants": ("lakeport.cli.grants", "app"),
    "forward": ("lakeport.cli.forward", "app"),
    "bridge": ("lakeport.cli.bridge_remote", "app"),  # bridge run, and create, ls, ... on a server
    "projects": ("lakeport.cli.projects", "app"),
    "tasks": ("lakeport.cli.tasks", "app"),
    "workflows": ("lakeport.cli.workflows", "app"),
    "rules": ("lakeport.cli.rules", "app"),
    "tables": ("lakeport.cli.tables", "app"),
    "component": ("lakeport.cli.component", "app"),
    "demo": ("lakeport.cli.demo", "demo"),
    "serve": ("lakeport.cli.serve", "serve"),
    "worker": ("lakeport.cli.worker", "worker"),
}
"""Each top-level command: the module and the Typer app (a group) or function (a command)
that it is. A command line builds only the one it runs (typer reads the signature of every
function it registers, which is most of the start-up time of a command)."""


def _print_version(value: bool) -> None:
    if value:
        print(f"lakeport {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the version and exit.")] = False,
) -> None:
    """Move industrial sensor data from the edge into data lakes."""


def version() -> None:
    """Print the lakeport version."""
    print(f"lakeport {__version__}")


def build_app(names: Sequence[str] = tuple(COMMANDS)) -> typer.Typer:
    """The ``lakeport`` Typer app with the top-level commands ``names`` (all by default)."""
    root = typer.Typer(
        name="lakeport",
        help="Move industrial sensor data from the edge into data lakes.\n\n"
        "Start with: lakeport demo   (a live pipeline on the embedded engine), "
        "then: lakeport topics --help",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    root.callback()(_root)
    for name in names:
        module, attribute = COMMANDS[name]
        command = getattr(importlib.import_module(module), attribute)
        if isinstance(command, typer.Typer):
            root.add_typer(command, name=name)
        else:
            root.command(name)(command)
    root.command()(version)
    return root


def __getattr__(name: str) -> typer.Typer:
    if name == "app":  # the whole command line, e.g. for typer.testing.CliRunner
        return build_app()
    raise AttributeError(name)


def _error(message: str) -> int:
    stderr.print(f"error: {message}", style="red", markup=False, soft_wrap=True)
    return 1


def _usage_error(exc: UsageError) -> int:
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return _error(exc.format_message().replace("\n", " ") + hint)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line and exit with 0 (done), 1 (user error) or 2 (bug)."""
    tune_process()  # lakeport's own process: allocators tuned for bulk data (allocator.py)
    args = list(sys.argv[1:] if argv is None else argv)
    first = args[0] if args else ""
    command = typer.main.get_command(build_app([first] if first in COMMANDS else COMMANDS))
    try:
        code = command.main(args=args, prog_name="lakeport", standalone_mode=False)
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

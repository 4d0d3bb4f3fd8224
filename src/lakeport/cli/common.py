"""What every command shares: the ``--url`` option, running a coroutine, signals, output."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from lakeport.errors import Invalid
from lakeport.units import parse_duration

if TYPE_CHECKING:
    from lakeport.streams import Engine

T = TypeVar("T")

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="LAKEPORT_STREAMS",
        show_envvar=True,
        help="Streams engine URL: file:///path (embedded, the default under LAKEPORT_HOME), "
        "memory://, nats://host:4222.",
        show_default=False,
    ),
]


# The choices of options whose values are the topic API's enums: the same values as
# lakeport.streams.types.Format, Persistence and Mode (tests/unit/test_cli_startup.py checks),
# defined here so that building the command line does not import the engines. A command
# turns the chosen value into the API's enum (``Format(fmt)``) before using it.
class FormatChoice(StrEnum):
    JSON = "json"
    STRING = "string"
    BYTES = "bytes"


class PersistenceChoice(StrEnum):
    DISK = "disk"
    RAM = "ram"


class ModeChoice(StrEnum):
    EXCLUSIVE = "exclusive"
    SHARED = "shared"
    STANDBY = "standby"


stderr = Console(stderr=True, highlight=False)
stdout = Console(highlight=False)


class PipeClosed(Exception):
    """The reader of our standard output went away (``lakeport ... | head``)."""


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coroutine`` to its end; a closed output pipe ends the command quietly."""
    try:
        return asyncio.run(coroutine)
    except BrokenPipeError:
        raise PipeClosed from None


async def on_engine(url: str | None, action: Callable[[Engine], Awaitable[T]]) -> T:
    """Open the engine at ``url``, run ``action`` on it, close it."""
    from lakeport.streams import open_engine

    async with open_engine(url) as engine:
        return await action(engine)


def silence_stdout() -> None:
    """Point stdout at /dev/null so the final flush after a closed pipe does not fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError):
        os.dup2(devnull, sys.stdout.fileno())


@contextlib.contextmanager
def stop_on_signals() -> Iterator[asyncio.Event]:
    """An event set by SIGINT or SIGTERM while the block runs (inside a running loop).

    The block stops gracefully when it sees the event; a second signal cancels it.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set() and task is not None:
            task.cancel()
        stop.set()

    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, on_signal)
    try:
        yield stop
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def parse_option(parser: Callable[[str], T], text: str | None, option: str) -> T | None:
    """Parse an option's text with ``parser``, naming the option in the error; None stays None."""
    if text is None:
        return None
    try:
        return parser(text)
    except Invalid as exc:
        raise Invalid(f"{option}: {exc}") from None


def parse_pairs(pairs: Sequence[str] | None, option: str,
                bad: str = "{option}: expected key=value, got {pair!r}") -> dict[str, str]:
    """``key=value`` option values as a dict; ``bad`` is the message for a pair without ``=``
    or without a key (``{option}`` and ``{pair}`` are filled in)."""
    result: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise Invalid(bad.format(option=option, pair=pair))
        result[key] = value
    return result


def duration(text: str | None, option: str) -> float | None:
    """Parse a duration option (``30s``, ``10m``); None stays None."""
    return parse_option(parse_duration, text, option)


def json_line(value: Any) -> bytes:
    """One line of JSON, spaced like Python's ``json.dumps`` (``{"temp": 10}``), UTF-8."""
    return json.dumps(value, ensure_ascii=False).encode() + b"\n"


def write_out(data: bytes) -> None:
    """Write to stdout and flush, so pipes and followers see output at once."""
    out = sys.stdout.buffer
    out.write(data)
    out.flush()


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def human_duration(seconds: float) -> str:
    """``604800`` → ``7d``, ``5400`` → ``90m``, ``1.5`` → ``1.5s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:.0f}{unit}"
    return f"{seconds:g}s"


def human_age(seconds: float | None) -> str:
    """How long ago, to two units: ``4.2s``, ``5m 12s``, ``3h 7m``, ``2d 5h``; ``-`` for None."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    for index, (unit, size) in enumerate(units[:-1]):
        if whole >= size:
            smaller, small_size = units[index + 1]
            return f"{whole // size}{unit} {whole % size // small_size}{smaller}"
    return f"{whole}s"


def short_time(iso: str | None) -> str:
    """An ISO UTC time to the second (``2026-01-01T10:46:09Z``), or ``-``."""
    return f"{iso[:19]}Z" if iso else "-"

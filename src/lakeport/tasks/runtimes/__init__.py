"""The runtimes a task's code runs with, by name: ``py``, ``js``, ``java``, ``c``, ``cpp``,
``sh``, ``spark``, ``component``. See :mod:`lakeport.tasks.runtimes.base` for the seam."""

from __future__ import annotations

from lakeport.errors import Invalid
from lakeport.tasks.runtimes.base import Job, Progress, Runtime
from lakeport.tasks.runtimes.component import ComponentRuntime
from lakeport.tasks.runtimes.java import JavaRuntime
from lakeport.tasks.runtimes.js import NodeRuntime
from lakeport.tasks.runtimes.native import c_runtime, cpp_runtime
from lakeport.tasks.runtimes.py import PythonRuntime
from lakeport.tasks.runtimes.sh import ShellRuntime
from lakeport.tasks.runtimes.spark import SparkRuntime

RUNTIMES: dict[str, Runtime] = {runtime.name: runtime for runtime in (
    PythonRuntime(), NodeRuntime(), JavaRuntime(), c_runtime(), cpp_runtime(), ShellRuntime(),
    SparkRuntime(), ComponentRuntime())}


def runtime(name: str) -> Runtime:
    """The runtime called ``name``; Invalid naming the known ones."""
    try:
        return RUNTIMES[name]
    except KeyError:
        raise Invalid(f"unknown runtime {name!r}: use one of "
                      f"{', '.join(runtime_names())}") from None


def runtime_names() -> list[str]:
    return list(RUNTIMES)


def available_runtimes() -> list[str]:
    """The runtimes usable on this machine (their ``missing()`` is None)."""
    return [name for name, found in RUNTIMES.items() if found.missing() is None]


__all__ = ["RUNTIMES", "Job", "Progress", "Runtime", "available_runtimes", "runtime",
           "runtime_names"]

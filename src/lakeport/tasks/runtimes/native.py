"""``c`` and ``cpp``: compiled with ``cc`` / ``c++ -O2`` into the cache, then run directly.

Every source file of the language in the code folder is compiled together (the folder is on
the include path), once per version key and sources; ``settings["flags"]`` adds compiler
and linker flags (e.g. ``-lm -pthread``).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from lakeport.tasks.runtimes.base import (
    Job,
    Progress,
    build_once,
    compile_with,
    entry_file,
    fingerprint,
    needed,
    tool,
)


class NativeRuntime:
    """A compiled language: ``compiler`` builds every file with one of ``suffixes``."""

    def __init__(self, name: str, compiler: str, suffixes: tuple[str, ...],
                 default_flags: tuple[str, ...]) -> None:
        self.name = name
        self.compiler = compiler
        self.suffixes = suffixes
        self.default_flags = default_flags

    def missing(self) -> str | None:
        if tool(self.compiler) is None:
            return f"{self.compiler} is not installed (install a C/C++ compiler, e.g. gcc g++)"
        return None

    def prepare(self, job: Job, on_progress: Progress) -> list[str]:
        entry = entry_file(job, *self.suffixes)
        compiler = needed(self.compiler, "install a C/C++ compiler, e.g. gcc g++")
        code = job.code.resolve()
        sources = sorted({entry, *(path for path in code.rglob("*")
                                   if path.suffix.lower() in self.suffixes
                                   and path.is_file())})
        flags = [*self.default_flags, *shlex.split(job.settings.get("flags", ""))]

        def build(folder: Path) -> None:
            argv = [compiler, "-O2", "-I", str(code), "-o", str(folder / "task"),
                    *(str(path.relative_to(code)) for path in sources), *flags]
            compile_with(argv, cwd=code, what=job.entry, on_progress=on_progress)

        key = fingerprint([compiler, *flags], sources)
        binary = build_once(job, self.name, key, build, on_progress) / "task"
        return [str(binary), *job.args]


def c_runtime() -> NativeRuntime:
    return NativeRuntime("c", "cc", (".c",), ("-lm",))


def cpp_runtime() -> NativeRuntime:
    return NativeRuntime("cpp", "c++", (".cpp", ".cc", ".cxx", ".c++"), ("-lm",))

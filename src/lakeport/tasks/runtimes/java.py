"""``java``: a ``.jar`` runs as ``java -jar entry args``; a ``.java`` entry is compiled first.

Every ``.java`` file of the code folder is compiled with ``javac`` into the cache (once per
version key and sources), with the ``.jar`` files of the folder on the class path, and runs
as ``java -cp <classes>:<jars> <Main> args``, where ``Main`` is the entry's class (its
``package`` line included).
"""

from __future__ import annotations

import os
import re
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

HINT = "install a Java JDK"
PACKAGE = re.compile(rb"^\s*package\s+([\w.]+)\s*;", re.MULTILINE)


class JavaRuntime:
    name = "java"

    def missing(self) -> str | None:
        absent = [name for name in ("java", "javac") if tool(name) is None]
        if not absent:
            return None
        verb = "is" if len(absent) == 1 else "are"
        return f"{' and '.join(absent)} {verb} not installed ({HINT})"

    def prepare(self, job: Job, on_progress: Progress) -> list[str]:
        entry = entry_file(job, ".java", ".jar")
        java = needed("java", HINT)
        if entry.suffix.lower() == ".jar":
            return [java, "-jar", job.entry, *job.args]
        javac = needed("javac", HINT)
        code = job.code.resolve()
        sources = sorted(code.rglob("*.java"))
        jars = [str(path) for path in sorted(code.rglob("*.jar"))]
        relative = [str(path.relative_to(code)) for path in sources]

        def build(folder: Path) -> None:
            argv = [javac, "-encoding", "UTF-8", "-d", str(folder)]
            if jars:
                argv += ["-cp", os.pathsep.join(jars)]
            compile_with([*argv, *relative], cwd=code, what=job.entry, on_progress=on_progress)

        key = fingerprint([javac, *jars], sources)
        classes = build_once(job, "java", key, build, on_progress)
        return [java, "-cp", os.pathsep.join([str(classes), *jars]), main_class(entry),
                *job.args]


def main_class(source: Path) -> str:
    """``Hello`` for ``Hello.java``; ``org.x.Hello`` when it says ``package org.x;``."""
    found = PACKAGE.search(source.read_bytes())
    return f"{found.group(1).decode()}.{source.stem}" if found else source.stem

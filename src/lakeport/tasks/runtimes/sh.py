"""``sh``: ``sh entry args``, or the shell its ``#!`` line names (bash, dash, zsh, ksh)."""

from __future__ import annotations

from pathlib import Path

from lakeport.tasks.runtimes.base import Job, Progress, entry_file, needed, tool

SHELLS = ("sh", "bash", "dash", "zsh", "ksh")


class ShellRuntime:
    name = "sh"

    def missing(self) -> str | None:
        return None if tool("sh") else "sh is not installed (install a POSIX shell)"

    def prepare(self, job: Job, on_progress: Progress) -> list[str]:
        shell = shebang_shell(entry_file(job))
        return [needed(shell, f"the entry's #! line names {shell}"), job.entry, *job.args]


def shebang_shell(path: Path) -> str:
    """The shell a script's ``#!`` line names (``#!/bin/bash``, ``#!/usr/bin/env bash``),
    ``sh`` when it names none of :data:`SHELLS`."""
    with path.open("rb") as handle:
        first = handle.readline(256).decode("utf-8", "replace")
    if not first.startswith("#!"):
        return "sh"
    words = first[2:].split()
    if words and Path(words[0]).name == "env":
        words = [word for word in words[1:] if not word.startswith("-")]
    name = Path(words[0]).name if words else "sh"
    return name if name in SHELLS else "sh"

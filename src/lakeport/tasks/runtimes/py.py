"""``py``: ``python -u entry args`` with the interpreter of the task's environment.

A code folder with a ``requirements.txt`` gets a virtual environment built from it with uv
(:func:`lakeport.apps.environment.ensure_environment`, kept under ``<cache>/py-envs`` and
shared by every task with the same file); without one the task runs with lakeport's own
interpreter.
"""

from __future__ import annotations

from lakeport.apps.environment import ensure_environment
from lakeport.tasks.runtimes.base import Job, Progress, entry_file


class PythonRuntime:
    name = "py"

    def missing(self) -> str | None:
        return None

    def prepare(self, job: Job, on_progress: Progress) -> list[str]:
        entry_file(job, ".py")
        environment = ensure_environment(job.code, on_progress=on_progress,
                                         root=job.cache / "py-envs")
        return [str(environment.python), "-u", job.entry, *job.args]

"""``component``: a data component on the file contract (:mod:`lakeport.components`), run by
``lakeport component run`` on the worker, so tasks and workflows chain components.

The task's code is the component's folder (its executable and dependencies zip: ``main.py``
or ``src/component.py``, or any command given as the ``command`` setting); the entry is the
configuration (``config.json``). The settings ``config_id`` (default ``<project>.<task>``, in
a workflow ``<project>.<node>``: state and jobs are kept per id), ``row``, ``tables`` (the
storage tables' folder or URL; default the worker's ``LAKEPORT_TABLES``, else ``tables`` in
its lakeport home) and ``timeout`` pass to the runner, as do the task's arguments. States,
jobs and component files are kept in the worker's lakeport home. The job's summary (state,
duration, usage, tables and files in and out) is the run's output file ``out/job.json``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lakeport.home import lakeport_home
from lakeport.tasks.runtimes.base import Job, Progress, entry_file

OPTIONS = {"row": "--row", "command": "--command", "timeout": "--timeout"}
"""Settings passed to ``lakeport component run`` as its options."""


class ComponentRuntime:
    name = "component"

    def missing(self) -> str | None:
        return None  # the runner is part of lakeport

    def prepare(self, job: Job, on_progress: Progress) -> list[str]:
        config = entry_file(job, ".json")
        project_task = job.version_key.split("/")[:2]  # a workflow's copy: <node>@<instance>
        config_id = job.settings.get("config_id") or ".".join(
            part.split("@")[0] for part in project_task)
        code = job.code.resolve()  # the process runs in it: every path is absolute
        argv = [sys.executable, "-m", "lakeport.cli", "component", "run", str(code),
                "--config", str(config), "--summary", str(code.parent / "out" / "job.json")]
        if config_id:
            argv += ["--config-id", config_id]
        # the worker's home and tables (a task gets a small environment); without tables
        # the runner takes those of the home
        argv += ["--home", str(lakeport_home().resolve())]
        tables = job.settings.get("tables") or os.environ.get("LAKEPORT_TABLES")
        if tables:
            argv += ["--tables-root", tables if "://" in tables else str(Path(tables).resolve())]
        for setting, option in OPTIONS.items():
            if job.settings.get(setting):
                argv += [option, job.settings[setting]]
        return [*argv, *job.args]

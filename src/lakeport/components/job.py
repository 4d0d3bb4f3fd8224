"""One run of a component: data folder, process, output mapping, state, usage, job record.

Jobs are JSON lines in ``<lakeport home>/component-jobs/jobs.jsonl``; each job's masked log
is ``<job id>.log`` beside it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakeport.components.config import ComponentConfig, masker, secret_values
from lakeport.components.datafolder import InputSummary, make_data_folder
from lakeport.components.files import FileStore
from lakeport.components.outputs import apply_outputs, plan_outputs
from lakeport.components.runner import run_process
from lakeport.components.state import StateStore, read_out_state
from lakeport.components.usage import read_usage
from lakeport.errors import Invalid, LakeportError
from lakeport.home import file_lock, lakeport_home, private_folder

if TYPE_CHECKING:
    from lakeport.tables import TableStore

ACTION_TIMEOUT = 30.0


@dataclass
class Job:
    """The record of one run."""

    id: str
    run_id: str
    component_id: str
    config_id: str
    row_id: str | None = None
    action: str = "run"
    state: str = "processing"  # then success or error
    error_type: str | None = None  # user or application
    started: str = ""
    duration: float = 0.0
    exit_code: int | None = None
    message: str = ""
    usage: list[dict[str, Any]] = field(default_factory=list)
    tables_in: list[dict[str, Any]] = field(default_factory=list)
    tables_out: list[dict[str, Any]] = field(default_factory=list)
    files_in: list[dict[str, Any]] = field(default_factory=list)
    files_out: list[dict[str, Any]] = field(default_factory=list)
    result: Any = None  # a synchronous action's answer

    @property
    def succeeded(self) -> bool:
        return self.state == "success"

    def to_json(self, indent: int | None = None) -> str:
        """The record as JSON (as ``jobs.jsonl`` keeps it)."""
        return json.dumps(asdict(self), indent=indent, default=str)


class JobStore:
    """Job records as JSON lines (default ``<lakeport home>/component-jobs``)."""

    FOLDER = "component-jobs"

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root else lakeport_home() / self.FOLDER

    @property
    def path(self) -> Path:
        return private_folder(self.root) / "jobs.jsonl"

    def log_path(self, job_id: str) -> Path:
        return private_folder(self.root) / f"{job_id}.log"

    def record(self, job: Job) -> None:
        with file_lock(self.root / ".lock"), self.path.open("a") as handle:
            handle.write(job.to_json() + "\n")

    def list(self, config_id: str | None = None) -> list[Job]:
        """Every job, oldest first (of one configuration when ``config_id`` is given)."""
        if not self.path.exists():
            return []
        jobs = [Job(**json.loads(line)) for line in self.path.read_text().splitlines() if line]
        return [j for j in jobs if config_id is None or j.config_id == config_id]

    def last_success(self, config_id: str) -> Job | None:
        """The latest successful run of a configuration, for ``changed_since: adaptive``."""
        done = [j for j in self.list(config_id) if j.succeeded and j.action == "run"]
        return done[-1] if done else None


@dataclass
class RunOptions:
    """Everything one run needs besides the configuration."""

    component_dir: Path
    command: Sequence[str]
    component_id: str
    config_id: str
    row_id: str | None = None
    timeout: float = 3600.0
    parent_run_id: str | None = None
    tables: TableStore | None = None
    files: FileStore | None = None
    states: StateStore | None = None
    jobs: JobStore | None = None
    log: Callable[[str, str], None] | None = None
    keep_data: Path | None = None  # run in this folder and keep it


def component_env(folder: Path, job: Job) -> dict[str, str]:
    """The environment of the component: the host's without ``KBC_*``, plus the variables the
    public component library reads."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBC_")}
    env.update({
        "KBC_DATADIR": str(folder) + os.sep, "KBC_RUNID": job.run_id,
        "KBC_PROJECTID": os.environ.get("LAKEPORT_PROJECT", "lakeport"),
        "KBC_PROJECTNAME": os.environ.get("LAKEPORT_PROJECT", "lakeport"),
        "KBC_STACKID": "lakeport", "KBC_CONFIGID": job.config_id,
        "KBC_COMPONENTID": job.component_id, "KBC_BRANCHID": "default",
        "KBC_STAGING_FILE_PROVIDER": "local", "KBC_DATA_TYPE_SUPPORT": "none",
        "KBC_PROJECT_FEATURE_GATES": "queuev2", "KBC_COMPONENT_RUN_MODE": "run",
        "PYTHONUNBUFFERED": "1",
    })
    if job.row_id:
        env["KBC_CONFIGROWID"] = job.row_id
    return env


def _new_ids(parent: str | None) -> tuple[str, str]:
    job_id = str(time.time_ns() // 1000)
    return job_id, f"{parent}.{job_id}" if parent else job_id


def run_component(config: ComponentConfig, options: RunOptions) -> Job:
    """Run a component once and record the job; the job says how it ended (a LakeportError
    before the run, a non-zero exit, a bad output or a state conflict are all errors)."""
    config = config.for_row(options.row_id)
    files = options.files or FileStore()
    states = options.states or StateStore()
    jobs = options.jobs or JobStore()
    job_id, run_id = _new_ids(options.parent_run_id)
    job = Job(id=job_id, run_id=run_id, component_id=options.component_id,
              config_id=options.config_id, row_id=options.row_id, action=config.action,
              started=datetime.now(UTC).isoformat())
    mask = masker(secret_values(config.parameters) | secret_values(config.image_parameters)
                  | secret_values(config.authorization))
    state_key = f"{options.config_id}.{options.row_id}" if options.row_id else options.config_id
    started = time.monotonic()
    log_path = jobs.log_path(job_id)
    if options.keep_data is not None and options.keep_data.exists() and any(
            options.keep_data.iterdir()):
        raise Invalid(f"{options.keep_data}: the data folder must be new or empty")
    folder = options.keep_data or Path(tempfile.mkdtemp(prefix=f"lakeport-job-{job_id}-"))
    with log_path.open("a") as log_file:
        def log(stream: str, line: str) -> None:
            log_file.write(f"{stream}: {line}\n")
            log_file.flush()
            if options.log:
                options.log(stream, line)

        try:
            _run(config, options, job, folder, files, states, jobs, state_key, mask, log)
        except LakeportError as exc:
            job.state, job.error_type = "error", job.error_type or "user"
            job.message = mask(str(exc))
            log("lakeport", job.message)
        finally:
            job.duration = round(time.monotonic() - started, 3)
            jobs.record(job)
            if options.keep_data is None:
                shutil.rmtree(folder, ignore_errors=True)
    return job


def _run(config: ComponentConfig, options: RunOptions, job: Job, folder: Path,
         files: FileStore, states: StateStore, jobs: JobStore, state_key: str,
         mask: Callable[[str], str], log: Callable[[str, str], None]) -> None:
    stored = states.read(state_key)
    last = jobs.last_success(options.config_id)
    since = datetime.fromisoformat(last.started) if last else None
    inputs: InputSummary = make_data_folder(folder, config, options.tables, files, job.run_id,
                                            stored.state, since)
    job.tables_in, job.files_in = inputs.tables, inputs.files
    action = config.action != "run"
    timeout = min(options.timeout, ACTION_TIMEOUT) if action else options.timeout
    result = run_process(options.command, options.component_dir, component_env(folder, job),
                         timeout, mask, log, keep_stdout=action)
    job.exit_code = result.exit_code
    job.message = result.message(timeout)
    try:
        job.usage = read_usage(folder / "out" / "usage.json")
    except LakeportError:
        if result.succeeded:
            job.error_type = "application"
            raise
    if not result.succeeded:
        job.state = "error"
        job.error_type = "user" if result.exit_code == 1 else "application"
        return
    if action:
        try:
            job.result = json.loads(result.stdout)
        except json.JSONDecodeError:
            job.state, job.error_type = "error", "application"
            job.message = f"action {config.action!r}: the component's output is not JSON"
            return
        job.state = "success"
        return
    new_state = read_out_state(folder / "out" / "state.json")
    table_plans, file_plans = plan_outputs(folder, config)
    if states.read(state_key).version != stored.version:
        states.write(state_key, new_state, stored.version)  # raises the Conflict
    job.tables_out, job.files_out = apply_outputs(table_plans, file_plans, options.tables,
                                                  files, job.run_id, log)
    states.write(state_key, new_state, stored.version)
    for ids, tags in inputs.processed:
        files.add_tags(ids, tags)
    job.state = "success"

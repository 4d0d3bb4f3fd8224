"""``client.tasks``: projects, tasks and runs of the task service, in the shape the users of
the seed's task service know (deploy, start, pause, resume, stop, reschedule, copy,
link_files, runs, logs).

>>> task = await client.tasks.deploy("plant", "report", runtime="py", executable="main.py",
...                                  inputs="in.zip", retries=2, timeout="10m")
>>> run = await client.tasks.start("plant", "report", {"day": "2026-01-01"})
>>> async for chunk in client.tasks.logs(run["id"], follow=True): ...
>>> final = await client.tasks.wait(run["id"], timeout=600)
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO, Literal

import httpx
import orjson
from pydantic import BaseModel

from lakeport.client import paging
from lakeport.client.errors import ApiUnavailable
from lakeport.client.http import Form, Http
from lakeport.client.results import ResultFormat, check_format, shape
from lakeport.client.transfer import quote_segment
from lakeport.errors import Invalid
from lakeport.units import parse_duration

ENDED = frozenset({"succeeded", "failed", "cancelled", "lost"})
"""Run states a run never leaves."""
PROJECT_COLUMNS = ("name", "description", "owner", "tasks", "created")
TASK_COLUMNS = ("name", "version", "runtime", "state", "next_run", "scheduled_runs",
                "updated")
RUN_COLUMNS = ("id", "task", "version", "trigger", "state", "attempts", "reason", "created",
               "ended")
Duration = float | int | str | timedelta
Progress = Callable[[int, int], None]
"""``on_progress(sent_bytes, total_bytes)`` while a bundle uploads."""
Link = tuple[str, str, str] | Mapping[str, str]


def _schedule(schedule: Any) -> dict[str, Any] | None:
    if schedule is None or isinstance(schedule, Mapping):
        return None if schedule is None else dict(schedule)
    if isinstance(schedule, BaseModel):
        return schedule.model_dump(mode="json")
    raise Invalid(f"bad schedule {schedule!r}: use a dict with 'kind' or "
                  "lakeport.tasks.Now / At / Cron")


def _retries(retries: int | Mapping[str, Any] | BaseModel | None) -> dict[str, Any] | None:
    if retries is None:
        return None
    if isinstance(retries, bool) or not isinstance(retries, int | Mapping | BaseModel):
        raise Invalid(f"bad retries {retries!r}: use a count or a dict like "
                      "{'count': 3, 'backoff': 1.0}")
    if isinstance(retries, int):
        return {"count": retries}
    return retries.model_dump() if isinstance(retries, BaseModel) else dict(retries)


def _seconds(value: Duration | None) -> float | None:
    return None if value is None else parse_duration(value)


def _link(link: Link) -> dict[str, str]:
    if isinstance(link, Mapping):
        return {key: str(value) for key, value in link.items()}
    if isinstance(link, tuple | list) and len(link) == 3:
        project, task, file = link
        return {"project": project, "task": task, "file": file}
    raise Invalid(f"bad link {link!r}: use (project, task, file) or a dict with those keys")


class _Counted(io.RawIOBase):
    """A file read through to httpx, counting the bytes read into a shared tally."""

    def __init__(self, path: Path, tally: _Tally) -> None:
        self._file: BinaryIO = path.open("rb")
        self._tally = tally
        self.name = path.name

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._file.fileno()

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._tally.add(len(data))
        return data

    def close(self) -> None:
        self._file.close()
        super().close()


class _Tally:
    def __init__(self, total: int, on_progress: Progress | None) -> None:
        self.total = total
        self.sent = 0
        self.on_progress = on_progress

    def add(self, count: int) -> None:
        if count:
            self.sent += count
            if self.on_progress is not None:
                self.on_progress(min(self.sent, self.total), self.total)


class Tasks:
    """The task service: projects group tasks; a task's runs have attempts and logs."""

    def __init__(self, http: Http) -> None:
        self._http = http

    @staticmethod
    def _task_path(project: str, task: str | None = None) -> str:
        path = f"/tasks/projects/{quote_segment(project)}"
        return path if task is None else f"{path}/tasks/{quote_segment(task)}"

    # -- projects -----------------------------------------------------------------------------
    async def create_project(self, name: str, description: str = "") -> dict[str, Any]:
        """Create a project (Conflict when it exists); its record."""
        return await self._http.json("POST", "/tasks/projects",
                                     json={"name": name, "description": description})

    async def projects(self, *, format: ResultFormat = "json") -> Any:
        """The projects the caller owns or was granted, with their task counts."""
        check_format(format)
        items = (await self._http.json("GET", "/tasks/projects"))["items"]
        return shape(items, format, PROJECT_COLUMNS)

    async def delete_project(self, name: str) -> None:
        """Delete a project with its tasks and runs (running ones are stopped)."""
        await self._http.request("DELETE", self._task_path(name))

    # -- tasks --------------------------------------------------------------------------------
    async def deploy(self, project: str, task: str, *, runtime: str,
                     executable: str | Path | None = None,
                     dependencies: str | Path | None = None,
                     inputs: str | Path | None = None, entry: str | None = None,
                     args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                     settings: Mapping[str, str] | None = None,
                     timeout: Duration | None = None,
                     retries: int | Mapping[str, Any] | BaseModel | None = None,
                     memory_mb: int | None = None, cpu_seconds: int | None = None,
                     schedule: Any = None, overwrite: bool = False,
                     on_progress: Progress | None = None) -> dict[str, Any]:
        """Deploy a task: ``executable`` (a file; ``entry`` defaults to its name), a
        ``dependencies`` zip unpacked beside it, an ``inputs`` zip unpacked into ``in/``.
        ``retries`` is a count or ``{"count", "backoff", "max_backoff", "jitter"}``;
        ``schedule`` a dict with ``kind`` or ``lakeport.tasks.Now/At/Cron``. With
        ``overwrite`` an existing task gets the new code as a new version. The task's record.
        """
        spec: dict[str, Any] = {"runtime": runtime, "args": list(args)}
        optional = {"entry": entry, "env": None if env is None else dict(env),
                    "settings": None if settings is None else dict(settings),
                    "timeout": _seconds(timeout), "retries": _retries(retries),
                    "memory_mb": memory_mb, "cpu_seconds": cpu_seconds,
                    "schedule": _schedule(schedule)}
        spec.update({key: value for key, value in optional.items() if value is not None})
        paths = {part: Path(path) for part, path in (
            ("executable", executable), ("dependencies", dependencies), ("inputs", inputs))
            if path is not None}
        for part, path in paths.items():
            if not path.is_file():
                raise Invalid(f"{part} {str(path)!r}: no such file")
        tally = _Tally(sum(path.stat().st_size for path in paths.values()), on_progress)
        opened: list[_Counted] = []

        def form() -> Form:
            for handle in opened:
                handle.close()
            opened.clear()
            tally.sent = 0
            files = {}
            for part, path in paths.items():
                opened.append(_Counted(path, tally))
                files[part] = (path.name, opened[-1], "application/octet-stream")
            return {"spec": orjson.dumps(spec).decode()}, files

        try:
            return await self._http.json(
                "PUT", self._task_path(project, task), form=form, safe=overwrite,
                params={"overwrite": "true"} if overwrite else None)
        finally:
            for handle in opened:
                handle.close()

    async def tasks(self, project: str, *, format: ResultFormat = "json") -> Any:
        """The tasks of a project."""
        check_format(format)
        items = (await self._http.json("GET", f"{self._task_path(project)}/tasks"))["items"]
        return shape(items, format, TASK_COLUMNS)

    async def task(self, project: str, name: str) -> dict[str, Any]:
        """A task with its settings (``spec``), executable and links."""
        return await self._http.json("GET", self._task_path(project, name))

    async def delete(self, project: str, name: str) -> None:
        """Delete a task and its runs."""
        await self._http.request("DELETE", self._task_path(project, name))

    async def reschedule(self, project: str, task: str, schedule: Any) -> dict[str, Any]:
        """Give a task a new schedule (a dict with ``kind`` or ``Now/At/Cron``); its record."""
        body = _schedule(schedule)
        if body is None:
            raise Invalid("reschedule needs a schedule")
        return await self._http.json("PATCH", f"{self._task_path(project, task)}/schedule",
                                     json={"schedule": body}, safe=True)

    async def copy(self, project: str, task: str, name: str,
                   to_project: str | None = None) -> dict[str, Any]:
        """Copy a task (code, settings, links) as ``name``, in ``to_project`` or the same
        project; the copy's record."""
        return await self._http.json("POST", f"{self._task_path(project, task)}/copy",
                                     json={"name": name, "project": to_project})

    async def link_files(self, project: str, task: str,
                         links: Sequence[Link]) -> list[dict[str, str]]:
        """Set the files put into the task's ``in/`` from other tasks' latest successful
        outputs: ``[(project, task, file), ...]`` (the seed's externalFileLinking); replaces
        the links it had. The links now."""
        body = {"links": [_link(link) for link in links]}
        answer = await self._http.json("PUT", f"{self._task_path(project, task)}/links",
                                       json=body)
        return list(answer["items"])

    async def links(self, project: str, task: str) -> list[dict[str, str]]:
        """The files linked into the task's ``in/``."""
        return list((await self.task(project, task)).get("links") or [])

    # -- runs ---------------------------------------------------------------------------------
    async def start(self, project: str, task: str,
                    parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Start a run now; ``parameters`` reach it as ``LAKEPORT_PARAM_<NAME>``. The run's
        record (``waiting`` says why it may stay queued)."""
        body = {"parameters": {key: str(value) for key, value in (parameters or {}).items()}}
        return await self._http.json("POST", f"{self._task_path(project, task)}/start",
                                     json=body)

    async def _control(self, run_id: int, action: str, safe: bool) -> dict[str, Any]:
        return await self._http.json("POST", f"/tasks/runs/{int(run_id)}/{action}", safe=safe)

    async def pause(self, run_id: int) -> dict[str, Any]:
        """Hold a run (SIGSTOP on its worker; a queued run stays queued); the run's record."""
        return await self._control(run_id, "pause", True)

    async def resume(self, run_id: int) -> dict[str, Any]:
        """Continue a paused run (SIGCONT); the run's record."""
        return await self._control(run_id, "resume", True)

    async def stop(self, run_id: int) -> dict[str, Any]:
        """Stop a run (SIGTERM, then SIGKILL after a grace period); the run's record."""
        return await self._control(run_id, "stop", False)

    async def runs(self, project: str, task: str, *, state: str | Sequence[str] | None = None,
                   limit: int | None = None, format: ResultFormat = "json") -> Any:
        """The task's runs, newest first (every page, at most ``limit``), of ``state`` (one
        or several) when given."""
        check_format(format)
        states = [state] if isinstance(state, str) else list(state) if state else None
        items = await paging.collect(self._http, f"{self._task_path(project, task)}/runs",
                                     {"state": states}, limit=limit)
        return shape(items, format, RUN_COLUMNS)

    async def run(self, run_id: int) -> dict[str, Any]:
        """A run with its attempts (``attempt_list``) and state transitions (``events``)."""
        return await self._http.json("GET", f"/tasks/runs/{int(run_id)}")

    async def logs(self, run_id: int, stream: Literal["stdout", "stderr"] = "stdout",
                   attempt: int | None = None, follow: bool = False) -> AsyncIterator[bytes]:
        """A run's output (the latest attempt unless ``attempt`` names one) chunk by chunk;
        with ``follow``, what it prints until the attempt ends (a connection that goes
        quiet or breaks is opened again where it stopped)."""
        params = {"stream": stream, "attempt": attempt, "follow": follow or None}
        path = f"/tasks/runs/{int(run_id)}/logs"
        received = 0
        while True:
            skip = received
            try:
                async with self._http.stream("GET", path, params=params) as response:
                    async for chunk in response.aiter_bytes():
                        if skip >= len(chunk):
                            skip -= len(chunk)
                            continue
                        chunk, skip = chunk[skip:], 0
                        received += len(chunk)
                        yield chunk
                return
            except (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                if not follow:
                    raise ApiUnavailable(f"reading the logs of run {run_id} from "
                                         f"{self._http.url} broke: {exc or type(exc).__name__}",
                                         code="unavailable") from exc

    async def wait(self, run_id: int, timeout: Duration | None = None,
                   poll: float = 0.2) -> dict[str, Any]:
        """The run's record once it has ended (succeeded, failed, cancelled or lost);
        TimeoutError naming its state when ``timeout`` passes first."""
        seconds = _seconds(timeout)
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            record = await self.run(run_id)
            if record["state"] in ENDED:
                return record
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {run_id} is still {record['state']} after "
                                   f"{seconds:g}s")
            await asyncio.sleep(poll if deadline is None
                                else max(0.0, min(poll, deadline - time.monotonic())))


__all__ = ["ENDED", "PROJECT_COLUMNS", "RUN_COLUMNS", "TASK_COLUMNS", "Progress", "Tasks"]

"""One claimed attempt on a worker: lay out its folder, build with its runtime, run it while
heartbeating and shipping its output, apply pause / resume / stop, enforce the timeout, send
``out/`` and finish once.

The folder: ``code/`` (the executable and the unpacked dependencies zip; the working
directory), ``in/`` (the input zip unpacked, plus linked files) and ``out/``. The process
gets a small environment: ``PATH``, ``HOME``, ``LANG`` and a few more from the worker (never
its API key), ``LAKEPORT_TASK_IN`` / ``LAKEPORT_TASK_OUT`` (absolute paths),
``LAKEPORT_PROJECT``, ``LAKEPORT_TASK``, ``LAKEPORT_RUN_ID``, ``LAKEPORT_ATTEMPT``, the
parameters as ``LAKEPORT_PARAM_<NAME>`` and the task's own variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakeport.client.errors import ApiClosed
from lakeport.client.task_worker import Next, TaskWorkerApi
from lakeport.errors import LakeportError, Transient
from lakeport.tasks.bundle import extract_zip
from lakeport.tasks.launching import Launchers
from lakeport.tasks.process import Limits, TaskProcess
from lakeport.tasks.runtimes import Job, runtime

log = logging.getLogger("lakeport.tasks.worker")
PASSED_ON = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "JAVA_HOME", "USER", "SHELL")
SHIP_EVERY = 0.25  # seconds between log shipments
SHIP_BYTES = 256 << 10  # ship at once when this much is waiting
HOLD_BYTES = 4 << 20  # the task's writes wait while this much is unsent (backpressure)
RETRY = 1.0  # seconds between tries of a report the server did not take
BEAT_RETRY = 0.5  # seconds between heartbeats while they fail


@dataclass
class _Stream:
    name: str
    offset: int = 0  # bytes the server has
    waiting: bytearray = field(default_factory=bytearray)


class Attempt:
    """Runs one attempt; :meth:`run` returns once the server knows how it ended (or the
    attempt was taken away)."""

    def __init__(self, api: TaskWorkerApi, record: dict[str, Any], folder: Path,
                 cache: Path, groups: Path | None = None,
                 launchers: Launchers | None = None,
                 then: Callable[[], Next | None] | None = None) -> None:
        self.api = api
        self.record = record
        self.folder = folder
        self.cache = cache
        self.groups = groups  # where the process group ids of running tasks are noted
        self.launchers = launchers  # None: task processes are spawned from this process
        self.then = then  # what to claim with the finish (None: nothing)
        self.claimed: list[dict[str, Any]] = []  # the attempts claimed with the finish
        self.process: TaskProcess | None = None
        self.state = "running"
        self.gone = False  # the server took the attempt away (lost, project deleted)
        self.stopped_by = ""  # "stop" (cancelled) or "timeout"
        self._streams = {name: _Stream(name) for name in ("stdout", "stderr")}
        self._shipped = asyncio.Event()
        self._shipping = asyncio.Lock()
        self._stopping: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()

    async def run(self) -> None:
        beating = asyncio.create_task(self._heartbeats())
        shipping = asyncio.create_task(self._ship_loop())
        outcome, code, reason = "failed", None, ""
        try:
            try:
                argv, env = await self._prepare()
                code = await self._execute(argv, env)
                outcome, reason = self._outcome(code)
            except LakeportError as exc:
                reason = str(exc)
                await self._output("stderr", f"lakeport: {reason}\n".encode())
            except OSError as exc:
                reason = f"cannot start the task: {exc}"
                await self._output("stderr", f"lakeport: {reason}\n".encode())
            if self.gone:
                return
            await self._flush()
            if outcome == "succeeded":
                await self._send_outputs()
            await self._report(lambda: self._finish(outcome, code, reason))
        finally:
            for task in (beating, shipping):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self.process is not None:
                if self.process.returncode is None:
                    await self.process.stop(0)
                if self.groups is not None:
                    (self.groups / str(self.process.pid)).unlink(missing_ok=True)
            shutil.rmtree(self.folder, ignore_errors=True)

    async def _finish(self, outcome: str, code: int | None, reason: str) -> None:
        """Report the outcome; the first try also claims the worker's next runs (a repeat
        cannot tell whether the first one claimed any: those would be lost and retried)."""
        then, self.then = (self.then() if self.then else None), None
        _, self.claimed = await self.api.finish(self.record, outcome, code, reason, then)

    # -- set-up -----------------------------------------------------------------------------
    async def _prepare(self) -> tuple[list[str], dict[str, str]]:
        record = self.record
        code, inputs, out = (self.folder / name for name in ("code", "in", "out"))
        for path in (code, inputs, out):
            path.mkdir(parents=True, exist_ok=True)
        parts = set(record["parts"])
        if "executable" in parts:
            await self._part("executable", code / record["executable"])
        for part, dest, what in (("dependencies", code, "the dependencies zip"),
                                 ("inputs", inputs, "the input zip")):
            if part in parts:
                archive = self.folder / f"{part}.zip"
                await self._part(part, archive)
                await asyncio.to_thread(extract_zip, archive, dest, what=what)
        for name in record["links"]:  # a workflow may place one in a folder of in/
            (inputs / name).parent.mkdir(parents=True, exist_ok=True)
            await self.api.download(record, f"links/{name}", inputs / name)
        job = Job(code=code, entry=record["entry"], args=list(record["args"]),
                  settings=dict(record["settings"]), cache=self.cache,
                  version_key=f"{record['project']}/{record['task']}/{record['version']}")
        chosen = runtime(record["runtime"])
        loop = asyncio.get_running_loop()

        def progress(line: str) -> None:
            loop.call_soon_threadsafe(self._note, line)

        argv = await asyncio.to_thread(chosen.prepare, job, progress)
        return argv, self._environment(inputs, out)

    async def _part(self, part: str, dest: Path) -> None:
        """Put a bundle part at ``dest``: from the worker's cache of parts (by content hash),
        else downloaded into it first, so each version's parts cross the network once."""
        digest = self.record.get("sums", {}).get(part)
        if digest is None:
            await self.api.download(self.record, f"parts/{part}", dest)
            return
        cached = self.cache / "parts" / digest
        if not cached.exists():
            cached.parent.mkdir(parents=True, exist_ok=True)
            fresh = cached.with_name(f"{digest}.{os.getpid()}.{self.record['id']}")
            await self.api.download(self.record, f"parts/{part}", fresh)
            os.replace(fresh, cached)
        await asyncio.to_thread(shutil.copyfile, cached, dest)

    def _note(self, line: str) -> None:
        self._streams["stderr"].waiting += f"lakeport: {line}\n".encode()

    def _environment(self, inputs: Path, out: Path) -> dict[str, str]:
        record = self.record
        env = {name: os.environ[name] for name in PASSED_ON if name in os.environ}
        env.update(LAKEPORT_TASK_IN=str(inputs.resolve()), LAKEPORT_TASK_OUT=str(out.resolve()),
                   LAKEPORT_PROJECT=record["project"], LAKEPORT_TASK=record["task"],
                   LAKEPORT_RUN_ID=str(record["run"]), LAKEPORT_ATTEMPT=str(record["number"]))
        for name, value in record["parameters"].items():
            env[f"LAKEPORT_PARAM_{name.upper()}"] = str(value)
        env.update(record["env"])
        return env

    # -- running ----------------------------------------------------------------------------
    async def _execute(self, argv: list[str], env: dict[str, str]) -> int:
        if self.gone:  # fenced or taken away while it was being prepared
            return -1
        limits = Limits(**self.record["limits"])
        python = self.record["runtime"] == "py"  # argv: [interpreter, "-u", entry, *args]
        launcher = None
        if self.launchers is not None:
            launcher = await self.launchers.get(argv[0] if python else sys.executable)
        self.process = await TaskProcess.start(argv, cwd=self.folder / "code", env=env,
                                               limits=limits, on_output=self._output,
                                               launcher=launcher, python=python)
        if self.groups is not None:
            self.groups.mkdir(parents=True, exist_ok=True)
            (self.groups / str(self.process.pid)).touch()
        waiting = asyncio.ensure_future(self.process.wait())
        try:
            return await asyncio.wait_for(asyncio.shield(waiting), self.record.get("timeout"))
        except TimeoutError:
            self.stopped_by = "timeout"
            await self.process.stop(self.record["grace"])
            return await waiting

    def _outcome(self, code: int) -> tuple[str, str]:
        if self.stopped_by == "timeout":
            return "failed", f"timed out after {self.record['timeout']:g} s"
        if self.stopped_by == "stop":
            return "cancelled", "stopped"
        if code == 0:
            return "succeeded", ""
        if code < 0:
            return "failed", f"killed by signal {-code}"
        return "failed", f"exit code {code}"

    async def _heartbeats(self) -> None:
        every = float(self.record["heartbeat"])
        # the server calls the attempt lost after lost_after s without a heartbeat and may
        # run it elsewhere: stop it here well before that, so it never runs twice at once
        fence = float(self.record.get("lost_after", 30.0)) * 2 / 3
        last_ok = time.monotonic()
        failing = False
        while True:
            # the claim itself counts as the first heartbeat: a short task sends none; while
            # heartbeats fail, they are sent more often, and never later than the fence
            pause = min(every, BEAT_RETRY) if failing else every
            until_fence = last_ok + fence - time.monotonic()
            if until_fence > 0:  # (past it: the process has ended, its outcome waits)
                pause = min(pause, until_fence)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)
            self._wake.clear()
            process = self.process
            try:
                command = await asyncio.wait_for(self.api.heartbeat(
                    self.record, self.state, process.pid if process else None),
                    max(last_ok + fence - time.monotonic(), BEAT_RETRY))
                last_ok, failing = time.monotonic(), False
            except ApiClosed:
                self.gone = True
                log.warning("attempt %s was taken away: stopping its process",
                            self.record["id"])
                if process is not None:
                    await process.stop(0)
                return
            except (Transient, TimeoutError) as exc:
                failing = True
                log.warning("heartbeat of attempt %s failed: %s", self.record["id"],
                            exc or "no answer in time")
                ended = process is not None and process.returncode is not None
                if time.monotonic() - last_ok >= fence and not ended:
                    # an ended process's outcome is kept and reported once the server is back
                    log.error("attempt %s: no heartbeat reached the server for %.1f s: "
                              "stopping it (the server retries the run)", self.record["id"],
                              time.monotonic() - last_ok)
                    self.gone = True
                    if process is not None:
                        await process.stop(0)
                    return
                command = "run" if self.state == "running" else "pause"
            if await self._apply(command):
                self._wake.set()  # report the new state at once

    async def _apply(self, command: str) -> bool:
        """Apply the server's command; whether the state changed."""
        process = self.process
        if process is None or process.returncode is not None:
            return False
        if command == "stop" and not self.stopped_by:
            self.stopped_by = "stop"
            self._stopping = asyncio.ensure_future(process.stop(self.record["grace"]))
            return False
        if command == "pause" and self.state == "running":
            process.pause()
            self.state = "paused"
            return True
        if command == "run" and self.state == "paused":
            process.resume()
            self.state = "running"
            return True
        return False

    # -- logs and outputs -------------------------------------------------------------------
    async def _output(self, stream: str, chunk: bytes) -> None:
        waiting = self._streams[stream].waiting
        waiting += chunk
        while len(waiting) > HOLD_BYTES and not self.gone:
            self._shipped.clear()
            await self._shipped.wait()

    async def _ship_loop(self) -> None:
        while True:
            await self._ship()
            await asyncio.sleep(SHIP_EVERY)

    async def _ship(self) -> None:
        async with self._shipping:  # the loop and the final flush never send at once
            await self._ship_streams()
        self._shipped.set()

    async def _ship_streams(self) -> None:
        for stream in self._streams.values():
            while stream.waiting and not self.gone:
                data = bytes(stream.waiting[:SHIP_BYTES])
                try:
                    end = await self.api.append_log(self.record, stream.name, stream.offset, data)
                except ApiClosed:
                    self.gone = True
                    break
                except Transient as exc:
                    log.warning("sending the log of attempt %s failed: %s", self.record["id"],
                                exc)
                    break
                sent = end - stream.offset
                del stream.waiting[:sent]
                stream.offset = end

    async def _flush(self) -> None:
        deadline = time.monotonic() + 60
        while any(s.waiting for s in self._streams.values()) and not self.gone:
            await self._ship()
            if time.monotonic() > deadline:
                log.error("could not send the end of attempt %s's log", self.record["id"])
                return
            if any(s.waiting for s in self._streams.values()):
                await asyncio.sleep(RETRY)

    async def _send_outputs(self) -> None:
        out = self.folder / "out"
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            relative = path.relative_to(out).as_posix()
            await self._report(lambda p=path, r=relative: self.api.put_output(
                self.record, r, p))

    async def _report(self, send: Any) -> None:
        """Call ``send`` until the server took it (a worker cut off reports once it is back)."""
        while not self.gone:
            try:
                await send()
                return
            except ApiClosed:
                self.gone = True
            except Transient as exc:
                log.warning("attempt %s: %s; trying again", self.record["id"], exc)
                await asyncio.sleep(RETRY)


__all__ = ["PASSED_ON", "Attempt"]

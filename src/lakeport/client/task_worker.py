"""The worker side of the task service's protocol (docs/server/tasks.md), on the client's one
HTTP core: claim a run, fetch its bundle and linked files, heartbeat, send logs and outputs,
finish. Used by :mod:`lakeport.tasks.worker`; needs a worker key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lakeport.client.http import Http
from lakeport.client.transfer import BodySource, quote_path, write_response

TOKEN = "x-attempt-token"


class TaskWorkerApi:
    """The routes a worker calls; ``attempt`` arguments are the claim's attempt record."""

    def __init__(self, http: Http) -> None:
        self._http = http

    async def claim(self, worker: str, runtimes: list[str], wait: float = 10.0,
                    most: int = 1) -> list[dict[str, Any]]:
        """Up to ``most`` claimed attempts; none when no run came within ``wait`` seconds."""
        answer = await self._http.json("POST", "/tasks/claim", json={
            "worker": worker, "runtimes": runtimes, "wait": wait, "max": most})
        return [] if answer is None else list(answer["attempts"])

    @staticmethod
    def _base(attempt: dict[str, Any]) -> str:
        return f"/tasks/attempts/{attempt['id']}"

    @staticmethod
    def _token(attempt: dict[str, Any]) -> dict[str, str]:
        return {TOKEN: attempt["token"]}

    async def download(self, attempt: dict[str, Any], what: str, dest: Path) -> int:
        """Save a bundle part (``parts/executable``, ...) or a linked file (``links/NAME``)
        at ``dest``; the byte count."""
        async with self._http.stream("GET", f"{self._base(attempt)}/{quote_path(what)}",
                                     headers=self._token(attempt)) as response:
            return await write_response(response, dest)

    async def heartbeat(self, attempt: dict[str, Any], state: str, pid: int | None) -> str:
        """The command the server has for the attempt: ``run``, ``pause`` or ``stop``
        (ApiClosed when the attempt is no longer this worker's)."""
        answer = await self._http.json("POST", f"{self._base(attempt)}/heartbeat", json={
            "token": attempt["token"], "state": state, "pid": pid}, safe=True)
        return str(answer["command"])

    async def append_log(self, attempt: dict[str, Any], stream: str, offset: int,
                         data: bytes) -> int:
        """Send ``data`` found at ``offset`` of the stream; the stream's end on the server."""
        answer = await self._http.json(
            "POST", f"{self._base(attempt)}/logs/{stream}", params={"offset": offset},
            body=lambda: data, headers={**self._token(attempt),
                                        "content-type": "application/octet-stream"}, safe=True)
        return int(answer["end"])

    async def put_output(self, attempt: dict[str, Any], relative: str, path: Path) -> None:
        """Store the file ``path`` as ``out/<relative>`` of the run."""
        await self._http.request(
            "PUT", f"{self._base(attempt)}/out/{quote_path(relative)}", body=BodySource(path),
            headers={**self._token(attempt), "content-type": "application/octet-stream"})

    async def finish(self, attempt: dict[str, Any], outcome: str, exit_code: int | None,
                     reason: str) -> dict[str, Any]:
        """End the attempt; the run's id and state after it. Safe to repeat."""
        answer = await self._http.json("POST", f"{self._base(attempt)}/finish", json={
            "token": attempt["token"], "outcome": outcome, "exit_code": exit_code,
            "reason": reason[:10_000]}, safe=True)
        return dict(answer["run"])


__all__ = ["TOKEN", "TaskWorkerApi"]

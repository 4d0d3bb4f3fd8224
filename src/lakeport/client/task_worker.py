"""The worker side of the task service's protocol (docs/server/tasks.md), on the client's one
HTTP core: claim a run, fetch its bundle and linked files, heartbeat, send logs and outputs,
finish. Used by :mod:`lakeport.tasks.worker`; needs a worker key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakeport.client.http import Http
from lakeport.client.transfer import BodySource, quote_path, write_response

TOKEN = "x-attempt-token"


@dataclass(frozen=True)
class Next:
    """Runs a worker asks for: of its runtimes, ``most`` at a time."""

    worker: str
    runtimes: list[str]
    most: int = 1


class TaskWorkerApi:
    """The routes a worker calls; ``attempt`` arguments are the claim's attempt record."""

    def __init__(self, http: Http) -> None:
        self._http = http

    async def claim(self, claim: Next, wait: float = 10.0) -> list[dict[str, Any]]:
        """Up to ``claim.most`` claimed attempts; none when no run came within ``wait``
        seconds."""
        answer = await self._http.json("POST", "/tasks/claim", json={
            "worker": claim.worker, "runtimes": claim.runtimes, "wait": wait,
            "max": claim.most})
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
                     reason: str, claim: Next | None = None
                     ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """End the attempt, and claim ``claim``'s runs in the same request; (the run's id
        and state after it, the claimed attempts). Safe to repeat without ``claim`` (a
        repeat with it may claim runs again)."""
        body: dict[str, Any] = {"token": attempt["token"], "outcome": outcome,
                                "exit_code": exit_code, "reason": reason[:10_000]}
        if claim is not None:
            body["claim"] = {"worker": claim.worker, "runtimes": claim.runtimes,
                             "max": claim.most}
        answer = await self._http.json("POST", f"{self._base(attempt)}/finish", json=body,
                                       safe=claim is None)
        return dict(answer["run"]), list(answer.get("attempts", []))


__all__ = ["TOKEN", "Next", "TaskWorkerApi"]

"""The access matrix of docs/server/access.md for the task service: projects, their tasks and
runs, and the files runs leave, tried by every kind of actor (SQLite and PostgreSQL). A task
and its runs take their project's level; the files of ``tasks/<project>/`` follow the
project's grants."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
from test_access_matrix import (
    ADMINS,
    API,
    READS,
    Actors,
    Matrix,
    Op,
    actors,
    give_grants,
    status,
)

from server_fixtures import Platform

PROJECT = "plant"
TASKS = f"{API}/tasks"
#             owner read write admin revoked stranger operator
WRITES = (200, 403, 200, 200, 404, 404, 200)
CREATED = (201, 403, 201, 201, 404, 404, 201)


def deploy(http: httpx.Client, name: str, overwrite: bool = False) -> httpx.Response:
    return http.put(f"{TASKS}/projects/{PROJECT}/tasks/{name}",
                    params={"overwrite": overwrite} if overwrite else None,
                    data={"spec": json.dumps({"runtime": "sh"})},
                    files={"executable": ("main.sh", b"echo hi\n")})


def project_setup(crew: Actors) -> Callable[[], str]:
    """``plant`` anew: alice's, with task ``job`` and one queued run; granted to the granted
    actors (and to the revoked actor, then revoked). Its name is the run's id."""
    alice = crew.owner

    def setup() -> str:
        gone = alice.delete(f"{TASKS}/projects/{PROJECT}")
        assert gone.status_code in (204, 404), gone.text
        assert alice.post(f"{TASKS}/projects", json={"name": PROJECT}).status_code == 201
        assert deploy(alice, "job").status_code == 201
        run = alice.post(f"{TASKS}/projects/{PROJECT}/tasks/job/start")
        assert run.status_code == 201, run.text
        give_grants(alice, "project", PROJECT, {"read": "read", "write": "write",
                                                "admin": "admin"})
        return str(run.json()["id"])

    return setup


TASK = f"{TASKS}/projects/{PROJECT}/tasks/job"
PROJECT_OPS = [
    Op("show the project", READS, lambda c: status(c.http.get(f"{TASKS}/projects/{PROJECT}"))),
    Op("list its tasks", READS,
       lambda c: status(c.http.get(f"{TASKS}/projects/{PROJECT}/tasks"))),
    Op("show a task", READS, lambda c: status(c.http.get(TASK))),
    Op("list runs", READS, lambda c: status(c.http.get(f"{TASK}/runs"))),
    Op("show a run", READS, lambda c: status(c.http.get(f"{TASKS}/runs/{c.name}"))),
    Op("read a run's logs", READS,
       lambda c: status(c.http.get(f"{TASKS}/runs/{c.name}/logs"))),
    Op("list the project's files", READS,
       lambda c: status(c.http.get(f"{API}/ls/tasks/{PROJECT}"))),
    Op("start a run", CREATED, lambda c: status(c.http.post(f"{TASK}/start"))),
    Op("pause a run", WRITES, lambda c: status(c.http.post(f"{TASKS}/runs/{c.name}/pause")),
       fresh=True),
    Op("stop a run", WRITES, lambda c: status(c.http.post(f"{TASKS}/runs/{c.name}/stop")),
       fresh=True),
    Op("deploy a new task", CREATED, lambda c: status(deploy(c.http, f"new-{c.user}"))),
    Op("deploy a new version", WRITES, lambda c: status(deploy(c.http, "job", True)),
       fresh=True),
    Op("reschedule", WRITES,
       lambda c: status(c.http.patch(f"{TASK}/schedule", json={"schedule": {"kind": "now"}}))),
    Op("copy within the project", CREATED,
       lambda c: status(c.http.post(f"{TASK}/copy", json={"name": f"copy-{c.user}"}))),
    Op("set links", WRITES,
       lambda c: status(c.http.put(f"{TASK}/links", json={"links": [
           {"project": PROJECT, "task": "job", "file": "a.txt"}]}))),
    Op("delete a task", ADMINS, lambda c: status(c.http.delete(TASK)), fresh=True),
    Op("grant carol read", (201, 403, 403, 201, 404, 404, 201),
       lambda c: status(c.http.put(f"{API}/grants/project/{PROJECT}",
                                   json={"user": "carol", "permission": "read"})), fresh=True),
    Op("delete the project", ADMINS,
       lambda c: status(c.http.delete(f"{TASKS}/projects/{PROJECT}")), fresh=True),
]


def test_projects_matrix(platform: Platform) -> None:
    matrix = Matrix("task projects")
    with actors(platform) as crew:
        matrix.run(crew, project_setup(crew), PROJECT_OPS)
        listing = crew.http["stranger"].get(f"{TASKS}/projects").json()["items"]
        if any(item["name"] == PROJECT for item in listing):
            matrix.failures.append("task projects: a stranger's project list shows plant")
        claim = crew.owner.post(f"{TASKS}/claim", json={"worker": "x", "runtimes": ["sh"],
                                                          "wait": 0})
        if claim.status_code != 403:
            matrix.failures.append(f"task projects: a user key claimed runs ({claim.status_code})")
    matrix.verify()

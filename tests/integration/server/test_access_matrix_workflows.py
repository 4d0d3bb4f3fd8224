"""The access matrix of docs/server/access.md for the workflow service: workflows, their
instances and grants, tried by every kind of actor (SQLite and PostgreSQL). An instance takes
its workflow's level; a workflow runs only tasks its owner may run (``write`` on their
project), checked when it is applied and again at each run.

No worker runs: instances keep their runs queued, which is enough to try every operation."""

from __future__ import annotations

from collections.abc import Callable
from itertools import count
from typing import Any

import httpx
from test_access_matrix import (
    ADMINS,
    API,
    GRANTED,
    READS,
    Actors,
    Matrix,
    Op,
    Result,
    actors,
    give_grants,
    grant_carol,
    listed,
    status,
)
from test_access_matrix_tasks import PROJECT, TASKS, deploy

from server_fixtures import Platform

FLOWS = f"{API}/workflows"
INSTANCES = f"{FLOWS}/instances"
#             owner read write admin revoked stranger operator
WRITES = (200, 403, 200, 200, 404, 404, 200)
RUNS = (201, 403, 201, 201, 404, 404, 201)
APPLIES = (201, 403, 403, 201, 404, 404, 201)


def body(*nodes: str, project: str = PROJECT) -> dict[str, Any]:
    """A workflow of ``project`` whose nodes each run task ``job``."""
    return {"project": project, "nodes": [{"name": node, "task": "job"} for node in nodes]}


def flow(cell_name: str) -> str:
    """The workflow of a matrix resource ``<workflow>/<instance id>``."""
    return cell_name.split("/")[0]


def instance(cell_name: str) -> str:
    return f"{INSTANCES}/{cell_name.split('/')[1]}"


def named(answer: httpx.Response, node: str) -> Result:
    """The answer's status; for an error, whether its message names ``node``."""
    if answer.status_code < 400:
        return answer.status_code
    message = answer.json()["error"]["message"]
    return answer.status_code if f"'{node}'" in message else \
        f"{answer.status_code} not naming node {node!r}: {message!r}"


def act(http: httpx.Client, cell_name: str, action: str) -> None:
    answer = http.post(f"{instance(cell_name)}/{action}")
    assert answer.status_code == 200, answer.text


def workflow_setup(crew: Actors) -> Callable[[], str]:
    """A new workflow ``flow-N`` of alice's (one node running ``plant/job``) with one
    instance, granted to the granted actors (and to the revoked actor, then revoked); its name
    is ``flow-N/<instance id>``."""
    alice = crew.owner
    numbers = count(1)

    def setup() -> str:
        name = f"flow-{next(numbers)}"
        made = alice.put(f"{FLOWS}/{name}", json=body("a"))
        assert made.status_code == 201, made.text
        give_grants(alice, "workflow", name, GRANTED)
        run = alice.post(f"{FLOWS}/{name}/instances")
        assert run.status_code == 201, run.text
        return f"{name}/{run.json()['id']}"

    return setup


WORKFLOW_OPS = [
    Op("list workflows shows it (404: not listed)", READS,
       lambda c: listed(c.http.get(FLOWS), "name", flow(c.name))),
    Op("show", READS, lambda c: status(c.http.get(f"{FLOWS}/{flow(c.name)}"))),
    Op("history (its instances)", READS,
       lambda c: status(c.http.get(f"{FLOWS}/{flow(c.name)}/instances"))),
    Op("status of an instance", READS, lambda c: status(c.http.get(instance(c.name)))),
    Op("mapping of an instance", READS,
       lambda c: status(c.http.get(f"{instance(c.name)}/mapping"))),
    Op("events of an instance", READS,
       lambda c: status(c.http.get(f"{instance(c.name)}/events"))),
    Op("list its grants", READS,
       lambda c: status(c.http.get(f"{API}/grants/workflow/{flow(c.name)}"))),
    Op("run an instance", RUNS,
       lambda c: status(c.http.post(f"{FLOWS}/{flow(c.name)}/instances"))),
    Op("abort an instance", WRITES,
       lambda c: status(c.http.post(f"{instance(c.name)}/abort")), fresh=True),
    Op("pause an instance", WRITES,
       lambda c: status(c.http.post(f"{instance(c.name)}/pause")), fresh=True),
    Op("resume a paused instance", WRITES,
       lambda c: status(c.http.post(f"{instance(c.name)}/resume")), fresh=True,
       prepare=lambda crew, name: act(crew.owner, name, "pause")),
    Op("recover an aborted instance", WRITES,
       lambda c: status(c.http.post(f"{instance(c.name)}/recover")), fresh=True,
       prepare=lambda crew, name: act(crew.owner, name, "abort")),
    Op("apply a new version", APPLIES,
       lambda c: status(c.http.put(f"{FLOWS}/{flow(c.name)}", json=body("a", f"b-{c.user}"))),
       fresh=True),
    Op("grant carol read", APPLIES,
       lambda c: status(c.http.put(f"{API}/grants/workflow/{flow(c.name)}",
                                   json={"user": "carol", "permission": "read"})), fresh=True),
    Op("revoke carol's grant", ADMINS,
       lambda c: status(c.http.delete(f"{API}/grants/workflow/{flow(c.name)}",
                                      params={"user": "carol"})),
       fresh=True, prepare=lambda crew, name: grant_carol(crew.owner, "workflow", flow(name))),
    Op("delete (its instance aborted)", ADMINS,
       lambda c: status(c.http.delete(f"{FLOWS}/{flow(c.name)}")), fresh=True,
       prepare=lambda crew, name: act(crew.owner, name, "abort")),
]


def make_project(alice: httpx.Client) -> None:
    """alice's project ``plant`` with the task ``job``."""
    assert alice.post(f"{TASKS}/projects", json={"name": PROJECT}).status_code == 201
    assert deploy(alice, "job").status_code == 201


def test_workflows_matrix(platform: Platform) -> None:
    matrix = Matrix("workflows")
    with actors(platform) as crew:
        alice, sam = crew.owner, crew.http["stranger"]
        make_project(alice)
        setup = workflow_setup(crew)
        matrix.run(crew, setup, WORKFLOW_OPS)

        # below read, a workflow and its instances answer as if they did not exist
        name = setup()
        workflow, number = name.split("/")
        for what, hidden, unknown in (
                ("show", (f"{FLOWS}/{workflow}", workflow), (f"{FLOWS}/no-such", "no-such")),
                ("status", (instance(name), number), (f"{INSTANCES}/999999", "999999"))):
            got, expected = (sam.get(route).json()["error"]["message"].replace(secret, "X")
                             for route, secret in (hidden, unknown))
            matrix.check(f"{what}: the message of a hidden and of an unknown one", "stranger",
                         expected, got)

        # the task copies an instance runs belong to the task's project: its readers read
        # their runs, without seeing the workflow
        record = alice.get(instance(name)).json()
        run_id = record["nodes"][0]["run"]
        carol = crew.client("carol")
        grant_carol(alice, "project", PROJECT)
        for who, http, expected in (("carol", carol, 200), ("stranger", sam, 404)):
            for what, route in (("the run of an instance's node", f"{TASKS}/runs/{run_id}"),
                                ("its logs", f"{TASKS}/runs/{run_id}/logs"),
                                ("the project's files", f"{API}/ls/tasks/{PROJECT}")):
                matrix.check(f"read {what} (project grant only)", who, expected,
                             status(http.get(route)))
        matrix.check("status of the instance (project grant only)", "carol", 404,
                     status(carol.get(instance(name))))
    matrix.verify()


def test_a_workflow_runs_only_tasks_its_owner_may_run(platform: Platform) -> None:
    matrix = Matrix("workflow owner's tasks")
    with actors(platform) as crew:
        alice = crew.owner
        bob, walt, ops = crew.client("bob"), crew.http["write"], crew.http["operator"]
        rita, sam = crew.http["read"], crew.http["stranger"]
        make_project(alice)
        project_grants = f"{API}/grants/project/{PROJECT}"

        def grant_project(user: str, permission: str) -> None:
            answer = alice.put(project_grants, json={"user": user, "permission": permission})
            assert answer.status_code in (200, 201), answer.text

        # creating a workflow over a project takes write on it
        grant_project("rita", "read")
        for index, (what, actor, http, spec, expected) in enumerate((
                ("apply over plant (read grant on it)", "read", rita, body("a"), 403),
                ("apply over plant, edges form (read grant)", "read", rita,
                 {"project": PROJECT, "edges": [], "tasks": ["job"]}, 403),
                ("apply over plant (no grant: invisible)", "stranger", sam, body("a"), 422),
                ("apply over an unknown project", "stranger", sam,
                 body("a", project="nowhere"), 422))):
            node = "job" if "edges" in spec else "a"
            answer = http.put(f"{FLOWS}/refused-{index}", json=spec)
            matrix.check(what, actor, expected, named(answer, node))
        listing = [item["name"] for item in sam.get(FLOWS).json()["items"]]
        matrix.check("sam's workflows after the refused applies", "stranger", [], listing)

        # bob owns a workflow of alice's project task through a write grant
        grant_project("bob", "write")
        matrix.check("apply over plant (write grant)", "bob", 201,
                     status(bob.put(f"{FLOWS}/bobs", json=body("a"))))
        matrix.check("owner of the workflow", "bob", "bob",
                     bob.get(f"{FLOWS}/bobs").json().get("owner"))
        assert bob.put(f"{API}/grants/workflow/bobs",
                       json={"user": "walt", "permission": "write"}).status_code == 201
        first = bob.post(f"{FLOWS}/bobs/instances")
        matrix.check("run (write grant on plant)", "bob", 201, status(first))
        if first.status_code == 201:
            assert bob.post(f"{INSTANCES}/{first.json()['id']}/abort").status_code == 200

        def tries(when: str, expected: int) -> None:
            """Every way to run bob's workflow, and a new version of it, fail naming the
            node: the owner's right counts, not the caller's."""
            for actor, http in (("bob", bob), ("write", walt), ("operator", ops)):
                matrix.check(f"run ({when})", actor, expected,
                             named(http.post(f"{FLOWS}/bobs/instances"), "a"))
            matrix.check(f"apply a new version ({when})", "bob", expected,
                         named(bob.put(f"{FLOWS}/bobs", json=body("a", "b")), "a"))

        grant_project("bob", "read")
        tries("bob's grant on plant lowered to read", 403)
        assert alice.delete(project_grants, params={"user": "bob"}).status_code == 204
        tries("bob's grant on plant revoked", 422)
        history = bob.get(f"{FLOWS}/bobs/instances").json()["items"]
        matrix.check("instances after the refused runs", "bob", 1, len(history))

        grant_project("bob", "write")
        matrix.check("run (write granted again)", "bob", 201,
                     status(bob.post(f"{FLOWS}/bobs/instances")))
    matrix.verify()

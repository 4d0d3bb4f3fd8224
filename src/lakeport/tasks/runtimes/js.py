"""``js``: ``node entry args``."""

from __future__ import annotations

from lakeport.tasks.runtimes.base import Job, Progress, entry_file, needed, tool

HINT = "install Node.js"


class NodeRuntime:
    name = "js"

    def missing(self) -> str | None:
        return None if tool("node") else f"node is not installed ({HINT})"

    def prepare(self, job: Job, on_progress: Progress) -> list[str]:
        entry_file(job, ".js", ".mjs", ".cjs")
        return [needed("node", HINT), job.entry, *job.args]

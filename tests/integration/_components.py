"""Shared setup of the component runner tests: a table store, file store, state store and
job store in a temporary folder, and a way to run a fixture component."""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakeport.components import FileStore, Job, JobStore, RunOptions, StateStore
from lakeport.components.config import parse_config
from lakeport.components.job import run_component
from lakeport.tables import TableStore

FIXTURES = Path(__file__).parents[1] / "fixtures" / "components"
_counter = itertools.count()


@dataclass
class Platform:
    """Everything a run touches, under one temporary folder."""

    root: Path
    tables: TableStore
    files: FileStore
    states: StateStore
    jobs: JobStore

    def run(self, config: dict[str, Any], component: str = "scripted", config_id: str = "cfg",
            timeout: float = 60, keep: bool = False, parent_run_id: str | None = None,
            row: str | None = None) -> Job:
        """Run a fixture component with ``config``; keep its data folder when ``keep``
        (then at :attr:`last_data`)."""
        folder = FIXTURES / component
        self.last_data = self.root / f"data-{next(_counter)}" if keep else None
        options = RunOptions(
            component_dir=folder, command=[sys.executable, "main.py"], component_id=component,
            config_id=config_id, row_id=row, timeout=timeout, parent_run_id=parent_run_id,
            tables=self.tables, files=self.files, states=self.states, jobs=self.jobs,
            keep_data=self.last_data)
        return run_component(parse_config(config), options)

    def load(self, table_id: str, text: str, **options: Any) -> None:
        """Load CSV text into a table."""
        path = self.root / f"load-{next(_counter)}.csv"
        path.write_text(text)
        self.tables.load(table_id, path, **options)

    def rows(self, table_id: str, key: str = "id") -> list[dict[str, Any]]:
        """A table's rows sorted by ``key``."""
        return sorted(self.tables.read(table_id).to_pylist(), key=lambda r: r[key])

    def in_table(self, name: str) -> str:
        """The text of ``in/tables/<name>`` of the last kept data folder."""
        assert self.last_data is not None
        return (self.last_data / "in" / "tables" / name).read_text()


def platform(tmp_path: Path) -> Platform:
    """A fresh platform in ``tmp_path``."""
    return Platform(tmp_path, TableStore(tmp_path / "lake"), FileStore(tmp_path / "files"),
                    StateStore(tmp_path / "state"), JobStore(tmp_path / "jobs"))


def outputs(*tables: dict[str, Any], write: dict[str, str] | None = None,
            **params: Any) -> dict[str, Any]:
    """A scripted component's config writing ``write`` files, with output mappings."""
    return {"storage": {"output": {"tables": list(tables)}},
            "parameters": {"write": write or {}, **params}}

"""``lakeport component create NAME``: a Python component on the public component library
with one test case (``tests/basic``) that ``lakeport component test`` runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

from lakeport.errors import Conflict, Invalid

MAIN = '''"""{name}: reads the input table, multiplies its values, writes the output table."""

import csv
import json
import logging

from keboola.component.base import ComponentBase
from keboola.component.exceptions import UserException


class Component(ComponentBase):
    def run(self) -> None:
        multiplier = self.configuration.parameters.get("multiplier")
        if not isinstance(multiplier, int | float):
            raise UserException("parameters.multiplier must be a number")
        tables = self.get_input_tables_definitions()
        if len(tables) != 1:
            raise UserException("exactly one input table expected")
        out = self.create_out_table_definition(
            "output.csv", schema=["id", "value"], primary_key=["id"], incremental=True,
            has_header=True)
        rows = 0
        with open(tables[0].full_path, newline="") as source, \\
                open(out.full_path, "w", newline="") as target:
            writer = csv.DictWriter(target, fieldnames=["id", "value"], lineterminator="\\n")
            writer.writeheader()
            for row in csv.DictReader(source):
                writer.writerow({{"id": row["id"], "value": float(row["value"]) * multiplier}})
                rows += 1
        self.write_manifest(out)
        state = self.get_state_file()
        self.write_state_file({{"runs": state.get("runs", 0) + 1}})
        with open(f"{{self.data_folder_path}}/out/usage.json", "w") as usage:
            json.dump([{{"metric": "rows", "value": rows}}], usage)
        logging.info("wrote %d rows", rows)


if __name__ == "__main__":
    try:
        Component().execute_action()
    except UserException as exc:
        logging.error(exc)
        raise SystemExit(1) from None
    except Exception:
        logging.exception("unexpected error")
        raise SystemExit(2) from None
'''

CONFIG = {
    "storage": {
        "input": {"tables": [{"source": "in.c-main.input", "destination": "input.csv"}]},
        "output": {"tables": [{"source": "output.csv", "destination": "out.c-main.output"}]},
    },
    "parameters": {"multiplier": 2},
}

INPUT_MANIFEST = {"id": "in.c-main.input", "name": "input", "columns": ["id", "value"],
                  "primary_key": ["id"]}

OUTPUT_MANIFEST = {"incremental": True, "primary_key": ["id"], "delimiter": ",",
                   "enclosure": '"', "write_always": False}

README = """# {name}

A data component on the file contract (`config.json`, `in/`, `out/`), written with the public
component library (`pip install keboola.component`).

    lakeport component run . --config config.json    # on lakeport tables and files
    lakeport component test .    # each tests/<case>: source/data → expected/data

A case compares the output tables, files, manifests, `state.json`, `usage.json` and the exit
code (`expected/exit_code`, 0 when absent).
"""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _json(value: object) -> str:
    return json.dumps(value, indent=2) + "\n"


def create_component(name: str, parent: Path) -> Path:
    """Write the component folder ``parent/name``; Conflict when it exists."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise Invalid(f"bad component name {name!r}: letters, digits, _ . and -")
    root = parent / name
    if root.exists():
        raise Conflict(f"{root} already exists")
    _write(root / "main.py", MAIN.format(name=name))
    _write(root / "config.json", _json(CONFIG))
    _write(root / "README.md", README.format(name=name))
    case = root / "tests" / "basic"
    source = case / "source" / "data"
    _write(source / "config.json", _json({**CONFIG, "storage": {
        "input": {"tables": [{"source": "in.c-main.input", "destination": "input.csv"}]},
        "output": CONFIG["storage"]["output"]}}))
    _write(source / "in" / "tables" / "input.csv", "id,value\n1,10\n2,2.5\n")
    _write(source / "in" / "tables" / "input.csv.manifest", _json(INPUT_MANIFEST))
    _write(source / "in" / "state.json", _json({"runs": 4}))
    expected = case / "expected" / "data" / "out"
    _write(expected / "tables" / "output.csv", "id,value\n1,20.0\n2,5.0\n")
    _write(expected / "tables" / "output.csv.manifest", _json(OUTPUT_MANIFEST))
    _write(expected / "state.json", _json({"runs": 5}))
    _write(expected / "usage.json", _json([{"metric": "rows", "value": 2}]))
    (expected / "files").mkdir(parents=True, exist_ok=True)
    _write(case / "expected" / "exit_code", "0\n")
    return root

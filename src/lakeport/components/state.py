"""Component state per configuration, with a version for compare-and-swap.

The state of a configuration is a JSON file ``{"version": n, "state": {...}}``. A run reads
the state and its version when it starts and stores its ``out/state.json`` only when it
succeeds, only if the version is still the one it read: a second run of the same
configuration that started before the first one finished gets a clear Conflict instead of
silently overwriting the first run's state.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakeport.errors import Conflict, Invalid
from lakeport.home import file_lock, lakeport_home, private_folder


@dataclass(frozen=True)
class StoredState:
    """A configuration's state and the version it had when read."""

    state: dict[str, Any]
    version: int


def _file_name(config_id: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in config_id)
    return f"{safe}.json"


class StateStore:
    """States of configurations in a folder (default ``<lakeport home>/component-state``)."""

    FOLDER = "component-state"

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root else lakeport_home() / self.FOLDER

    def _path(self, config_id: str) -> Path:
        return private_folder(self.root) / _file_name(config_id)

    def read(self, config_id: str) -> StoredState:
        """The state (``{}`` when none) and its version (0 when never stored)."""
        try:
            data = json.loads(self._path(config_id).read_text())
        except FileNotFoundError:
            return StoredState({}, 0)
        return StoredState(data.get("state") or {}, int(data["version"]))

    def write(self, config_id: str, state: dict[str, Any] | None, expected_version: int) -> int:
        """Store ``state`` (None removes it) if the version is still ``expected_version``;
        return the new version, Conflict when another run stored a state in between."""
        path = self._path(config_id)
        with file_lock(path.with_suffix(".lock")):
            current = self.read(config_id).version
            if current != expected_version:
                raise Conflict(
                    f"state of configuration {config_id!r} was changed by another run while "
                    f"this one ran (version {expected_version} → {current}); this run's state "
                    "was not stored")
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"version": current + 1, "state": state}))
            os.replace(tmp, path)
            return current + 1


def read_out_state(path: Path) -> dict[str, Any] | None:
    """The component's ``out/state.json``: None when missing or empty (the state is
    removed), Invalid when it is not a JSON object."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Invalid(f"out/state.json: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Invalid(f"out/state.json: a JSON object expected, not {type(value).__name__}")
    return value or None

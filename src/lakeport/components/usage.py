"""``out/usage.json``: an array of ``{"metric": ..., "value": ...}`` and nothing else."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lakeport.errors import Invalid


def read_usage(path: Path) -> list[dict[str, Any]]:
    """The validated usage of a run (``[]`` when the file is missing); Invalid names the
    first item that is not exactly ``{metric: string, value: number}``."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Invalid(f"out/usage.json: not valid JSON: {exc}") from None
    if not isinstance(items, list):
        raise Invalid(f"out/usage.json: an array expected, not {type(items).__name__}")
    for index, item in enumerate(items):
        where = f"out/usage.json: item {index}"
        if not isinstance(item, dict):
            raise Invalid(f"{where}: an object expected, not {type(item).__name__}")
        extra = sorted(set(item) - {"metric", "value"})
        if extra:
            raise Invalid(f"{where}: unknown key {extra[0]!r} (only metric and value)")
        if not isinstance(item.get("metric"), str) or not item["metric"]:
            raise Invalid(f"{where}: metric must be a non-empty string")
        value = item.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"{where}: value must be a number")
    return items


def sum_usage(usages: Iterable[list[dict[str, Any]]]) -> dict[str, float]:
    """Values summed by metric over several runs."""
    total: dict[str, float] = {}
    for usage in usages:
        for item in usage:
            total[item["metric"]] = total.get(item["metric"], 0) + item["value"]
    return total

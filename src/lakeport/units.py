"""Durations and sizes as people write them (``30s``, ``7d``, ``512MB``, ``1GiB``).

Pure parsing with no heavy imports, so the command line can use it without loading the
engines; :mod:`lakeport.streams.types` re-exports it.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any

from lakeport.errors import Invalid

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)

MAX_DURATION = 100 * 365 * 86_400
"""The longest duration accepted anywhere, in seconds: 100 years (3153600000 s)."""
MAX_SIZE = 1 << 62
"""The largest ``max_size`` of a topic, in bytes: 2**62 (4 EiB)."""


def _shown(value: Any) -> str:
    """``repr(value)``, shortened for error messages."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        return "a huge number"
    return text if len(text) <= 40 else text[:37] + "..."


def parse_duration(text: str | float | int | timedelta) -> float:
    """Parse ``"500ms"``, ``"30s"``, ``"10m"``, ``"2h"``, ``"7d"`` (or a number of seconds).

    NaN, infinity and anything longer than 100 years (:data:`MAX_DURATION`) are refused.
    """
    try:
        if isinstance(text, timedelta):
            seconds = text.total_seconds()
        elif isinstance(text, int | float):
            seconds = float(text)
        else:
            match = _DURATION_RE.match(text)
            if not match:
                raise Invalid(f"bad duration {_shown(text)}: use a number with ms, s, m, h, d "
                              "or w (e.g. '10m')")
            seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise Invalid(f"bad duration {_shown(text)}: not a finite number of seconds")
    if abs(seconds) > MAX_DURATION:
        raise Invalid(f"bad duration {_shown(text)}: at most 100 years ({MAX_DURATION} s)")
    return seconds


def parse_size(text: str | int) -> int:
    """Parse ``"512MB"``, ``"1GiB"``, ``"100k"`` or a plain number of bytes."""
    if isinstance(text, int):
        return text
    match = _SIZE_RE.match(text)
    if not match:
        raise Invalid(f"bad size {_shown(text)}: use a number of bytes or e.g. '512MB', '1GiB'")
    unit = (match.group(2) or "b").lower().rstrip("b").rstrip("i")
    factor = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[unit]
    size = float(match.group(1)) * factor
    if not math.isfinite(size):
        raise Invalid(f"bad size {_shown(text)}: not a finite number of bytes")
    return int(size)


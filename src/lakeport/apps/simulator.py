"""Synthetic data shaped by an app's manifest, published to the topics the app reads.

What is sent follows :meth:`Manifest.subscriptions`: an ``app`` gets its data stream inputs
(and control change inputs), an ``exporter`` one datastream per data type its ``exporter_io``
accepts, an ``importer`` control changes for its IOs with ``control: true``, a ``docker`` app
nothing. Values follow a pattern that is a pure function of (asset index, step):

- ``random``: a random walk around 50 (deterministic noise, pulled back towards 50);
- ``sine``: 50 ± 30, a period of 60 steps, each asset shifted in phase;
- ``ramp``: 0, 1, … 99, 0, … (each asset starts one higher);
- ``counter``: 0, 1, 2, … without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from lakeport.apps.messages import (
    ASSET_DATA,
    CONTROL_CHANGES,
    MESSAGE_CLASSES,
    ControlChange,
    topic_name,
)
from lakeport.errors import Invalid
from lakeport.readings import DATA_TYPES

if TYPE_CHECKING:
    from lakeport.apps.manifest import Manifest
    from lakeport.streams.base import Engine

PATTERNS = ("random", "sine", "ramp", "counter")
# Datastream names for apps that accept data types rather than named datastreams.
DATA_NAMES = {"number": "temperature", "string": "status", "boolean": "running",
              "object": "payload"}
DATA_UNITS = {"number": "°C"}
CONTROL_NAMES = {"number": "setpoint", "string": "mode", "boolean": "enabled",
                 "object": "settings"}
STATES = ("idle", "running", "warning", "alarm")
PRODUCER = "lakeport-simulator"
TICK = 0.02  # seconds between batches

_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:/\s*(s|sec|m|min|h|hour))?\s*$")
_RATE_UNITS = {None: 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0,
               "hour": 3600.0}


def parse_rate(text: str | float) -> float:
    """Messages per second from ``"100/s"``, ``"6000/m"``, ``"10/h"`` or a plain number."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        rate = float(text)
    else:
        match = _RATE_RE.match(str(text))
        if not match:
            raise Invalid(f"bad rate {text!r}: use messages per second or minute, "
                          "e.g. '100/s' or '600/m'")
        rate = float(match.group(1)) / _RATE_UNITS[match.group(2)]
    if not rate > 0:
        raise Invalid(f"bad rate {text!r}: use more than 0 messages per second")
    return rate


# -- value patterns ------------------------------------------------------------------------
def _noise(asset: int, step: int) -> float:
    """Deterministic noise in [-1, 1) for (asset, step): a splitmix64 hash."""
    mask = (1 << 64) - 1
    z = ((asset & 0xFFFFFFFF) << 32 | (step & 0xFFFFFFFF)) + 0x9E3779B97F4A7C15 & mask
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & mask
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB & mask
    z ^= z >> 31
    return (z >> 11) / float(1 << 52) - 1.0


_WALK_CENTER = 50.0
_walk_cache: dict[int, tuple[int, float]] = {}


def random_walk(asset: int, step: int) -> float:
    """Step ``step`` of asset ``asset``'s walk: same arguments, same value.

    Each step moves by up to ±2 and 5% of the way back to 50, so the walk wanders
    without drifting away. Consecutive steps are computed in O(1) from the last one.
    """
    if step < 0:
        raise ValueError("step must be 0 or more")
    last_step, value = _walk_cache.get(asset, (-1, 0.0))
    if last_step > step:
        last_step, value = -1, 0.0
    for current in range(last_step + 1, step + 1):
        if current == 0:
            value = _WALK_CENTER + 10.0 * _noise(asset, 0)
        else:
            value += 2.0 * _noise(asset, current) - 0.05 * (value - _WALK_CENTER)
    _walk_cache[asset] = (step, value)
    return value


def sine(asset: int, step: int) -> float:
    """50 ± 30 with a period of 60 steps; each asset is shifted in phase."""
    return 50.0 + 30.0 * math.sin(2 * math.pi * step / 60.0 + 0.7 * asset)


def ramp(asset: int, step: int) -> float:
    """A sawtooth 0 … 99 rising by one per step; asset N starts at N."""
    return float((step + asset) % 100)


def counter(asset: int, step: int) -> float:
    """0, 1, 2, … : the step itself, for every asset."""
    return float(step)


PATTERN_FUNCTIONS: dict[str, Callable[[int, int], float]] = {
    "random": random_walk, "sine": sine, "ramp": ramp, "counter": counter,
}


def pattern_value(pattern: str, asset: int, step: int) -> float:
    """The value of ``pattern`` for asset index ``asset`` (1, 2, …) at step ``step``."""
    try:
        function = PATTERN_FUNCTIONS[pattern]
    except KeyError:
        raise Invalid(f"bad pattern {pattern!r}: use one of {', '.join(PATTERNS)}") from None
    return function(asset, step)


def typed_value(data_type: str, value: float, step: int) -> Any:
    """The pattern's ``value`` as a value of ``data_type``."""
    if data_type == "number":
        return round(value, 3)
    band = int(value) % 100
    if data_type == "string":
        return STATES[band // 25]
    if data_type == "boolean":
        return band >= 50
    return {"value": round(value, 3), "step": step, "quality": "good"}


# -- what to send --------------------------------------------------------------------------
@dataclass(frozen=True)
class Series:
    """One datastream the simulator feeds, for every asset."""

    topic: str
    datastream: str
    data_type: str
    unit: str | None = None
    control: bool = False


def plan_series(manifest: Manifest) -> list[Series]:
    """The datastreams to simulate for ``manifest``, from what the app subscribes to."""
    control_topic = topic_name(CONTROL_CHANGES)
    named: dict[str, dict[str, Any]] = {topic_name(ASSET_DATA): {}, control_topic: {}}
    if manifest.type == "app":
        for stream in manifest.data_streams.inputs:
            named[topic_name(ASSET_DATA)][stream.name] = stream
        for stream in manifest.control_changes.inputs:
            named[control_topic][stream.name] = stream
    series: list[Series] = []
    for subscription in manifest.subscriptions():
        control = subscription.topic == control_topic
        if subscription.datastreams is not None:
            for name in subscription.datastreams:
                stream = named.get(subscription.topic, {}).get(name)
                data_type = stream.primitive_type if stream is not None else "number"
                unit = stream.unit if stream is not None else None
                series.append(Series(subscription.topic, name, data_type, unit, control))
            continue
        names = CONTROL_NAMES if control else DATA_NAMES
        for data_type in subscription.data_types or DATA_TYPES:
            series.append(Series(subscription.topic, names[data_type], data_type,
                                 None if control else DATA_UNITS.get(data_type), control))
    return series


class Simulator:
    """Message ``n`` of a run: step ``n // (assets * series)``, then asset, then series."""

    def __init__(self, series: Sequence[Series], assets: int, pattern: str) -> None:
        if not series:
            raise Invalid("nothing to simulate: the app reads no data streams")
        if assets < 1:
            raise Invalid(f"bad number of assets {assets}: use 1 or more")
        pattern_value(pattern, 1, 0)  # check the pattern's name
        self.series = list(series)
        self.assets = assets
        self.pattern = pattern

    @staticmethod
    def asset_name(index: int) -> str:
        return f"asset-{index:02d}"

    def message(self, n: int, when: datetime | None = None) -> tuple[str, dict[str, Any]]:
        """The topic and payload of message number ``n`` (0, 1, …)."""
        per_step = self.assets * len(self.series)
        step, rest = divmod(n, per_step)
        asset, which = divmod(rest, len(self.series))
        series = self.series[which]
        value = typed_value(series.data_type, pattern_value(self.pattern, asset + 1, step), step)
        when = when or datetime.now(UTC)
        if series.control:
            message: Any = ControlChange(asset=self.asset_name(asset + 1),
                                         datastream=series.datastream, value=value, time=when)
        else:
            message = MESSAGE_CLASSES[series.data_type](
                asset=self.asset_name(asset + 1), datastream=series.datastream, value=value,
                unit=series.unit, time=when)
        return series.topic, message.to_payload()

    def batch(self, start: int, count: int) -> dict[str, list[dict[str, Any]]]:
        """Messages ``start`` … ``start + count - 1``, grouped by topic (in order)."""
        when = datetime.now(UTC)
        grouped: dict[str, list[dict[str, Any]]] = {}
        for n in range(start, start + count):
            topic, payload = self.message(n, when)
            grouped.setdefault(topic, []).append(payload)
        return grouped

    @property
    def topics(self) -> list[str]:
        return list(dict.fromkeys(series.topic for series in self.series))


async def _idle(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def simulate(
    engine: Engine,
    simulator: Simulator,
    *,
    rate: float,
    total: int | None,
    stop: asyncio.Event,
    on_sent: Callable[[int], None] | None = None,
    max_batch: int = 10_000,
) -> dict[str, int]:
    """Send ``total`` messages (None: until ``stop``) at ``rate`` per second; counts per topic."""
    counts = dict.fromkeys(simulator.topics, 0)
    sent = 0
    async with contextlib.AsyncExitStack() as stack:
        producers = {topic: await stack.enter_async_context(engine.producer(PRODUCER, topic))
                     for topic in simulator.topics}
        started = time.monotonic()
        while not stop.is_set() and (total is None or sent < total):
            due = int(rate * (time.monotonic() - started))
            if total is not None:
                due = min(due, total)
            count = min(due - sent, max_batch)
            if count > 0:
                for topic, payloads in simulator.batch(sent, count).items():
                    await producers[topic].produce_many(payloads)
                    counts[topic] += len(payloads)
                sent += count
                if on_sent is not None:
                    on_sent(sent)
            if due - sent <= 0:
                await _idle(stop, TICK)
    return counts


def describe_counts(counts: dict[str, int]) -> str:
    """``sent 150 messages to asset-data`` (topics joined with commas)."""
    total = sum(counts.values())
    noun = "message" if total == 1 else "messages"
    return f"sent {total} {noun} to {', '.join(counts)}" if counts else f"sent {total} {noun}"

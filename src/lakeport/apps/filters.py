"""Message filters for :meth:`App.stream_filter` and ``@app.stream(filter=...)``.

A filter is a predicate over a typed message. Filters combine with ``&`` (both), ``|``
(either) and ``~`` (not)::

    pump_data = filters.is_data_message & filters.asset_equals("pump-1")
    async for msg in app.stream_filter(pump_data | filters.is_control_change):
        ...

Plain functions ``message -> bool`` mix in as well: ``filters.is_data_message & my_check``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from lakeport.apps.messages import (
    AppMessage,
    ControlChange,
    DataMessage,
    DataTag,
    Recommendation,
)

Predicate = Callable[[AppMessage], bool]


class Filter:
    """A named predicate over app messages, composable with ``&``, ``|`` and ``~``."""

    __slots__ = ("_name", "_predicate")

    def __init__(self, predicate: Predicate, name: str | None = None) -> None:
        self._predicate = predicate
        self._name = name or getattr(predicate, "__name__", "filter")

    def __call__(self, message: AppMessage) -> bool:
        return bool(self._predicate(message))

    def __and__(self, other: Predicate) -> Filter:
        other = as_filter(other)
        return Filter(lambda m: self(m) and other(m), f"({self} & {other})")

    def __rand__(self, other: Predicate) -> Filter:
        return as_filter(other) & self

    def __or__(self, other: Predicate) -> Filter:
        other = as_filter(other)
        return Filter(lambda m: self(m) or other(m), f"({self} | {other})")

    def __ror__(self, other: Predicate) -> Filter:
        return as_filter(other) | self

    def __invert__(self) -> Filter:
        return Filter(lambda m: not self(m), f"~{self}")

    def __str__(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"Filter({self._name})"


def as_filter(predicate: Predicate | None) -> Filter:
    """``predicate`` as a :class:`Filter` (None accepts every message)."""
    if predicate is None:
        return accept_all
    if isinstance(predicate, Filter):
        return predicate
    if not callable(predicate):
        raise TypeError(f"a filter must be callable, not {type(predicate).__name__}")
    return Filter(predicate)


def _names(value: str | Iterable[str], what: str) -> frozenset[str]:
    names = frozenset([value] if isinstance(value, str) else value)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{what} needs one or more non-empty names, got {value!r}")
    return names


accept_all = Filter(lambda _m: True, "accept_all")
"""Every message."""

is_data_message = Filter(lambda m: isinstance(m, DataMessage), "is_data_message")
"""A data value (``Number``, ``String``, ``Boolean`` or ``Object``)."""

is_asset_data_message = Filter(lambda m: isinstance(m, DataMessage), "is_asset_data_message")
"""A data value of an asset's data stream (every data message names its asset)."""

is_control_change = Filter(lambda m: isinstance(m, ControlChange), "is_control_change")
"""A :class:`ControlChange`."""

is_recommendation = Filter(lambda m: isinstance(m, Recommendation), "is_recommendation")
"""A :class:`Recommendation`."""

is_data_tag = Filter(lambda m: isinstance(m, DataTag), "is_data_tag")
"""A :class:`DataTag`."""


def asset_equals(asset: str | Iterable[str]) -> Filter:
    """Messages about ``asset`` (or any of several assets)."""
    assets = _names(asset, "asset_equals")
    return Filter(lambda m: m.asset in assets, f"asset_equals({sorted(assets)})")


def input_equals(datastream: str | Iterable[str]) -> Filter:
    """Messages of the data stream ``datastream`` (or any of several): data and control changes."""
    names = _names(datastream, "input_equals")
    return Filter(lambda m: getattr(m, "datastream", None) in names,
                  f"input_equals({sorted(names)})")


def resource_equals(asset: str, datastream: str) -> Filter:
    """Messages of one asset's data stream."""
    return asset_equals(asset) & input_equals(datastream)


__all__ = [
    "Filter",
    "accept_all",
    "as_filter",
    "asset_equals",
    "input_equals",
    "is_asset_data_message",
    "is_control_change",
    "is_data_message",
    "is_data_tag",
    "is_recommendation",
    "resource_equals",
]

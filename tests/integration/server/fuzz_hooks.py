"""Schemathesis hooks (``SCHEMATHESIS_HOOKS=fuzz_hooks``) that widen generated requests: any
integer of a query or a JSON body may become one far out of range, any string a long one or
one with control, bidirectional and zero-width characters."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import strategies as st

BIG_INTEGERS = st.sampled_from([2**31, 2**53 + 1, 2**63, -(2**63) - 1, 10**30, -(10**30)])
ODD_TEXT = st.sampled_from(["a\u202eb", "\u200b", "x\x85y", "\ufffd", "0000-01-01T00:00:00Z",
                            "+10000-01-01T00:00:00Z", "NaN", "Infinity", "1e400"])
LONG_TEXT = st.text(min_size=500, max_size=4000)


def wider(value: Any) -> st.SearchStrategy[Any]:
    """``value``, or a larger or odder one of its kind (inside lists and objects too)."""
    if isinstance(value, bool) or value is None:
        return st.just(value)
    if isinstance(value, int):
        return st.one_of(st.just(value), BIG_INTEGERS)
    if isinstance(value, float):
        return st.one_of(st.just(value), st.sampled_from([1e300, -1e300, 5e-324]))
    if isinstance(value, str):
        return st.one_of(st.just(value), LONG_TEXT, ODD_TEXT)
    if isinstance(value, list):
        return st.tuples(*(wider(item) for item in value)).map(list)
    if isinstance(value, dict):
        return st.fixed_dictionaries({key: wider(item) for key, item in value.items()})
    return st.just(value)


@schemathesis.hook
def flatmap_query(context: Any, query: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    return st.just(query) if not query else wider(query)


@schemathesis.hook
def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
    return wider(body) if isinstance(body, dict | list) else st.just(body)

"""Every query parameter of every route in the OpenAPI document, given edge values (integers
far out of range, long and odd strings), answers a 4xx or a success, never a 5xx, and in time.

Schemathesis (test_openapi_fuzz.py) explores bodies and formats; this walks the document
deterministically with the values that broke routes before: 2**63-sized integers, 10**30,
strings of thousands of characters, control, bidirectional and zero-width characters.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from server_fixtures import Platform

EDGES: tuple[Any, ...] = (
    2**63, -(2**63) - 1, 10**30, -1, 0, "1e400", "NaN", "-Infinity", "9" * 400, "x" * 5000,
    "a\u202eb", "\u200b", "\x85", "\ufffd", "0000-01-01T00:00:00Z", "+10000-01-01T00:00:00Z",
    "%ff%fe", "*" * 300, "bad:cursor", "",
)
SLOWEST = 10.0
"""Seconds an edge request may take before it counts as hanging."""

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _operations(document: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    found = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            if method not in ("get", "delete", "put", "post", "patch"):
                continue
            names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            if names:
                found.append((method, path, names))
    return found


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "edge-name", path.replace("{path}", "edge/dir"))


def test_edge_values_in_every_query_parameter(platform: Platform) -> None:
    with platform.client() as http:
        for kind in ("sensors", "features"):
            http.post(f"/api/v1/{kind}", json={"name": "edge-name"}).raise_for_status()
        http.post("/api/v1/properties", json={"name": "edge-name"}).raise_for_status()
        http.post("/api/v1/observations", json={"sensor": "edge-name", "property": "edge-name",
                                                "value": 1.5}).raise_for_status()
        http.put("/api/v1/topics/edge-name").raise_for_status()
        http.put("/api/v1/files/edge/dir", content=b"a,b\n1,2\n",
                 params={"content_type": "text/csv"}).raise_for_status()
        document = http.get("/openapi.json").json()
        operations = _operations(document)
        assert len(operations) >= 25, [op[1] for op in operations]
        failures = []
        for method, path, names in operations:
            url = _fill(path)
            for name in names:
                for value in EDGES:
                    started = time.monotonic()
                    answer = http.request(method.upper(), url, params={name: value})
                    took = time.monotonic() - started
                    if answer.status_code >= 500 or took > SLOWEST:
                        failures.append(f"{method.upper()} {url}?{name}={str(value)[:40]!r}: "
                                        f"{answer.status_code} in {took:.1f} s "
                                        f"{answer.text[:200]}")
        assert not failures, "\n".join(failures[:30])

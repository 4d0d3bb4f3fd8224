"""Any DataFrame a user builds (float64 with NaN, Int64, boolean, string[pyarrow], category,
times naive or in any zone, sub-millisecond digits, as pandas or polars) is stored as exactly its
present values at their UTC times, floored to the millisecond."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import hypothesis.strategies as st
import pandas as pd
import polars as pl
from hypothesis import HealthCheck, given, settings

from lakeport.client import SyncClient
from lakeport.errors import Conflict, Invalid
from server_fixtures import Platform

PROPERTIES = {"f": "number", "i": "number", "b": "boolean", "s": "string", "c": "string"}
ZONES = (None, "UTC", "Asia/Kolkata", "America/New_York", "Australia/Lord_Howe",
         "Pacific/Chatham")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=8)


def _maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), values)


@st.composite
def frames(draw: st.DrawFn) -> tuple[Any, Counter[tuple[str, str, Any]]]:
    """A DataFrame (pandas or polars) and the observations it holds (property, ISO time, value)."""
    rows = draw(st.integers(1, 6))
    micros = draw(st.lists(st.integers(-2_208_988_800_000_000, 7_258_118_400_000_000),
                           min_size=rows, max_size=rows))  # 1900 to 2200
    zone = draw(st.sampled_from(ZONES))
    columns = {
        "f": draw(st.lists(_maybe(st.floats(allow_nan=False, allow_infinity=False)),
                           min_size=rows, max_size=rows)),
        "i": draw(st.lists(_maybe(st.integers(-(2 ** 53), 2 ** 53)), min_size=rows,
                           max_size=rows)),
        "b": draw(st.lists(_maybe(st.booleans()), min_size=rows, max_size=rows)),
        "s": draw(st.lists(_maybe(TEXT), min_size=rows, max_size=rows)),
        "c": draw(st.lists(_maybe(st.sampled_from(["low", "high", ""])), min_size=rows,
                           max_size=rows)),
    }
    times = pd.to_datetime(pd.Series(micros, dtype="int64"), unit="us", utc=True)
    times = times.dt.tz_convert(zone) if zone else times.dt.tz_localize(None)
    frame = pd.DataFrame({
        "time": times,
        "f": pd.Series([float("nan") if v is None else v for v in columns["f"]], dtype="float64"),
        "i": pd.array(columns["i"], dtype="Int64"),
        "b": pd.array(columns["b"], dtype="boolean"),
        "s": pd.array(columns["s"], dtype="string[pyarrow]"),
        "c": pd.Categorical(columns["c"]),
    })
    expected: Counter[tuple[str, str, Any]] = Counter()
    for index, us in enumerate(micros):
        stamp = (EPOCH + timedelta(milliseconds=us // 1000)).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")
        for name, values in columns.items():
            value = values[index]
            if value is not None:
                expected[(name, stamp, float(value) if name in "fi" else value)] += 1
    if draw(st.booleans()):
        frame = pl.from_pandas(frame)
    return frame, expected


def _properties(client: SyncClient) -> None:
    for name, kind in PROPERTIES.items():
        try:
            client.observations.properties.create(name, data_type=kind)
        except Conflict:
            pass


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=frames())
def test_any_frame_stores_exactly_its_present_values(platform: Platform,
                                                     case: tuple[Any, Counter[Any]]) -> None:
    frame, expected = case
    sensor = f"s-{uuid.uuid4().hex[:8]}"
    with SyncClient(platform.url, platform.api_key) as client:
        _properties(client)
        client.observations.sensors.create(sensor)
        if not expected:
            try:
                client.observations.insert_dataframe(sensor, frame)
            except Invalid as exc:
                assert "holds no observation" in str(exc)
            else:
                raise AssertionError("a frame without values was accepted")
            return
        answer = client.observations.insert_dataframe(sensor, frame)
        assert answer["stored"] == sum(expected.values())
        back = Counter((o["property"], o["time"], o["value"])
                       for o in client.observations.iter(sensor))
        assert back == expected

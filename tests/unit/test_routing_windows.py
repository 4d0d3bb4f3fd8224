"""Windows: the same windows and values as DuckDB over the whole input, emitted exactly once
whatever the block boundaries and state saves, with lateness and event times."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import duckdb
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakeport.errors import Invalid
from lakeport.routing.rule import Rule
from lakeport.streams.block import MessageBlock
from lakeport.streams.types import Format, Message, datetime_to_ns

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MESSAGE_TIME = datetime(2026, 6, 1, tzinfo=UTC)
SELECT = ("SELECT asset, avg(value) AS mean, min(value) AS lo, max(value) AS hi, "
          "count(*) AS n, sum(value) AS total, first(value) AS f, last(value) AS l, "
          "window_start() AS ws FROM raw WHERE value > -40 GROUP BY asset, ")


def block(payloads: list[object], first: int = 1) -> MessageBlock:
    messages = [Message(first + i, datetime_to_ns(MESSAGE_TIME), "sim",
                        p if isinstance(p, bytes) else orjson.dumps(p), Format.JSON, None, None)
                for i, p in enumerate(payloads)]
    return MessageBlock.from_messages(messages, Format.JSON)


def us(ms: int) -> int:
    return ms * 1000


def expected_windows(rows: list[tuple[str, int, int]], size_s: float, advance_s: float,
                     lateness_s: float) -> tuple[list[dict], int]:
    """The windows as DuckDB computes them over the whole input at once, after dropping the
    late rows by the per-row watermark (rows: asset, value, time in ms, in seqno order)."""
    size, advance, lateness = (round(x * 1_000_000) for x in (size_s, advance_s, lateness_s))
    watermark, pairs, late = None, [], 0
    for seqno, (asset, value, ms) in enumerate(rows, start=1):
        if value <= -40:
            continue  # WHERE drops it
        t = us(ms)
        base = t // advance * advance
        starts = [base - k * advance for k in range(-(-size // advance))
                  if base - k * advance + size > t]
        fits = [s for s in starts if watermark is None or s + size > watermark]
        late += not fits
        pairs += [(asset, s, float(value), t, seqno) for s in fits]
        watermark = max(watermark if watermark is not None else t - lateness, t - lateness)
    con = duckdb.connect()
    con.execute("CREATE TABLE p (asset VARCHAR, ws BIGINT, v DOUBLE, t BIGINT, s BIGINT)")
    if pairs:
        con.executemany("INSERT INTO p VALUES (?, ?, ?, ?, ?)", pairs)
    got = con.execute(
        "SELECT asset, ws, avg(v), min(v), max(v), count(*), sum(v), "
        "arg_min(v, (t, s)), arg_max(v, (t, s)) FROM p GROUP BY ALL ORDER BY ws, asset"
    ).fetchall()
    names = ("asset", "ws", "mean", "lo", "hi", "n", "total", "f", "l")
    return [dict(zip(names, row, strict=True)) for row in got], late


def normal(rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        start = datetime_to_ns(row["_window_start"]) // 1000
        assert row["ws"] == row["_window_start"]
        assert row["asset"] is not None
        out.append({**{k: v for k, v in row.items() if not k.startswith("_")}, "ws": start})
    return sorted(out, key=lambda r: (r["ws"], r["asset"]))


def assert_same(got: list[dict], want: list[dict]) -> None:
    assert [(r["ws"], r["asset"]) for r in got] == [(r["ws"], r["asset"]) for r in want]
    for mine, theirs in zip(got, want, strict=True):
        for name in ("lo", "hi", "n", "total", "f", "l"):
            assert mine[name] == theirs[name], (name, mine, theirs)
        assert math.isclose(mine["mean"], theirs["mean"], rel_tol=1e-12)


def run(sql: str, payloads: list[dict], cuts: list[int], restarts: list[bool],
        lateness: float) -> tuple[list[dict], list[dict], int]:
    """Feed ``payloads`` in blocks split at ``cuts``, saving the state after each block and
    starting a new rule from it where ``restarts`` says: (windows emitted while running,
    windows flushed at the end, late rows)."""
    rule = Rule(sql, lateness=lateness)
    emitted, late, start = [], 0, 0
    for index, end in enumerate([*cuts, len(payloads)]):
        out = rule.evaluate(block(payloads[start:end], first=start + 1))
        assert out.errors == []
        emitted += out.table.to_pylist()
        late += out.late
        start = end
        if restarts[index % len(restarts)]:
            saved = rule.state()
            rule.close()
            rule = Rule(sql, lateness=lateness)
            rule.restore(saved)
    flushed = rule.flush().to_pylist()
    rule.close()
    return emitted, flushed, late


@st.composite
def inputs(draw: st.DrawFn) -> tuple:
    count = draw(st.integers(1, 250))
    disorder = draw(st.sampled_from([0, 0, 3_000, 20_000]))  # ms a row may come late
    times, now = [], 0
    for _ in range(count):
        now += draw(st.integers(0, 1_500))
        times.append(BASE_MS + now - draw(st.integers(0, disorder)))
    rows = [(draw(st.sampled_from("abc")), draw(st.integers(-50, 50)), t) for t in times]
    cuts = sorted(draw(st.lists(st.integers(0, count), max_size=6)))
    restarts = draw(st.lists(st.booleans(), min_size=1, max_size=4))
    window = draw(st.sampled_from([(10, 10), (10, 5), (30, 10), (7.5, 2.5)]))
    lateness = draw(st.sampled_from([0, 1, 5, 30]))
    return rows, cuts, restarts, window, lateness


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs())
def test_windows_once_whatever_the_blocks_and_restarts(case: tuple) -> None:
    rows, cuts, restarts, (size, advance), lateness = case
    call = f"TUMBLING({size}s)" if size == advance else f"HOPPING({size}s, {advance}s)"
    payloads = [{"asset": a, "value": v, "time": ms} for a, v, ms in rows]
    emitted, flushed, late = run(SELECT + call, payloads, cuts, restarts, lateness)
    want, want_late = expected_windows(rows, size, advance, lateness)
    got = normal(emitted + flushed)
    assert len({(r["ws"], r["asset"]) for r in got}) == len(got)  # each window once
    assert_same(got, want)
    assert late == want_late
    # emitted while running: exactly the windows the watermark has passed
    valid = [us(ms) for a, v, ms in rows if v > -40]
    if valid:
        watermark = max(valid) - lateness * 1_000_000
        ends = [r["ws"] + size * 1_000_000 for r in normal(emitted)]
        assert all(end <= watermark for end in ends)
        assert all(r["ws"] + size * 1_000_000 > watermark for r in normal(flushed))


def test_tumbling_average_per_asset_equals_duckdb() -> None:
    rows = [(f"pump-{i % 5}", (i * 37) % 100, BASE_MS + i * 250) for i in range(2_000)]
    payloads = [{"asset": a, "value": v, "time": ms} for a, v, ms in rows]
    emitted, flushed, late = run(SELECT + "TUMBLING(10s)", payloads, [100, 777, 1500],
                                 [False, True], 0)
    want, _ = expected_windows(rows, 10, 10, 0)
    assert late == 0 and len(want) == 50 * 5
    assert_same(normal(emitted + flushed), want)
    assert len(flushed) == 5  # only the last window of each asset is still open at the end


def test_lateness() -> None:
    sql = "SELECT count(*) AS n, sum(value) AS s FROM raw GROUP BY TUMBLING(10s)"
    rule = Rule(sql, lateness="5s")
    at = lambda second, value: {"value": value, "time": BASE_MS + second * 1000}  # noqa: E731
    out = rule.evaluate(block([at(1, 1), at(12, 2), at(3, 4)]))
    assert out.table.num_rows == 0 and out.late == 0  # watermark 7 s: [0, 10) stays open
    out = rule.evaluate(block([at(16, 8)], first=4))  # watermark 11 s: [0, 10) closes
    assert out.table.select(["n", "s"]).to_pylist() == [{"n": 2, "s": 5.0}]
    out = rule.evaluate(block([at(4, 16), at(14, 32)], first=5))
    assert out.late == 1 and out.table.num_rows == 0  # 4 s is too late, 14 s is in time
    assert rule.flush().select(["n", "s"]).to_pylist() == [{"n": 3, "s": 42.0}]
    assert rule.stats.late == 1


def test_event_times() -> None:
    sql = ("SELECT count(*) AS n, window_start() AS ws FROM raw "
           "GROUP BY TUMBLING(1h)")
    payloads = [
        {"time": "2026-01-01T00:10:00Z"},  # ISO 8601 with a zone
        {"time": "2026-01-01T03:10:00+02:00"},  # 01:10 UTC
        {"time": "2026-01-01T02:10:00"},  # no zone: UTC
        {"time": "2026-01-01T00:40:00.5-01:00"},  # 01:40 UTC
        {"time": BASE_MS + 3 * 3_600_000},  # epoch milliseconds
        {"other": 1},  # no time: the topic's time (2026-06-01)
        {"time": "yesterday"},  # an error row
    ]
    with Rule(sql, lateness="1000d") as rule:
        out = rule.evaluate(block(payloads))
        assert [e.seqno for e in out.errors] == [7]
        assert "time field 'time' is not ISO 8601 or epoch milliseconds" in out.errors[0].reason
        starts = [r["ws"].isoformat() for r in rule.flush().to_pylist()]
    assert starts == ["2026-01-01T00:00:00+00:00", "2026-01-01T01:00:00+00:00",
                      "2026-01-01T02:00:00+00:00", "2026-01-01T03:00:00+00:00",
                      "2026-06-01T00:00:00+00:00"]
    with Rule(sql, event_time="meta.ts", lateness="1000d") as rule:
        rule.apply(block([{"meta": {"ts": "2026-02-01T05:00:00Z"}}, {"time": BASE_MS}]))
        starts = [r["ws"].isoformat() for r in rule.flush().to_pylist()]
    assert starts == ["2026-02-01T05:00:00+00:00", "2026-06-01T00:00:00+00:00"]
    with Rule(sql, event_time=None) as rule:
        rule.apply(block(payloads))
        assert rule.flush().to_pylist()[0]["n"] == 7  # the topic's time for all, even "yesterday"


def test_having_keys_and_expressions_when_windows_close() -> None:
    sql = ("SELECT upper(asset) AS a, round(avg(value), 1) AS mean, max(value) - min(value) "
           "AS spread, window_end() AS we FROM raw GROUP BY upper(asset), TUMBLING(10s) "
           "HAVING count(*) > 1")
    payloads = [{"asset": "a", "value": 1, "time": BASE_MS}, {"asset": "A", "value": 4,
                "time": BASE_MS + 1000}, {"asset": "b", "value": 9, "time": BASE_MS + 2000},
                {"asset": "a", "value": 0, "time": BASE_MS + 20_000}]
    with Rule(sql) as rule:
        rows = rule.apply(block(payloads))
    assert [{k: v for k, v in r.items() if k in ("a", "mean", "spread")} for r in
            rows.to_pylist()] == [{"a": "A", "mean": 2.5, "spread": 3.0}]
    assert rows.column("we")[0].as_py() == datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)


def test_state_belongs_to_its_rule() -> None:
    sql = SELECT + "TUMBLING(10s)"
    with Rule(sql) as rule:
        assert rule.apply(block([{"asset": "a", "value": 1, "time": BASE_MS}])).num_rows == 0
        saved = rule.state()
    with Rule(sql) as again:
        again.restore(saved)
        assert again.flush().column("n").to_pylist() == [1]
    with Rule(sql, lateness="1s") as other, pytest.raises(Invalid, match="another statement"):
        other.restore(saved)
    with Rule(sql) as other, pytest.raises(Invalid, match="not the state of a rule"):
        other.restore(b"garbage")
    with Rule(sql) as fresh:  # the state of a rule that saw nothing yet
        state = fresh.state()
        fresh.restore(state)
        assert fresh.flush().num_rows == 0

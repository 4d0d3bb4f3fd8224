"""Storage tables and data components, side by side with the obvious pandas way.

Rows (each a measured figure, its target and pandas doing the same):

- input mapping: export of an N-row, 8-column table to CSV (rows/s, target >= 1,000,000);
- output load: load of that CSV into a table (rows/s, target >= 1,000,000);
- upsert: an incremental load of 1,000,000 rows (at most N; half updates, half new keys)
  by primary key (s, target <= 10 s), by deltalake ``MERGE`` and, for comparison, by a
  duckdb anti-join written back as one overwrite commit.
- empty run: the overhead of running an empty component (data folder, process, output
  mapping, state, job record; ms, target <= 300 ms).

Usage: ``python bench/components.py [--quick] [--json] [--rows N]``. ``--quick`` uses 1,000,000
rows. The ratios are pandas' time / lakeport's time (above 1: lakeport is faster).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from lakeport.tables import TableStore

TABLE = "in.c-bench.readings"
SCHEMA = pa.schema([("id", pa.int64()), ("asset", pa.string()), ("sensor", pa.string()),
                    ("time", pa.timestamp("us", tz="UTC")), ("value", pa.float64()),
                    ("quality", pa.int32()), ("unit", pa.string()), ("note", pa.string())])


@dataclass
class Row:
    """One figure of the bench."""

    name: str
    value: float
    unit: str
    target: str
    ok: bool | None
    pandas: float | None = None
    ratio: float | None = None


def make_rows(count: int, first_id: int = 0, seed: int = 1) -> pa.Table:
    """``count`` rows of the bench schema with ids ``first_id ...``."""
    rng = np.random.default_rng(seed)
    ids = np.arange(first_id, first_id + count, dtype=np.int64)
    assets = np.array([f"press-{i:03d}" for i in range(200)])
    sensors = np.array(["temperature", "pressure", "vibration", "current"])
    units = np.array(["C", "bar", "mm/s", "A"])
    start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1e6)
    return pa.table({
        "id": ids,
        "asset": assets[rng.integers(0, len(assets), count)],
        "sensor": sensors[ids % 4],
        "time": pa.array(start + ids * 1_000_000, pa.timestamp("us", tz="UTC")),
        "value": rng.normal(50, 10, count),
        "quality": rng.integers(0, 3, count, dtype=np.int32),
        "unit": units[ids % 4],
        "note": np.where(ids % 97 == 0, 'checked, "ok"', ""),
    }, schema=SCHEMA)


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def pandas_times(csv: Path, upsert_csv: Path, work: Path) -> dict[str, float]:
    """The obvious pandas way: load = read_csv -> to_parquet, export = read_parquet ->
    to_csv, upsert = read_csv -> merge -> to_parquet."""
    import pandas as pd

    stored = work / "pandas-stored.parquet"
    read_s, _ = timed(lambda: pd.read_csv(csv).to_parquet(stored, index=False))
    write_s, _ = timed(lambda: pd.read_parquet(stored).to_csv(work / "pandas.csv",
                                                              index=False))

    def upsert() -> None:
        base = pd.read_csv(csv)
        new = pd.read_csv(upsert_csv)
        merged = base.merge(new, on="id", how="outer", suffixes=("_old", ""), indicator=False)
        for column in new.columns:
            if column != "id":
                merged[column] = merged[column].fillna(merged[f"{column}_old"])
        merged = merged[list(new.columns)]
        merged.to_parquet(work / "pandas.parquet", index=False)

    upsert_s, _ = timed(upsert)
    return {"read": read_s, "write": write_s, "upsert": upsert_s}


def duckdb_upsert(store: TableStore, changes: pa.Table) -> float:
    """Upsert by a duckdb anti-join written back as one overwrite commit (for comparison)."""
    import duckdb
    from deltalake import write_deltalake

    def run() -> None:
        table = store.open(TABLE)
        target = table.to_pyarrow_dataset()  # noqa: F841 (scanned by duckdb)
        now = datetime.now(UTC)
        source = changes.append_column(  # noqa: F841 (scanned by duckdb)
            "_lakeport_changed", pa.repeat(pa.scalar(now, pa.timestamp("us", tz="UTC")),
                                           changes.num_rows))
        with duckdb.connect() as con:
            merged = con.sql("SELECT * FROM target ANTI JOIN source USING (id) "
                                 "UNION ALL SELECT * FROM source").to_arrow_reader()
            write_deltalake(table, merged, mode="overwrite")

    seconds, _ = timed(run)
    return seconds


def empty_run_ms(work: Path, runs: int = 20) -> float:
    """Median time of running an empty component (``true``): data folder, process, output
    mapping, state and job record, in milliseconds."""
    import statistics

    from lakeport.components import (
        FileStore,
        JobStore,
        RunOptions,
        StateStore,
        parse_config,
        run_component,
    )

    root = work / "empty-component"
    root.mkdir()
    options = RunOptions(component_dir=root, command=["true"], component_id="empty",
                         config_id="empty", tables=TableStore(root / "lake"),
                         files=FileStore(root / "files"), states=StateStore(root / "state"),
                         jobs=JobStore(root / "jobs"))
    config = parse_config({"parameters": {}})
    times = []
    for _ in range(runs):
        seconds, job = timed(lambda: run_component(config, options))
        assert job.succeeded, job.message
        times.append(seconds)
    return statistics.median(times) * 1000


def bench(rows: int, work: Path, with_pandas: bool = True) -> list[Row]:
    csv = work / "readings.csv"
    pacsv.write_csv(make_rows(rows), csv)
    upsert_rows = min(1_000_000, rows)
    changes = make_rows(upsert_rows, first_id=rows - upsert_rows // 2, seed=2)
    upsert_csv = work / "upsert.csv"
    pacsv.write_csv(changes, upsert_csv)

    store = TableStore(work / "lake")
    store.create(TABLE, SCHEMA, primary_key=["id"])
    load_s, loaded = timed(lambda: store.load(TABLE, csv))
    assert loaded.rows_loaded == rows, loaded
    export_s, exported = timed(lambda: store.export(TABLE, work / "export.csv"))
    assert exported.rows == rows, exported
    upsert_s, result = timed(lambda: store.load(TABLE, changes, incremental=True))
    assert store.info(TABLE).rows == rows + upsert_rows - upsert_rows // 2, result
    duck_s = duckdb_upsert(store, changes)

    pandas = pandas_times(csv, upsert_csv, work) if with_pandas else {}
    empty_ms = empty_run_ms(work)

    def ratio(key: str, ours: float) -> tuple[float | None, float | None]:
        theirs = pandas.get(key)
        return (round(theirs, 3), round(theirs / ours, 2)) if theirs else (None, None)

    input_rate, output_rate = rows / export_s, rows / load_s
    label = f"{upsert_rows:,} rows"
    return [
        Row("input_rows_per_s", round(input_rate), "rows/s", ">= 1,000,000",
            input_rate >= 1_000_000, *ratio("write", export_s)),
        Row("output_rows_per_s", round(output_rate), "rows/s", ">= 1,000,000",
            output_rate >= 1_000_000, *ratio("read", load_s)),
        Row("upsert_1m_s", round(upsert_s, 3), f"s ({label}, MERGE)", "<= 10 s",
            upsert_s <= 10 if upsert_rows >= 1_000_000 else None, *ratio("upsert", upsert_s)),
        Row("upsert_overwrite_s", round(duck_s, 3), f"s ({label}, duckdb + overwrite)", "-",
            None, *ratio("upsert", duck_s)),
        Row("empty_run_ms", round(empty_ms, 1), "ms (empty component, median of 20)",
            "<= 300 ms", empty_ms <= 300),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000,000 rows")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--rows", type=int, default=None, help="table rows")
    parser.add_argument("--no-pandas", action="store_true", help="skip the pandas columns")
    args = parser.parse_args(argv)
    rows = args.rows or (1_000_000 if args.quick else 10_000_000)
    work = Path(tempfile.mkdtemp(prefix="lakeport-bench-"))
    try:
        results = bench(rows, work, with_pandas=not args.no_pandas)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        out: dict[str, Any] = {"rows": rows}
        for row in results:
            out[row.name] = row.value
            out[f"{row.name}_pandas_ratio"] = row.ratio
        out["results"] = [asdict(row) for row in results]
        print(json.dumps(out, indent=2))
    else:
        print(f"{rows:,} rows, 8 columns")
        print(f"{'figure':<22}{'value':>14}  {'unit':<40}{'target':<14}{'ok':<6}"
              f"{'pandas':>10}{'ratio':>8}")
        for row in results:
            ok = "-" if row.ok is None else ("yes" if row.ok else "NO")
            print(f"{row.name:<22}{row.value:>14,}  {row.unit:<40}{row.target:<14}{ok:<6}"
                  f"{row.pandas if row.pandas is not None else '-':>10}"
                  f"{row.ratio if row.ratio is not None else '-':>8}")
    return 0 if all(row.ok is not False for row in results) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Tumbling and hopping windows on event time, with state carried across blocks.

Per block, the rows that passed ``WHERE`` are aggregated in one DuckDB ``GROUP BY`` (keys,
window start) into partial aggregates: count, sum, min, max, and first / last as the value of
the earliest / latest row by (event time, seqno). The partials are merged into the open
windows (an Arrow table, one row per key and window) by a second ``GROUP BY``. Nothing is done
per message in Python.

Watermark and lateness: the watermark is the largest event time seen so far minus the allowed
lateness, taken row by row in seqno order over the rows that pass ``WHERE``. A window
``[start, end)`` is emitted once the watermark reaches ``end``; a row goes into a window only
if the watermark before it has not reached the window's end, and a row that fits no open
window is counted as late and dropped. Since the watermark is taken per row, the windows
emitted and their values do not depend on where the blocks begin and end.

The statement's side: :func:`parse_window` reads ``GROUP BY keys..., TUMBLING(size)`` or
``HOPPING(size, advance)``, :func:`window_parts` splits the select list into per-row keys and
aggregate arguments and the expressions over them evaluated when a window closes.

State: :meth:`WindowState.state` is Arrow IPC bytes (the open windows' partials and the
watermark in the schema's metadata). A caller saves it with the ack of the block it follows
and hands it to :meth:`WindowState.restore` after a restart: no window is lost or counted twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from lakeport.errors import Invalid
from lakeport.units import parse_duration

if TYPE_CHECKING:
    from lakeport.routing.sql import RuleQuery

Refuse = Callable[[exp.Expression, str], Invalid]
"""Makes the error for a construct of the statement (with its position)."""
Run = Callable[..., pa.Table]
"""Runs DuckDB SQL over Arrow tables given by name: ``run(sql, __rows=table)``."""

MAX_HOPS = 1_000  # windows one row may fall in
NO_TIME = np.iinfo(np.int64).min // 4  # the watermark before any row, far from overflow
_META_KEY = b"lakeport.window"
_KEY = 'struct_pack(t := "__t", s := "__seqno")'
AGGREGATES = {exp.Avg: "avg", exp.Min: "min", exp.Max: "max", exp.Count: "count",
              exp.Sum: "sum", exp.First: "first", exp.Last: "last"}


@dataclass(frozen=True)
class Window:
    kind: Literal["tumbling", "hopping"]
    size_us: int
    advance_us: int


@dataclass(frozen=True)
class Aggregate:
    kind: str  # avg, min, max, count, sum, first, last
    arg: str | None  # DuckDB SQL of the argument per row (None: count(*))
    column: str  # its column in the window relation: __a0, __a1, ...


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- the statement -------------------------------------------------------------------------
def parse_window(group: exp.Group, refuse: Refuse) -> tuple[Window, list[exp.Expression]]:
    """The window of ``GROUP BY keys..., TUMBLING(size)`` or ``HOPPING(size, advance)`` and
    the keys."""
    if group.args.get("all") or any(group.args.get(a) for a in ("rollup", "cube",
                                                                 "grouping_sets")):
        raise refuse(group, "GROUP BY takes keys and one TUMBLING() or HOPPING()")
    windows, keys = [], []
    for node in group.expressions:
        is_window = isinstance(node, exp.Anonymous) and node.name.upper() in ("TUMBLING",
                                                                              "HOPPING")
        (windows if is_window else keys).append(node)
        if not is_window and isinstance(node, exp.Rollup | exp.Cube | exp.GroupingSets):
            raise refuse(node, "ROLLUP, CUBE and GROUPING SETS are not supported")
        if not is_window and next(node.find_all(exp.AggFunc), None) is not None:
            raise refuse(node, "aggregates are not allowed in GROUP BY")
    if len(windows) != 1:
        raise refuse(group if not windows else windows[1],
                     "GROUP BY needs exactly one TUMBLING(size) or HOPPING(size, advance)")
    call = windows[0]
    kind = call.name.lower()
    want = 1 if kind == "tumbling" else 2
    if len(call.expressions) != want:
        raise refuse(call, f"{kind.upper()} takes {want} duration{'s' if want > 1 else ''}, "
                           f"e.g. {'TUMBLING(10s)' if want == 1 else 'HOPPING(1m, 10s)'}")
    micros = [_duration(arg, kind, refuse) for arg in call.expressions]
    size, advance = micros[0], micros[-1]
    if advance > size:
        raise refuse(call, "HOPPING: the advance must not exceed the size")
    if -(-size // advance) > MAX_HOPS:
        raise refuse(call, f"HOPPING: at most {MAX_HOPS} windows overlap (size / advance)")
    return Window(kind, size, advance), keys  # type: ignore[arg-type]


def _duration(node: exp.Expression, kind: str, refuse: Refuse) -> int:
    if not isinstance(node, exp.Literal):
        raise refuse(node, f"{kind.upper()}: a duration such as 10s, 1m or '500ms'")
    try:
        seconds = parse_duration(node.this if node.is_string else float(node.this))
    except Invalid as exc:
        raise refuse(node, f"{kind.upper()}: {exc}") from None
    micros = round(seconds * 1_000_000)
    if micros <= 0:
        raise refuse(node, f"{kind.upper()}: a duration must be at least 1 us")
    return micros


def window_parts(keys: list[exp.Expression], rows: list[exp.Expression],
                 having: exp.Expression | None, refuse: Refuse) -> dict:
    """The window relation's side of a rule (fields already rewritten into columns): the
    projections and HAVING over keys (``__g<i>``) and aggregates (``__a<i>``), the keys'
    and aggregates' per-row SQL."""
    key_sqls = [k.sql(dialect="duckdb") for k in keys]
    aggregates: list[Aggregate] = []

    def visit(n: exp.Expression) -> exp.Expression:
        if isinstance(n, exp.AggFunc):
            return exp.column(_aggregate(n, aggregates, refuse), quoted=True)
        sql = n.sql(dialect="duckdb")
        if sql in key_sqls:
            return exp.column(f"__g{key_sqls.index(sql)}", quoted=True)
        if isinstance(n, exp.Anonymous) and n.name.lower() in ("window_start", "window_end"):
            if n.expressions:
                raise refuse(n, f"{n.name.lower()}() takes no argument")
            return exp.column(f"_{n.name.lower()}", quoted=True)
        return n

    def outer(node: exp.Expression) -> str:
        done = node.transform(visit)
        for column in done.find_all(exp.Column):
            if column.name.startswith("__") and column.name[:3] not in ("__g", "__a"):
                raise refuse(column, "a field outside an aggregate must be a GROUP BY key")
        return done.sql(dialect="duckdb")

    projections = tuple(outer(r) for r in rows)
    return dict(projections=projections, having=None if having is None else outer(having),
                group_keys=tuple(key_sqls), aggregates=tuple(aggregates))


def _aggregate(node: exp.AggFunc, found: list[Aggregate], refuse: Refuse) -> str:
    kind = AGGREGATES.get(type(node))
    if kind is None:
        raise refuse(node, f"aggregate {node.key}() is not supported in windows: avg, count, "
                           "first, last, max, min, sum")
    arg = node.this
    if isinstance(arg, exp.Distinct) or len(node.expressions) > 0:
        raise refuse(node, f"{kind}() takes one argument, without DISTINCT")
    if isinstance(node.parent, exp.Filter):
        raise refuse(node, "FILTER (WHERE ...) is not supported: use WHERE")
    if any(isinstance(n, exp.AggFunc) for n in arg.walk()):
        raise refuse(node, "aggregates cannot be nested")
    arg_sql = None if isinstance(arg, exp.Star) else arg.sql(dialect="duckdb")
    if arg_sql is None and kind != "count":
        raise refuse(node, f"{kind}(*) is not supported")
    for existing in found:
        if (existing.kind, existing.arg) == (kind, arg_sql):
            return existing.column
    found.append(Aggregate(kind, arg_sql, f"__a{len(found)}"))
    return found[-1].column


# -- evaluation ----------------------------------------------------------------------------


def rows_sql(query: RuleQuery, decoded: str, where: str) -> str:
    """Per-row SQL of a window rule over the decoded relation, for the rows that pass
    ``where``: seqno, ok, event time, the group keys and the aggregates' arguments."""
    columns = ['"__seqno"', '"__ok"', '"__t"']
    columns += [f'{key} AS "__g{i}"' for i, key in enumerate(query.group_keys)]
    columns += [f'{agg.arg} AS "__x{i}"' for i, agg in enumerate(query.aggregates)
                if agg.arg is not None]
    return f"SELECT {', '.join(columns)} FROM {decoded}{where}"


def event_time_sql(raw: str | None) -> str:
    """SQL of a row's event time in microseconds from the event time field's column (ISO 8601
    text, a time without a zone being UTC, or epoch milliseconds; NULL when it is neither),
    the topic's time ``__tmsg`` when the field is absent or ``raw`` is None."""
    if raw is None:
        return '"__tmsg"'
    text = f"{raw}::VARCHAR"  # "...Z" the quick way; other zones need TIMESTAMPTZ (ICU)
    return (f'CASE WHEN {raw} IS NULL THEN "__tmsg" WHEN ends_with({text}, \'Z\') THEN '
            f'epoch_us(TRY_CAST({text} AS TIMESTAMP)) ELSE coalesce(TRY_CAST(TRY_CAST({text} '
            f'AS DOUBLE) * 1000 AS BIGINT), epoch_us(TRY_CAST({text} AS TIMESTAMPTZ))) END')


def _partials(query: RuleQuery) -> list[str]:
    """SQL of the partial aggregates of one block."""
    out = []
    for i, agg in enumerate(query.aggregates):
        x, p = f'"__x{i}"', f"__p{i}"
        if agg.kind in ("count", "avg"):
            out.append(f'count({"*" if agg.arg is None else x}) AS "{p}n"')
        if agg.kind in ("sum", "avg"):
            out.append(f'sum({x}) AS "{p}s"')
        if agg.kind in ("min", "max"):
            out.append(f'{agg.kind}({x}) AS "{p}{agg.kind}"')
        if agg.kind in ("first", "last"):
            pick = "arg_min" if agg.kind == "first" else "arg_max"
            out.append(f'{pick}(struct_pack(v := {x}, t := "__t", s := "__seqno"), {_KEY}) '
                       f'AS "{p}{agg.kind}"')
    return out


def _merges(query: RuleQuery) -> list[str]:
    """SQL merging partials of the same key and window."""
    out = []
    for i, agg in enumerate(query.aggregates):
        p = f"__p{i}"
        if agg.kind in ("count", "avg"):
            out.append(f'CAST(sum("{p}n") AS BIGINT) AS "{p}n"')
        if agg.kind in ("sum", "avg"):
            out.append(f'sum("{p}s") AS "{p}s"')
        if agg.kind in ("min", "max"):
            out.append(f'{agg.kind}("{p}{agg.kind}") AS "{p}{agg.kind}"')
        if agg.kind in ("first", "last"):
            pick = "arg_min" if agg.kind == "first" else "arg_max"
            col = f'"{p}{agg.kind}"'
            out.append(f"{pick}({col}, struct_pack(t := {col}.t, s := {col}.s)) AS {col}")
    return out


def _finals(query: RuleQuery) -> list[str]:
    """SQL of each aggregate's value from its merged partials."""
    out = []
    for i, agg in enumerate(query.aggregates):
        p = f"__p{i}"
        value = {"count": f'"{p}n"', "sum": f'"{p}s"',
                 "avg": f'"{p}s" / nullif("{p}n", 0)', "min": f'"{p}min"',
                 "max": f'"{p}max"', "first": f'"{p}first".v', "last": f'"{p}last".v'}[agg.kind]
        out.append(f'{value} AS "{agg.column}"')
    return out


class WindowState:
    """The open windows of one rule and its watermark."""

    def __init__(self, query: RuleQuery, lateness_us: int, run: Run,
                 fingerprint: str = "") -> None:
        if query.window is None:
            raise Invalid(f"rule {query.sql!r} has no window")
        self.query = query
        self.window = query.window
        self.lateness_us = lateness_us
        self.run = run
        self.fingerprint = fingerprint
        self.watermark = NO_TIME
        self.open: pa.Table | None = None  # partials per (keys, window start)
        self._output_schema: pa.Schema | None = None
        keys = [f'"__g{i}"' for i in range(len(query.group_keys))]
        size, advance = self.window.size_us, self.window.advance_us
        hops = -(-size // advance)
        if hops == 1:
            source, start, fits = '"__rows"', '"__wb"', ""
        else:
            source = f'"__rows", range({hops}) AS "__h"("__k")'
            start = f'"__wb" - "__h"."__k" * {advance}'
            fits = f' WHERE {start} + {size} > "__t" AND {start} + {size} > "__wm"'
        self._partial_sql = (f'SELECT {", ".join([*keys, f"{start} AS __ws"])}, '
                             f'{", ".join(_partials(query))} FROM {source}{fits} GROUP BY ALL')
        self._merge_sql = (f'SELECT {", ".join([*keys, "__ws"])}, {", ".join(_merges(query))} '
                           'FROM (SELECT * FROM "__open" UNION ALL BY NAME '
                           'SELECT * FROM "__part") GROUP BY ALL')
        stamps = (f'make_timestamp("__ws")::TIMESTAMPTZ AS "_window_start", '
                  f'make_timestamp("__ws" + {size})::TIMESTAMPTZ AS "_window_end"')
        inner = (f'SELECT {", ".join([*keys, "__ws"])}, {stamps}, '
                 f'{", ".join(_finals(query))} FROM "__closed"')
        projections = [f"{sql} AS {_quote(name)}"
                       for sql, name in zip(query.projections, query.names, strict=True)]
        having = f" WHERE {query.having}" if query.having else ""
        self._emit_sql = (f'SELECT {", ".join(projections)}, "_window_start", "_window_end" '
                          f'FROM ({inner}){having} ORDER BY {", ".join(["__ws", *keys])}')

    def check(self, rows: pa.Table) -> pa.Table:
        """Bind the window SQL on empty rows (from :func:`rows_sql`): DuckDB errors raise;
        returns what the windows of no rows give (nothing, unless it aggregates windows)."""
        rows = rows.append_column("__wm", pa.array([], pa.int64()))
        part = self.run(self._partial_sql, __rows=rows.append_column("__wb", pa.array([],
                                                                                 pa.int64())))
        return self.run(self._emit_sql, __closed=part)

    # -- one block -------------------------------------------------------------------------
    def add(self, rows: pa.Table) -> tuple[pa.Table, int, int]:
        """Add the rows of a block that passed WHERE (from :func:`rows_sql`; those not ok are
        ignored): the windows this closes, the number of late rows dropped and of rows
        counted into windows."""
        ok = np.asarray(pc.fill_null(rows.column("__ok"), False), dtype=bool)
        times = np.asarray(pc.fill_null(rows.column("__t"), NO_TIME), dtype=np.int64)
        seen = np.maximum.accumulate(np.where(ok, times, NO_TIME)) if len(rows) else times
        before = np.concatenate(([NO_TIME], seen[:-1])) if len(rows) else seen
        marks = np.maximum(self.watermark,
                           np.where(before == NO_TIME, NO_TIME, before - self.lateness_us))
        size, advance = self.window.size_us, self.window.advance_us
        base = np.floor_divide(times, advance) * advance
        late = ok & (base + size <= marks)
        keep = ok & ~late
        if keep.any():
            kept = rows.append_column("__wm", pa.array(marks)).append_column("__wb",
                                                                             pa.array(base))
            kept = kept if keep.all() else kept.filter(pa.array(keep))
            part = self.run(self._partial_sql, __rows=kept)
            self.open = part if self.open is None else self.run(self._merge_sql,
                                                                __open=self.open, __part=part)
        if ok.any():
            top = int(seen[-1])
            self.watermark = max(self.watermark, top - self.lateness_us)
        return self._emit(lambda starts: pc.less_equal(pc.add(starts, size), self.watermark)), \
            int(late.sum()), int(keep.sum())

    def flush(self) -> pa.Table:
        """Emit every open window now (at the end of a finite input)."""
        return self._emit(lambda starts: pc.greater_equal(starts, NO_TIME))

    def _emit(self, closed: Callable[[pa.ChunkedArray], pa.ChunkedArray]) -> pa.Table:
        if self.open is None:
            return self._empty()
        mask = closed(self.open.column("__ws"))
        if not pc.any(mask).as_py():
            return self._empty()
        done = self.run(self._emit_sql, __closed=self.open.filter(mask))
        self.open = self.open.filter(pc.invert(mask))
        self._output_schema = done.schema
        return done

    def _empty(self) -> pa.Table:
        if self._output_schema is None and self.open is not None:
            self._output_schema = self.run(self._emit_sql, __closed=self.open.slice(0, 0)).schema
        if self._output_schema is None:
            names = [*self.query.names, "_window_start", "_window_end"]
            return pa.table({name: pa.nulls(0) for name in names})
        return self._output_schema.empty_table()

    # -- durable state ---------------------------------------------------------------------
    def state(self, extra: dict | None = None) -> bytes:
        """The open windows and the watermark as bytes, to save with the ack."""
        table = self.open if self.open is not None else pa.table({})
        meta = {"version": 1, "fingerprint": self.fingerprint,
                "watermark": None if self.watermark == NO_TIME else self.watermark,
                "empty": self.open is None, "extra": extra or {}}
        table = table.replace_schema_metadata({_META_KEY: orjson.dumps(meta)})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes()

    def restore(self, state: bytes) -> dict:
        """Resume from :meth:`state` bytes; returns the ``extra`` saved with them."""
        try:
            table = pa.ipc.open_stream(state).read_all()
            meta = orjson.loads((table.schema.metadata or {})[_META_KEY])
        except (pa.ArrowInvalid, KeyError, orjson.JSONDecodeError, TypeError) as exc:
            raise Invalid(f"window state: not the state of a rule ({exc})") from None
        if meta.get("version") != 1 or meta.get("fingerprint") != self.fingerprint:
            raise Invalid("window state: saved by another statement or other window options "
                          "than this rule's")
        self.open = None if meta["empty"] else table.replace_schema_metadata(None)
        self.watermark = NO_TIME if meta["watermark"] is None else int(meta["watermark"])
        return meta.get("extra") or {}


__all__ = ["AGGREGATES", "NO_TIME", "Aggregate", "Window", "WindowState", "event_time_sql",
           "parse_window", "rows_sql", "window_parts"]

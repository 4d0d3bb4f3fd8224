"""A rule's statement evaluated on message blocks: one DuckDB query per block, no Python
object per message.

``Rule(sql, event_time="time", lateness=0)`` checks the statement once (sqlglot, then DuckDB
binds it on an empty block) and compiles it into DuckDB SQL over the block's decoded columns:
one ``json_transform`` per payload reads the fields the statement uses, typed as
:mod:`lakeport.routing.sql` says.

- :meth:`Rule.apply` returns the rows out as an Arrow table (with ``_seqno``, the input seqno
  of each row, for exactly-once message ids downstream; window rules: the windows closed by
  this block with ``_window_start`` and ``_window_end``). :meth:`Rule.evaluate` returns the
  same with the error rows (seqno and reason, for a dead letter) and the counts: in, out,
  dropped by ``WHERE``, late. :attr:`Rule.stats` adds them up.
- A payload that is not UTF-8 or not JSON, lacks a field the statement needs or fails the
  statement (a cast, say) makes its row an error; the rest of the block goes on.
- Window rules: the event time is the payload field named by ``event_time`` (dots for nested
  fields; default ``time``), an ISO 8601 text (a time without a zone is UTC) or a number of
  epoch milliseconds; a message without it uses the topic's time, and ``event_time=None``
  always uses the topic's time. ``lateness`` (``"5s"``, or seconds) is how long after a
  window's end rows may still arrive for it (:mod:`lakeport.routing.windows`). Save
  :meth:`Rule.state` with each ack and :meth:`Rule.restore` it after a restart.

Each rule has its own DuckDB connection (UTC, no file or network access) to an in-memory
database that the process's one-thread rules share (``threads`` > 1: a database of its own);
nothing process-wide is changed.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from typing import Any, NamedTuple

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from lakeport.errors import Invalid
from lakeport.routing.sql import JSON_TYPES, TYPE_NAMES, Field, RuleQuery, fits, parse_rule, quote
from lakeport.routing.windows import WindowState, event_time_sql, rows_sql
from lakeport.streams.block import MessageBlock
from lakeport.units import parse_duration

_SAMPLE = 100  # payloads looked at to learn the type of a field the statement leaves open


class RowError(NamedTuple):
    """A message the rule could not evaluate: its seqno and why (for a dead letter)."""

    seqno: int
    reason: str


@dataclass
class RuleOutput:
    """What one block gave: the rows out, the error rows and the counts."""

    table: pa.Table
    errors: list[RowError]
    rows_in: int
    dropped: int  # by WHERE
    late: int = 0  # window rules: rows whose windows were already emitted

    @property
    def rows_out(self) -> int:
        return self.table.num_rows


@dataclass
class RuleStats:
    blocks: int = 0
    rows_in: int = 0
    rows_out: int = 0
    dropped: int = 0
    errors: int = 0
    late: int = 0

    def add(self, out: RuleOutput) -> None:
        self.blocks += 1
        self.rows_in, self.rows_out = self.rows_in + out.rows_in, self.rows_out + out.rows_out
        self.dropped, self.late = self.dropped + out.dropped, self.late + out.late
        self.errors += len(out.errors)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _json_path(path: tuple[str, ...]) -> str:
    return _literal("$" + "".join(f'."{key}"' for key in path))


def _extract(path: tuple[str, ...], kind: str) -> str:
    if kind == "NULL":
        return "NULL"
    text = f'json_extract_string("__data", {_json_path(path)})'
    if kind in ("DOUBLE", "BOOLEAN"):
        return f"TRY_CAST({text} AS {kind})"
    if kind == "JSON":
        return f"nullif(json_extract(\"__data\", {_json_path(path)}), 'null')"
    return text


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _utf8(payload: bytes) -> bool:
    try:
        payload.decode()
    except UnicodeDecodeError:
        return False
    return True


def _lookup(doc: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return False, None
        doc = doc[key]
    return True, doc


_shared: tuple[int, duckdb.DuckDBPyConnection] | None = None
_shared_lock = threading.Lock()


def _connection(threads: int) -> duckdb.DuckDBPyConnection:
    """A connection of its own for a rule: to one in-memory database the one-thread rules of
    this process share (a new connection costs a millisecond, a new database tens), or to a
    database of its own for a rule with more threads. No file or network access."""
    global _shared
    config = {"threads": threads, "enable_external_access": False,
              "autoload_known_extensions": False, "autoinstall_known_extensions": False}
    if threads != 1:
        return duckdb.connect(":memory:", config=config)
    with _shared_lock:
        if _shared is None or _shared[0] != os.getpid():  # not one inherited through fork
            _shared = (os.getpid(), duckdb.connect(":memory:", config=config))
        return _shared[1].cursor()


class Rule:
    """A statement over one topic, evaluated block by block (see the module's docstring)."""

    def __init__(self, sql: str | RuleQuery, *, event_time: str | None = "time",
                 lateness: str | float = 0, threads: int = 1) -> None:
        self.query = parse_rule(sql) if isinstance(sql, str) else sql
        self.event_time = tuple(event_time.split(".")) if event_time else None
        self.lateness_us = round(parse_duration(lateness) * 1_000_000)
        if self.lateness_us < 0:
            raise Invalid(f"bad lateness {lateness!r}: a duration >= 0")
        for path in [f.path for f in self.query.fields] + [self.event_time or ()]:
            if any('"' in key or not key for key in path):
                raise Invalid(f"bad rule: field {'.'.join(path)!r}: a field name must not be "
                              'empty or hold "')
        self._con = _connection(threads)
        self._con.execute("SET TimeZone = 'UTC'")  # this connection's session only
        self._types: dict[tuple[str, ...], str] = {f.path: f.type for f in self.query.fields
                                                   if f.type is not None}
        self._sql: dict[tuple, str] = {}
        self.stats = RuleStats()
        self.fingerprint = hashlib.sha256(orjson.dumps(
            [self.query.sql, self.event_time, self.lateness_us])).hexdigest()[:16]
        self.windows = None if self.query.window is None else WindowState(
            self.query, self.lateness_us, self._run, self.fingerprint)
        self._check()

    @property
    def topic(self) -> str:
        return self.query.topic

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Rule:
        return self

    def __exit__(self, *exc: object) -> None:
        self._con.close()

    # -- compiling -------------------------------------------------------------------------
    def _decoded(self, types: dict[tuple[str, ...], str]) -> tuple[str, str]:
        """The block's decoded relation (a WITH clause and a relation over it): seqno,
        message columns, one column per field, the event time (window rules) and ``__ok``
        (false for an error row). The fields are read with one ``json_transform`` per payload
        (a field that is also the parent of another one with a ``json_extract`` of its own)."""
        query = self.query
        leaves = {f.path: (f.column, types.get(f.path, "VARCHAR")) for f in query.fields}
        timed = query.window is not None and self.event_time is not None
        if timed and self.event_time not in leaves:
            leaves[self.event_time] = ("__traw", "VARCHAR")
        structure: dict = {}
        inner = ['"__seqno"', '"__ts_ns" // 1000 AS "__tmsg"'] + (['"__data"'] if query.star
                                                                  else [])
        if "__timestamp" in query.meta:
            inner.append('make_timestamp("__ts_ns" // 1000)::TIMESTAMPTZ AS "__timestamp"')
        inner += [f'"{name}"' for name in ("__producer", "__key") if name in query.meta]
        picked = []
        for path, (column, kind) in leaves.items():
            nested = any(o != path and path in (o[:len(path)], o + path[len(o):]) for o in leaves)
            if kind == "NULL" or nested:
                inner.append(f"{_extract(path, kind)} AS {quote(column)}")
                continue
            node = structure
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = kind
            picked.append(f'"__j"{"".join(f"[{_literal(k)}]" for k in path)} AS {quote(column)}')
        if structure:
            inner.append(f'json_transform("__data", {_literal(orjson.dumps(structure).decode())})'
                         ' AS "__j"')
        # materialized: else DuckDB inlines "__j" and transforms a payload once per use
        head = f'WITH "__d" AS MATERIALIZED (SELECT {", ".join(inner)} FROM "__block") '
        sql = f'SELECT *, {", ".join(picked)} FROM "__d"' if picked else 'SELECT * FROM "__d"'
        checks = [f"{quote(f.column)} IS NOT NULL" for f in query.fields if f.required]
        if query.window is not None:
            stamp = event_time_sql(quote(leaves[self.event_time][0]) if timed else None)
            sql = f'SELECT *, {stamp} AS "__t" FROM ({sql})'
            checks.append('"__t" IS NOT NULL')
        return head, f'(SELECT *, {" AND ".join(checks) or "true"} AS "__ok" FROM ({sql}))'

    def _where(self) -> str:
        """The filter: rows where WHERE is true, and the error rows among those where it is
        null (a field it needs is missing); rows where it is false are dropped."""
        if self.query.where is None:
            return ""
        needed = [f"{quote(f.column)} IS NOT NULL" for f in self.query.fields if f.in_where]
        return (f" WHERE coalesce({self.query.where}, "
                f"{'NOT (' + ' AND '.join(needed) + ')' if needed else 'false'})")

    def _row_sql(self, types: dict[tuple[str, ...], str]) -> str:
        key = tuple(types.get(f.path) for f in self.query.fields)
        if key not in self._sql:
            (head, decoded), query = self._decoded(types), self.query
            if query.window:
                self._sql[key] = head + rows_sql(query, decoded, self._where())
            else:
                columns = ['"__data" AS "_payload"'] if query.star else [
                    f"{sql} AS {quote(name)}"
                    for sql, name in zip(query.projections, query.names, strict=True)]
                self._sql[key] = (f'{head}SELECT {", ".join(columns)}, "__seqno" AS "_seqno", '
                                  f'"__ok" FROM {decoded}{self._where()}')
        return self._sql[key]

    def _check(self) -> None:
        """Refuse what DuckDB refuses, on an empty block, before the first message."""
        empty = self._block_table(MessageBlock.empty())[0]
        # a field whose type the data decides is an untyped NULL here: it binds to anything
        types = {f.path: self._types.get(f.path, "NULL") for f in self.query.fields}
        try:
            rows = self._run(self._row_sql(types), __block=empty)
            out = rows if self.windows is None else self.windows.check(rows)
        except duckdb.Error as exc:
            text = self._explain(exc)
            if "GROUP BY" not in text:  # else a function of the statement aggregates
                where = next((where for name, where in self.query.functions
                              if f"name {name.lower()} " in text.lower()), "")
                raise Invalid(f"bad rule{where}: {text}") from None
            out = None
        finally:
            self._sql.clear()
        if out is None or out.num_rows:  # a function of the statement aggregates
            raise Invalid("bad rule: only avg, count, first, last, max, min and sum aggregate, "
                          "in a window")

    def _explain(self, exc: BaseException) -> str:
        """A DuckDB error with the statement's names instead of the compiled ones."""
        columns = {f.column: f.name for f in self.query.fields}
        text = re.sub(r'"?(__f\d+)"?', lambda m: columns.get(m.group(1), m.group(1)),
                      _first_line(exc))
        return text.replace('"__seqno"', "_seqno")

    # -- running ---------------------------------------------------------------------------
    def _run(self, sql: str, **tables: pa.Table) -> pa.Table:
        for name, table in tables.items():
            self._con.register(name, table)
        try:
            relation = self._con.sql(sql)
            fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
            return fetch()
        finally:
            for name in tables:
                self._con.unregister(name)

    def _learn_types(self, block: MessageBlock) -> dict[tuple[str, ...], str]:
        """Types of the fields the statement leaves open, from the first values seen."""
        open_ = [f.path for f in self.query.fields if f.path not in self._types]
        if open_ and len(block):
            for payload in block.data.slice(0, _SAMPLE).to_pylist():
                try:
                    doc = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    continue
                for path in list(open_):
                    present, value = _lookup(doc, path)
                    if present and value is not None:
                        self._types[path] = JSON_TYPES[type(value)]
                        open_.remove(path)
                if not open_:
                    break
        return self._types

    def _block_table(self, block: MessageBlock) -> tuple[pa.Table, list[RowError]]:
        table, errors = block.table, []
        try:
            text = table.column("data").cast(pa.string())
        except pa.ArrowInvalid:  # the slow way, for this block only
            good = [_utf8(payload) for payload in table.column("data").to_pylist()]
            errors = [RowError(seqno, "payload is not UTF-8 text") for seqno, ok in
                      zip(table.column("seqno").to_pylist(), good, strict=True) if not ok]
            table = table.filter(pa.array(good))
            text = table.column("data").cast(pa.string())
        return pa.table({"__seqno": table.column("seqno"), "__ts_ns": table.column("timestamp_ns"),
                         "__producer": table.column("producer"), "__key": table.column("key"),
                         "__data": text}), errors

    def _rows(self, sql: str, table: pa.Table) -> tuple[pa.Table, list[int], list[RowError]]:
        """The statement on a block: the result, the seqnos of payloads that are not JSON
        and the rows the statement failed on."""
        try:
            return self._run(sql, __block=table), [], []
        except duckdb.Error as exc:
            try:
                self._run(sql, __block=table.slice(0, 0))
            except duckdb.Error:
                raise Invalid(f"rule on topic {self.topic!r}: {self._explain(exc)}") from None
        valid = self._run('SELECT coalesce(json_valid("__data"), false) AS v FROM "__block"',
                          __block=table).column("v")
        invalid = table.column("__seqno").filter(pc.invert(valid)).to_pylist()
        result, failed = self._bisect(sql, table.filter(valid))
        return result, invalid, failed

    def _bisect(self, sql: str, table: pa.Table) -> tuple[pa.Table, list[RowError]]:
        try:
            return self._run(sql, __block=table), []
        except duckdb.Error as exc:
            if len(table) == 1:
                reason = f"cannot evaluate the statement: {self._explain(exc)}"
                return (self._run(sql, __block=table.slice(0, 0)),
                        [RowError(table.column("__seqno")[0].as_py(), reason)])
        half = len(table) // 2
        first, errors = self._bisect(sql, table.slice(0, half))
        second, more = self._bisect(sql, table.slice(half))
        return pa.concat_tables([first, second]), errors + more

    def evaluate(self, block: MessageBlock) -> RuleOutput:
        """The statement on one block: rows out, error rows, counts (module docstring)."""
        types = self._learn_types(block)
        table, errors = self._block_table(block)
        result, invalid, failed = self._rows(self._row_sql(types), table)
        ok = result.column("__ok")
        bad = result.column("__seqno" if self.windows else "_seqno").filter(pc.invert(ok))
        errors += self._reasons(block, invalid + bad.to_pylist(), types) + failed
        errors.sort()
        good = result.filter(ok)
        dropped = len(block) - len(errors) - good.num_rows
        if self.windows is None:
            out = RuleOutput(good.drop_columns(["__ok"]), errors, len(block), dropped)
        else:
            emitted, late, _ = self.windows.add(good)
            out = RuleOutput(emitted, errors, len(block), dropped, late)
        self.stats.add(out)
        return out

    def apply(self, block: MessageBlock) -> pa.Table:
        """The rows out of one block (counts and errors: :meth:`evaluate`, :attr:`stats`)."""
        return self.evaluate(block).table

    def _reasons(self, block: MessageBlock, seqnos: list[int],
                 types: dict[tuple[str, ...], str]) -> list[RowError]:
        if not seqnos:
            return []
        where = np.searchsorted(block.table.column("seqno").to_numpy(), seqnos)
        payloads = block.data.take(pa.array(where)).to_pylist()
        return [RowError(seqno, self._reason(payload, types))
                for seqno, payload in zip(seqnos, payloads, strict=True)]

    def _reason(self, payload: bytes, types: dict[tuple[str, ...], str]) -> str:
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            return f"payload is not JSON: {exc}"
        if not isinstance(doc, dict):
            return f"payload is not a JSON object: {payload[:40]!r}"
        fields: list[Field] = [f for f in self.query.fields if f.required]
        for f in fields:
            present, value = _lookup(doc, f.path)
            kind = types.get(f.path, "VARCHAR")
            if not present:
                return f"no field {f.name!r}"
            if value is None:
                return f"field {f.name!r} is null"
            if not fits(value, kind):
                return f"field {f.name!r} is not {TYPE_NAMES[kind]}: {orjson.dumps(value)[:40]!r}"
        if self.windows is not None and self.event_time is not None:
            present, value = _lookup(doc, self.event_time)
            if present and value is not None:
                return (f"time field {'.'.join(self.event_time)!r} is not ISO 8601 or epoch "
                        f"milliseconds: {orjson.dumps(value)[:40]!r}")
        return "cannot evaluate the statement on this payload"

    # -- window state ----------------------------------------------------------------------
    def flush(self) -> pa.Table:
        """Window rules: emit every open window now (at the end of a finite input)."""
        if self.windows is None:
            raise Invalid(f"rule on topic {self.topic!r} has no window to flush")
        return self.windows.flush()

    def state(self) -> bytes:
        """The state to save with each ack (window rules; b"" for others)."""
        if self.windows is None:
            return b""
        return self.windows.state({"types": [[list(p), t] for p, t in self._types.items()]})

    def restore(self, state: bytes) -> None:
        """Resume from :meth:`state` saved with the last ack."""
        if self.windows is None:
            if state:
                raise Invalid("rule state: this rule has no window, so no state")
            return
        extra = self.windows.restore(state)
        for path, kind in extra.get("types", []):
            self._types.setdefault(tuple(path), kind)


__all__ = ["RowError", "Rule", "RuleOutput", "RuleStats"]

"""The SQL of a rule: one SELECT over one topic, parsed and checked once with sqlglot.

Dialect (DuckDB's, with a few rules of its own):

- ``SELECT <expressions> FROM "<topic>" [WHERE <condition>]``: a row out per message that
  passes ``WHERE``. Expressions are DuckDB's: arithmetic, ``CASE``, ``CAST``, the scalar
  functions (``abs``, ``round``, ``lower``, ``upper``, ``concat``, ``coalesce``, ...).
  ``SELECT *`` (alone) passes the payload through as the column ``_payload``.
- Fields of the JSON payload are columns: ``asset``, ``value``; nested fields with dots:
  ``payload.meta.site`` reads ``{"payload": {"meta": {"site": ...}}}`` (a leading topic name
  or table alias is dropped: ``r.asset`` with ``FROM "raw" AS r``). Message columns:
  ``_seqno``, ``_timestamp`` (the topic's time), ``_producer``, ``_key``.
- A field's SQL type comes from its use: arithmetic, numeric functions, ``avg``/``sum`` or a
  comparison with a number make it DOUBLE; string functions, ``LIKE`` or a comparison with a
  string make it VARCHAR; a condition makes it BOOLEAN; inside ``CAST`` it is read as text.
  Otherwise (projected as is, grouped, ``min``/``max``/``first``/``last``) the rule takes the
  JSON type of the first value it sees (number: DOUBLE, string: VARCHAR, true/false: BOOLEAN,
  object or array: JSON) and keeps it. JSON numbers are DOUBLE (``CAST(x AS BIGINT)`` for
  integers); a string holding a number is accepted where a number is expected.
- A message whose payload is not JSON, or lacks a field the statement uses (absent, null or
  not of the field's type), is an error row (dead letter), except for fields used only inside
  ``coalesce``/``ifnull`` or ``IS [NOT] NULL``.
- Windows: ``GROUP BY <keys>, TUMBLING(10s)`` or ``HOPPING(1m, 10s)`` (size, advance; a
  number alone is seconds, quoted durations such as ``'500ms'`` work too), with the aggregates
  ``avg``, ``min``, ``max``, ``count``, ``sum``, ``first``, ``last`` and ``HAVING``;
  ``window_start()`` and ``window_end()`` in SELECT. Windows are aligned to the Unix epoch.
  Event time and lateness are options of :class:`lakeport.routing.rule.Rule`.
- Refused, with ``bad rule at line:column: ...``: anything but one SELECT (DDL, DML, UNION),
  subqueries, CTEs, joins or several FROMs, table functions, window functions (``OVER``),
  ``DISTINCT``, ``ORDER BY``, ``LIMIT``, aggregates without a window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import sqlglot
from sqlglot import exp

from lakeport.errors import Invalid
from lakeport.routing.windows import Aggregate, Window, parse_window, window_parts
from lakeport.streams.types import validate_topic_name

META = {"_seqno": "__seqno", "_timestamp": "__timestamp", "_producer": "__producer",
        "_key": "__key"}
RESERVED = {"_seqno", "_payload", "_window_start", "_window_end"}
FieldType = Literal["DOUBLE", "VARCHAR", "BOOLEAN", "JSON"]
JSON_TYPES: dict[type, FieldType] = {bool: "BOOLEAN", int: "DOUBLE", float: "DOUBLE",
                                     str: "VARCHAR", dict: "JSON", list: "JSON"}
"""The type a field takes from its first value when the statement does not say."""
TYPE_NAMES = {"DOUBLE": "a number", "VARCHAR": "a string", "BOOLEAN": "true or false",
              "JSON": "an object or array"}
_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def fits(value: object, kind: str) -> bool:
    """Whether a JSON value reads as a field of type ``kind`` (DuckDB's json_transform)."""
    if kind == "DOUBLE" and isinstance(value, str):
        return _NUMBER.fullmatch(value) is not None
    if kind in ("DOUBLE", "BOOLEAN"):
        return isinstance(value, int | float) or str(value).lower() in ("true", "false")
    return True


def _classes(*names: str) -> tuple[type, ...]:
    return tuple(getattr(exp, name) for name in names if hasattr(exp, name))


_NUMERIC = _classes("Add", "Sub", "Mul", "Div", "Mod", "IntDiv", "Neg", "Pow", "Abs", "Round",
                    "Ceil", "Floor", "Sqrt", "Cbrt", "Exp", "Ln", "Log", "Sign", "Sin", "Cos",
                    "Degrees", "Radians", "Trunc", "Avg", "Sum", "Stddev", "Variance")
_STRING = _classes("Lower", "Upper", "Length", "Substring", "Trim", "Like", "ILike",
                   "RegexpLike", "StartsWith", "StrPosition", "Left", "Right", "Replace")
_BOOLEAN = _classes("And", "Or", "Not", "Where", "Having")
_COMPARE = _classes("EQ", "NEQ", "GT", "GTE", "LT", "LTE", "NullSafeEQ", "NullSafeNEQ")
_NULL_TOLERANT = _classes("Coalesce", "Is")
_DURATION_ARG = re.compile(r"(?<![\w'\".])(\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w))\b")
_WINDOW_CALL = re.compile(r"\b(TUMBLING|HOPPING)\s*\(([^()]*)\)", re.IGNORECASE)
_MISSING = re.compile(r"(\d+):(\d+)$")


@dataclass(frozen=True)
class Field:
    """A payload field the statement reads: its JSON path, its column in the decoded
    relation, its type when the statement decides it (else None: the data decides)."""

    path: tuple[str, ...]
    column: str
    type: FieldType | None
    required: bool  # a row without it is an error row, if it passes WHERE
    in_where: bool = False  # required by WHERE: an error row when WHERE cannot be decided

    @property
    def name(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class RuleQuery:
    """A checked statement. SQL fragments are DuckDB SQL over the decoded relation
    (``__f<i>`` per field, ``__seqno``, ``__timestamp``, ...); for a window rule the
    projections and ``having`` are over the window relation (``__g<i>`` per key, ``__a<i>``
    per aggregate, ``_window_start``, ``_window_end``)."""

    sql: str
    topic: str
    fields: tuple[Field, ...]
    meta: tuple[str, ...]  # the message columns used (__seqno, __timestamp, ...)
    star: bool
    names: tuple[str, ...]
    projections: tuple[str, ...]
    where: str | None
    window: Window | None = None
    group_keys: tuple[str, ...] = ()
    aggregates: tuple[Aggregate, ...] = ()
    having: str | None = None
    functions: tuple[tuple[str, str], ...] = ()  # functions sqlglot does not know, for
    # DuckDB to check: (name, " at line:column")


def quote(name: str) -> str:
    """``name`` as a DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


class _Source:
    """The SQL text as sqlglot saw it (durations quoted) and the way back to positions in
    the text the user wrote."""

    def __init__(self, sql: str) -> None:
        self.original = sql
        parts: list[str] = []
        origin: list[int] = []
        cursor = 0
        for call in _WINDOW_CALL.finditer(sql):
            for arg in _DURATION_ARG.finditer(sql, call.start(2), call.end(2)):
                parts.append(sql[cursor:arg.start()] + "'" + arg.group(1) + "'")
                origin.extend(range(cursor, arg.start()))
                origin.extend([arg.start(), *range(arg.start(), arg.end()), arg.end() - 1])
                cursor = arg.end()
        parts.append(sql[cursor:])
        origin.extend(range(cursor, len(sql) + 1))
        self.text = "".join(parts)
        self.origin = origin

    def where(self, offset: int | None) -> str:
        """``line:column`` in the original text of an offset in :attr:`text`."""
        if offset is None:
            return ""
        offset = self.origin[max(0, min(offset, len(self.origin) - 1))]
        before = self.original[:offset]
        return f" at {before.count(chr(10)) + 1}:{offset - (before.rfind(chr(10)) + 1) + 1}"

    def offset(self, line: int, col: int) -> int:
        starts = [0] + [i + 1 for i, c in enumerate(self.text) if c == "\n"]
        return starts[min(line, len(starts)) - 1] + col - 1


def _refuse(source: _Source, node: exp.Expression | int | None, what: str) -> Invalid:
    offset = node if isinstance(node, int) or node is None else _start(node)
    return Invalid(f"bad rule{source.where(offset)}: {what}")


def _start(node: exp.Expression) -> int | None:
    starts = [n.meta["start"] for n in node.walk() if "start" in n.meta]
    return min(starts) if starts else None


def _path(node: exp.Expression) -> list[str] | None:
    if isinstance(node, exp.Column) and isinstance(node.this, exp.Identifier):
        return [part.name for part in node.parts]
    if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Identifier):
        left = _path(node.this)
        return None if left is None else [*left, node.expression.name]
    return None


def parse_rule(sql: str) -> RuleQuery:
    """Parse and check a rule's statement (see the module's docstring): Invalid names what
    is refused and where."""
    source = _Source(sql)
    try:
        statements = [s for s in sqlglot.parse(source.text, read="duckdb") if s is not None]
    except sqlglot.errors.ParseError as exc:
        error = exc.errors[0] if exc.errors else {}
        line, col = error.get("line") or 1, error.get("col") or 1
        highlight = error.get("highlight") or ""
        offset = source.offset(line, col) - max(len(highlight) - 1, 0)
        what = error.get("description") or str(exc)
        if what.startswith("Required keyword"):
            what = f"{highlight.strip().upper() or 'the statement'} is incomplete"
        raise Invalid(f"bad rule{source.where(offset)}: {what}") from None
    except sqlglot.errors.TokenError as exc:
        cause = str(exc.__cause__ or "")
        found = _MISSING.search(cause)
        offset = int(found.group(2)) if found else exc.start
        what = (f"unterminated {cause.split()[1]}...{cause.split()[1]}" if found
                else "cannot split the statement into tokens")
        raise Invalid(f"bad rule{source.where(offset)}: {what}") from None
    if len(statements) != 1:
        raise Invalid(f"bad rule: one SELECT statement expected, not {len(statements)}")
    return _Checker(source, statements[0]).query()


class _Checker:
    def __init__(self, source: _Source, statement: exp.Expression) -> None:
        self.source = source
        self.statement = statement
        self.fields: dict[tuple[str, ...], dict] = {}
        self.meta: list[str] = []

    def refuse(self, node: exp.Expression | int | None, what: str) -> Invalid:
        return _refuse(self.source, node, what)

    # -- structure -------------------------------------------------------------------------
    def query(self) -> RuleQuery:
        select = self.statement
        if not isinstance(select, exp.Select):
            kind = select.key.upper()
            raise self.refuse(0, f"{kind} is not supported: a rule is one SELECT over one topic")
        topic, qualifiers = self.check_from(select)
        for arg, what in (("with_", "WITH (common table expressions)"), ("distinct", "DISTINCT"),
                          ("order", "ORDER BY"), ("limit", "LIMIT"), ("offset", "OFFSET"),
                          ("qualify", "QUALIFY"), ("windows", "WINDOW"),
                          ("laterals", "LATERAL"), ("pivots", "PIVOT")):
            if select.args.get(arg):
                node = select.args[arg]
                node = node[0] if isinstance(node, list) else node
                raise self.refuse(node if isinstance(node, exp.Expression) else None,
                                  f"{what} is not supported in a rule")
        for node in select.walk():
            if node is not select and isinstance(node, exp.Select | exp.Subquery | exp.Exists):
                raise self.refuse(node, "subqueries are not supported in a rule")
            if isinstance(node, exp.Window):
                raise self.refuse(node, "window functions (OVER) are not supported: use "
                                        "GROUP BY ..., TUMBLING(10s) or HOPPING(1m, 10s)")
            if isinstance(node, exp.Placeholder | exp.Parameter):
                raise self.refuse(node, "parameters are not supported in a rule")
            if isinstance(node, exp.Anonymous) and node.name.upper() in ("TUMBLING", "HOPPING") \
                    and not isinstance(node.parent, exp.Group):
                raise self.refuse(node, f"{node.name.upper()}() belongs in GROUP BY")
        projections = list(select.expressions)
        star = len(projections) == 1 and isinstance(projections[0], exp.Star)
        if not star and any(isinstance(p, exp.Star) for p in projections):
            raise self.refuse(projections[0], "* is allowed only alone: SELECT * FROM ...")
        names = [] if star else self.output_names(projections)
        group = select.args.get("group")
        having = select.args.get("having")
        where = select.args.get("where")
        if where is not None:
            for node in where.find_all(exp.AggFunc):
                raise self.refuse(node, "aggregates are not allowed in WHERE")
        window, keys = (None, []) if group is None else parse_window(group, self.refuse)
        if window is None:
            for node in select.find_all(exp.AggFunc):
                raise self.refuse(node, "aggregates need a window: add GROUP BY ..., "
                                        "TUMBLING(10s)")
            if having is not None:
                raise self.refuse(having, "HAVING needs a window: GROUP BY ..., TUMBLING(10s)")
        elif star:
            raise self.refuse(projections[0], "SELECT * is not supported with a window")
        if having is not None:  # aliases of the select list are usable in HAVING
            aliases = {p.alias: p.this for p in projections if isinstance(p, exp.Alias)}
            having = having.this.transform(
                lambda n: aliases[n.name].copy() if isinstance(n, exp.Column)
                and not n.table and n.name in aliases else n)
        fields_of = lambda node: self.rewrite(node, qualifiers)  # noqa: E731
        where_sql = (None if where is None else
                     self.rewrite(where, qualifiers, in_where=True).this.sql(dialect="duckdb"))
        rows = [fields_of(p.this if isinstance(p, exp.Alias) else p) for p in projections]
        functions = tuple((n.name, self.source.where(_start(n)))
                          for n in select.find_all(exp.Anonymous)
                          if n.name.upper() not in ("TUMBLING", "HOPPING", "WINDOW_START",
                                                    "WINDOW_END"))
        fields = tuple(Field(path, info["column"], info["type"], info["required"],
                             info["in_where"]) for path, info in self.fields.items())
        base = dict(sql=self.source.original, topic=topic, fields=fields, meta=tuple(self.meta),
                    star=star, names=tuple(names), where=where_sql, functions=functions)
        if window is None:
            sqls = () if star else tuple(r.sql(dialect="duckdb") for r in rows)
            return RuleQuery(projections=sqls, **base)
        having = None if having is None else fields_of(exp.Having(this=having)).this
        parts = window_parts([fields_of(k) for k in keys], rows, having, self.refuse)
        return RuleQuery(window=window, **parts, **base)

    def check_from(self, select: exp.Select) -> tuple[str, set[str]]:
        source = select.args.get("from_") or select.args.get("from")
        if source is None:
            raise self.refuse(select, 'a rule needs FROM "<topic>"')
        if select.args.get("joins"):
            raise self.refuse(select.args["joins"][0],
                              "JOIN or several FROMs are not supported: a rule reads one topic")
        table = source.this
        if isinstance(table, exp.Subquery):
            raise self.refuse(table, "subqueries are not supported in a rule")
        if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
            inner = table.this if isinstance(table, exp.Table) else table
            name = inner.sql_name().lower() if isinstance(inner, exp.Func) else inner.key
            raise self.refuse(table, f"table function {name}() is not supported: FROM names "
                                     "one topic")
        if table.args.get("db") or table.args.get("catalog"):
            raise self.refuse(table, "FROM names one topic, without a schema")
        try:
            validate_topic_name(table.name)
        except Invalid as exc:
            raise self.refuse(table, f"topic {exc}") from None
        return table.name, {table.name, table.alias} - {""}

    def output_names(self, projections: list[exp.Expression]) -> list[str]:
        names: list[str] = []
        for node in projections:
            if isinstance(node, exp.Alias):
                name = node.alias
            elif (path := _path(node)) is not None:
                name = path[-1]
            else:
                name = node.sql(dialect="duckdb", normalize_functions="lower")
            if name in RESERVED or name in names:
                raise self.refuse(node, f"output column {name!r} is "
                                        f"{'reserved' if name in RESERVED else 'twice'}: "
                                        "name it with AS")
            names.append(name)
        return names

    # -- fields ----------------------------------------------------------------------------
    def rewrite(self, node: exp.Expression, qualifiers: set[str],
                in_where: bool = False) -> exp.Expression:
        def visit(n: exp.Expression) -> exp.Expression:
            path = _path(n)
            if path is None or any(isinstance(a, exp.Lambda) and path[0] in
                                   {p.name for p in a.expressions} for a in _ancestors(n)):
                return n  # not a column, or a lambda's parameter (list_transform(l, x -> x))
            if len(path) > 1 and path[0] in qualifiers:
                path = path[1:]
            start = _start(n)
            if len(path) == 1 and path[0] in META:
                if META[path[0]] not in self.meta:
                    self.meta.append(META[path[0]])
                column = exp.column(META[path[0]], quoted=True)
            else:
                info = self.fields.setdefault(tuple(path), {
                    "column": f"__f{len(self.fields)}", "type": None, "required": False,
                    "in_where": False})
                found = _context_type(n)
                if found is not None and _RANK[found] > _RANK.get(info["type"], -1):
                    info["type"] = found
                if not any(isinstance(a, _NULL_TOLERANT) for a in _ancestors(n)):
                    info["required"] = True
                    info["in_where"] |= in_where
                column = exp.column(info["column"], quoted=True)
            column.this.meta["start"] = start
            return column

        return node.copy().transform(visit)


_RANK = {"VARCHAR": 0, "BOOLEAN": 1, "DOUBLE": 2}


def _ancestors(node: exp.Expression):
    while node.parent is not None:
        node = node.parent
        yield node


def _literal_type(node: exp.Expression | None) -> FieldType | None:
    while isinstance(node, exp.Paren | exp.Neg):
        if isinstance(node, exp.Neg):
            return "DOUBLE" if isinstance(node.this, exp.Literal) else None
        node = node.this
    if isinstance(node, exp.Boolean):
        return "BOOLEAN"
    if isinstance(node, exp.Literal):
        return "VARCHAR" if node.is_string else "DOUBLE"
    return None


def _context_type(node: exp.Expression) -> FieldType | None:
    """The type a field's use asks for, or None when its use does not say."""
    parent = node.parent
    while isinstance(parent, exp.Paren):
        node, parent = parent, parent.parent
    if parent is None:
        return None
    if isinstance(parent, exp.Cast | exp.TryCast):
        return "VARCHAR"
    if isinstance(parent, _NUMERIC):
        return "DOUBLE"
    if isinstance(parent, (*_STRING, exp.DPipe)):
        return "VARCHAR"
    if isinstance(parent, _BOOLEAN) or (isinstance(parent, exp.If) and node is parent.this):
        return "BOOLEAN"
    if isinstance(parent, exp.Case) and node is parent.this:
        return next(filter(None, (_literal_type(i.this) for i in parent.args["ifs"])), None)
    if isinstance(parent, _COMPARE):
        other = parent.expression if node is parent.this else parent.this
        return _literal_type(other)
    if isinstance(parent, exp.In | exp.Between):
        others = [v for k, v in parent.args.items() if k != "this" and v is not None]
        flat = [o for v in others for o in (v if isinstance(v, list) else [v])]
        return next(filter(None, map(_literal_type, flat)), None)
    return None


__all__ = ["JSON_TYPES", "TYPE_NAMES", "Aggregate", "Field", "RuleQuery", "Window", "fits",
           "parse_rule", "quote"]

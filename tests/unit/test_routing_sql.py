"""Rule statements: what parses (fields, types, windows) and what is refused, with where."""

from __future__ import annotations

import pytest

from lakeport.errors import Invalid
from lakeport.routing.rule import Rule
from lakeport.routing.sql import parse_rule
from lakeport.routing.windows import Window

FILTER = ('SELECT asset, value * 1.8 + 32 AS value_f FROM "raw-sensor-data" '
          "WHERE datastream = 'temperature' AND value > 80")


def fields(sql: str) -> dict[str, tuple[str | None, bool, bool]]:
    return {f.name: (f.type, f.required, f.in_where) for f in parse_rule(sql).fields}


def refused(sql: str) -> str:
    with pytest.raises(Invalid) as caught:
        parse_rule(sql)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_filter_and_project() -> None:
    query = parse_rule(FILTER)
    assert query.topic == "raw-sensor-data"
    assert query.names == ("asset", "value_f")
    assert query.window is None and not query.star
    # value: arithmetic and a number; datastream: a string; asset: the data will say
    assert fields(FILTER) == {"datastream": ("VARCHAR", True, True),
                              "value": ("DOUBLE", True, True), "asset": (None, True, False)}
    assert "__f1" in query.projections[1] and "1.8" in query.projections[1]


def test_nested_fields_case_and_qualified_names() -> None:
    sql = ("SELECT r.payload.meta.site AS site, CASE WHEN value > 90 THEN 'hot' ELSE 'ok' END "
           "AS level, upper(asset), coalesce(unit, 'C') AS unit, _seqno AS seq, _timestamp "
           'FROM "raw" AS r WHERE active AND tags IS NOT NULL')
    query = parse_rule(sql)
    assert query.names == ("site", "level", "upper(asset)", "unit", "seq", "_timestamp")
    found = fields(sql)
    assert found["payload.meta.site"] == (None, True, False)
    assert found["value"] == ("DOUBLE", True, False)
    assert found["asset"] == ("VARCHAR", True, False)
    assert found["unit"] == (None, False, False)  # only inside coalesce: optional
    assert found["active"] == ("BOOLEAN", True, True)
    assert found["tags"] == (None, False, False)
    assert set(query.meta) == {"__seqno", "__timestamp"}


def test_types_from_comparisons_in_and_cast() -> None:
    found = fields("SELECT CAST(code AS BIGINT) AS c FROM t "
                   "WHERE kind IN ('a', 'b') AND level BETWEEN 1 AND 3 AND ok = true")
    assert found["code"][0] == "VARCHAR"  # read as text, the statement's CAST converts
    assert found["kind"][0] == "VARCHAR"
    assert found["level"][0] == "DOUBLE"
    assert found["ok"][0] == "BOOLEAN"


def test_star_passes_the_payload() -> None:
    query = parse_rule("SELECT * FROM raw WHERE value > 1")
    assert query.star and query.names == ()


@pytest.mark.parametrize(("sql", "window"), [
    ("SELECT asset, avg(value) FROM raw GROUP BY asset, TUMBLING(10s)",
     Window("tumbling", 10_000_000, 10_000_000)),
    ("SELECT asset, avg(value) FROM raw GROUP BY asset, HOPPING(1m, 10s)",
     Window("hopping", 60_000_000, 10_000_000)),
    ("SELECT avg(value) FROM raw GROUP BY tumbling('500ms')", Window("tumbling", 500_000, 500_000)),
    ("SELECT avg(value) FROM raw GROUP BY TUMBLING(2)", Window("tumbling", 2_000_000, 2_000_000)),
])
def test_windows(sql: str, window: Window) -> None:
    assert parse_rule(sql).window == window


def test_window_select_list() -> None:
    query = parse_rule(
        "SELECT upper(asset) AS a, round(avg(value), 2) AS mean, max(value) - min(value) AS "
        "spread, count(*) AS n, first(value) AS f, last(value) AS l, sum(value) AS total, "
        "window_start() AS ws, window_end() AS we FROM raw WHERE datastream = 'temperature' "
        "GROUP BY upper(asset), TUMBLING(10s) HAVING n > 2 AND avg(value) > 1")
    assert [a.kind for a in query.aggregates] == ["avg", "max", "min", "count", "first",
                                                  "last", "sum"]
    assert query.group_keys == ('UPPER("__f1")',)
    assert query.projections[0] == '"__g0"'
    assert query.projections[-2:] == ('"_window_start"', '"_window_end"')
    assert query.having == '"__a3" > 2 AND "__a0" > 1'  # an alias and a repeated aggregate


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT asset FROM raw WHERE", "bad rule at 1:23: WHERE is incomplete"),
    ("SELECT asset,\n  FROM raw WHERE (", "bad rule at 2:"),
    ("SELECT 'abc FROM raw", "bad rule at 1:8: unterminated '"),
    ("SELECT asset, (SELECT 1) AS x FROM raw", "bad rule at 1:23: subqueries"),
    ("SELECT asset FROM raw WHERE value IN (SELECT v FROM other)", "bad rule at 1:"),
    ("SELECT asset FROM (SELECT * FROM raw)", "subqueries are not supported"),
    ("SELECT a FROM raw JOIN other ON true", "bad rule at 1:24: JOIN or several FROMs"),
    ("SELECT a FROM raw, other", "bad rule at 1:20: JOIN or several FROMs"),
    ("WITH c AS (SELECT 1) SELECT a FROM c", "bad rule at 1:6: WITH"),
    ("SELECT 1 UNION SELECT 2", "bad rule at 1:1: UNION is not supported"),
    ("CREATE TABLE t (a INT)", "bad rule at 1:1: CREATE is not supported"),
    ("INSERT INTO raw VALUES (1)", "bad rule at 1:1: INSERT is not supported"),
    ("DELETE FROM raw", "bad rule at 1:1: DELETE is not supported"),
    ("UPDATE raw SET a = 1", "bad rule at 1:1: UPDATE is not supported"),
    ("SELECT a FROM raw; SELECT b FROM raw", "one SELECT statement expected, not 2"),
    ("SELECT avg(v) OVER (PARTITION BY a) FROM raw", "bad rule at 1:8: window functions"),
    ("SELECT a FROM read_csv('/etc/passwd')", "table function read_csv() is not supported"),
    ("SELECT a FROM s.raw", "FROM names one topic, without a schema"),
    ("SELECT a FROM raw ORDER BY a", "ORDER BY is not supported"),
    ("SELECT a FROM raw LIMIT 3", "LIMIT is not supported"),
    ("SELECT DISTINCT a FROM raw", "DISTINCT is not supported"),
    ("SELECT count(*) FROM raw", "bad rule at 1:8: aggregates need a window"),
    ("SELECT a FROM raw GROUP BY a", "GROUP BY needs exactly one TUMBLING"),
    ("SELECT a FROM raw WHERE avg(v) > 1", "aggregates are not allowed in WHERE"),
    ("SELECT median(v) FROM raw GROUP BY TUMBLING(1s)",
     "bad rule at 1:8: aggregate median() is not supported"),
    ("SELECT count(DISTINCT v) FROM raw GROUP BY TUMBLING(1s)", "without DISTINCT"),
    ("SELECT max(avg(v)) FROM raw GROUP BY TUMBLING(1s)", "cannot be nested"),
    ("SELECT asset, value FROM raw GROUP BY asset, TUMBLING(10s)",
     "bad rule at 1:15: a field outside an aggregate must be a GROUP BY key"),
    ("SELECT avg(v) FROM raw GROUP BY TUMBLING(1s), TUMBLING(2s)", "exactly one"),
    ("SELECT avg(v) FROM raw GROUP BY HOPPING(10s, 1m)",
     "bad rule at 1:33: HOPPING: the advance must not exceed the size"),
    ("SELECT avg(v) FROM raw GROUP BY HOPPING(10s)", "HOPPING takes 2 durations"),
    ("SELECT avg(v) FROM raw GROUP BY HOPPING(1h, 1s)", "at most 1000 windows overlap"),
    ("SELECT avg(v) FROM raw GROUP BY TUMBLING(10x)", "bad rule at 1:44: Expecting )"),
    ("SELECT avg(v) FROM raw GROUP BY TUMBLING('ten')", "TUMBLING: bad duration 'ten'"),
    ("SELECT TUMBLING(10s) FROM raw", "bad rule at 1:8: TUMBLING() belongs in GROUP BY"),
    ("SELECT a FROM raw HAVING a > 1", "HAVING needs a window"),
    ("SELECT *, a FROM raw", "* is allowed only alone"),
    ("SELECT a, b AS a FROM raw", "output column 'a' is twice"),
    ("SELECT _seqno FROM raw", "output column '_seqno' is reserved"),
    ('SELECT a FROM "bad topic"', "bad rule at 1:15: topic bad name 'bad topic'"),
])
def test_refusals_name_the_construct_and_where(sql: str, expected: str) -> None:
    assert expected in refused(sql)


def test_positions_count_from_the_text_as_written() -> None:
    # durations are quoted for the parser: positions after them still match the original
    message = refused("SELECT avg(v) FROM raw GROUP BY TUMBLING(10s), HOPPING(1m, 10s)")
    assert message.startswith("bad rule at 1:48: ")
    message = refused("SELECT avg(v)\nFROM raw\nGROUP BY TUMBLING(10s)\nORDER BY 1")
    assert message.startswith("bad rule at 4:")


def test_unknown_functions_are_refused_by_the_rule_with_their_position() -> None:
    with pytest.raises(Invalid, match=r"^bad rule at 1:15: Catalog Error: Scalar Function "
                                      "with name no_such_fn does not exist"):
        Rule("SELECT asset, no_such_fn(value) AS x FROM raw")
    with pytest.raises(Invalid, match=r"^bad rule: only avg, count, first, last, max, min and "
                                      "sum aggregate"):
        Rule("SELECT fsum(value) AS x FROM raw")
    with pytest.raises(Invalid, match="only avg, count"):
        Rule("SELECT fsum(avg(value)) AS x FROM raw GROUP BY TUMBLING(1s)")
    with pytest.raises(Invalid, match=r"^bad rule at 1:8: aggregates need a window"):
        parse_rule("SELECT mode(value) AS x FROM raw")
    with pytest.raises(Invalid, match=r"^bad rule: Binder Error: No function matches"):
        Rule("SELECT asset FROM raw WHERE value > 1 AND list_contains(lower(asset), 1)")
    with Rule("SELECT asset, greatest(value, 1) AS g, strlen(asset) AS n FROM raw") as rule:
        assert rule.topic == "raw"

"""Table ids and export filters: each mistake is one clear Invalid line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lakeport.errors import Invalid
from lakeport.tables import Filters, TableId, parse_since, parse_table_id


def test_a_table_id_has_a_stage_a_bucket_and_a_name() -> None:
    tid = parse_table_id("in.c-main.readings")
    assert tid == TableId(stage="in", bucket="c-main", name="readings")
    assert str(tid) == "in.c-main.readings"
    assert tid.path == "in/c-main/readings"
    assert parse_table_id("out.c-ex_sales-2.Leads_2024").bucket == "c-ex_sales-2"


@pytest.mark.parametrize(("text", "names"), [
    ("readings", "<stage>.<bucket>.<table>"),
    ("in.c-main", "<stage>.<bucket>.<table>"),
    ("in.c-main.a.b", "<stage>.<bucket>.<table>"),
    ("sys.c-main.readings", "stage must be 'in' or 'out'"),
    ("in.main.readings", "bucket must be c-<name>"),
    ("in.c-.readings", "bucket must be c-<name>"),
    ("in.c-main.", "table name"),
    ("in.c-main.a/b", "table name"),
    ("in.c-main...", "<stage>.<bucket>.<table>"),
])
def test_a_bad_table_id_is_one_line_naming_the_problem(text: str, names: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_table_id(text)
    message = str(caught.value)
    assert names in message and repr(text) in message and "\n" not in message


def test_where_column_without_values_is_invalid() -> None:
    with pytest.raises(Invalid, match="where_column 'asset' without where_values"):
        Filters.build(where_column="asset")
    with pytest.raises(Invalid, match="where_column 'asset' without where_values"):
        Filters.build(where_column="asset", where_values=[])
    with pytest.raises(Invalid, match="where_values without where_column"):
        Filters.build(where_values=["a"])


def test_days_together_with_changed_since_is_invalid() -> None:
    with pytest.raises(Invalid, match="days and changed_since both given"):
        Filters.build(days=2, changed_since="2026-01-01T00:00:00Z")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"where_column": "a", "where_values": ["x"], "where_operator": "gt"}, "where_operator"),
    ({"days": -1}, "days must be 0 or more"),
    ({"days": "two"}, "days must be a whole number"),
    ({"limit": -5}, "limit must be 0 or more"),
    ({"changed_since": "yesterday-ish"}, "bad changed_since 'yesterday-ish'"),
])
def test_other_bad_filters(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(Invalid, match=message):
        Filters.build(**kwargs)  # type: ignore[arg-type]


def test_days_become_a_change_time_n_days_back() -> None:
    filters = Filters.build(days="2")  # type: ignore[arg-type]  # the contract writes "2"
    assert filters.since is not None
    expected = datetime.now(UTC) - timedelta(days=2)
    assert abs((filters.since - expected).total_seconds()) < 5


def test_changed_since_accepts_iso_unix_and_relative_times() -> None:
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    assert parse_since("2026-03-01T08:30:00Z") == datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    assert parse_since("2026-03-01T08:30:00+02:00") == datetime(2026, 3, 1, 6, 30, tzinfo=UTC)
    assert parse_since("2026-03-01") == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_since("1772323200") == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_since("2 days ago", now) == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    assert parse_since("-2 days", now) == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    assert parse_since("3 hours ago", now) == datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    naive = datetime(2026, 3, 1, 8, 30)
    assert parse_since(naive) == datetime(2026, 3, 1, 8, 30, tzinfo=UTC)

"""CSV edge cases: values with delimiters, enclosures, quotes and line breaks survive
load -> export with any delimiter and enclosure (RFC 4180 doubling of the enclosure)."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakeport.errors import Invalid
from lakeport.tables import TableStore

T = "in.c-main.texts"
ALPHABET = st.characters(codec="utf-8", exclude_characters="\x00",
                         exclude_categories=("Cs",))
TRICKY = st.sampled_from([",", ";", "\t", "|", '"', "'", "\n", "\r\n", "\r", " ", "", '""',
                          "a,b", 'say "hi"', "it's", "x\ny"])
VALUES = st.lists(st.one_of(TRICKY, st.text(ALPHABET, max_size=12),
                            st.lists(TRICKY, max_size=4).map("".join)), min_size=1,
                  max_size=8)
DIALECTS = st.tuples(st.sampled_from([",", ";", "\t", "|"]), st.sampled_from(['"', "'"]))


def as_csv(rows: list[list[str]], delimiter: str, enclosure: str, header: bool) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, quotechar=enclosure, doublequote=True,
                        quoting=csv.QUOTE_ALL, lineterminator="\n")
    if header:
        writer.writerow(["id", "text"])
    writer.writerows(rows)
    return out.getvalue()


def parse(path: Path, delimiter: str, enclosure: str) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle, delimiter=delimiter, quotechar=enclosure,
                               doublequote=True, strict=True))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=VALUES, dialect=DIALECTS, header=st.booleans())
def test_values_round_trip_through_load_and_export(values: list[str],
                                                   dialect: tuple[str, str],
                                                   header: bool) -> None:
    delimiter, enclosure = dialect
    rows = [[str(i), value] for i, value in enumerate(values)]
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        source = work / "in.csv"
        source.write_text(as_csv(rows, delimiter, enclosure, header), encoding="utf-8",
                          newline="")
        store = TableStore(work / "lake")
        result = store.load(T, source, columns=None if header else ["id", "text"],
                            delimiter=delimiter, enclosure=enclosure)
        assert result.rows_loaded == len(rows)
        stored = store.read(T).to_pylist()
        assert sorted(stored, key=lambda r: int(r["id"])) == [
            {"id": i, "text": t} for i, t in rows]
        store.export(T, work / "out.csv", delimiter=delimiter, enclosure=enclosure)
        exported = parse(work / "out.csv", delimiter, enclosure)
        assert exported[0] == ["id", "text"]
        assert sorted(exported[1:], key=lambda r: int(r[0])) == rows


def test_an_unquoted_export_of_a_value_that_needs_quotes_is_invalid(tmp_path: Path) -> None:
    store = TableStore(tmp_path / "lake")
    (tmp_path / "a.csv").write_text('id,text\n1,"a,b"\n', encoding="utf-8")
    store.load(T, tmp_path / "a.csv")
    with pytest.raises(Invalid, match="without an enclosure"):
        store.export(T, tmp_path / "out.csv", enclosure="")
    store.export(T, tmp_path / "out.csv", enclosure="", delimiter=";")
    assert (tmp_path / "out.csv").read_text() == "id;text\n1;a,b\n"


@pytest.mark.parametrize(("delimiter", "enclosure", "message"), [
    (",,", '"', "the delimiter must be one character"),
    (",", "''", "the enclosure must be one character or empty"),
    (",", ",", "the delimiter and the enclosure are both ','"),
])
def test_bad_dialects(tmp_path: Path, delimiter: str, enclosure: str, message: str) -> None:
    (tmp_path / "a.csv").write_text("id\n1\n", encoding="utf-8")
    with pytest.raises(Invalid, match=message):
        TableStore(tmp_path / "lake").load(T, tmp_path / "a.csv", delimiter=delimiter,
                                           enclosure=enclosure)

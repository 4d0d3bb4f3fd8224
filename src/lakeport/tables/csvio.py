"""CSV in and out of tables: RFC 4180 with any delimiter and enclosure.

A load source is one CSV file or a folder of CSV slices loaded as one table: all with the
same header row, or all headless when the columns are given. The files are read as a stream
of record batches so a big load never has to fit in memory; the headers of every slice are
checked before a row is written.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from lakeport.errors import Invalid, NotFound

BLOCK_SIZE = 16 << 20


def csv_files(source: str | os.PathLike[str]) -> list[Path]:
    """The CSV files of ``source``: the file itself, or a folder's slices in name order
    (hidden files and ``.manifest`` files left out)."""
    path = Path(source)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                      and not p.name.endswith(".manifest"))
    if not path.exists():
        raise NotFound(f"CSV source {str(path)!r} does not exist")
    return [path]


def check_dialect(delimiter: str, enclosure: str) -> None:
    """One-character delimiter; enclosure of one character or empty (no quoting)."""
    if len(delimiter) != 1:
        raise Invalid(f"the delimiter must be one character, not {delimiter!r}")
    if len(enclosure) > 1:
        raise Invalid(f"the enclosure must be one character or empty, not {enclosure!r}")
    if enclosure and enclosure == delimiter:
        raise Invalid(f"the delimiter and the enclosure are both {delimiter!r}")
    if delimiter in "\r\n" or enclosure in ("\r", "\n"):
        raise Invalid("the delimiter and the enclosure cannot be line breaks")


def _parse_options(delimiter: str, enclosure: str) -> pacsv.ParseOptions:
    return pacsv.ParseOptions(delimiter=delimiter, quote_char=enclosure or False,
                              double_quote=True, escape_char=False, newlines_in_values=True)


class CsvSource:
    """A validated CSV source: its column names and a stream of its rows as record batches
    (whose types are ``types``, strings for columns not named there)."""

    def __init__(self, source: str | os.PathLike[str], *, columns: list[str] | None,
                 delimiter: str, enclosure: str, types: dict[str, pa.DataType]) -> None:
        check_dialect(delimiter, enclosure)
        self.files = csv_files(source)
        self.headless = bool(columns)
        self.parse = _parse_options(delimiter, enclosure)
        self.types = types
        if columns:
            self.columns = list(columns)
        elif not self.files:
            raise Invalid(f"CSV folder {str(source)!r} has no slices and no columns are given: "
                          "nothing tells the table's columns")
        else:
            headers = [(path, self._header(path)) for path in self.files]
            self.columns = headers[0][1]
            for path, header in headers[1:]:
                if header != self.columns:
                    raise Invalid(f"CSV slice {path.name!r} has the header "
                                  f"{','.join(header)}, but {headers[0][0].name!r} has "
                                  f"{','.join(self.columns)}: all slices need the same header")
        self.failure: Exception | None = None

    def _header(self, path: Path) -> list[str]:
        if path.stat().st_size == 0:
            raise Invalid(f"CSV file {path.name!r} is empty: expected a header row "
                          "(or give the columns for a headless CSV)")
        try:
            reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 20),
                                    parse_options=self.parse)
        except pa.ArrowInvalid as exc:
            raise Invalid(f"CSV file {path.name!r}: {_first_line(exc)}") from exc
        return list(reader.schema.names)

    def schema(self) -> pa.Schema:
        return pa.schema([(c, self.types.get(c, pa.string())) for c in self.columns])

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Every row of every file; a parse error is kept in :attr:`failure` and re-raised."""
        convert = pacsv.ConvertOptions(column_types=self.schema(), strings_can_be_null=False,
                                       quoted_strings_can_be_null=False)
        read = pacsv.ReadOptions(block_size=BLOCK_SIZE,
                                 column_names=self.columns if self.headless else None)
        for path in self.files:
            if path.stat().st_size == 0:
                continue
            try:
                reader = pacsv.open_csv(path, read_options=read, parse_options=self.parse,
                                        convert_options=convert)
                for batch in reader:
                    yield batch.select(self.columns)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                self.failure = Invalid(f"CSV file {path.name!r}: {_first_line(exc)}")
                raise self.failure from exc

    def read_all(self) -> pa.Table:
        """All rows as one table."""
        return pa.Table.from_batches(list(self.batches()), schema=self.schema())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


UTC_NAMES = ("UTC", "utc", "Etc/UTC", "+00:00", "Z")


def text_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with UTC timestamps as strings (see :func:`utc_as_text`)."""
    return pa.schema([pa.field(f.name, pa.string()) if _utc_timestamp(f.type) else f
                      for f in schema])


def _utc_timestamp(kind: pa.DataType) -> bool:
    return pa.types.is_timestamp(kind) and kind.tz in UTC_NAMES


def utc_as_text(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """UTC timestamps as ``2026-01-31 12:00:00.000000Z`` text: pyarrow formats a zoned time
    thirty times slower than a plain one, and the text is the same."""
    arrays = []
    for column, field in zip(batch.columns, batch.schema, strict=True):
        if _utc_timestamp(field.type):
            plain = column.cast(pa.timestamp(field.type.unit)).cast(pa.string())
            column = pc.binary_join_element_wise(plain, pa.scalar("Z"), "")
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def write_csv(batches: Iterator[pa.RecordBatch], schema: pa.Schema, dest: Path, *,
              delimiter: str = ",", enclosure: str = '"', label: str | None = None) -> int:
    """Write the batches to ``dest`` (named ``label`` in errors) as CSV with a header row;
    return the rows written."""
    check_dialect(delimiter, enclosure)
    label = label or dest.name
    if enclosure not in ('"', ""):
        return _write_csv_duckdb(batches, schema, dest, delimiter, enclosure)
    options = pacsv.WriteOptions(include_header=bool(enclosure), delimiter=delimiter,
                                 quoting_style="needed" if enclosure else "none")
    rows = 0
    text = text_schema(schema)
    try:
        with dest.open("wb") as out:
            if not enclosure:  # pyarrow quotes a header row in any style
                bad = [n for n in schema.names if delimiter in n or "\n" in n or "\r" in n]
                if bad:
                    raise Invalid(f"cannot write {label!r} without an enclosure: column "
                                  f"name {bad[0]!r} holds the delimiter or a line break")
                out.write((delimiter.join(schema.names) + "\n").encode())
            with pacsv.CSVWriter(out, text, write_options=options) as writer:
                for batch in batches:
                    writer.write_batch(utc_as_text(batch, text))
                    rows += batch.num_rows
    except pa.ArrowInvalid as exc:
        raise Invalid(f"cannot write {label!r} without an enclosure: "
                      f"{_first_line(exc)}") from exc
    return rows


def _write_csv_duckdb(batches: Iterator[pa.RecordBatch], schema: pa.Schema, dest: Path,
                      delimiter: str, enclosure: str) -> int:
    """CSV with an enclosure other than ``"`` (pyarrow writes only that one)."""
    try:
        import duckdb
    except ImportError:
        raise Invalid("an enclosure other than '\"' needs duckdb: pip install "
                      "'lakeport[delta]'") from None

    counted = [0]

    def counting() -> Iterator[pa.RecordBatch]:
        for batch in batches:
            counted[0] += batch.num_rows
            yield batch

    source = pa.RecordBatchReader.from_batches(schema, counting())
    quote = enclosure.replace("'", "''")
    sep = delimiter.replace("'", "''")
    target = str(dest).replace("'", "''")
    with duckdb.connect() as con:
        con.register("source", source)
        con.execute(f"COPY (SELECT * FROM source) TO '{target}' (FORMAT csv, HEADER true, "
                    f"DELIMITER '{sep}', QUOTE '{quote}', ESCAPE '{quote}')")
    return counted[0]


__all__ = ["CsvSource", "check_dialect", "csv_files", "write_csv"]

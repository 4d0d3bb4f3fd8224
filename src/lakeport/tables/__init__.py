"""Storage tables: Delta tables named like ``in.c-main.readings`` with a primary key, column
metadata and a change time per row; loads (full, append, upsert, ``delete_where`` in the same
commit) and exports with the component contract's filters.

>>> store = TableStore("/data/lake")                                      # doctest: +SKIP
>>> store.load("in.c-main.readings", "readings.csv", incremental=True,   # doctest: +SKIP
...            primary_key=["id"])
"""

from lakeport.tables.exports import Filters, parse_since
from lakeport.tables.ids import (
    CHANGED,
    ExportResult,
    LoadResult,
    TableId,
    TableInfo,
    parse_table_id,
)
from lakeport.tables.store import TableStore

__all__ = ["CHANGED", "ExportResult", "Filters", "LoadResult", "TableId", "TableInfo",
           "TableStore", "parse_since", "parse_table_id"]

"""Insert many rows at once, with the driver doing the binding.

`session.execute(insert(table), rows)` has SQLAlchemy build and process a parameter dict per row, which
costs more than SQLite itself for the hundred thousand tier rows and change records of an import. Here,
on SQLite, the statement is written once and the driver binds plain tuples: each column goes through its
type's conversion (`Float`, `DateTime`) as SQLAlchemy would, but a column at a time, and values that every
row shares (a poll's id and timestamps) are given, and converted, once. Other drivers (psycopg) get the
rows through SQLAlchemy's own executemany.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from itertools import repeat
from typing import Any

from sqlalchemy import bindparam, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import TableClause


def insert_many(
    session: Session,
    table: TableClause,
    names: Sequence[str],
    rows: Sequence[Sequence[Any]],
    same: Mapping[str, Any] | None = None,
) -> None:
    """INSERT `rows` (values in the order of `names`), each with the values of `same` too, into `table`."""
    if not rows:
        return
    same = same or {}
    unknown = sorted({*names, *same} - set(table.c.keys()))
    if unknown:  # SQLAlchemy's executemany would drop them without a word
        raise KeyError(f"{table.name} has no column {', '.join(unknown)}")
    conn = session.connection()
    dialect = conn.dialect
    if dialect.paramstyle != "qmark":
        session.execute(insert(table), [{**dict(zip(names, row, strict=True)), **same} for row in rows])
        return
    # Column-wise, in the table's column order (the order the statement binds): each column's values
    # converted by the dialect's own type (the generic type's `bind_processor` is None), a shared value once.
    varying = dict(zip(names, zip(*rows, strict=True), strict=True))
    columns = tuple(c.name for c in table.c if c.name in varying or c.name in same)
    converted: list[Iterable[Any]] = []
    for name in columns:
        convert = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if name in same:
            converted.append(repeat(convert(same[name]) if convert else same[name], len(rows)))
        else:
            converted.append(map(convert, varying[name]) if convert else varying[name])
    conn.exec_driver_sql(_statement(table, columns, dialect), list(zip(*converted, strict=True)))


@lru_cache(maxsize=32)
def _statement(table: TableClause, columns: tuple[str, ...], dialect: Dialect) -> str:
    """The INSERT of `columns` (in the table's order) for `dialect`, compiled once."""
    compiled = insert(table).values({n: bindparam(n) for n in columns}).compile(dialect=dialect)
    assert compiled.positiontup == list(columns), (compiled.positiontup, columns)
    return str(compiled)

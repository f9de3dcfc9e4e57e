"""Insert many rows at once, with the driver doing the binding.

`session.execute(insert(table), rows)` has SQLAlchemy build and process a parameter dict per row, which
costs more than SQLite itself for the hundred thousand tier rows and change records of an import. Here
the statement is compiled once for the connection's dialect and the driver binds plain tuples; only the
columns whose type converts values on the way in (datetimes on SQLite) go through that conversion, once
per distinct value (a poll's rows share their timestamps). Dialects that bind by name (psycopg) get the
same rows as SQLAlchemy's own executemany would give them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import bindparam, insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import TableClause


def insert_many(session: Session, table: TableClause, names: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """INSERT `rows` (values in the order of `names`) into `table`, in the session's transaction."""
    if not rows:
        return
    conn = session.connection()
    dialect = conn.dialect
    if not dialect.positional:
        session.execute(insert(table), [dict(zip(names, row, strict=True)) for row in rows])
        return
    compiled = insert(table).values({n: bindparam(n) for n in names}).compile(dialect=dialect)
    assert compiled.positiontup is not None
    order = [names.index(n) for n in compiled.positiontup]
    types = [table.c[n].type.dialect_impl(dialect) for n in names]  # the dialect's own type: its conversion
    converters = [(i, p) for i, t in enumerate(types) if (p := t.bind_processor(dialect))]
    converted = _converted(rows, converters)
    if order == sorted(order):  # compiled in the order given: the rows go as they are
        params = [row if type(row) is tuple else tuple(row) for row in converted]
    else:
        params = [tuple(row[i] for i in order) for row in converted]
    conn.exec_driver_sql(str(compiled), params)


def _converted(rows: Sequence[Sequence[Any]], converters: Sequence[tuple[int, Callable[[Any], Any]]]) -> Any:
    if not converters:
        return rows
    seen: dict[tuple[int, Any], Any] = {}

    def convert(i: int, convert_one: Callable[[Any], Any], value: Any) -> Any:
        key = (i, value)
        if key not in seen:
            seen[key] = convert_one(value)
        return seen[key]

    out = []
    for row in rows:
        values = list(row)
        for i, convert_one in converters:
            values[i] = convert(i, convert_one, values[i])
        out.append(values)
    return out

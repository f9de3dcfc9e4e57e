"""Reading the dashboard's HTML in tests: its tables, cell by cell, with the standard library's parser."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any


@dataclass
class Cell:
    tag: str  # td or th
    text: str
    classes: set[str]
    attrs: dict[str, str]


@dataclass
class Row:
    classes: set[str]
    cells: list[Cell] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.cells]


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[Row]] = {}
        self.stack: list[str] = []  # ids of the open tables ("" for one without an id)
        self.cell: Cell | None = None
        self.blocks: dict[str, str] = {}
        self.block: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "table":
            self.stack.append(a.get("id", ""))
            self.tables.setdefault(self.stack[-1], [])
        elif tag == "tr" and self.stack:
            self.tables[self.stack[-1]].append(Row(set(a.get("class", "").split())))
        elif tag in ("td", "th") and self.stack and self.tables[self.stack[-1]]:
            self.cell = Cell(tag, "", set(a.get("class", "").split()), a)
        elif tag == "script" and a.get("type") == "application/json":
            self.block = a.get("data-chart", "")
            self.blocks[self.block] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None and self.stack:
            self.cell.text = " ".join(self.cell.text.split())
            self.tables[self.stack[-1]][-1].cells.append(self.cell)
            self.cell = None
        elif tag == "table" and self.stack:
            self.stack.pop()
        elif tag == "script":
            self.block = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.text += data
        if self.block is not None:
            self.blocks[self.block] += data


def body_rows(html: str, table_id: str) -> list[Row]:
    """The rows of table `table_id` that hold data cells (`td`)."""
    parser = _Tables()
    parser.feed(html)
    return [r for r in parser.tables[table_id] if any(c.tag == "td" for c in r.cells)]


def chart_data(html: str, chart_id: str) -> Any:
    """The figure in the page's JSON block for chart `chart_id`, as the browser's JSON.parse reads it."""
    parser = _Tables()
    parser.feed(html)
    return json.loads(parser.blocks[chart_id])

"""snapshots.numbers: the one rule each kind of figure follows in every output, pinned by table."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from snapshots.numbers import adr, leverage, money, num, pct

CASES: list[tuple[Callable[[float | None], str], float | None, str]] = [
    (num, None, "—"),
    (num, 0.0, "0"),
    (num, 1234.5, "1,234.5"),
    (num, 56001.512345678, "56,001.51235"),
    (num, 0.000123, "0.000123"),
    (num, -2500.0, "-2,500"),
    (num, 1e15, "1e+15"),
    (money, None, "—"),
    (money, 1234.5, "1,234.50"),
    (money, 1.0, "1.00"),
    (money, 0.00012345678, "0.000123457"),
    (money, -0.5, "-0.5"),
    (pct, None, "—"),
    (pct, 0.004, "0.4%"),
    (pct, 0.0125, "1.25%"),
    (pct, 0.123456, "12.35%"),
    (adr, None, "—"),
    (adr, 1.5, "1.50 ADR"),
    (leverage, None, "—"),
    (leverage, 125.0, "125×"),
    (leverage, 12.5, "12.5×"),
]


@pytest.mark.parametrize(("fmt", "value", "text"), CASES)
def test_each_kind_of_figure_reads_one_way(fmt: Callable[[float | None], str], value: float | None, text: str) -> None:
    assert fmt(value) == text


def test_num_takes_fewer_digits_for_buffers() -> None:
    assert num(1.23456, 3) == "1.23"

"""How a number reads in every output: the CLI's tables and lines, the alerts' bodies, later the web pages.

One rule per kind of figure, and `—` for a figure that is not known:

    num(1234.5)       1,234.5      prices, sizes and amounts in the CLI: up to 10 significant digits
    money(1234.5)     1,234.50     amounts and prices in alerts: cents, or 6 significant digits below 1
    pct(0.0125)       1.25%        rates and distances: up to 4 significant digits
    adr(1.5)          1.50 ADR     a buffer in average daily ranges
    leverage(20)      20×          a tier's maximum leverage

The JSON outputs and webhook payloads keep numbers unformatted; only text for people goes through here.
"""

from __future__ import annotations

#: What a figure that is not known reads as.
MISSING = "—"


def num(x: float | None, digits: int = 10) -> str:
    if x is None:
        return MISSING
    return f"{x:,.{digits}g}" if abs(x) < 1e15 else f"{x:.4g}"


def money(x: float | None) -> str:
    if x is None:
        return MISSING
    return f"{x:,.2f}" if abs(x) >= 1 else f"{x:.6g}"


def pct(x: float | None) -> str:
    return MISSING if x is None else f"{x * 100:.4g}%"


def adr(x: float | None) -> str:
    return MISSING if x is None else f"{x:.2f} ADR"


def leverage(x: float | None) -> str:
    return MISSING if x is None else f"{x:g}×"

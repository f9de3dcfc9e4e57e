"""Errors of the snapshot store.

    TierdriftError                 (root of every error the project raises on purpose)
     └─ SnapshotError
         ├─ PayloadError           a payload or file is not shaped as expected
         │   └─ InvalidTable       a table breaks a rule of domain doc §1
         ├─ NotFound               unknown symbol/source, or a time before any history
         └─ OutOfOrder             a snapshot older than the history already stored

The CLI is the only place that turns these into a message and an exit code. Messages are one line and
never carry a secret.
"""

from __future__ import annotations


class TierdriftError(Exception):
    """Root of every deliberate tierdrift error. `str(err)` is a one-line user message."""


class SnapshotError(TierdriftError):
    pass


class PayloadError(SnapshotError):
    pass


class InvalidTable(PayloadError):
    def __init__(self, symbol: str, reason: str) -> None:
        super().__init__(f"{symbol}: {reason}")
        self.symbol = symbol
        self.reason = reason


class NotFound(SnapshotError):
    pass


class OutOfOrder(SnapshotError):
    pass

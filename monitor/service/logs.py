"""Logging for the daemon: one line per poll and per alert delivery, plain or JSON, secrets redacted."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

from monitor.exchanges.errors import redact
from snapshots.printable import printable


class RedactingFilter(logging.Filter):
    """Replace every known secret (and signed-URL signatures) in a record's final message."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = redact(record.getMessage(), self.secrets)
        if record.exc_info:
            # Tracebacks can quote URLs and arguments: log the exception's type, never its text.
            message += f" [{record.exc_info[0].__name__ if record.exc_info[0] else 'error'}]"
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = message, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            },
            ensure_ascii=False,
        )


class PlainFormatter(logging.Formatter):
    """One line per record: a message quoting a symbol or a server's answer has its control characters
    (ESC, `\r`, newlines) shown as escapes, so it can neither act on the terminal nor forge a record."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time of the record, not at set-up time."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def setup(fmt: str, level: str, secrets: Iterable[str]) -> None:
    handler = StderrHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(PlainFormatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("apscheduler", "alembic", "httpx", "httpcore", "urllib3", "ccxt"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

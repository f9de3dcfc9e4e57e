"""The CLI's error boundary: whatever a command raises leaves the process as one line on stderr and an exit code.

    TierdriftError               `error: <its message>`                                        exit 1
    a usage error (Click)        `error: <message> (see `tierdrift … --help`)`                  exit 2
    a storage failure            `error: database or disk is full (…): nothing was written`    exit 1
    anything else (a bug)        `error: unexpected <Type>: <message> (a bug: please report it)` exit 1

Storage failures are described by `monitor.store.storage`. Every line has its control characters escaped; a
database URL in it is shown without its password, and a driver's own words have the password replaced by
`***`. The traceback is printed only when TIERDRIFT_DEBUG is set.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

from monitor.cli import output
from monitor.config.paths import redact_url, url_secrets
from monitor.store import storage
from snapshots.errors import TierdriftError
from snapshots.printable import printable

#: An unexpected error's own message is clipped to this many characters (a bug may quote a whole payload).
UNEXPECTED_LIMIT = 300


def debug_requested() -> bool:
    """TIERDRIFT_DEBUG=1 (any value but empty or 0): print tracebacks too. A process switch, not a setting."""
    return os.environ.get("TIERDRIFT_DEBUG", "") not in ("", "0")


def not_utf8(argv: list[str]) -> str | None:
    """The usage error for an argument that is not valid UTF-8 (Python hands such bytes over as lone
    surrogates, which no database, file name or message can carry), or None."""
    for i, arg in enumerate(argv, start=1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return f"error: argument {i} is not valid UTF-8: {printable(arg, limit=60)}"
    return None


def report(exc: BaseException, url: str | None, *, debug: bool = False) -> int:
    """Print `exc` as one line on stderr (after its traceback when `debug`) and return the exit code."""
    typer = _typer()
    if typer is not None and isinstance(exc, typer.Exit):
        return int(exc.exit_code)
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else 1
    if _is_click_error(exc) and type(exc).__name__ == "NoArgsIsHelpError":
        shown: Any = exc
        shown.show()  # the help text of a command given no arguments: not an error line
        return int(shown.exit_code)
    if isinstance(exc, BrokenPipeError):
        # The reader of our output went away (`| head`): nothing more can be said on stdout, nor needs to be.
        _silence_stdout()
        return 1
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    line, code = _line(exc, url)
    print(line, file=sys.stderr, flush=True)
    return code


def _line(exc: BaseException, url: str | None) -> tuple[str, int]:
    if isinstance(exc, TierdriftError):
        return output.error_text(exc), 1
    typer = _typer()
    if typer is not None and isinstance(exc, typer.Abort):
        return "aborted", 1
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", 130
    if _is_click_error(exc):
        return _usage_line(exc)
    known = storage.describe(exc, url)
    if known is not None:
        return f"error: {printable(known)}", 1
    where = f" (database {redact_url(url)})" if url and type(exc).__module__.startswith("sqlalchemy") else ""
    detail = (str(exc).strip().splitlines() or [""])[0]
    for secret in url_secrets(url or ""):  # a driver's message may quote the URL it was given
        detail = detail.replace(secret, "***")
    detail = printable(detail, limit=UNEXPECTED_LIMIT)
    return f"error: unexpected {type(exc).__name__}: {detail}{where} (a bug: please report it)", 1


def _typer() -> Any:
    """Typer, if this process has imported it, else None: the fast read-only path (monitor.cli.fast) runs
    without it, and then no Typer exception can exist. Importing it here would cost that path 25 ms."""
    return sys.modules.get("typer")


def _is_click_error(exc: BaseException) -> bool:
    # Typer ≥ 0.26 vendors Click (typer._click) and older versions use Click itself: test the interface.
    return hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)


def _usage_line(exc: Any) -> tuple[str, int]:
    message = printable(" ".join(str(exc.format_message()).split()))
    code = int(exc.exit_code)
    ctx = getattr(exc, "ctx", None)
    if code == 2 and ctx is not None:
        return f"error: {message} (see `{ctx.command_path} --help`)", code
    return f"error: {message}", code


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (tests capture stdout)
        pass

"""The `tierdrift` command line.

This is the only place that turns an exception into a message and an exit code: every deliberate error
is a `TierdriftError` whose text is one line; it is printed as `error: …` with exit code 1. Usage errors
exit with 2 (Typer). The Typer app is in monitor.cli.full; a plain invocation of a read-only command runs
without it (monitor.cli.fast), so this module imports neither Typer nor the other commands.
"""

from __future__ import annotations

import sys
from typing import Any

from monitor.cli import errors as cli_errors
from monitor.cli import fast
from monitor.cli.state import Context
from snapshots.errors import TierdriftError


def main() -> None:
    sys.exit(run(sys.argv[1:], debug=cli_errors.debug_requested()))


def run(argv: list[str], *, debug: bool = False) -> int:
    """Run the command line on `argv` and return the exit code. This is the error boundary: whatever goes
    wrong is printed as one line on stderr (monitor.cli.errors), with its traceback only when `debug`."""
    bad = cli_errors.not_utf8(argv)
    if bad is not None:
        print(bad, file=sys.stderr)
        return 2
    context = Context()
    try:
        call = fast.parse(argv)
        if call is not None:
            code: Any = fast.invoke(call, context)
        else:
            from monitor.cli import full  # Typer and every command: what the fast path does without

            code = full.app_for(argv)(args=argv, prog_name="tierdrift", standalone_mode=False, obj=context)
    except BaseException as exc:  # the boundary: every exception becomes one line and an exit code
        return cli_errors.report(exc, _url_of(context), debug=debug)
    if code == 130:  # Click turns Ctrl-C into exit code 130, silently
        print("interrupted", file=sys.stderr)
    return code if isinstance(code, int) else 0


def _url_of(context: Context) -> str | None:
    """The database URL the failed command used, to name it in the message (None if it cannot be told)."""
    try:
        return context.url
    except TierdriftError:
        return None


#: What this module gives of monitor.cli.full, importing it on first use. A closed list: `from monitor.cli
#: import output` asks for the attribute before it imports the submodule, which must not load Typer.
LAZY = ("app", "app_for", "FAST_COMMANDS")


def __getattr__(name: str) -> Any:
    if name not in LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from monitor.cli import full

    return getattr(full, name)

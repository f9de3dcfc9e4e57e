"""The fast path of the read-only commands: a plain invocation runs without Typer.

Typer's import and the app it builds cost about 40 ms, as much again as the whole answer of
`tiers SYMBOL --at T`. `parse` reads a plain invocation of `tiers`, `changes`, `history`, `sources`,
`polls` or `positions list` itself (the root's `--config`/`--db`, then the command, its arguments and
options, `--opt value` or `--opt=value`) and `invoke` calls the command's body in monitor.cli.reads, as
the Typer command would.

It never decides anything Typer would decide differently: whatever is not plainly valid (`--help`, an
unknown, repeated or missing option, a value that is empty, starts with `-` or is out of range, `--`, an
extra argument, `--symbol` without `--source`) returns None, and the full Typer app parses `argv` and
writes its own help or usage error. `SPECS` mirrors the Typer commands' parameters; tests/cli/test_fast.py
checks it against them and compares the output, stderr and exit code of both paths.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, cast

from monitor.cli import reads
from monitor.cli.state import MAX_INT, Context

#: Root options (before the command): option → parameter.
ROOT_OPTIONS = {"--config": "config", "--db": "db"}


@dataclass(frozen=True)
class Spec:
    """A read-only command's parameters as its Typer command declares them."""

    body: Callable[..., None]
    arguments: tuple[str, ...] = ()  # required positional arguments, in order
    options: dict[str, str] = field(default_factory=dict)  # option (long or short) → parameter, taking a text
    counts: dict[str, str] = field(default_factory=dict)  # option → parameter, taking an integer 1…MAX_INT
    zero: tuple[str, ...] = ()  # parameters of `counts` that also take 0
    flags: dict[str, str] = field(default_factory=dict)  # boolean flag → parameter
    required: tuple[str, ...] = ()  # options that must be given
    needs: dict[str, str] = field(default_factory=dict)  # parameter → the one it needs (a usage error without)

    def names(self) -> dict[str, str]:
        return {**self.options, **self.counts, **self.flags}


SOURCE = {"--source": "source", "-s": "source"}
JSON = {"--json": "as_json"}
SPECS: dict[str, Spec] = {
    "tiers": Spec(reads.tiers, ("symbol",), {**SOURCE, "--at": "at"}, flags=JSON, required=("source",)),
    "changes": Spec(
        reads.changes,
        options={**SOURCE, "--symbol": "symbol", "--since": "since", "--until": "until"},
        counts={"--limit": "limit"},
        flags={"--all": "show_all", **JSON},
        needs={"symbol": "source"},
    ),
    "history": Spec(reads.history, ("symbol",), SOURCE, flags=JSON, required=("source",)),
    "sources": Spec(reads.sources, flags=JSON),
    "polls": Spec(reads.polls, options=SOURCE, counts={"--limit": "limit"}, flags=JSON),
    "positions list": Spec(
        reads.positions_list, counts={"--limit": "limit"}, zero=("limit",), flags={"--all": "all_", **JSON}
    ),
}
#: Groups with a command of SPECS: `positions list` is the words `positions` and `list`.
GROUPS = frozenset(name.split()[0] for name in SPECS if " " in name)


@dataclass(frozen=True)
class Call:
    """A parsed invocation: the root options and the body's keyword arguments."""

    command: str
    config: Path | None
    db: str | None
    params: dict[str, Any]


def parse(argv: list[str]) -> Call | None:
    """The call `argv` makes when it plainly runs a read-only command, or None to leave it to Typer."""
    root: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        taken = _option(argv, i, ROOT_OPTIONS, root)
        if taken is None:
            return None
        i += taken
    if i < len(argv) - 1 and argv[i] in GROUPS:  # the group's own options (--help) are Typer's
        command, args = f"{argv[i]} {argv[i + 1]}", argv[i + 2 :]
    elif i < len(argv):
        command, args = argv[i], argv[i + 1 :]
    else:
        return None
    spec = SPECS.get(command)
    params = None if spec is None else _command(spec, args)
    if params is None:
        return None
    config = root.get("config")
    return Call(command, Path(config) if config is not None else None, root.get("db"), params)


def _command(spec: Spec, args: list[str]) -> dict[str, Any] | None:
    texts: dict[str, str] = {}
    flags: set[str] = set()
    positional: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word in spec.flags:
            if spec.flags[word] in flags:
                return None  # repeated: Typer's rules
            flags.add(spec.flags[word])
            i += 1
        elif word.startswith("-"):
            taken = _option(args, i, {**spec.options, **spec.counts}, texts)
            if taken is None:
                return None
            i += taken
        elif word:
            positional.append(word)
            i += 1
        else:
            return None  # an empty argument: Typer's message names it
    if len(positional) != len(spec.arguments) or any(name not in texts for name in spec.required):
        return None
    params: dict[str, Any] = dict(zip(spec.arguments, positional, strict=True))
    for name in spec.counts.values():
        if name in texts:
            count = _count(texts[name], 0 if name in spec.zero else 1)
            if count is None:
                return None
            params[name] = count
    params.update((name, texts[name]) for name in spec.options.values() if name in texts)
    params.update((name, True) for name in flags)
    if any(name in params and other not in params for name, other in spec.needs.items()):
        return None  # e.g. `--symbol needs --source`, the Typer command's usage error
    return params


def _option(args: list[str], i: int, known: dict[str, str], into: dict[str, str]) -> int | None:
    """Read the option with a value at `args[i]` into `into`; how many words it took, or None to decline."""
    word = args[i]
    option, eq, value = word.partition("=")
    if option not in known or (eq and not option.startswith("--")):
        return None  # unknown, --help, --, or `-s=x` (which Click reads as the value `=x`)
    taken = 1
    if not eq:
        if i + 1 == len(args):
            return None
        value, taken = args[i + 1], 2
    name = known[option]
    if not value or value.startswith("-") or name in into:
        return None
    into[name] = value
    return taken


def _count(text: str, least: int = 1) -> int | None:
    """An integer `least`…MAX_INT in plain digits (`0` itself, if `least` is 0, but no leading zero);
    None for anything else (Typer says what is wrong with it)."""
    if text == "0":
        return 0 if least == 0 else None
    if not (text.isascii() and text.isdigit()) or text.startswith("0"):
        return None
    value = int(text)
    return value if least <= value <= MAX_INT else None


def invoke(call: Call, context: Context) -> int:
    """Run `call` on `context` as Typer runs the command (its root callback, then the body), with the
    same exit codes: 0 on success, 130 on Ctrl-C, 1 for a broken pipe. Other exceptions propagate."""
    context.config, context.database_url = call.config, call.db
    try:
        SPECS[call.command].body(context, **call.params)
    except KeyboardInterrupt:
        return 130  # as Typer: Exit(130), which the boundary reports as `interrupted`
    except EOFError as exc:
        import typer  # as Typer: a new line on stderr, then Abort (`aborted`, exit 1); never on these commands

        print(file=sys.stderr)
        raise typer.Abort() from exc
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        sys.stdout, sys.stderr = cast(TextIO, _Pacified(sys.stdout)), cast(TextIO, _Pacified(sys.stderr))
        return 1
    return 0


class _Pacified:
    """A stream whose flush ignores a broken pipe, as Click leaves stdout and stderr after one (so that
    the interpreter's last flush at exit reports nothing)."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped

    def flush(self) -> None:
        try:
            self.wrapped.flush()
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)

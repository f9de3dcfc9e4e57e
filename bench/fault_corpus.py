"""Hostile inputs for every command of the CLI: edge numbers, odd times, outside text, broken files and configs.

`commands(ctx)` yields `Case`s: the argument list, whether the command writes (then a failure must leave the
database as it was), and the files it needs, written under `ctx.tmp`.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

NUMBERS = ("0", "-0", "-1", "nan", "inf", "-inf", "1e309", "1e-320", "9" * 30, str(2**63), "", "abc", "1,5", "0x10")
TIMES = (
    "2062-01-01",
    "2062-01-01T00:00:00Z",
    "0000-00-00",
    "9999-12-31T23:59:59",
    "10000-01-01",
    "1e20",
    "yesterday",
    "",
    "2026-13-01",
    "2026-02-30",
    "2026-01-01T25:00",
    "2026-01-01T00:00:00+25:00",
    "1900-01-01",
)
TEXTS = (
    "",
    " ",
    "[/]",
    "[link=http://evil.example]x[/link]",
    "\x1b[31mRED",
    "a\nb",
    "\u202eevil",
    "<b>x</b>",
    "x" * 5000,
    "'; DROP TABLE poll;--",
    "😀",
)
INTEGERS = ("0", "-1", str(2**63), str(2**64), "1e3", "abc", "", "9" * 40)


@dataclass(frozen=True)
class Case:
    label: str
    args: list[str]
    writes: bool = False


def _vary(label: str, base: list[str], option: str, values: tuple[str, ...], writes: bool) -> Iterator[Case]:
    for v in values:
        if option in base:
            i = base.index(option)
            args = [*base[: i + 1], v, *base[i + 2 :]]
        else:
            args = [*base, option, v]
        yield Case(f"{label} {option}={v[:20]!r}", args, writes)


def commands(tmp: Path, symbol: str) -> Iterator[Case]:
    """Every command with each of its inputs made hostile, one at a time."""
    add = ["positions", "add", "-s", "binance-usdm", "--symbol", symbol, "--side", "long", "--entry", "100"]
    add += ["--notional", "1000", "--margin", "250"]
    for opt in ("--entry", "--notional", "--margin", "--adr", "--qty"):
        yield from _vary("positions add", add, opt, NUMBERS, True)
    inverse = ["positions", "add", "-s", "binance-coinm", "--symbol", "BTCUSD_PERP", "--side", "short"]
    inverse += ["--entry", "100", "--contracts", "10", "--margin", "0.1"]
    for opt in ("--contracts", "--contract-size"):
        yield from _vary("positions add (inverse)", inverse, opt, NUMBERS, True)
    for opt in ("--side", "--mode", "--symbol", "-s", "--note"):
        yield from _vary("positions add", add, opt, TEXTS, True)
    yield from _vary("positions add", add, "--opened-at", TIMES, True)
    liq = ["liq", "-s", "binance-usdm", "--symbol", symbol, "--side", "long", "--entry", "100", "--notional", "1000"]
    liq += ["--margin", "250", "--mark", "99"]
    for opt in ("--entry", "--margin", "--mark", "--adr", "--notional"):
        yield from _vary("liq", liq, opt, NUMBERS, False)
    yield from _vary("liq", liq, "--at", TIMES, False)
    yield from _vary("liq", liq, "--symbol", TEXTS, False)
    acct = ["account", "set", "-s", "binance-usdm", "--wallet-balance", "1000"]
    yield from _vary("account set", acct, "--wallet-balance", NUMBERS, True)
    yield from _vary("account set", acct, "-s", TEXTS, True)
    for sub in ("close", "show"):
        for v in (*INTEGERS, "[/]", "\x1b[2J"):
            yield Case(f"positions {sub} {v[:20]!r}", ["positions", sub, v], sub == "close")
    tiers = ["tiers", symbol, "-s", "binance-usdm"]
    yield from _vary("tiers", tiers, "--at", TIMES, False)
    for v in TEXTS:
        yield Case(f"tiers symbol={v[:20]!r}", ["tiers", v, "-s", "binance-usdm"])
        yield Case(f"tiers source={v[:20]!r}", ["tiers", symbol, "-s", v])
        yield Case(f"history symbol={v[:20]!r}", ["history", v, "-s", "binance-usdm"])
    changes = ["changes", "-s", "binance-usdm"]
    for opt in ("--since", "--until"):
        yield from _vary("changes", changes, opt, TIMES, False)
    yield from _vary("changes", changes, "--limit", INTEGERS, False)
    yield from _vary("changes", changes, "--symbol", TEXTS, False)
    yield from _vary("polls", ["polls"], "--limit", INTEGERS, False)
    yield from _vary("polls", ["polls"], "-s", TEXTS, False)
    yield from _vary("impacts", ["impacts"], "--since", TIMES, False)
    yield from _vary("alerts list", ["alerts", "list"], "--status", TEXTS, False)
    yield from _vary("alerts list", ["alerts", "list"], "--limit", INTEGERS, False)
    yield from files(tmp)


def files(tmp: Path) -> Iterator[Case]:
    """`import` and `positions import` of files in unexpected encodings and shapes."""
    good_row = "source,symbol,side,entry,notional,margin\nbinance-usdm,BTCUSDT,long,100,1000,250\n"
    csvs: dict[str, bytes] = {
        "empty": b"",
        "header only": b"source,symbol,side,entry,notional,margin\n",
        "utf-16": good_row.encode("utf-16"),
        "utf-8 BOM": b"\xef\xbb\xbf" + good_row.encode(),
        "latin-1 note": (good_row.strip() + "\n").encode()
        + "binance-usdm,BTCUSDT,long,100,1000,250,café\n".encode("latin-1"),
        "binary": bytes(range(256)) * 4,
        "NUL byte": good_row.replace("BTCUSDT", "BTC\0USDT").encode(),
        "missing column": b"source,symbol,side\nbinance-usdm,BTCUSDT,long\n",
        "unknown column": (good_row.replace("margin\n", "margin,colour\n").replace("250\n", "250,red\n")).encode(),
        "zero entry": good_row.replace(",100,", ",0,").encode(),
        "nan margin": good_row.replace(",250", ",nan").encode(),
        "huge notional": good_row.replace(",1000,", ",1e309,").encode(),
        "future open": (
            good_row.replace("margin\n", "margin,opened_at\n").replace("250\n", "250,2062-01-01\n")
        ).encode(),
        "quoted newline": good_row.replace("BTCUSDT", '"BTC\nUSDT"').encode(),
        "10k columns": (",".join(f"c{i}" for i in range(10_000)) + "\n").encode(),
        "a directory": b"",
    }
    for name, data in csvs.items():
        path = tmp / f"positions-{name.replace(' ', '_')}.csv"
        if name == "a directory":
            path.mkdir(exist_ok=True)
        else:
            path.write_bytes(data)
        yield Case(f"positions import ({name})", ["positions", "import", str(path)], True)
    yield Case("positions import (missing file)", ["positions", "import", str(tmp / "nope.csv")], True)
    entry = {"tier": 1, "minNotional": 0, "maxNotional": 5000, "maintenanceMarginRate": 0.004, "maxLeverage": 125}
    jsons: dict[str, bytes] = {
        "empty": b"",
        "not json": b"<html>nope</html>",
        "a list": b"[1, 2, 3]",
        "a number": b"42",
        "null tiers": json.dumps({"BTC/USDT:USDT": None}).encode(),
        "tiers not a list": json.dumps({"BTC/USDT:USDT": {"tier": 1}}).encode(),
        "deep nesting": b"[" * 100_000 + b"]" * 100_000,
        "huge number": json.dumps({"BTC/USDT:USDT": [{**entry, "maxNotional": 1e308 * 10}]}).encode(),
        "percent as fraction": json.dumps(
            {"BTC/USDT:USDT": [{**entry, "maintenanceMarginRate": 0.4, "maxLeverage": 125}]}
        ).encode(),
        "tier index 2**70": json.dumps({"BTC/USDT:USDT": [{**entry, "tier": 2**70}]}).encode(),
        "utf-16": json.dumps({"BTC/USDT:USDT": [entry]}).encode("utf-16"),
        "latin-1 symbol": json.dumps({"BTCé/USDT:USDT": [entry]}, ensure_ascii=False).encode("latin-1"),
    }
    for name, data in jsons.items():
        path = tmp / f"2026-01-02-{name.replace(' ', '_').replace('*', '')}.json"
        path.write_bytes(data)
        yield Case(f"import ({name})", ["import", str(path), "-s", "binance-usdm"], True)
    gz = tmp / "2026-01-03-truncated.json.gz"
    gz.write_bytes(gzip.compress(json.dumps({"BTC/USDT:USDT": [entry]}).encode())[:-12])
    yield Case("import (truncated gzip)", ["import", str(gz), "-s", "binance-usdm"], True)
    future = tmp / "2062-01-01-future.json"
    future.write_text(json.dumps({"BTC/USDT:USDT": [entry]}))
    yield Case("import (file dated 2062)", ["import", str(future), "-s", "binance-usdm"], True)
    valid = tmp / "valid.json"
    valid.write_text(json.dumps({"BTC/USDT:USDT": [entry]}))
    for at in TIMES:
        yield Case(f"import --at={at!r}", ["import", str(valid), "-s", "binance-usdm", "--at", at], True)


def databases(tmp: Path) -> Iterator[tuple[str, str]]:
    """`--db` values that cannot work, for read-only and writing commands alike."""
    garbage = tmp / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    truncated = tmp / "truncated.db"
    truncated.write_bytes(b"SQLite format 3\x00" + b"\x00" * 50)
    (tmp / "adir").mkdir(exist_ok=True)
    yield "missing folder", f"sqlite:///{tmp / 'no' / 'such' / 'folder' / 'x.db'}"
    yield "a directory", f"sqlite:///{tmp / 'adir'}"
    yield "not a database", f"sqlite:///{garbage}"
    yield "truncated database", f"sqlite:///{truncated}"
    yield "unreachable PostgreSQL", "postgresql+psycopg://trader:PGpassFaults77@127.0.0.1:1/tierdrift"
    yield "PostgreSQL password in query", "postgresql+psycopg://127.0.0.1:1/tierdrift?user=t&password=PGpassFaults77"
    yield "unknown dialect", "mysql://u@h/x"
    yield "not a URL", "not a url at all"


def configs(tmp: Path, webhook: str) -> Iterator[tuple[str, str]]:
    """Config files that must be refused at load, each with one line naming the key."""
    yield "unknown key in [binance]", '[binance]\napikey = "AKfaultsKEY7788"\n'
    yield "unknown top-level key", "pol_interval_seconds = 60\n"
    yield "log level LOUD", 'log_level = "LOUD"\n'
    yield "interval inf", "poll_interval_seconds = inf\n"
    yield "timeout nan", "http_timeout = nan\n"
    yield "negative interval", "poll_interval_seconds = -5\n"
    yield "webhook without scheme", '[[channels]]\ntype = "webhook"\nname = "w"\nurl = "127.0.0.1:9/hook"\n'
    yield "webhook bad secret", f'[[channels]]\ntype = "webhook"\nname = "w"\nurl = "{webhook}"\nsecret = "nope"\n'
    yield "unknown source", 'sources = ["binance-spot"]\n'
    yield "port out of range", "health_port = 70000\n"
    yield "not TOML", "this is = = not toml [\n"
    yield "binary", "\x00\x01\x02"
    yield "quarantine share 5", "quarantine_share = 5\n"

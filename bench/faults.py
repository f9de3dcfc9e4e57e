"""Hostile-world run: bad payloads, bad receivers, bad inputs and kills, each counted by its outcome.

Everything goes through the real `tierdrift` process against the loopback fake exchange and loopback
receivers. For every input it records whether it was handled (exit 0, or exit 1/2 with one line of error,
no traceback, no hang), and across the run it counts failed and quarantined polls, false changes (change
records that a fault produced), lost and doubled alerts (at a well-behaved receiver that shares the outbox
with the bad ones), secrets seen in any output or in the database, and the longest delay that one bad
receiver caused to the good one. The table goes into docs/reliability.md.

Usage: python bench/faults.py [--quick] [--out docs/reliability.md] [--json bench/results/faults.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_corpus import commands, configs, databases
from hostile import (
    BAD_RECEIVERS,
    Receiver,
    Run,
    clean_env,
    cli,
    counts,
    database_text,
    fingerprint,
    leaks,
    secret_forms,
)

from monitor import fake_exchange as fx
from monitor.fake_exchange import FakeExchange, FakeTable, FakeTier, Fault, generate_tables

ROOT = Path(__file__).resolve().parents[1]
API_KEY, API_SECRET = "AKfaultsKEY7788", "SKfaultsSECRET9911"
WEBHOOK_SECRET = "whsec_ZmF1bHRzLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm"
SMTP_USER, SMTP_PASSWORD = "trader", "PWfaults3344"
PG_PASSWORD = "PGpassFaults77"
N_SYMBOLS = {"binance-usdm": 12, "binance-coinm": 6, "bybit-linear": 12, "bybit-inverse": 6}


@dataclass
class Tally:
    """Outcomes of one section of the run."""

    name: str
    tried: int = 0
    handled: int = 0
    failed_polls: int = 0
    quarantined: int = 0
    true_changes_alerted: int = 0
    false_changes: int = 0
    lost: int = 0
    doubled: int = 0
    tracebacks: int = 0
    secrets: int = 0
    hangs: int = 0
    unhandled: list[str] = field(default_factory=list)

    def count(self, label: str, run: Run, forms: list[str]) -> bool:
        self.tried += 1
        self.tracebacks += run.traceback
        self.hangs += run.timed_out
        seen = leaks(run.out + run.err, forms)
        self.secrets += bool(seen)
        ok = run.handled and not seen
        self.handled += ok
        if not ok:
            why = "traceback" if run.traceback else "hang" if run.timed_out else "secret" if seen else "not one line"
            last = (run.error_lines or run.out.splitlines() or [""])[-1][:160]
            self.unhandled.append(f"{label}: {why} (exit {run.code}): {last}")
        return ok


@dataclass
class World:
    tmp: Path
    fake: FakeExchange
    good: Receiver
    db: Path
    env: dict[str, str]
    forms: list[str]
    config: Path
    symbol: str = ""

    def run(self, args: list[str], *, env: dict[str, str] | None = None, timeout: float = 120.0) -> Run:
        return cli(args, env or self.env, timeout=timeout)

    def write_config(self, *extra_channels: str) -> None:
        good = f'[[channels]]\ntype = "webhook"\nname = "good"\nurl = "{self.good.url}"\nsecret = "{WEBHOOK_SECRET}"\n'
        email = (
            f'[[channels]]\ntype = "email"\nname = "mail"\n'
            f'smtp_url = "smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:9/"\nto = ["t@example.com"]\n'
        )
        self.config.write_text("\n".join([good, email, *extra_channels]))


def make_world(tmp: Path) -> World:
    tables = {s: generate_tables(s, n, seed=7) for s, n in N_SYMBOLS.items()}
    fake = FakeExchange(api_key=API_KEY, api_secret=API_SECRET, page_size=5, tables=tables).start()
    good = Receiver("ok", WEBHOOK_SECRET)
    db = tmp / "faults.db"
    config = tmp / "config.toml"
    env = clean_env(tmp)
    env.update(
        {
            "TIERDRIFT_CONFIG": str(config),
            "TIERDRIFT_DATABASE_URL": f"sqlite:///{db}",
            "TIERDRIFT_BINANCE__API_KEY": API_KEY,
            "TIERDRIFT_BINANCE__API_SECRET": API_SECRET,
            "TIERDRIFT_HTTP_TIMEOUT": "3",
            "TIERDRIFT_BYBIT_PAGE_RETRIES": "1",
            **{f"TIERDRIFT_ENDPOINTS__{k.upper()}": v for k, v in fake.endpoints().items()},
        }
    )
    forms = secret_forms(
        [API_KEY, API_SECRET, WEBHOOK_SECRET, "TOKENfaults5566", PG_PASSWORD], SMTP_USER, SMTP_PASSWORD
    )
    world = World(tmp, fake, good, db, env, forms, config)
    world.write_config()
    world.symbol = sorted(tables["binance-usdm"])[0]
    fake.set_market("binance-usdm", world.symbol, mark=100.0, daily_ranges=[4.0] * 20)
    base = world.run(["poll"])
    if base.code != 0:
        raise SystemExit(f"baseline poll failed: {base.out}{base.err}")
    add = ["positions", "add", "-s", "binance-usdm", "--symbol", world.symbol, "--side", "long", "--entry", "100"]
    world.run([*add, "--notional", "1000", "--margin", "250"])
    world.run(["market", "refresh"])
    return world


# -- payloads ----------------------------------------------------------------------------------------


def _tiers(*rows: tuple[float, float, float, float, float]) -> FakeTable:
    return FakeTable(tuple(FakeTier(*r) for r in rows))


_GOOD2 = ((0, 5000, 0.004, 0, 125), (5000, 50000, 0.005, 5, 100))
INVALID_TABLES: dict[str, FakeTable] = {
    "percent read as a fraction": _tiers((0, 5000, 0.4, 0, 125), (5000, 50000, 0.5, 500, 100)),
    "tiers not contiguous": _tiers((0, 5000, 0.004, 0, 125), (6000, 50000, 0.005, 5, 100)),
    "rate falls": _tiers((0, 5000, 0.005, 0, 100), (5000, 50000, 0.004, 0, 100)),
    "leverage rises": _tiers((0, 5000, 0.004, 0, 50), (5000, 50000, 0.005, 5, 100)),
    "first floor not 0": _tiers((100, 5000, 0.004, 0, 125), (5000, 50000, 0.005, 5, 100)),
    "cap below floor": _tiers((0, 5000, 0.004, 0, 125), (5000, 4000, 0.005, 5, 100)),
    "NaN rate": _tiers((0, 5000, float("nan"), 0, 125)),
    "infinite cap": _tiers((0, float("inf"), 0.004, 0, 125)),
    "no tiers": FakeTable(()),
    "leverage below 1": _tiers((0, 5000, 0.004, 0, 0.5)),
}


def _consistent(tiers: Iterable[FakeTier]) -> FakeTable:
    """Tiers with contiguous floors and maintenance amounts that follow the recurrence (domain doc §1)."""
    out: list[FakeTier] = []
    for t in tiers:
        prev = out[-1] if out else None
        floor = prev.cap if prev else 0.0
        amount = prev.amount + floor * (t.rate - prev.rate) if prev else 0.0
        out.append(replace(t, floor=floor, amount=amount))
    return FakeTable(tuple(out))


def _restructures(t: FakeTable) -> dict[str, FakeTable]:
    """Real changes that exchanges make: each must give change records and an alert, never an outage."""
    first, rest = t.tiers[0], t.tiers[1:]
    split = (replace(first, cap=(first.floor + first.cap) / 2), first, *rest)
    every = [replace(x, cap=x.cap * 1.5, rate=x.rate * 1.1, max_leverage=max(1, x.max_leverage // 2)) for x in t.tiers]
    return {
        "one tier split in two": _consistent(split),
        "two tiers merged": _consistent((replace(first, cap=t.tiers[1].cap), *t.tiers[2:])),
        "every field of every tier changed": _consistent(every),
        "one tier only": _consistent((replace(first, cap=t.tiers[-1].cap),)),
        "many tiers again": t,
    }


def _raw_fapi(entries: Any) -> Fault:
    return Fault.raw(json.dumps(entries))


def _bybit_error(code: int, message: str) -> Fault:
    return Fault.raw(json.dumps({"retCode": code, "retMsg": message, "result": {}, "retExtInfo": {}, "time": 1}))


def payload_faults(world: World) -> list[tuple[str, str, str, Fault, int]]:
    """(label, source, path, fault, times) for every way an answer can be wrong."""
    geo = json.dumps({"code": 0, "msg": "Service unavailable from a restricted location according to 'b. Eligibility' "
                      "in https://www.binance.com/en/terms. Please contact customer service if you believe you "
                      "received this message in error."})  # fmt: skip
    sym = world.symbol
    bracket = {"bracket": 1, "initialLeverage": 125, "notionalCap": 5000, "notionalFloor": 0, "maintMarginRatio": 0.004}
    out: list[tuple[str, str, str, Fault, int]] = []
    for status in (500, 502, 503, 504, 418, 429):
        out.append((f"HTTP {status}", "binance-usdm", fx.FAPI_BRACKETS, Fault.http(status, retry_after=1), 5))
    out += [
        ("HTTP 451 geo-block", "binance-usdm", fx.FAPI_BRACKETS, Fault.geo_blocked(), 5),
        ("HTTP 451 geo-block (raw body)", "binance-usdm", fx.FAPI_BRACKETS, Fault.raw(geo, status=451), 5),
        ("HTTP 401 bad key", "binance-usdm", fx.FAPI_BRACKETS,
         Fault.raw('{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}', status=401), 5),
        ("clock skew -1021", "binance-usdm", fx.FAPI_BRACKETS,
         Fault.raw('{"code":-1021,"msg":"Timestamp for this request is outside of the recvWindow."}', status=400), 5),
        ("malformed JSON", "binance-usdm", fx.FAPI_BRACKETS, Fault.malformed(), 5),
        ("empty list", "binance-usdm", fx.FAPI_BRACKETS, Fault.empty(), 5),
        ("HTML instead of JSON", "binance-usdm", fx.FAPI_BRACKETS, Fault.raw("<html><body>502</body></html>"), 5),
        ("an object, not a list", "binance-usdm", fx.FAPI_BRACKETS, Fault.raw("{}"), 5),
        ("a list of numbers", "binance-usdm", fx.FAPI_BRACKETS, Fault.raw("[1, 2, 3]"), 5),
        ("brackets null", "binance-usdm", fx.FAPI_BRACKETS, _raw_fapi([{"symbol": sym, "brackets": None}]), 5),
        ("numbers as words", "binance-usdm", fx.FAPI_BRACKETS,
         _raw_fapi([{"symbol": sym, "brackets": [{**bracket, "notionalCap": "lots"}]}]), 5),
        ("tier index 2**70", "binance-usdm", fx.FAPI_BRACKETS,
         _raw_fapi([{"symbol": sym, "brackets": [{**bracket, "bracket": 2**70, "cum": 0}]}]), 5),
        ("number 1e400", "binance-usdm", fx.FAPI_BRACKETS,
         Fault.raw(json.dumps([{"symbol": sym, "brackets": [{**bracket, "cum": 0}]}]).replace("5000", "1e400")), 5),
        ("deep nesting", "binance-usdm", fx.FAPI_BRACKETS, Fault.raw("[" * 50_000 + "]" * 50_000), 5),
        ("symbol with markup", "binance-usdm", fx.FAPI_BRACKETS,
         _raw_fapi([{"symbol": "[/]<b>X</b>\x1b[31m", "brackets": [{**bracket, "cum": 0}]}]), 5),
        ("slower than the timeout", "binance-usdm", fx.FAPI_BRACKETS, Fault.slow(5), 5),
        ("markets: HTTP 500", "binance-usdm", fx.FAPI_EXCHANGE_INFO, Fault.http(500), 5),
        ("markets: malformed", "binance-usdm", fx.FAPI_EXCHANGE_INFO, Fault.malformed(), 5),
        ("COIN-M: HTTP 503", "binance-coinm", fx.DAPI_BRACKETS, Fault.http(503), 5),
        ("COIN-M: 451 geo-block", "binance-coinm", fx.DAPI_BRACKETS, Fault.geo_blocked(), 5),
        ("COIN-M: malformed", "binance-coinm", fx.DAPI_BRACKETS, Fault.malformed(), 5),
        ("Bybit: HTTP 403 IP limit", "bybit-linear", fx.RISK_LIMIT, Fault.bybit_ip_limit(), 10),
        ("Bybit: HTTP 403 on the market list", "bybit-linear", fx.INSTRUMENTS, Fault.bybit_ip_limit(), 10),
        ("Bybit: HTTP 429", "bybit-linear", fx.RISK_LIMIT, Fault.http(429, retry_after=1), 10),
        ("Bybit: HTTP 500", "bybit-linear", fx.RISK_LIMIT, Fault.http(500), 10),
        ("Bybit: retCode 10016", "bybit-linear", fx.RISK_LIMIT,
         _bybit_error(10016, "System error. Please try again later."), 10),
        ("Bybit: retCode 10002", "bybit-linear", fx.RISK_LIMIT,
         _bybit_error(10002, "invalid request, please check your server timestamp or recv_window param"), 10),
        ("Bybit: retCode 10006", "bybit-linear", fx.RISK_LIMIT,
         _bybit_error(10006, "Too many visits!"), 10),
        ("Bybit: malformed page", "bybit-linear", fx.RISK_LIMIT, Fault.malformed(), 10),
        ("Bybit: empty", "bybit-linear", fx.RISK_LIMIT, Fault.empty(), 10),
        ("Bybit: looping cursor", "bybit-linear", fx.RISK_LIMIT, Fault.repeat_cursor(), 10),
        ("Bybit: rows without fields", "bybit-linear", fx.RISK_LIMIT,
         Fault.raw('{"retCode":0,"retMsg":"OK","result":{"category":"linear","list":[{"symbol":"X"}]},"time":1}'), 10),
        ("Bybit inverse: HTTP 502", "bybit-inverse", fx.RISK_LIMIT, Fault.http(502), 10),
        ("Bybit markets: HTTP 500", "bybit-linear", fx.INSTRUMENTS, Fault.http(500), 10),
    ]  # fmt: skip
    return out


def web_faults() -> list[tuple[str, str, str, Fault, int]]:
    """The keyless web endpoint (polled without an API key): its refusals and its bot challenge."""
    return [
        ("web: HTTP 400 illegal parameter", "binance-usdm", fx.WEB_USDM, Fault.bapi_error(), 5),
        ("web: 200 with success false", "binance-usdm", fx.WEB_USDM, Fault.bapi_error(status=200), 5),
        ("web: HTTP 202 bot challenge", "binance-usdm", fx.WEB_USDM, Fault.bot_challenge(), 5),
        ("web: HTTP 451 geo-block", "binance-usdm", fx.WEB_USDM, Fault.geo_blocked(), 5),
        ("web: malformed", "binance-usdm", fx.WEB_USDM, Fault.malformed(), 5),
        ("web COIN-M: HTTP 503", "binance-coinm", fx.WEB_COINM, Fault.http(503), 5),
        ("web COIN-M: bot challenge", "binance-coinm", fx.WEB_COINM, Fault.bot_challenge(), 5),
    ]


def payloads(world: World) -> Tally:
    tally = Tally("bad payloads")
    for label, source, path, fault, times in payload_faults(world):
        world.fake.inject(path, fault, times=times)
        _fault_poll(world, tally, label, source)
    keyless = {k: v for k, v in world.env.items() if not k.startswith("TIERDRIFT_BINANCE__")}
    for label, source, path, fault, times in web_faults():
        world.fake.inject(path, fault, times=times)
        _fault_poll(world, tally, label, source, env=keyless)
    sym = world.symbol
    original = world.fake.tables("binance-usdm")[sym]
    for label, table in INVALID_TABLES.items():
        world.fake.set_table("binance-usdm", sym, table)
        _fault_poll(world, tally, f"invalid table: {label}", "binance-usdm", restore=lambda: world.fake.set_table(
            "binance-usdm", sym, original))  # fmt: skip
    everything = world.fake.tables("bybit-linear")
    keep = dict(sorted(everything.items())[: len(everything) // 2])
    world.fake.set_tables("bybit-linear", keep)
    _fault_poll(world, tally, "half the symbols vanish", "bybit-linear",
                restore=lambda: world.fake.set_tables("bybit-linear", everything))  # fmt: skip
    for label, table in _restructures(original).items():
        world.fake.set_table("binance-usdm", sym, table)
        before, sent_before = counts(world.db), len(world.good.got.bodies)
        run = world.run(["poll", "-s", "binance-usdm"])
        after = counts(world.db)
        if tally.count(f"restructure: {label}", run, world.forms) and after["change_record"] > before["change_record"]:
            if _wait(lambda n=sent_before: len(world.good.got.bodies) > n, 10):
                tally.true_changes_alerted += 1
            else:
                tally.lost += 1
                tally.unhandled.append(f"restructure: {label}: no alert reached the good receiver")
        else:
            tally.unhandled.append(
                f"restructure: {label}: not detected as a change (exit {run.code}): {run.out[-200:]}"
            )
    return tally


def _fault_poll(
    world: World,
    tally: Tally,
    label: str,
    source: str,
    restore: Callable[[], None] | None = None,
    env: dict[str, str] | None = None,
) -> None:
    before = counts(world.db)
    run = world.run(["poll", "-s", source], env=env)
    after = counts(world.db)
    tally.count(label, run, world.forms)
    tally.failed_polls += after.get("poll_failed", 0) - before.get("poll_failed", 0)
    tally.quarantined += after.get("poll_quarantined", 0) - before.get("poll_quarantined", 0)
    tally.false_changes += after["change_record"] - before["change_record"]
    world.fake.clear_faults()
    if restore is not None:
        restore()
    _end_rest(world.db)
    recovery = world.run(["poll", "-s", source], env=env)
    final = counts(world.db)
    tally.false_changes += final["change_record"] - after["change_record"]
    if recovery.code != 0:
        tally.unhandled.append(
            f"{label}: the next clean poll did not recover (exit {recovery.code}): {recovery.out[-160:]}"
        )
    tally.secrets += bool(leaks(recovery.out + recovery.err, world.forms))


def _end_rest(db: Path) -> None:
    """Pretend the rest an exchange asked for is over (the bench cannot wait ten minutes per fault)."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        if "retry_at" in {r[1] for r in conn.execute("PRAGMA table_info(poll)")}:
            conn.execute("UPDATE poll SET retry_at = NULL")
            conn.commit()
    finally:
        conn.close()


def _wait(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# -- receivers ---------------------------------------------------------------------------------------


def _bump(world: World, n: int) -> None:
    """A real change on the exchange: the top cap of one table moves, so that the next poll alerts."""
    sym = sorted(world.fake.tables("binance-usdm"))[1 + n % 5]
    t = world.fake.tables("binance-usdm")[sym]
    top = t.tiers[-1]
    world.fake.set_table("binance-usdm", sym, replace(t, tiers=(*t.tiers[:-1], replace(top, cap=top.cap + 1000))))


def receivers(world: World) -> tuple[Tally, dict[str, float]]:
    tally = Tally("bad receivers")
    latency: dict[str, float] = {}
    for n, mode in enumerate(("none", *BAD_RECEIVERS)):
        bad = Receiver(mode) if mode != "none" else None
        extra = (
            [f'[[channels]]\ntype = "webhook"\nname = "bad-{mode}"\nurl = "{bad.url}"\ntimeout = 2\n'] if bad else []
        )
        world.write_config(*extra)
        _bump(world, n)
        seen = set(world.good.got.bodies)
        t0 = time.time()
        run = world.run(["poll", "-s", "binance-usdm"], timeout=300)
        tally.count(f"receiver {mode}", run, world.forms)
        arrived = _wait(lambda seen=seen: bool(set(world.good.got.bodies) - seen), 30)
        new = set(world.good.got.bodies) - seen
        latency[mode] = (min(world.good.got.times[i] for i in new) - t0) if arrived else float("inf")
        if not arrived:
            tally.lost += 1
            tally.unhandled.append(f"receiver {mode}: the good receiver got nothing")
        if bad is not None:
            bad.close()
    world.write_config()
    return tally, latency


def sigterm_prompt(world: World) -> float:
    """Seconds from SIGTERM to exit of `tierdrift run` while a receiver drip-feeds its answer."""
    bad = Receiver("drip_headers")
    world.write_config(f'[[channels]]\ntype = "webhook"\nname = "bad-term"\nurl = "{bad.url}"\ntimeout = 2\n')
    _bump(world, 99)
    proc = subprocess.Popen([sys.executable, "-m", "monitor", "run"], env=world.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait(lambda: bad.hits > 0, 60)
        time.sleep(1.0)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
            return time.monotonic() - t0
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return float("inf")
    finally:
        bad.close()
        world.write_config()


# -- inputs, databases, configs ----------------------------------------------------------------------


def inputs(world: World, quick: bool) -> Tally:
    tally = Tally("bad inputs")
    cases = list(commands(world.tmp / "inputs", world.symbol)) if _mkdir(world.tmp / "inputs") else []
    if quick:
        cases = cases[::4]
    for case in cases:
        before = fingerprint(world.db) if case.writes else ""
        run = world.run(case.args)
        tally.count(case.label, run, world.forms)
        if case.writes and run.code != 0 and fingerprint(world.db) != before:
            tally.unhandled.append(f"{case.label}: a failed write changed the database")
            tally.false_changes += 1
    return tally


def storage(world: World) -> Tally:
    tally = Tally("bad databases and configs")
    tmp = world.tmp / "storage"
    _mkdir(tmp)
    reads = [["sources"], ["polls"], ["tiers", world.symbol, "-s", "binance-usdm"], ["positions", "list"]]
    writes = [["account", "set", "-s", "binance-usdm", "--wallet-balance", "1000"]]
    for label, url in databases(tmp):
        for args in [*reads, *writes]:
            path = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
            existed = path is not None and path.exists()
            run = world.run(["--db", url, *args], timeout=60)
            tally.count(f"--db {label}: {args[0]}", run, world.forms)
            if args in reads and path is not None and not existed and path.exists():
                tally.unhandled.append(f"--db {label}: read-only `{args[0]}` created {path}")
    locked = _locked_write(world)
    tally.count("write while another process holds the write lock for 5 s", locked, world.forms)
    if locked.code != 0:
        tally.unhandled.append(f"locked database: the write failed instead of waiting: {locked.err.strip()[:160]}")
    for label, text in configs(tmp, world.good.url):
        path = tmp / f"config-{len(text)}-{abs(hash(label)) % 10_000}.toml"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        # Only the file speaks: the bench's own overrides (environment wins over the file) would hide it.
        env = {
            k: v for k, v in world.env.items() if k not in ("TIERDRIFT_HTTP_TIMEOUT", "TIERDRIFT_BYBIT_PAGE_RETRIES")
        }
        env["TIERDRIFT_CONFIG"] = str(path)
        for args in (["config", "show"], ["poll", "-s", "binance-usdm"]):
            run = world.run(args, env=env, timeout=60)
            tally.count(f"config {label}: {args[0]}", run, world.forms)
            if run.code == 0:
                tally.unhandled.append(f"config {label}: accepted by `{args[0]}`")
    return tally


def _locked_write(world: World) -> Run:
    conn = sqlite3.connect(world.db, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(5.0, lambda: (conn.execute("COMMIT"), conn.close()))
    timer.start()
    try:
        return world.run(["account", "set", "-s", "binance-usdm", "--wallet-balance", "2000"])
    finally:
        timer.join()


def _mkdir(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return True


# -- kills -------------------------------------------------------------------------------------------


def kills(rounds: int) -> tuple[Tally, dict[str, Any]]:
    tally = Tally("kill -9 during polls and deliveries")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "kill.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIERDRIFT_")}
        proc = subprocess.run([sys.executable, str(ROOT / "bench" / "killtest.py"), "--rounds", str(rounds), "--out",
                               str(out)], env=env, capture_output=True, timeout=1800)  # fmt: skip
        result = json.loads(out.read_text()) if out.exists() else {"problems": [proc.stderr.decode()[-300:]]}
    tally.tried = rounds
    tally.handled = rounds if not result["problems"] else 0
    for problem in result["problems"]:
        tally.unhandled.append(f"kill test: {problem}")
        tally.false_changes += "false change" in problem
        tally.lost += "lost" in problem or "not all sent" in problem or "ids differ" in problem
        tally.doubled += "different bodies" in problem
    return tally, result


# -- the report --------------------------------------------------------------------------------------


def final_checks(world: World) -> tuple[Tally, dict[str, Any]]:
    """Across the whole run: every alert routed to the good receiver reached it exactly once, and no secret
    is anywhere in the database."""
    tally = Tally("the outbox, end to end")
    conn = sqlite3.connect(f"file:{world.db}?mode=ro", uri=True, timeout=30)
    try:
        routed = {a for (a,) in conn.execute("SELECT alert_id FROM delivery WHERE channel = 'good'")}
    finally:
        conn.close()
    got = world.good.got
    tally.tried = len(routed)
    tally.lost = len(routed - set(got.bodies))
    tally.doubled = sum(len(b) - 1 for b in got.bodies.values())
    tally.handled = len(routed & set(got.bodies))
    db_leaks = leaks(database_text(world.db), world.forms)
    tally.secrets = len(db_leaks)
    tally.unhandled += [f"secret in the database: {f[:3]}…" for f in db_leaks]
    tally.unhandled += [f"alert {a} never reached the good receiver" for a in sorted(routed - set(got.bodies))]
    return tally, {"alerts_for_good": len(routed), "received_by_good": len(got.bodies), "unsigned": got.unsigned,
                   "secrets_in_database": len(db_leaks)}  # fmt: skip


COLUMNS = ("tried", "handled", "failed_polls", "quarantined", "true_changes_alerted", "false_changes", "lost",
           "doubled", "tracebacks", "secrets", "hangs")  # fmt: skip
HEADERS = ("inputs tried", "handled, one line", "failed polls", "quarantined polls", "restructures alerted",
           "false changes", "lost alerts", "doubled alerts", "tracebacks", "secrets seen", "hangs")  # fmt: skip


def markdown(tallies: list[Tally], extra: dict[str, Any]) -> str:
    lines = [
        "# Reliability: tierdrift under a hostile world",
        "",
        "Generated by `python bench/faults.py` ("
        + ("quick run" if extra["quick"] else "full run")
        + f", {extra['date']}"
        f", {extra['wall_s']:.0f} s). Every input goes through the real `tierdrift` process against the loopback "
        "fake exchange and loopback receivers; see the script's docstring for what each column counts.",
        "",
        "| section | " + " | ".join(HEADERS) + " |",
        "|---|" + "---:|" * len(HEADERS),
    ]
    total = Tally("**total**")
    for t in tallies:
        lines.append(f"| {t.name} | " + " | ".join(str(getattr(t, c)) for c in COLUMNS) + " |")
        for c in COLUMNS:
            setattr(total, c, getattr(total, c) + getattr(t, c))
    lines.append("| **total** | " + " | ".join(f"**{getattr(total, c)}**" for c in COLUMNS) + " |")
    lat = extra["latency"]
    base = lat.get("none", 0.0)
    worst = max(((m, v - base) for m, v in lat.items() if m != "none"), key=lambda x: x[1], default=("-", 0.0))
    lines += [
        "",
        f"- Longest delivery stall that one bad receiver caused to a well-behaved one: **{worst[1]:.2f} s** "
        f"({worst[0]}); the good receiver's alert arrived {base:.2f} s after `poll` started with no bad receiver.",
        "- Good receiver's latency with each bad receiver beside it (s): "
        + ", ".join(f"{m} {v:.2f}" for m, v in lat.items())
        + ".",
        f"- `tierdrift run` exited **{extra['sigterm_s']:.2f} s** after SIGTERM while a receiver drip-fed its answer.",
        f"- Across the run the good receiver was routed {extra['final']['alerts_for_good']} alerts and received "
        f"{extra['final']['received_by_good']} distinct ids ({extra['final']['unsigned']} unsigned); "
        f"secrets found in the database: {extra['final']['secrets_in_database']}.",
    ]
    if extra.get("kill"):
        k = extra["kill"]
        lines.append(
            f"- Kill test: {k.get('rounds')} rounds of `kill -9` during polls and deliveries; "
            f"{k.get('alerts')} alerts, {k.get('same_id_resends')} same-id resends (receivers de-duplicate on the id), "
            f"problems: {len(k.get('problems', []))}."
        )
    lines += [
        "",
        "## What was tried",
        "",
        "- **Bad payloads**: every HTTP error class (5xx, 418, 429, 401, Binance 451 and -1021, Bybit 403 with its",
        "  reset header and retCodes 10016/10002/10006), malformed, empty, HTML and wrongly shaped JSON, numbers",
        "  as words, `1e400`, a tier index of 2**70, 50,000 levels of nesting, markup in a symbol, answers slower",
        "  than the timeout, the keyless web endpoint's 400, `success: false` and bot challenge, ten invalid",
        "  tables (a percent read as a fraction, NaN, inf, gaps, falling rates…), half the symbols vanishing, and",
        "  five real restructures (a tier split, two merged, every field changed, one tier, many again), which",
        "  must be detected and alerted. After each fault a clean poll must succeed and add no change.",
        "- **Bad receivers**: beside a well-behaved, signature-checking receiver, one that drip-feeds its",
        "  headers or body, hangs, streams a 200 MB error body, resets, answers 410, answers after 8 s, or",
        "  answers garbage; an SMTP channel whose relay refuses connections is configured throughout.",
        "- **Bad inputs**: every command's options with edge numbers, odd times (2062, year 0, year 10000, a",
        "  30th of February, an offset of 25 h), outside text (markup, ESC, bidi, 5,000 characters), and CSV",
        "  and JSON files in other encodings, shapes and sizes (bench/fault_corpus.py).",
        "- **Bad databases and configs**: missing folders, a folder or garbage as the database, unreachable",
        "  PostgreSQL with a password, a database held by another writer, and config files with unknown keys",
        "  and impossible values.",
        "- **Kills**: `bench/killtest.py`, `kill -9` of `tierdrift run` at random points, then a settling run.",
        "",
        "Secrets (API key and secret, webhook secret and URL token, SMTP password and its base64 forms, a",
        "PostgreSQL password) are searched for in every output and, at the end, in every table of the database.",
    ]
    unhandled = [u for t in tallies for u in t.unhandled]
    lines += ["", "## Not handled", ""]
    lines += [f"- {u}" for u in unhandled] or ["None: every input above ended as a recorded, explained result."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the inputs and 3 kill rounds")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability.md")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "faults.json")
    parser.add_argument("--sections", default="payloads,receivers,inputs,storage,kills")
    parser.add_argument("--report-only", action="store_true", help="rewrite --out from the --json of a past run")
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads(args.json.read_text())
        args.out.write_text(markdown([Tally(**t) for t in saved.pop("tallies")], saved))
        return
    wanted = set(args.sections.split(","))
    t0 = time.monotonic()
    tallies: list[Tally] = []
    extra: dict[str, Any] = {"quick": args.quick, "date": time.strftime("%Y-%m-%d"), "latency": {}, "sigterm_s": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        world = make_world(Path(tmp))
        try:
            steps: Iterable[tuple[str, Callable[[], Any]]] = (
                ("payloads", lambda: tallies.append(payloads(world))),
                ("receivers", lambda: _receivers(world, tallies, extra)),
                ("inputs", lambda: tallies.append(inputs(world, args.quick))),
                ("storage", lambda: tallies.append(storage(world))),
            )
            for name, step in steps:
                if name in wanted:
                    print(f"faults: {name} …", file=sys.stderr, flush=True)
                    step()
            if not tallies:
                tallies.append(Tally("nothing"))
            outbox, extra["final"] = final_checks(world)
            tallies.append(outbox)
        finally:
            world.fake.stop()
            world.good.close()
    if "kills" in wanted:
        print("faults: kills …", file=sys.stderr, flush=True)
        tally, extra["kill"] = kills(3 if args.quick else 10)
        tallies.append(tally)
    extra["wall_s"] = time.monotonic() - t0
    args.out.write_text(markdown(tallies, extra))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"tallies": [t.__dict__ for t in tallies], **extra}, indent=2, default=str) + "\n")
    print(args.out.read_text())
    bad = sum(t.false_changes + t.lost + t.doubled + t.tracebacks + t.secrets + t.hangs for t in tallies)
    sys.exit(1 if bad else 0)


def _receivers(world: World, tallies: list[Tally], extra: dict[str, Any]) -> None:
    tally, extra["latency"] = receivers(world)
    tallies.append(tally)
    extra["sigterm_s"] = sigterm_prompt(world)


if __name__ == "__main__":
    main()

"""Every poll ends recorded, whatever breaks: poison tables, restructures, raising hooks, database errors,
an exchange that asks for a rest, and imports dated in the future.

Through the real CLI against the loopback fake exchange, and through `Daemon.poll` with an injected fetch
and clock where the scenario needs a time or an error the fake cannot serve.
"""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import Session, select
from typer.testing import CliRunner

from monitor.cli import app
from monitor.config.settings import Settings
from monitor.exchanges.errors import RateLimited
from monitor.fake_exchange import (
    INSTRUMENTS,
    RISK_LIMIT,
    WEB_USDM,
    FakeExchange,
    FakeTable,
    FakeTier,
    Fault,
    generate_tables,
)
from monitor.service import daemon as daemon_module
from monitor.service.daemon import Daemon
from monitor.service.importer import ImportFileError, plan
from monitor.service.lock import writer_lock
from monitor.service.polling import PollNotRecorded, poll_source
from monitor.store.database import open_engine
from monitor.store.models import SourceHealth
from snapshots import history
from snapshots.db import ChangeRecord, TableVersion
from snapshots.errors import InvalidTable, PayloadError
from snapshots.model import SOURCES, Snapshot, Tier, TierTable, Unit
from snapshots.parse import parse_binance_brackets, parse_binance_web, parse_bybit_risk_limits, parse_ccxt_tiers
from snapshots.reader import SqliteReader
from snapshots.store import PollResult
from snapshots.validate import RowIn, build_table
from tests.conftest import BTC_ROWS, ETH_ROWS, SHARED_DATA, ccxt_tiers, point_at_fake, ts, write_archive

runner = CliRunner()
USDM = "binance-usdm"
T0 = datetime(2026, 12, 1, 22, 30, 5, tzinfo=UTC)


# -- fixtures and helpers ------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    tables = {source: generate_tables(source, 12, seed=8) for source in SOURCES}
    with FakeExchange(tables=tables) as server:
        yield server


@pytest.fixture
def env(fake: FakeExchange, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str) -> str:
    point_at_fake(fake, monkeypatch, tmp_path, page_retries=0)
    return db_url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file: the tests that plant a trigger to make the database fail need SQLite's syntax."""
    return f"sqlite:///{tmp_path / 'faults.db'}"


def cli(db_url: str, *args: str, code: int = 0) -> Any:
    result = runner.invoke(app, ["--db", db_url, *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if "--json" in args else result.output


def run(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a process (inheriting the test's environment), to see exactly what a user sees."""
    return subprocess.run(
        [sys.executable, "-m", "monitor", "--db", db_url, *args], capture_output=True, text=True, timeout=120
    )


def plant_trigger(url: str, table: str, message: str, when: str = "1", event: str = "INSERT") -> None:
    """Make every `event` on `table` (matching `when`) fail, as a full disk or a broken database would."""
    path = url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path)
    conn.execute(
        f"CREATE TRIGGER fail_{table} BEFORE {event} ON {table} WHEN {when} BEGIN SELECT RAISE(ABORT, '{message}'); END"
    )
    conn.commit()
    conn.close()


def drop_trigger(url: str, table: str) -> None:
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    conn.execute(f"DROP TRIGGER fail_{table}")
    conn.commit()
    conn.close()


def snapshot(at: datetime, eth: list[tuple[float, float, float]] = ETH_ROWS) -> Snapshot:
    payload = {
        "BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", BTC_ROWS),
        "ETH/USDT:USDT": ccxt_tiers("ETH/USDT:USDT", eth),
    }
    return Snapshot(USDM, at, "test", parse_ccxt_tiers(USDM, payload))


TIGHTER = [(f, r * 1.5, lev) for f, r, lev in ETH_ROWS]
TIGHTER_BTC = Snapshot(
    USDM,
    T0,
    "test",
    parse_ccxt_tiers(
        USDM, {"BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", [(f, r * 1.5, lev) for f, r, lev in BTC_ROWS])}
    ),
)


class Scenario:
    """A daemon on one database with a fetch and a clock the test drives."""

    def __init__(self, url: str) -> None:
        self.now = T0
        self.engine = open_engine(url)
        self.settings = Settings(database_url=url, sources=[USDM])  # type: ignore[arg-type]
        self.answers: list[Callable[[], Snapshot]] = []
        self.fetches = 0
        self.daemon = Daemon(self.settings, self.engine, self.fetch, writer_lock(self.engine), lambda: self.now)

    def fetch(self, source: str, settings: Settings) -> Snapshot:
        self.fetches += 1
        return self.answers.pop(0)()

    def poll(
        self, answer: Callable[[], Snapshot] | None = None, *, after: timedelta = timedelta(minutes=1)
    ) -> PollResult:
        self.now += after
        at = self.now
        self.answers.append(answer or (lambda: snapshot(at)))
        return self.daemon.poll(USDM)

    def failures(self, reason: str) -> float:
        value = self.daemon.metrics.registry.get_sample_value(
            "tierdrift_poll_failures_total", {"source": USDM, "reason": reason}
        )
        return value or 0.0

    def count(self, model: type) -> int:
        with Session(self.engine) as s:
            return len(list(s.exec(select(model))))

    def health(self) -> SourceHealth | None:
        with Session(self.engine) as s:
            return s.get(SourceHealth, USDM)


@pytest.fixture
def scenario(db_url: str) -> Iterator[Scenario]:
    sc = Scenario(db_url)
    yield sc
    sc.engine.dispose()


@pytest.fixture
def sqlite_scenario(sqlite_url: str) -> Iterator[Scenario]:
    sc = Scenario(sqlite_url)
    yield sc
    sc.engine.dispose()


# -- poison tables: validation names them, and they fail only their own source's poll -------------------


def _web_answer(fake: FakeExchange) -> dict[str, Any]:
    request = urllib.request.Request(fake.endpoints()["binance_web"] + WEB_USDM, data=b"{}", method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as answer:
        body: dict[str, Any] = json.loads(answer.read())
    return body


def _huge_index(fake: FakeExchange) -> None:
    body = _web_answer(fake)
    entry = next(e for e in body["data"]["brackets"] if e["symbol"] == "ETHUSDT")
    entry["riskBrackets"][-1]["bracketSeq"] = 2**70  # an OverflowError in SQLite before validation caught it
    fake.inject(WEB_USDM, Fault.raw(json.dumps(body)))


def _nan_rate(fake: FakeExchange) -> None:
    table = fake.tables(USDM)["ETHUSDT"]
    tiers = list(table.tiers)
    tiers[1] = replace(tiers[1], rate=math.nan)  # served as the JSON literal NaN, which Python's json accepts
    fake.set_table(USDM, "ETHUSDT", replace(table, tiers=tuple(tiers)))


def _percent_as_fraction(fake: FakeExchange) -> None:
    # 0.4 meant as 0.4 %: tightening by a factor of 100, a false critical alert if it were applied.
    tiers = (FakeTier(0, 50_000, 0.4, 0, 125), FakeTier(50_000, 250_000, 0.5, 500, 100))
    fake.set_table(USDM, "ETHUSDT", FakeTable(tiers))


@pytest.mark.parametrize(
    ("poison", "kind", "words"),
    [
        (_huge_index, "invalid_table", "is outside 1..2147483647"),
        (_nan_rate, "payload_error", "nan, not a finite number"),
        (_percent_as_fraction, "invalid_table", "looks like a percent read as a fraction"),
    ],
    ids=["index-2**70", "nan", "percent-as-fraction"],
)
def test_a_poison_table_fails_only_its_own_poll_and_is_named(
    env: str, fake: FakeExchange, poison: Callable[[FakeExchange], None], kind: str, words: str
) -> None:
    cli(env, "poll")
    poison(fake)
    out = cli(env, "poll", code=1)
    (line,) = [ln for ln in out.splitlines() if ln.startswith(f"{USDM}:")]
    assert line.startswith(f"{USDM}: FAILED: ") and "ETH" in line and words in line
    for other in SOURCES[1:]:
        assert f"{other}: ok, 12 symbols, 0 changed, 0 changes" in out
    (last,) = cli(env, "polls", "--source", USDM, "--limit", "1", "--json")
    assert (last["outcome"], last["error_kind"], last["retry_at"]) == ("failed", kind, None)
    assert "\n" not in last["error"]
    assert cli(env, "changes", "--json") == []  # no false alert, nothing delisted
    assert {s["source"]: s for s in cli(env, "sources", "--json")}[USDM]["symbols"] == 12
    fake.clear_faults()
    fake.set_tables(USDM, generate_tables(USDM, 12, seed=8))
    assert f"{USDM}: ok, 12 symbols, 0 changed" in cli(env, "poll", "--source", USDM)


def rows_of(*spec: tuple[float, float, float, float]) -> list[RowIn]:
    return [RowIn(i + 1, f, c, r, None, lev) for i, (f, c, r, lev) in enumerate(spec)]


@pytest.mark.parametrize(
    ("rows", "words"),
    [
        (rows_of((0, 5e4, 0.004, 125), (5e4, math.nan, 0.005, 100)), "tier 2: cap is nan, not a finite number"),
        (rows_of((0, math.inf, 0.004, 125)), "tier 1: cap is inf, not a finite number"),
        ([RowIn(0, 0, 5e4, 0.004, None, 125)], "tier index 0 is outside 1..2147483647"),
        ([RowIn(2**31, 0, 5e4, 0.004, None, 125)], "tier index 2147483648 is outside"),
        (rows_of((0, 5e4, 0.004, 125), (5e4, 1e6, 0.5, 100)), "tier 2: maintenance rate 0.5 × max leverage 100 = 50"),
        (rows_of((0, 5e4, 0.00004, 125)), "below 0.01%, far under any real table; looks like a fraction read as"),
        ([RowIn(1, 0, 5e4, 0.015, None, 50, initial_margin_rate=0.01)], "is not below the initial margin rate 0.01"),
    ],
    ids=["nan-cap", "inf-top-cap", "index-0", "index-2**31", "percent", "fraction-as-percent", "above-initial"],
)
def test_validation_rejects_what_no_real_table_holds(rows: list[RowIn], words: str) -> None:
    with pytest.raises(InvalidTable) as err:
        build_table(USDM, "BAD/USDT:USDT", Unit.QUOTE, rows)
    message = str(err.value)
    assert message.startswith("BAD/USDT:USDT: tier") and words in message and "\n" not in message


def test_exactly_at_the_initial_margin_is_refused_and_just_below_accepted() -> None:
    # At rate × leverage = 1 a position opened at the maximum leverage is liquidated as it opens.
    with pytest.raises(InvalidTable, match=r"tier 2: maintenance rate 0.02 × max leverage 50 = 1 is not below 1"):
        build_table(USDM, "X", Unit.QUOTE, rows_of((0, 1e4, 0.01, 50), (1e4, 1e5, 0.02, 50)))
    table = build_table(USDM, "X", Unit.QUOTE, rows_of((0, 1e4, 0.01, 90), (1e4, 1e5, 0.02, 45)))
    assert [round(t.maintenance_margin_rate * t.max_leverage, 9) for t in table.tiers] == [0.9, 0.9]


@pytest.mark.parametrize(
    ("value", "words"),
    [(10**400, "a 401-digit integer, not a usable number"), ("1.5", "'1.5', not a whole tier number")],
)
def test_numbers_a_parser_cannot_use_are_payload_errors(value: Any, words: str) -> None:
    tiers = ccxt_tiers("ETH/USDT:USDT", ETH_ROWS)
    tiers[1]["tier"] = value
    with pytest.raises(PayloadError) as err:
        parse_ccxt_tiers(USDM, {"ETH/USDT:USDT": tiers})
    assert str(err.value).startswith("ETH/USDT:USDT tier") and words in str(err.value)


REAL_RESPONSES = SHARED_DATA / "real-responses"


def test_every_recorded_real_answer_passes_validation_with_room_to_spare() -> None:
    """The rate bounds must never reject a real table: COIN-M web, signed samples and Bybit inverse."""
    if not REAL_RESPONSES.is_dir():
        pytest.skip(f"recorded responses not found at {REAL_RESPONSES} (they live beside the repository)")
    web = json.loads((REAL_RESPONSES / "komekome_binance_cm_web_brackets_excerpt.json").read_text())
    signed = json.loads((REAL_RESPONSES / "docs_binance_signed_samples.json").read_text())
    bybit = json.loads((REAL_RESPONSES / "docs_bybit_risk_limit.json").read_text())
    found = [
        *parse_binance_web("binance-coinm", web).values(),
        *parse_binance_brackets("binance-usdm", signed["fapi_v1_leverageBracket_docs"]).values(),
        *parse_binance_brackets("binance-coinm", signed["dapi_v2_leverageBracket_docs"]).values(),
        *parse_bybit_risk_limits("bybit-inverse", bybit["docs_inverse_example"]["result"]["list"]).values(),
        *parse_bybit_risk_limits("bybit-linear", bybit["carpenstar_v3_output"]).values(),
    ]
    assert len(found) == 10
    products = [t.maintenance_margin_rate * t.max_leverage for table in found for t in table.tiers]
    assert max(products) < 0.6  # far from the bound of 1
    assert min(t.maintenance_margin_rate for table in found for t in table.tiers) >= 0.004


# -- a restructure is an alert, not an outage ------------------------------------------------------------


def test_a_restructure_gives_changes_an_impact_and_alerts(
    env: str, fake: FakeExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIERDRIFT_WEBHOOK_URL", "http://127.0.0.1:9/hook")  # nothing listens: alerts stay queued
    one = FakeTable((FakeTier(0, 1_000_000, 0.01, 0, 50),))
    many = FakeTable(
        (
            FakeTier(0, 50_000, 0.02, 0, 25),
            FakeTier(50_000, 200_000, 0.025, 250, 20),
            FakeTier(200_000, 1_000_000, 0.05, 5_250, 10),
            FakeTier(1_000_000, 5_000_000, 0.1, 55_250, 5),
        )
    )
    fake.set_table(USDM, "ETHUSDT", one)
    cli(env, "poll", "--source", USDM)
    cli(env, "positions", "add", "-s", USDM, "--symbol", "ETHUSDT", "--side", "long", "--entry", "2000",
        "--notional", "100000", "--margin", "10000")  # fmt: skip
    fake.set_table(USDM, "ETHUSDT", many)  # one tier to four, every field of tier 1 but its floor changed
    assert f"{USDM}: ok, 12 symbols, 1 changed, 6 changes" in cli(env, "poll", "--source", USDM)
    changes = {(c["kind"], c["tier"], c["field"]) for c in cli(env, "changes", "--json")}
    assert {("tier_added", 2, None), ("tier_added", 3, None), ("tier_added", 4, None)} <= changes
    assert ("tier_changed", 1, "maintenance_margin_rate") in changes and ("tier_changed", 1, "cap") in changes
    (impact,) = cli(env, "impacts", "--json")
    assert (impact["old_tier"], impact["new_tier"], impact["old_rate"]) == (1, 2, 0.01)
    kinds = sorted(a["kind"] for a in cli(env, "alerts", "list", "--json"))
    assert kinds == ["position_impact", "tier_changes"]
    fake.set_table(USDM, "ETHUSDT", one)  # and back: four tiers to one
    assert "1 changed" in cli(env, "poll", "--source", USDM)
    removed = {c["tier"] for c in cli(env, "changes", "--json") if c["kind"] == "tier_removed"}
    assert removed == {2, 3, 4}


# -- whatever raises while applying, the poll is recorded as failed --------------------------------------


def test_an_unexpected_error_in_one_table_fails_the_poll_naming_it(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert scenario.poll().baseline
    import snapshots.store

    real = snapshots.store.diff_tables

    def broken(old: TierTable | None, new: TierTable | None) -> Any:
        if new is not None and new.symbol == "ETH/USDT:USDT":
            raise AssertionError("unexpected deepdiff path root")
        return real(old, new)

    monkeypatch.setattr(snapshots.store, "diff_tables", broken)
    for _ in range(2):  # the same input fails the same way, each time recorded
        r = scenario.poll(lambda: snapshot(scenario.now, TIGHTER))
        assert r.outcome == "failed" and r.error_kind == "unexpected"
        assert r.error == (
            "ETH/USDT:USDT: unexpected AssertionError while applying its table: unexpected deepdiff path root"
        )
    assert scenario.failures("unexpected") == 2
    assert scenario.count(ChangeRecord) == 0
    health = scenario.health()
    assert health is not None and health.state == "failing" and "ETH/USDT:USDT" in (health.reason or "")
    with scenario.engine.connect() as conn:
        status = history.source_status(conn, USDM)
        assert status.last_outcome == "failed" and status.last_error == r.error
    monkeypatch.setattr(snapshots.store, "diff_tables", real)
    ok = scenario.poll(lambda: snapshot(scenario.now, TIGHTER))
    assert ok.outcome == "ok" and ok.changes


def test_a_table_that_slipped_past_validation_is_a_failed_poll(scenario: Scenario) -> None:
    """An index too big for the database (OverflowError in SQLite) fails the poll; it is not a job error."""
    scenario.poll()
    good = snapshot(T0)
    poison = TierTable(USDM, "POISON/USDT:USDT", Unit.QUOTE, (Tier(2**70, 0, 1e6, 0.01, 0, 50),))

    def answer() -> Snapshot:
        return replace(good, taken_at=scenario.now, tables={**good.tables, poison.symbol: poison})

    r = scenario.poll(answer)
    assert r.outcome == "failed" and r.error_kind == "unexpected"
    assert r.error is not None and r.error.startswith("unexpected ") and "\n" not in r.error
    assert scenario.count(TableVersion) == 2  # BTC and ETH of the baseline, nothing of the failed poll


def test_a_hook_that_raises_fails_the_poll_but_its_failure_hooks_run(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = daemon_module.poll_hooks

    def with_broken(settings: Settings, clock: Callable[[], datetime]) -> list[Any]:
        def broken(session: Session, result: PollResult) -> None:
            if result.outcome == "ok" and not result.baseline:
                raise RuntimeError("impact math blew up")

        return [*real(settings, clock), broken]

    monkeypatch.setattr(daemon_module, "poll_hooks", with_broken)
    scenario.poll()
    r = scenario.poll(lambda: snapshot(scenario.now, TIGHTER))
    assert (r.outcome, r.error_kind, r.error) == (
        "failed",
        "unexpected",
        "unexpected RuntimeError: impact math blew up",
    )
    assert scenario.count(ChangeRecord) == 0  # the changes rolled back with the hook
    health = scenario.health()
    assert health is not None and health.state == "failing"  # the health hook ran for the failure


def test_a_failure_hook_that_raises_still_leaves_the_failed_poll(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    def always_broken(settings: Settings, clock: Callable[[], datetime]) -> list[Any]:
        def broken(session: Session, result: PollResult) -> None:
            raise ValueError("health store unavailable")

        return [broken]

    monkeypatch.setattr(daemon_module, "poll_hooks", always_broken)
    r = scenario.poll()
    assert r.outcome == "failed"
    assert r.error == (
        "unexpected ValueError: health store unavailable "
        "(recording its effects failed too: unexpected ValueError: health store unavailable)"
    )
    with scenario.engine.connect() as conn:
        (stored,) = history.recent_polls(conn, USDM)
    assert (stored.outcome, stored.error, stored.error_kind) == ("failed", r.error, "unexpected")


def test_a_database_error_during_apply_is_a_failed_poll(sqlite_scenario: Scenario, sqlite_url: str) -> None:
    sc = sqlite_scenario
    sc.poll()
    plant_trigger(sqlite_url, "tier_row", "disk I/O error (simulated)")
    r = sc.poll(lambda: snapshot(sc.now, TIGHTER))
    assert r.outcome == "failed" and r.error_kind == "unexpected"
    assert r.error == "unexpected IntegrityError: disk I/O error (simulated)"
    assert sc.count(TableVersion) == 2 and sc.count(ChangeRecord) == 0
    drop_trigger(sqlite_url, "tier_row")
    ok = sc.poll(lambda: snapshot(sc.now, TIGHTER))
    assert ok.outcome == "ok" and {c.symbol for c in ok.changes} == {"ETH/USDT:USDT"}


def test_a_database_error_on_one_symbol_names_that_symbol(sqlite_scenario: Scenario, sqlite_url: str) -> None:
    sc = sqlite_scenario
    sc.poll()
    plant_trigger(sqlite_url, "table_version", "row is locked (simulated)", "OLD.symbol = 'ETH/USDT:USDT'", "UPDATE")
    both = {**TIGHTER_BTC.tables, **snapshot(T0, TIGHTER).tables}  # BTC changes first, then ETH fails
    r = sc.poll(lambda: Snapshot(USDM, sc.now, "test", both))
    assert r.outcome == "failed"
    assert r.error == "ETH/USDT:USDT: unexpected IntegrityError while applying its table: row is locked (simulated)"


def test_a_full_database_is_named_as_such(sqlite_scenario: Scenario) -> None:
    sc = sqlite_scenario
    sc.poll()

    def cap(dbapi_conn: Any, _record: Any) -> None:  # as SQLite answers on a full disk: SQLITE_FULL
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count={pages}")

    event.listen(sc.engine, "connect", cap)
    sc.engine.dispose()  # every connection from now on is capped
    eth = snapshot(T0).tables["ETH/USDT:USDT"]
    listed = {f"X{n}/USDT:USDT": replace(eth, symbol=f"X{n}/USDT:USDT") for n in range(400)}
    r = sc.poll(lambda: Snapshot(USDM, sc.now, "test", {**snapshot(sc.now).tables, **listed}))
    # The big write is rolled back; the small failed-poll row still fits in the pages the file has.
    assert (r.outcome, r.error_kind) == ("failed", "storage")
    assert r.error is not None and r.error.startswith("database or disk is full (") and r.poll_id > 0
    assert sc.count(TableVersion) == 2 and sc.count(ChangeRecord) == 0


def test_when_not_even_the_failure_can_be_recorded(sqlite_scenario: Scenario, sqlite_url: str) -> None:
    sc = sqlite_scenario
    sc.poll()
    plant_trigger(sqlite_url, "poll", "database is gone (simulated)")
    r = sc.poll()  # the daemon counts it and goes on
    assert (r.poll_id, r.outcome, r.error_kind) == (0, "failed", "not_recorded")
    assert r.error is not None and "could not be recorded" in r.error and "database is gone" in r.error
    assert sc.failures("not_recorded") == 1
    with pytest.raises(PollNotRecorded, match=r"^binance-usdm: the poll failed \(.*\) and could not be recorded"):
        poll_source(sc.engine, sc.settings, USDM, lambda s, st: snapshot(sc.now), clock=lambda: sc.now)


def test_the_cli_says_in_one_line_when_the_database_refuses_the_poll(
    fake: FakeExchange, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    point_at_fake(fake, monkeypatch, tmp_path, page_retries=0)
    open_engine(sqlite_url).dispose()
    plant_trigger(sqlite_url, "poll", "database is gone (simulated)")
    proc = run(sqlite_url, "poll", "--source", USDM)
    assert proc.returncode == 1
    (line,) = [w for w in proc.stderr.splitlines() if not w.startswith("warning: ")]
    assert line.startswith("error: binance-usdm: the poll failed") and "database is gone (simulated)" in line


# -- resting when the exchange asks ---------------------------------------------------------------------


def _rate_limited() -> Snapshot:
    raise RateLimited("rate limited (HTTP 403 from exchange)", rest_seconds=600)


def test_a_source_rests_as_the_exchange_asks(scenario: Scenario, db_url: str) -> None:
    scenario.now = T0 - timedelta(minutes=1)
    first = scenario.poll(_rate_limited)
    until = T0 + timedelta(minutes=10)
    assert (first.outcome, first.error_kind, first.retry_at) == ("failed", "rate_limited", until)
    assert (
        first.error
        == "rate limited (HTTP 403 from exchange); resting until 2026-12-01T22:40:05Z, no request before then"
    )
    resting = "resting until 2026-12-01T22:40:05Z, no request before then: rate limited (HTTP 403 from exchange)"
    for minutes in (5, 4):  # T0 + 5 min, T0 + 9 min: the exchange is left alone
        r = scenario.poll(after=timedelta(minutes=minutes))
        assert (r.outcome, r.error_kind, r.retry_at, r.error) == ("failed", "resting", until, resting)
    assert scenario.fetches == 1 and len(scenario.answers) == 2  # the prepared answers were never asked for
    assert scenario.failures("resting") == 2
    scenario.answers.clear()
    assert scenario.poll(after=timedelta(minutes=1)).outcome == "ok"  # at T0 + 10 min: polling again
    assert scenario.fetches == 2
    rows = cli(db_url, "polls", "--source", USDM, "--json")
    # The two resting polls failed alike: one row counts both, from the first to the last.
    assert [(p["error_kind"], p["retry_at"], p["repeats"]) for p in rows] == [
        (None, None, 1),
        ("resting", "2026-12-01T22:40:05Z", 2),
        ("rate_limited", "2026-12-01T22:40:05Z", 1),
    ]
    assert rows[1]["last_at"] > rows[1]["started_at"]


def test_a_rest_is_rounded_up_to_the_second_and_bounded(scenario: Scenario) -> None:
    scenario.now = T0 + timedelta(microseconds=250_000) - timedelta(minutes=1)

    def forever() -> Snapshot:
        raise RateLimited("geo-blocked", rest_seconds=1e12)

    r = scenario.poll(forever)
    assert r.retry_at == T0.replace(second=6) + timedelta(days=7)  # a week at most, never year 31,000


def test_both_readers_agree_on_rested_polls(sqlite_scenario: Scenario, sqlite_url: str) -> None:
    sqlite_scenario.poll(_rate_limited)
    sqlite_scenario.poll()
    raw = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    try:
        through_sqlite3 = history.recent_polls(SqliteReader(raw), USDM)
    finally:
        raw.close()
    with sqlite_scenario.engine.connect() as conn:
        through_alchemy = history.recent_polls(conn, USDM)
    assert through_sqlite3 == through_alchemy
    assert [p.error_kind for p in through_sqlite3] == ["resting", "rate_limited"]
    assert through_sqlite3[0].retry_at == T0 + timedelta(minutes=11)


def test_bybit_403_rests_the_source_without_calling_it_again(env: str, fake: FakeExchange) -> None:
    fake.inject(RISK_LIMIT, Fault.http(403), times=5)
    (failed,) = cli(env, "poll", "--source", "bybit-linear", "--json", code=1)
    assert failed["outcome"] == "failed" and "resting until" in failed["error"]
    asked = len(fake.requests_to(RISK_LIMIT)) + len(fake.requests_to(INSTRUMENTS))
    both = cli(env, "poll", "--source", "bybit-linear", "--source", USDM, "--json", code=1)
    assert [r["outcome"] for r in both] == ["failed", "ok"]  # the other source is polled as usual
    assert both[0]["error"].startswith("resting until ") and ", no request before then: " in both[0]["error"]
    assert len(fake.requests_to(RISK_LIMIT)) + len(fake.requests_to(INSTRUMENTS)) == asked
    rows = cli(env, "polls", "--source", "bybit-linear", "--json")
    assert [r["error_kind"] for r in rows] == ["resting", "rate_limited"]
    assert rows[0]["retry_at"] == rows[1]["retry_at"] is not None


# -- imports refuse times in the future -----------------------------------------------------------------


def test_an_import_dated_in_the_future_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    url = f"sqlite:///{db}"
    payload = {"BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", BTC_ROWS)}
    archive = write_archive(tmp_path / "tiers.json", payload)
    proc = run(url, "import", str(archive), "--source", USDM, "--at", "2062-01-05")
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: --at: 2062-01-05T00:00:00Z is in the future (now 20") and "typo" in line
    named = write_archive(tmp_path / "2062-03-01_tiers.json", payload)
    proc = run(url, "import", str(named), "--source", USDM)
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: 2062-03-01_tiers.json: the date in its name: 2062-03-01T00:00:00Z is in the future")
    assert not db.exists()


@pytest.mark.parametrize(
    ("at", "refused"),
    [
        (T0, False),
        (T0 + timedelta(minutes=4), False),
        (T0 + timedelta(minutes=6), True),
        (T0 - timedelta(days=900), False),
    ],
)
def test_plan_allows_a_little_clock_skew_and_no_more(tmp_path: Path, at: datetime, refused: bool) -> None:
    archive = write_archive(tmp_path / "x.json", {})
    if refused:
        with pytest.raises(ImportFileError, match="is in the future"):
            plan([archive], at, now=T0)
    else:
        assert plan([archive], at, now=T0)[0].at == at


def test_an_unexpected_error_in_an_import_file_names_it_and_keeps_the_ones_before(
    tmp_path: Path, sqlite_url: str
) -> None:
    first = write_archive(tmp_path / "2024-01-01.json", {"ETH/USDT:USDT": ccxt_tiers("ETH/USDT:USDT", ETH_ROWS)})
    second = write_archive(tmp_path / "2024-02-01.json", {"ETH/USDT:USDT": ccxt_tiers("ETH/USDT:USDT", TIGHTER)})
    assert run(sqlite_url, "import", str(first), "--source", USDM).returncode == 0
    plant_trigger(sqlite_url, "change_record", "disk full (simulated)")
    proc = run(sqlite_url, "import", str(second), "--source", USDM)
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert line == "error: 2024-02-01.json: nothing imported from it: unexpected IntegrityError: disk full (simulated)"
    engine = open_engine(sqlite_url)
    with engine.connect() as conn:
        assert [p.started_at for p in history.recent_polls(conn, USDM)] == [ts("2024-01-01")]
    engine.dispose()

"""The daemon: one cycle, running and stopping, one writer with a hot standby, health, metrics, check."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from monitor.cli import app
from monitor.config.settings import Settings
from monitor.exchanges import fetch_snapshot
from monitor.fake_exchange import RISK_LIMIT, FakeExchange, Fault, generate_tables
from monitor.service.daemon import Daemon
from monitor.service.httpserver import HealthServer
from monitor.service.lock import FileLock, writer_lock
from snapshots.history import recent_polls
from snapshots.model import SOURCES
from snapshots.timefmt import utcnow
from tests.conftest import point_at_fake

runner = CliRunner()


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    tables = {source: generate_tables(source, 12, seed=5) for source in SOURCES}
    with FakeExchange(tables=tables) as server:
        yield server


@pytest.fixture
def env(fake: FakeExchange, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str) -> str:
    point_at_fake(fake, monkeypatch, tmp_path, page_retries=0)
    return db_url


def settings_for(fake: FakeExchange, db_url: str, **extra: object) -> Settings:
    return Settings(
        database_url=db_url,
        endpoints=fake.endpoints(),
        http_timeout=2,
        bybit_page_retries=0,
        poll_interval_seconds=5,
        poll_jitter_seconds=0,
        deliver_interval_seconds=0.5,
        standby_retry_seconds=0.2,
        **extra,
    )


def make_daemon(settings: Settings, engine: Engine) -> Daemon:
    fetch: Callable[[str, Settings], object] = lambda src, st: fetch_snapshot(src, st, now=utcnow)  # noqa: E731
    return Daemon(settings, engine, fetch, writer_lock(engine), utcnow)  # type: ignore[arg-type]


def wait_for(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def polls(engine: Engine) -> int:
    with engine.connect() as conn:
        return len(recent_polls(conn, None, 1000))


def test_run_once_exit_code_says_whether_anything_failed(env: str, fake: FakeExchange) -> None:
    result = runner.invoke(app, ["--db", env, "run", "--once"])
    assert result.exit_code == 0, result.output
    assert "4/4 polls ok" in result.output
    fake.inject(RISK_LIMIT, Fault.http(503), times=5)
    result = runner.invoke(app, ["--db", env, "run", "--once"])
    assert result.exit_code == 1
    assert "2/4 polls ok" in result.output  # both Bybit categories share the failing endpoint


def test_daemon_polls_stops_cleanly_and_hands_over_to_a_standby(
    fake: FakeExchange, engine: Engine, db_url: str
) -> None:
    settings = settings_for(fake, db_url, sources=["binance-usdm", "bybit-linear"])
    first, second = make_daemon(settings, engine), make_daemon(settings, engine)
    t1 = threading.Thread(target=first.run_forever)
    t1.start()
    wait_for(lambda: polls(engine) >= 2)
    t2 = threading.Thread(target=second.run_forever)
    t2.start()
    time.sleep(1.0)
    assert first.holding and not second.holding  # one writer; the other waits
    assert second.metrics.standby._value.get() == 1  # type: ignore[attr-defined]
    first.stop_event.set()
    t1.join(timeout=30)
    assert not t1.is_alive()
    before = polls(engine)
    wait_for(lambda: second.holding)  # takes over within its retry interval
    wait_for(lambda: polls(engine) > before)
    second.stop_event.set()
    t2.join(timeout=30)
    assert not t2.is_alive()
    with engine.connect() as conn:
        assert all(p.outcome == "ok" for p in recent_polls(conn, None, 100))


def test_poll_command_refuses_while_the_daemon_writes(env: str, engine: Engine) -> None:
    lock = writer_lock(engine)
    assert lock.acquire()
    try:
        result = runner.invoke(app, ["--db", env, "poll"])
        assert result.exit_code != 0
        assert "already polling" in str(result.exception)
        if isinstance(lock, FileLock):  # the holder's pid is in the file, and in the message
            assert f"(pid {os.getpid()})" in str(result.exception)
    finally:
        lock.release()


def test_health_endpoints_and_metrics(fake: FakeExchange, engine: Engine, db_url: str) -> None:
    settings = settings_for(fake, db_url, sources=["bybit-linear"])
    daemon = make_daemon(settings, engine)
    daemon.metrics.watch_outbox(engine)
    ready = [False]
    server = HealthServer("127.0.0.1", 0, daemon.metrics.exposition, lambda: (ready[0], "standby")).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        daemon.poll("bybit-linear")
        fake.inject(RISK_LIMIT, Fault.malformed())
        daemon.poll("bybit-linear")
        assert urllib.request.urlopen(base + "/healthz").status == 200
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + "/readyz")
        assert err.value.code == 503
        ready[0] = True
        assert urllib.request.urlopen(base + "/readyz").status == 200
        text = urllib.request.urlopen(base + "/metrics").read().decode()
        assert 'tierdrift_polls_total{outcome="ok",source="bybit-linear"} 1.0' in text
        assert 'tierdrift_poll_failures_total{reason="malformed",source="bybit-linear"} 1.0' in text
        assert 'tierdrift_last_success_timestamp_seconds{source="bybit-linear"}' in text
        assert 'tierdrift_alerts{status="failed"} 0.0' in text
        assert "tierdrift_positions_in_violation 0.0" in text
    finally:
        server.stop()


def test_check_is_one_line_for_cron(
    env: str, fake: FakeExchange, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIERDRIFT_SOURCES", '["bybit-linear"]')
    result = runner.invoke(app, ["--db", env, "check"])
    assert result.exit_code == 1 and result.stdout.count("\n") == 1  # stderr may warn (no alert channel)
    assert "bybit-linear: never polled successfully" in result.output
    assert runner.invoke(app, ["--db", env, "poll"]).exit_code == 0
    result = runner.invoke(app, ["--db", env, "check"])
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("TIERDRIFT_STALE_AFTER_MINUTES", "0.0001")
    time.sleep(0.05)
    result = runner.invoke(app, ["--db", env, "check"])
    assert result.exit_code == 1 and "stale" in result.output


def test_job_errors_are_logged_and_counted_not_fatal(fake: FakeExchange, engine: Engine, db_url: str) -> None:
    daemon = make_daemon(settings_for(fake, db_url), engine)
    assert daemon.lock.acquire()
    try:
        job = daemon._guarded(lambda: 1 / 0)
        job()  # must not raise
        assert daemon.metrics.job_errors._value.get() == 1  # type: ignore[attr-defined]
    finally:
        daemon.lock.release()


def test_daemon_records_its_work_in_one_transaction_per_poll(fake: FakeExchange, engine: Engine, db_url: str) -> None:
    daemon = make_daemon(settings_for(fake, db_url, sources=["binance-usdm"]), engine)
    report = daemon.cycle()
    assert report.ok and [p.outcome for p in report.polls] == ["ok"]
    with Session(engine) as s, s.connection() as conn:
        assert recent_polls(conn, "binance-usdm", 5)[0].symbols == 12


def test_sigterm_stops_the_daemon_cleanly_and_frees_the_lock(
    env: str, fake: FakeExchange, engine: Engine, tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--db", env, "run"],
        env={**os.environ, "TIERDRIFT_SOURCES": '["binance-usdm"]', "TIERDRIFT_POLL_INTERVAL_SECONDS": "5"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: polls(engine) >= 1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopping: waiting for running jobs" in err and "stopped" in err
    lock = writer_lock(engine)
    assert lock.acquire()  # nothing is left holding it
    lock.release()


def test_config_show_redacts_every_secret(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERDRIFT_BINANCE__API_KEY", "key-AAAA1111")
    monkeypatch.setenv("TIERDRIFT_BINANCE__API_SECRET", "secret-BBBB2222")
    monkeypatch.setenv("TIERDRIFT_WEBHOOK_URL", "https://hooks.example.com/T00/B00/token-CCCC3333")
    monkeypatch.setenv("TIERDRIFT_WEBHOOK_SECRET", "whsec_ZGVtby1zZWNyZXQtZm9yLXRpZXJkcmlmdA==")
    monkeypatch.setenv("TIERDRIFT_SMTP_URL", "smtp://me:pass-DDDD4444@mail.example.com:587")
    result = runner.invoke(app, ["--db", env, "config", "show", "--json"])
    assert result.exit_code == 0, result.output
    for secret in ("key-AAAA1111", "secret-BBBB2222", "token-CCCC3333", "ZGVtby1zZWNyZXQ", "pass-DDDD4444"):
        assert secret not in result.stdout
    assert '"webhook_url": "***"' in result.stdout


def test_the_writer_gives_earlier_positions_their_entry_record(env: str, engine: Engine) -> None:
    """A position logged before the journal (an upgraded database: no entry record) gets one, marked
    recomputed, when the daemon next runs; nothing else about it changes."""
    from monitor.store.models import Position, PositionRecord

    assert runner.invoke(app, ["--db", env, "run", "--once"]).exit_code == 0  # the tables exist now
    with engine.connect() as conn:
        symbol = conn.exec_driver_sql(
            "SELECT symbol FROM table_version WHERE source = 'binance-usdm' ORDER BY symbol LIMIT 1"
        ).scalar_one()
    with Session(engine) as session:
        session.add(Position(source="binance-usdm", symbol=symbol, side="long", entry_price=100.0, size=1.0,
                             size_input="qty=1", margin=50.0, opened_at=utcnow()))  # fmt: skip
        session.commit()
        assert session.query(PositionRecord).count() == 0
    second = runner.invoke(app, ["--db", env, "run", "--once"])  # (exit 1: the fake has no mark for it)
    assert "4/4 polls ok" in second.output and "1 earlier position(s) got an entry record" in second.output
    with Session(engine) as session:
        (entry,) = session.query(PositionRecord).all()
        assert entry.kind == "entry" and entry.recomputed is True
        assert entry.liquidation_price is not None, entry.unknown
    assert "earlier position" not in runner.invoke(app, ["--db", env, "run", "--once"]).output
    with Session(engine) as session:
        assert session.query(PositionRecord).count() == 1  # once, not again at every start


def test_start_up_is_frozen_with_ccxt_when_a_source_uses_it() -> None:
    """`tierdrift run` freezes start-up's objects (ccxt's included) so the collector neither walks nor counts them."""
    import gc
    import sys

    from monitor.cli.daemon import freeze_start_up
    from monitor.config.settings import Settings

    try:
        freeze_start_up(Settings(sources=["bybit-linear"]))
        assert "ccxt" in sys.modules
        assert gc.get_freeze_count() > 100_000  # the modules, ccxt's exchange classes among them
    finally:
        gc.unfreeze()

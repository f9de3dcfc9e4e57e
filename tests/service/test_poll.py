"""`tierdrift poll` end to end: the CLI, the real ccxt/httpx stacks, a fake exchange on 127.0.0.1, SQLite."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from monitor.cli import app
from monitor.fake_exchange import RISK_LIMIT, WEB_USDM, FakeExchange, Fault, generate_tables
from snapshots.model import SOURCES
from tests.conftest import point_at_fake

KEY = "pollKey-0123456789abcdef"
SECRET = "pollSecret-fedcba9876543210"
runner = CliRunner()


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    tables = {source: generate_tables(source, 24, seed=3) for source in SOURCES}
    with FakeExchange(api_key=KEY, api_secret=SECRET, tables=tables) as server:
        yield server


@pytest.fixture
def env(fake: FakeExchange, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str) -> str:
    point_at_fake(fake, monkeypatch, tmp_path, page_retries=1)
    return db_url


def cli(db_url: str, *args: str, code: int = 0) -> Any:
    result = runner.invoke(app, ["--db", db_url, *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if "--json" in args else result.output


def first_id(fake: FakeExchange, source: str) -> str:
    return sorted(fake.tables(source))[0]


def test_first_poll_is_a_baseline_then_changes_are_reported(env: str, fake: FakeExchange) -> None:
    out = cli(env, "poll")
    for source in SOURCES:
        assert f"{source}: first snapshot stored (24 symbols)" in out
    ident = first_id(fake, "binance-usdm")
    table = fake.tables("binance-usdm")[ident]
    tiers = list(table.tiers)
    old_rate, new_rate = tiers[0].rate, (tiers[0].rate + tiers[1].rate) / 2
    tiers[0] = replace(tiers[0], rate=new_rate)
    # Keep the maintenance amounts on the recurrence: A_n falls by floor_2 × (r1' − r1) from tier 2 on.
    tiers[1:] = [replace(t, amount=t.amount - tiers[1].floor * (new_rate - old_rate)) for t in tiers[1:]]
    fake.set_table("binance-usdm", ident, replace(table, tiers=tuple(tiers)))
    out = cli(env, "poll", "--source", "binance-usdm")
    assert "binance-usdm: ok, 24 symbols, 1 changed" in out
    changes = cli(env, "changes", "--json")
    rate = next(c for c in changes if c["field"] == "maintenance_margin_rate")
    assert rate["tier"] == 1 and rate["new"] == pytest.approx(new_rate) and rate["old"] == pytest.approx(old_rate)
    assert rate["previous_poll_at"] is not None and rate["detected_at"] > rate["previous_poll_at"]
    versions = cli(env, "history", rate["symbol"], "--source", "binance-usdm", "--json")
    assert [v["provenance"] for v in versions] == ["binance-web", "binance-web"]


def test_a_failing_source_is_recorded_and_removes_nothing(env: str, fake: FakeExchange) -> None:
    cli(env, "poll", "--source", "bybit-linear")
    before = cli(env, "sources", "--json")
    fake.inject(RISK_LIMIT, Fault.http(503), times=10)
    out = cli(env, "poll", "--source", "bybit-linear", code=1)
    assert "bybit-linear: FAILED:" in out and "503" in out
    status = {s["source"]: s for s in cli(env, "sources", "--json")}["bybit-linear"]
    assert status["last_outcome"] == "failed" and "503" in status["last_error"]
    assert status["symbols"] == 24 and status["last_success_at"] == before[2]["last_success_at"]
    assert cli(env, "changes", "--json") == []


def test_an_empty_answer_is_a_failure_not_a_delisting(env: str, fake: FakeExchange) -> None:
    cli(env, "poll", "--source", "binance-usdm")
    fake.inject(WEB_USDM, Fault.empty())
    out = cli(env, "poll", "--source", "binance-usdm", code=1)
    assert "FAILED" in out
    assert cli(env, "changes", "--json") == []


def test_a_mass_vanishing_is_quarantined_and_visible(env: str, fake: FakeExchange) -> None:
    cli(env, "poll", "--source", "bybit-inverse")
    for ident in sorted(fake.tables("bybit-inverse"))[:8]:
        fake.set_table("bybit-inverse", ident, None)
    out = cli(env, "poll", "--source", "bybit-inverse", code=1)
    assert "QUARANTINED: 8 of 24 symbols (33%) vanished at once" in out
    polls = cli(env, "polls", "--source", "bybit-inverse", "--json")
    assert polls[0]["outcome"] == "quarantined" and "vanished" in polls[0]["error"]
    assert {s["source"]: s for s in cli(env, "sources", "--json")}["bybit-inverse"]["symbols"] == 24
    out = cli(env, "poll", "--source", "bybit-inverse", "--accept-removals")
    assert "8 changed" in out
    kinds = {c["kind"] for c in cli(env, "changes", "--json")}
    assert kinds == {"symbol_delisted"}


def test_signed_binance_poll_keeps_the_key_out_of_everything(
    env: str, fake: FakeExchange, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TIERDRIFT_BINANCE__API_KEY", KEY)
    monkeypatch.setenv("TIERDRIFT_BINANCE__API_SECRET", SECRET)
    out = cli(env, "poll", "--source", "binance-usdm", "--source", "binance-coinm", "--json")
    assert [r["outcome"] for r in out] == ["ok", "ok"]
    versions = cli(env, "history", first_id(fake, "binance-coinm"), "--source", "binance-coinm", "--json")
    assert versions[0]["provenance"] == "binance-dapi-signed"
    monkeypatch.setenv("TIERDRIFT_BINANCE__API_SECRET", "wrong-" + SECRET)
    failed = cli(env, "poll", "--source", "binance-usdm", "--json", code=1)
    assert failed[0]["outcome"] == "failed"
    stored = dump_database(env)
    assert "binance-dapi-signed" in stored  # the dump does hold the data
    text = json.dumps(failed) + json.dumps(cli(env, "polls", "--json"))
    for secret in (KEY, SECRET):
        assert secret not in stored
        assert secret not in text


def dump_database(url: str) -> str:
    """Every value of every table, as text (zlib-compressed raw records are inflated first)."""
    engine = create_engine(url)
    parts = []
    with engine.connect() as conn:
        for name in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{name}"')):
                for value in row:
                    parts.append(zlib.decompress(value).decode() if isinstance(value, bytes) else str(value))
    engine.dispose()
    return "\n".join(parts)

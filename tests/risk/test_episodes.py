"""Risk episodes: the state machine (examples, and hypothesis against an independent model of one hysteresis
trigger per level), and the market refresh → episode → `position_risk` alert → delivery path through the
daemon, the fake exchange and a webhook receiver on 127.0.0.1, down to a mark crossing the LP."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from alerts.config import WebhookConfig
from alerts.db import AlertRecord
from monitor.config.settings import Settings
from monitor.exchanges import fetch_snapshot
from monitor.fake_exchange import FAPI_PREMIUM_INDEX, FakeExchange, Fault, generate_tables
from monitor.risk.episodes import LEVELS, RANK, Bands, Level, raw_level, step
from monitor.risk.positions import PositionInput, validate
from monitor.service.daemon import Daemon
from monitor.service.demo import BEFORE, table
from monitor.service.lock import writer_lock
from monitor.store.models import MarketData, RiskEpisode
from snapshots.timefmt import utcnow
from tests.alerts.loopback import Server, serving

BANDS = Bands(threshold=2.0, near=1.0, hysteresis=0.25)


# -- the state machine -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "buffer", "level", "event"),
    [
        ("ok", 3.0, "ok", None),
        ("ok", 1.99, "violation", "entered"),
        ("ok", 0.5, "near", "entered"),  # straight in at the worst level reached
        ("ok", 0.0, "beyond", "entered"),  # the mark at the LP is beyond
        ("ok", -0.3, "beyond", "entered"),
        ("violation", 2.1, "violation", None),  # inside the hysteresis band: still in
        ("violation", 2.25, "ok", "recovered"),  # threshold + hysteresis: out
        ("violation", 0.9, "near", "escalated"),
        ("near", 1.1, "near", None),  # de-escalation only past near + hysteresis
        ("near", 1.3, "violation", None),  # and then silent
        ("near", 2.3, "ok", "recovered"),
        ("beyond", 0.1, "beyond", None),  # back on the safe side, but not by the hysteresis
        ("beyond", 0.3, "near", None),
        ("beyond", 5.0, "ok", "recovered"),
        ("near", None, "near", None),  # unknown: nothing changes
        ("ok", float("inf"), "ok", None),  # a position price cannot liquidate
    ],
)
def test_step(previous: Level, buffer: float | None, level: Level, event: str | None) -> None:
    assert step(previous, buffer, BANDS) == (level, event)


def reference(buffers: list[float | None], bands: Bands) -> list[str]:
    """The events of `buffers` by an independent model: one Schmitt trigger per level (on below its bound, or
    at/below 0 for beyond; off at its bound + hysteresis); the level is the highest trigger that is on."""
    on: dict[str, bool] = dict.fromkeys(LEVELS[1:], False)
    bounds = {"violation": bands.threshold, "near": bands.near, "beyond": 0.0}
    level, events = "ok", []
    for b in buffers:
        if b is None:
            continue
        for name, bound in bounds.items():
            entering = b <= 0 if name == "beyond" else b < bound
            on[name] = entering or (on[name] and b < bound + bands.hysteresis)
        new = max((n for n, v in on.items() if v), key=RANK.__getitem__, default="ok")
        if level == "ok" and new != "ok":
            events.append(f"entered {new}")
        elif level != "ok" and new == "ok":
            events.append("recovered")
        elif RANK[new] > RANK[level]:
            events.append(f"escalated {new}")
        level = new
    return events


buffers = st.lists(
    st.one_of(st.none(), st.floats(min_value=-3, max_value=5, allow_nan=False), st.sampled_from([0.0, 1.0, 2.0, 2.25])),
    max_size=60,
)


def run(seq: Sequence[float | None], bands: Bands) -> tuple[list[str], list[Level]]:
    level: Level = "ok"
    events, levels = [], []
    for b in seq:
        level, event = step(level, b, bands)
        levels.append(level)
        if event is not None:
            events.append("recovered" if event == "recovered" else f"{event} {level}")
    return events, levels


@settings(max_examples=300, deadline=None)
@given(buffers, st.floats(min_value=0, max_value=1))
def test_alerts_are_entries_escalations_and_recoveries_of_the_model(seq: list[float | None], h: float) -> None:
    bands = Bands(2.0, 1.0, h)
    events, _ = run(seq, bands)
    assert events == reference(seq, bands)
    entries = sum(e.startswith("entered") for e in events)
    recoveries = events.count("recovered")
    assert entries - recoveries in (0, 1)  # episodes alternate: in, out, in…


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=1.0, max_value=2.2499, allow_nan=False), min_size=1, max_size=50))
def test_hovering_at_the_threshold_alerts_once(seq: list[float]) -> None:
    # Enter once just below 2.0, then hover anywhere inside [near, threshold + hysteresis): one alert only.
    events, levels = run([1.99, *seq], BANDS)
    assert events == ["entered violation"]
    assert set(levels) == {"violation"}


@settings(max_examples=200, deadline=None)
@given(buffers)
def test_unknown_figures_change_nothing(seq: list[float | None]) -> None:
    known = [b for b in seq if b is not None]
    assert run(seq, BANDS)[0] == run(known, BANDS)[0]


@given(st.floats(min_value=-10, max_value=10, allow_nan=False))
def test_the_raw_level_is_ordered_by_the_buffer(b: float) -> None:
    expected = "beyond" if b <= 0 else "near" if b < 1 else "violation" if b < 2 else "ok"
    assert raw_level(b, BANDS) == expected


# -- market refresh → alert → delivery -------------------------------------------------------------

SOURCE, SYMBOL, ADR = "binance-usdm", "BTCUSDT", 1_600.0


@pytest.fixture
def receiver() -> Iterator[Server]:
    with serving() as server:
        yield server


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    scenario = {SOURCE: {**generate_tables(SOURCE, 3, seed=11), SYMBOL: table(BEFORE)}}
    with FakeExchange(tables=scenario) as server:
        server.set_market(SOURCE, SYMBOL, mark=60_000.0, daily_ranges=[ADR] * 20, open_range=ADR / 2)
        yield server


def daemon(fake: FakeExchange, engine: Engine, db_url: str, hook: str, **extra: object) -> Daemon:
    s = Settings(
        database_url=db_url, sources=[SOURCE], endpoints=fake.endpoints(), http_timeout=2,
        channels=[WebhookConfig(name="hook", url=SecretStr(hook))], **extra,  # type: ignore[arg-type]
    )  # fmt: skip
    d = Daemon(s, engine, lambda src, st: fetch_snapshot(src, st, now=utcnow), writer_lock(engine), utcnow)
    assert d.poll(SOURCE).outcome == "ok"  # the tier tables
    return d


def log_position(engine: Engine) -> int:
    with Session(engine) as session:
        p = validate(session.connection(), PositionInput(SOURCE, "BTC/USDT:USDT", "long", 60_000.0, qty=10,
                                                         margin=40_000), now=utcnow())  # fmt: skip
        session.add(p)
        session.commit()
        assert p.id is not None
        return p.id


def episode(engine: Engine, pid: int) -> RiskEpisode:
    with Session(engine) as session:
        row = session.get(RiskEpisode, pid)
        assert row is not None
        return row


def alerts(engine: Engine) -> list[AlertRecord]:
    with Session(engine) as session:
        return list(session.exec(select(AlertRecord).where(AlertRecord.kind == "position_risk")))


def test_a_falling_mark_alerts_once_per_level_then_the_recovery(
    fake: FakeExchange, engine: Engine, db_url: str, receiver: Server
) -> None:
    d = daemon(fake, engine, db_url, f"{receiver.url}/hook")
    pid = log_position(engine)
    assert d.refresh_market() == []
    first = episode(engine, pid)
    assert first.level == "ok" and first.liquidation_price is not None and first.buffer_adr is not None
    lp = first.liquidation_price
    assert first.buffer_adr == pytest.approx((60_000 - lp) / ADR)
    assert alerts(engine) == []

    for buffer in (1.9, 1.95, 2.2, 0.5, 0.8, -0.1, 0.1, 3.0, 3.0):  # ADRs above the LP
        fake.set_market(SOURCE, SYMBOL, mark=lp + buffer * ADR, daily_ranges=[ADR] * 20, open_range=ADR / 2)
        assert d.refresh_market() == []
    report = d.deliver()
    assert report.sent == 4 and report.failed == 0

    got = [r.json() for r in receiver.requests]
    assert [(g["severity"], g["data"]["risk"]["event"], g["data"]["risk"]["level"]) for g in got] == [
        ("warning", "entered", "violation"),
        ("critical", "escalated", "near"),
        ("critical", "escalated", "beyond"),
        ("info", "recovered", "ok"),
    ]
    violation, near, beyond, recovered = got
    assert "margin-risk violation, buffer 1.90 ADR below 2 ADR" in violation["title"]
    assert f"moved: mark {60_000:,.2f} → {lp + 1.9 * ADR:,.2f}" in violation["summary"]
    assert {"label": "ADR", "old": "1,600.00", "new": "1,600.00"} in violation["changes"]
    assert "0.50 ADR from liquidation price" in near["title"]
    assert "MARK BEYOND LIQUIDATION PRICE" in beyond["title"] and "ADR" not in beyond["title"]
    buffer_row = next(c for c in beyond["changes"] if c["label"] == "buffer")
    assert buffer_row == {"label": "buffer", "old": "0.80 ADR", "new": "mark beyond LP"}
    assert "worst: MARK BEYOND LIQUIDATION PRICE" in " ".join(recovered["summary"])
    assert beyond["data"]["position"]["id"] == pid and beyond["symbol"] == "BTC/USDT:USDT"
    assert episode(engine, pid).level == "ok" and episode(engine, pid).since is None


def test_a_stale_mark_makes_no_episode(fake: FakeExchange, engine: Engine, db_url: str, receiver: Server) -> None:
    d = daemon(fake, engine, db_url, f"{receiver.url}/hook", mark_max_age_minutes=1)
    clock = [utcnow()]  # after the poll: the tables in force are read at this time
    d.clock = lambda: clock[0]
    pid = log_position(engine)
    d.refresh_market()
    lp = episode(engine, pid).liquidation_price
    assert lp is not None
    with Session(engine) as session:  # a mark past the LP is stored, but two minutes old: stale
        row = session.get(MarketData, (SOURCE, "BTC/USDT:USDT"))
        assert row is not None
        row.mark_price, row.mark_at = lp - 10, clock[0] - timedelta(minutes=2)
        session.add(row)
        session.commit()
    fake.inject(FAPI_PREMIUM_INDEX, Fault.http(503), times=10)  # and the refresh fails to renew it
    assert d.refresh_market()  # a failure, recorded
    assert episode(engine, pid).level == "ok" and alerts(engine) == []
    fake.clear_faults()  # the same mark, fetched now: fresh, and beyond
    fake.set_market(SOURCE, SYMBOL, mark=lp - 10, daily_ranges=[ADR] * 20, open_range=ADR / 2)
    assert d.refresh_market() == []
    assert episode(engine, pid).level == "beyond" and len(alerts(engine)) == 1


def test_risk_alerts_off_tracks_nothing(fake: FakeExchange, engine: Engine, db_url: str, receiver: Server) -> None:
    d = daemon(fake, engine, db_url, f"{receiver.url}/hook", risk_alerts="off")
    pid = log_position(engine)
    fake.set_market(SOURCE, SYMBOL, mark=50_000.0, daily_ranges=[ADR] * 20, open_range=ADR / 2)
    d.refresh_market()
    with Session(engine) as session:
        assert session.get(RiskEpisode, pid) is None
    assert alerts(engine) == []


def test_the_alert_and_the_level_are_written_together(
    fake: FakeExchange, engine: Engine, db_url: str, receiver: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = daemon(fake, engine, db_url, f"{receiver.url}/hook")
    pid = log_position(engine)
    d.refresh_market()
    lp = episode(engine, pid).liquidation_price
    assert lp is not None
    fake.set_market(SOURCE, SYMBOL, mark=lp + 0.5 * ADR, daily_ranges=[ADR] * 20, open_range=ADR / 2)

    def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("outbox write failed")

    monkeypatch.setattr("monitor.service.alerting.enqueue", broken)
    with pytest.raises(RuntimeError):
        d.refresh_market()
    assert episode(engine, pid).level == "ok" and alerts(engine) == []  # neither half was written
    monkeypatch.undo()
    d.refresh_market()
    assert episode(engine, pid).level == "near" and len(alerts(engine)) == 1


def test_recovery_needs_the_hysteresis(fake: FakeExchange, engine: Engine, db_url: str, receiver: Server) -> None:
    d = daemon(fake, engine, db_url, f"{receiver.url}/hook", risk_hysteresis_adr=0.5)
    pid = log_position(engine)
    d.refresh_market()
    lp = episode(engine, pid).liquidation_price
    assert lp is not None
    for buffer in (1.5, 2.4, 1.9, 2.49):
        fake.set_market(SOURCE, SYMBOL, mark=lp + buffer * ADR, daily_ranges=[ADR] * 20, open_range=ADR / 2)
        d.refresh_market()
    assert [a.title.split(": ", 1)[1].split(",")[0] for a in alerts(engine)] == ["margin-risk violation"]
    when: datetime | None = episode(engine, pid).since
    assert when is not None and episode(engine, pid).level == "violation"


def test_market_refresh_command_queues_and_says_the_alert(
    fake: FakeExchange, engine: Engine, db_url: str, receiver: Server
) -> None:
    from typer.testing import CliRunner

    from monitor.cli import context as cli_context
    from monitor.cli.market import market_app

    d = daemon(fake, engine, db_url, f"{receiver.url}/hook")
    pid = log_position(engine)
    obj = cli_context.Context(_settings=d.settings, _engine=engine)
    assert CliRunner().invoke(market_app, ["refresh"], obj=obj).exit_code == 0
    lp = episode(engine, pid).liquidation_price
    assert lp is not None
    fake.set_market(SOURCE, SYMBOL, mark=lp - 1, daily_ranges=[ADR] * 20, open_range=ADR / 2)
    result = CliRunner().invoke(market_app, ["refresh"], obj=obj)
    assert result.exit_code == 0, result.output
    assert f"position #{pid} BTC/USDT:USDT: entered beyond: position_risk alert queued" in result.output
    (alert,) = alerts(engine)
    assert alert.severity == 30 and "MARK BEYOND LIQUIDATION PRICE" in alert.title


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"risk_near_liquidation_adr": 2.0}, "risk_near_liquidation_adr (2) must be below violation_threshold_adr (2)"),
        ({"risk_alerts": "yes"}, "risk_alerts"),
        ({"risk_alerts": True}, 'write "on" or "off"'),
        ({"risk_hysteresis_adr": -1}, "risk_hysteresis_adr"),
    ],
)
def test_bad_risk_settings_are_one_line(
    values: dict[str, object], words: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathlib import Path

    from monitor.config.paths import ConfigError
    from monitor.config.settings import load_settings

    cfg = Path(str(tmp_path)) / "config.toml"
    cfg.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert words in str(info.value) and "\n" not in str(info.value)

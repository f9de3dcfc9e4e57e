"""Which events become alerts, when, and that they share their cause's transaction."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from alerts.config import Filters
from alerts.db import AlertRecord
from alerts.events import digest_alert
from alerts.model import Alert, Severity
from alerts.outbox import Route
from monitor.config.settings import Settings
from monitor.service.health import HealthRules, check_stale, observe
from monitor.service.logs import JsonFormatter, RedactingFilter
from monitor.service.polling import poll_source
from monitor.service.wiring import poll_hooks
from snapshots.db import ChangeRecord, Poll
from snapshots.model import Change, Snapshot
from snapshots.parse import parse_ccxt_tiers
from snapshots.store import PollResult
from tests.conftest import BTC_ROWS, ETH_ROWS, ccxt_tiers

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
RULES = HealthRules(alert_after=timedelta(minutes=30), stale_after=timedelta(minutes=30))
ROUTES = [Route("hook", Filters())]


def result(outcome: str, at: datetime, error: str | None = None) -> PollResult:
    return PollResult(1, "bybit-linear", "poll", outcome, at, error=error)


def alerts(engine: Engine) -> list[AlertRecord]:
    with Session(engine) as s:
        return list(s.exec(select(AlertRecord).order_by(AlertRecord.created_at)))  # type: ignore[arg-type]


def step(engine: Engine, r: PollResult, now: datetime) -> None:
    with Session(engine) as s:
        observe(s, r, RULES, ROUTES, now)
        s.commit()


def test_failing_source_alerts_once_after_the_delay_then_recovers(engine: Engine) -> None:
    for minutes in (0, 10, 20):
        step(engine, result("failed", T0 + timedelta(minutes=minutes), "HTTP 503"), T0 + timedelta(minutes=minutes))
    assert alerts(engine) == []  # not yet 30 minutes
    for minutes in (31, 40, 50):
        step(engine, result("failed", T0 + timedelta(minutes=minutes), "HTTP 503"), T0 + timedelta(minutes=minutes))
    (failing,) = alerts(engine)
    assert failing.kind == "source_health" and failing.severity == Severity.CRITICAL
    assert "failing for 31 min" in failing.title and "HTTP 503" in failing.body
    step(engine, result("ok", T0 + timedelta(minutes=60)), T0 + timedelta(minutes=60))
    step(engine, result("ok", T0 + timedelta(minutes=65)), T0 + timedelta(minutes=65))
    titles = [a.title for a in alerts(engine)]
    assert titles == [failing.title, "bybit-linear: recovered after 60 min"]


def test_a_short_blip_alerts_nothing(engine: Engine) -> None:
    step(engine, result("failed", T0, "timeout after 15s"), T0)
    step(engine, result("ok", T0 + timedelta(minutes=5)), T0 + timedelta(minutes=5))
    assert alerts(engine) == []


def test_quarantine_alerts_once_per_episode(engine: Engine) -> None:
    for minutes in (0, 5, 10):
        step(
            engine,
            result("quarantined", T0 + timedelta(minutes=minutes), "9 of 20 vanished"),
            T0 + timedelta(minutes=minutes),
        )
    (q,) = alerts(engine)
    assert q.severity == Severity.WARNING and "quarantined" in q.title
    step(engine, result("ok", T0 + timedelta(minutes=15)), T0 + timedelta(minutes=15))
    assert alerts(engine)[-1].title.endswith("recovered after 15 min")


def test_stale_source_alerts_once(engine: Engine) -> None:
    with Session(engine) as s:
        s.add(Poll(source="bybit-linear", started_at=T0, outcome="ok"))
        s.commit()
    for minutes in (10, 35, 45):
        with Session(engine) as s:
            stale = check_stale(s, ["bybit-linear"], RULES, ROUTES, T0 + timedelta(minutes=minutes))
            s.commit()
        assert stale == ([] if minutes == 10 else ["bybit-linear"])
    (a,) = alerts(engine)
    assert "no successful poll for 35 min" in a.title


def test_digest_summarises_a_large_batch() -> None:
    changes = [
        Change("binance-usdm", f"S{i}/USDT:USDT", "tier_changed", 1, "maintenance_margin_rate", 0.01, 0.02)
        for i in range(300)
    ]
    changes += [Change("binance-usdm", "NEW/USDT:USDT", "symbol_listed")]
    alert = digest_alert("binance-usdm", changes, detected_at=T0, previous_poll_at=T0 - timedelta(minutes=5), now=T0)
    assert alert.severity == Severity.WARNING  # rates rose: margin requirements tightened
    assert alert.title == "binance-usdm: 301 tier change(s) on 301 symbol(s)"
    assert len(alert.rows) == 30 and any("and 270 more change(s)" in line for line in alert.lines)
    assert alert.data["changes_total"] == 301 and alert.data["counts"]["tier_changed"] == 300


def snapshot(at: datetime, eth: list[tuple[float, float, float]]) -> Snapshot:
    payload = {
        "BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", BTC_ROWS),
        "ETH/USDT:USDT": ccxt_tiers("ETH/USDT:USDT", eth),
    }
    return Snapshot("binance-usdm", at, "test", parse_ccxt_tiers("binance-usdm", payload))


def test_digest_is_enqueued_with_the_changes_and_rolls_back_with_them(engine: Engine, db_url: str) -> None:
    settings = Settings(database_url=db_url, webhook_url="http://127.0.0.1:9/hook")  # type: ignore[arg-type]
    clock = [T0]
    tighter = [(f, r * 1.5, lev) for f, r, lev in ETH_ROWS]  # rate × leverage stays below 1
    snaps = iter([snapshot(T0, ETH_ROWS), snapshot(T0 + timedelta(minutes=5), tighter)])
    hooks = poll_hooks(settings, lambda: clock[0])
    poll_source(engine, settings, "binance-usdm", lambda s, st: next(snaps), clock=lambda: clock[0], hooks=hooks)

    def broken(session: Session, r: PollResult) -> None:
        raise RuntimeError("a hook failed after the digest was enqueued")

    clock[0] = T0 + timedelta(minutes=5)
    snaps = iter([snapshot(clock[0], tighter)])
    failed = poll_source(
        engine, settings, "binance-usdm", lambda s, st: next(snaps), clock=lambda: clock[0], hooks=[*hooks, broken]
    )
    assert failed.outcome == "failed" and "a hook failed after the digest was enqueued" in (failed.error or "")
    with Session(engine) as s:  # neither the changes nor their alert were committed
        assert list(s.exec(select(ChangeRecord))) == [] and alerts(engine) == []
    snaps = iter([snapshot(clock[0], tighter)])
    r = poll_source(engine, settings, "binance-usdm", lambda s, st: next(snaps), clock=lambda: clock[0], hooks=hooks)
    assert r.outcome == "ok" and r.changes
    (digest,) = alerts(engine)
    assert digest.kind == "tier_changes" and json.loads(digest.body)["data"]["changes_total"] == len(r.changes)


def test_log_lines_never_carry_secrets() -> None:
    secret = "sUpErSeCrEt-123456"
    record = logging.LogRecord(
        "tierdrift", logging.WARNING, __file__, 1, "GET /fapi?x=1&signature=abcdef key %s", (secret,), None
    )
    assert RedactingFilter([secret]).filter(record)
    line = JsonFormatter().format(record)
    assert secret not in line and "abcdef" not in line
    assert json.loads(line)["level"] == "warning"


# -- position_risk ---------------------------------------------------------------------------------

RISK_FIGURES = {"mark_price": 57_900.0, "adr": 1_600.0, "liquidation_price": 58_000.0, "distance": 0.0017,
                "buffer_adr": -0.0625, "tier": 2}  # fmt: skip
RISK_BEFORE = {**RISK_FIGURES, "mark_price": 58_800.0, "buffer_adr": 0.5, "distance": 0.0136}


def risk(level: str, event: str, symbol: str = "BTC/USDT:USDT", after: Mapping[str, object] | None = None) -> Alert:
    from alerts.events import risk_alert

    data = {"event": event, "level": level, "previous_level": "near", "worst": "beyond",
            "since": "2026-05-01T07:00:00Z", "source": "binance-usdm", "symbol": symbol, "before": RISK_BEFORE,
            "after": after or RISK_FIGURES}  # fmt: skip
    position = {"id": 4, "side": "long", "entry_price": 60_000.0, "size_input": "qty=10", "mode": "isolated"}
    return risk_alert(data, position, threshold_adr=2.0, near_adr=1.0, now=T0)


def test_a_mark_beyond_the_lp_says_so_plainly_and_prints_no_buffer() -> None:
    a = risk("beyond", "escalated")
    assert a.kind == "position_risk" and a.severity is Severity.CRITICAL
    assert (
        a.title == "BTC/USDT:USDT long #4: MARK BEYOND LIQUIDATION PRICE (mark 57,900.00, liquidation price 58,000.00)"
    )
    assert "moved: mark 58,800.00 → 57,900.00" in a.lines
    assert ("buffer", "0.50 ADR", "mark beyond LP") in a.rows and (
        "distance from mark",
        "1.36%",
        "past by 0.17%",
    ) in a.rows
    assert "-0.06" not in " ".join([a.title, *a.lines, *(" ".join(r) for r in a.rows)])


def test_risk_severities_and_recovery() -> None:
    near = {**RISK_FIGURES, "buffer_adr": 0.8, "mark_price": 59_280.0}
    ok = {**RISK_FIGURES, "buffer_adr": 2.4, "mark_price": 61_840.0}
    assert risk("violation", "entered", after={**RISK_FIGURES, "buffer_adr": 1.8}).severity is Severity.WARNING
    assert risk("near", "escalated", after=near).severity is Severity.CRITICAL
    back = risk("ok", "recovered", after=ok)
    assert back.severity is Severity.INFO and "risk recovered, buffer 2.40 ADR" in back.title
    assert any("worst: MARK BEYOND LIQUIDATION PRICE" in line for line in back.lines)


def test_a_hostile_symbol_is_escaped_in_every_rendering() -> None:
    from alerts.render import render_chat, render_html, render_telegram, render_text

    a = risk("near", "entered", symbol="<b>X</b>&\x1b[31m")
    assert "<b>X</b>" not in render_html(a) and "&lt;b&gt;X&lt;/b&gt;&amp;" in render_html(a)
    assert "<b>X</b>" not in render_telegram(a).replace("<b>CRITICAL", "") and "&lt;b&gt;X" in render_telegram(a)
    assert "\x1b" not in render_text(a) and "\\x1b" in render_text(a)
    assert "&lt;b&gt;X" in render_chat(a, "slack")["text"] and "\\<b>X" in render_chat(a, "discord")["content"]

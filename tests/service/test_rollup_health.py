"""Health, `check` and the metrics read a rolled-up history as they read one row per poll."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import generate_latest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor.service.health import HealthRules, check_stale, problems
from monitor.service.metrics import Metrics
from snapshots.model import Snapshot
from snapshots.parse import parse_ccxt_tiers
from snapshots.store import PollResult, apply_snapshot, record_failure
from tests.conftest import BTC_ROWS, ccxt_tiers, ts

SRC = "binance-usdm"
T0 = ts("2024-01-01")
STEP = timedelta(minutes=5)
TABLES = parse_ccxt_tiers(SRC, {"BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", BTC_ROWS)})
RULES = HealthRules(alert_after=timedelta(minutes=30), stale_after=timedelta(minutes=30))


def ok(engine: Engine, i: int) -> PollResult:
    with Session(engine) as s:
        at = T0 + STEP * i
        result = apply_snapshot(s, Snapshot(SRC, at, "test", TABLES), started_at=at, duration_ms=1.0)
        s.commit()
    return result


def test_a_long_unchanged_run_is_fresh_to_health_and_check(engine: Engine) -> None:
    results = [ok(engine, i) for i in range(25)]  # two hours: a baseline, then one row for 24 polls
    assert len({r.poll_id for r in results}) == 2
    now = T0 + STEP * 24 + timedelta(minutes=10)  # 2 h after the run began, 10 min after its last poll
    with Session(engine) as s:
        assert check_stale(s, [SRC], RULES, [], now) == []
        assert problems(s, [SRC], RULES.stale_after, now) == []
        later = now + timedelta(minutes=40)
        assert check_stale(s, [SRC], RULES, [], later) == [SRC]
        (stale,) = problems(s, [SRC], RULES.stale_after, later)
    assert stale.startswith(f"{SRC}: stale, last successful poll 50 min ago")


def test_the_metrics_count_every_poll_of_a_run(engine: Engine) -> None:
    metrics = Metrics()
    for i in range(4):
        metrics.observe_poll(ok(engine, i))
    for i in range(4, 7):
        with Session(engine) as s:
            metrics.observe_poll(record_failure(s, SRC, T0 + STEP * i, 1.0, "down", error_kind="fetch_timeout"))
            s.commit()
    text = generate_latest(metrics.registry).decode()
    assert f'tierdrift_polls_total{{outcome="ok",source="{SRC}"}} 4.0' in text
    assert f'tierdrift_poll_failures_total{{reason="fetch_timeout",source="{SRC}"}} 3.0' in text

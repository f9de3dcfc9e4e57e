"""`tierdrift demo`: the whole loop in about 30 seconds, offline, on a throwaway database.

A fake exchange on 127.0.0.1 serves a scenario written for this demo (shaped like Binance's BTCUSDT
brackets of 2021); the daemon's own jobs poll it; a demo position is logged; the exchange raises the
maintenance rate of the position's bracket; the next poll detects it; the position is recomputed and
flagged; the alert is delivered to a webhook receiver and an SMTP sink on loopback, and printed.
"""

from __future__ import annotations

import email.policy
import json
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from pydantic import SecretStr
from sqlmodel import Session

from alerts.config import EmailConfig, WebhookConfig
from alerts.signing import verify
from monitor.config.settings import Endpoints, Settings
from monitor.exchanges import fetch_snapshot
from monitor.fake_exchange import FakeExchange, FakeTable, FakeTier, generate_tables
from monitor.risk.positions import PositionInput, validate
from monitor.service.daemon import Daemon
from monitor.service.lock import writer_lock
from monitor.store.database import open_engine
from snapshots.timefmt import utcnow

SOURCE = "binance-usdm"
SYMBOL = "BTCUSDT"
SECRET = "whsec_ZGVtby1zZWNyZXQtZm9yLXRpZXJkcmlmdA=="  # noqa: S105 - a demo-only key, never a user's
MARK, DAILY_RANGE = 60_000.0, 1_600.0
# (floor, maintenance rate, max leverage) of a 2021-style BTCUSDT table; amounts follow the recurrence.
BEFORE = [(0, 0.004, 125), (50_000, 0.005, 100), (250_000, 0.01, 50), (1_000_000, 0.025, 20), (5_000_000, 0.05, 10),
          (20_000_000, 0.10, 5), (50_000_000, 0.125, 4), (100_000_000, 0.15, 3), (200_000_000, 0.25, 2)]  # fmt: skip
# The change: the 250k–1M bracket goes from 1% / 50× to 2.5% / 25×.
AFTER = [row if row[0] != 250_000 else (250_000, 0.025, 25) for row in BEFORE]


def table(rows: Sequence[tuple[float, float, float]], top: float = 300_000_000) -> FakeTable:
    tiers, amount = [], 0.0
    for i, (floor, rate, lev) in enumerate(rows):
        if i:
            amount += floor * (rate - rows[i - 1][1])
        cap = rows[i + 1][0] if i + 1 < len(rows) else top
        tiers.append(FakeTier(float(floor), float(cap), rate, round(amount, 8), float(lev)))
    return FakeTable(tuple(tiers))


@dataclass
class Inbox:
    webhooks: list[tuple[bool, dict[str, Any]]] = field(default_factory=list)  # (signature ok, payload)
    emails: list[Message] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def webhook_receiver(inbox: Inbox) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            ok = verify(SECRET, dict(self.headers.items()), body, now=time.time())
            inbox.webhooks.append((ok, json.loads(body)))
            self.send_response(204 if ok else 401)
            self.end_headers()
            inbox.arrived.set()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tierdrift-demo"
    finally:
        server.shutdown()
        server.server_close()


class _Sink:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.inbox.emails.append(message_from_bytes(envelope.content, policy=email.policy.default))
        self.inbox.arrived.set()
        return "250 OK"


@contextmanager
def smtp_sink(inbox: Inbox) -> Iterator[str]:
    port = _free_port()
    controller = Controller(_Sink(inbox), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}?tls=none"
    finally:
        controller.stop()


def _settings(db_url: str, fake: FakeExchange, hook_url: str, smtp_url: str) -> Settings:
    return Settings(
        database_url=db_url,
        sources=[SOURCE],
        endpoints=Endpoints(**fake.endpoints()),
        http_timeout=5,
        channels=[
            WebhookConfig(name="demo-webhook", url=SecretStr(hook_url), secret=SecretStr(SECRET)),
            EmailConfig(name="demo-email", smtp_url=SecretStr(smtp_url), to=["trader@example.com"]),
        ],
    )


def run_demo(say: Callable[[str], None], show: Callable[[str, str], None], database: str | None = None) -> bool:
    """Run the scenario, narrating with `say` and showing delivered content with `show`; True if it all worked."""
    inbox = Inbox()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tierdrift-demo-")))
        scenario = {SOURCE: {**generate_tables(SOURCE, 29, seed=11), SYMBOL: table(BEFORE)}}
        fake = stack.enter_context(FakeExchange(tables=scenario))
        fake.set_market(SOURCE, SYMBOL, mark=MARK, daily_ranges=[DAILY_RANGE] * 20, open_range=DAILY_RANGE / 2)
        hook_url = stack.enter_context(webhook_receiver(inbox))
        smtp_url = stack.enter_context(smtp_sink(inbox))
        db_url = database or f"sqlite:///{tmp / 'demo.db'}"
        settings = _settings(db_url, fake, hook_url, smtp_url)
        engine = open_engine(db_url)
        stack.callback(engine.dispose)
        daemon = Daemon(settings, engine, lambda s, st: fetch_snapshot(s, st, now=utcnow), writer_lock(engine), utcnow)
        stack.callback(daemon.lock.release)
        daemon.lock.acquire()
        say(
            f"1. A fake Binance USDⓈ-M on {fake.url} serves {len(scenario[SOURCE])} symbols"
            " (data written for this demo)."
        )
        first = daemon.poll(SOURCE)
        say(f"2. The daemon polls it: {first.symbols} symbols stored as the baseline.")
        position = _log_position(engine)
        daemon.refresh_market()
        say(f"3. A demo position is logged: long 10 BTC at {MARK:,.0f} (600,000 USDT), isolated margin 40,000.")
        say(f"   Mark {MARK:,.0f}, ADR(14) {DAILY_RANGE:,.0f} fetched from the exchange's mark-price candles.")
        fake.set_table(SOURCE, SYMBOL, table(AFTER))
        say("4. The exchange tightens BTCUSDT: the 250k–1M bracket goes from 1% / 50× to 2.5% / 25×.")
        second = daemon.poll(SOURCE)
        say(f"5. The next poll detects it: {len(second.changes)} changes on {SYMBOL}.")
        _report_impact(engine, position, say)
        report = daemon.deliver()
        inbox.arrived.wait(5)
        say(f"6. Alerts delivered: {report.sent} sent, {report.failed} failed.")
        for ok, payload in inbox.webhooks:
            if payload.get("kind") == "position_impact":
                brief = {k: v for k, v in payload.items() if k != "data"}  # `data` repeats every raw figure
                show(
                    f"webhook (signature {'verified' if ok else 'INVALID'})",
                    json.dumps(brief, indent=2, ensure_ascii=False),
                )
        for msg in inbox.emails:
            if "liquidation" in str(msg["Subject"]):
                show(f"email: {msg['Subject']}", _text_part(msg))
        say("7. Cleaned up: the fake exchange, the receivers and the temporary database are gone.")
        signed = any(ok and p.get("kind") == "position_impact" for ok, p in inbox.webhooks)
        return signed and any("liquidation" in str(m["Subject"]) for m in inbox.emails)


def _log_position(engine: Any) -> int:
    with Session(engine) as session:
        item = PositionInput(SOURCE, SYMBOL, "long", MARK, qty=10, margin=40_000, note="tierdrift demo")
        position = validate(session.connection(), item, now=utcnow())
        session.add(position)
        session.commit()
        assert position.id is not None
        return position.id


def _report_impact(engine: Any, position_id: int, say: Callable[[str], None]) -> None:
    from sqlmodel import select

    from monitor.store.models import Impact

    with Session(engine) as session:
        impact = session.exec(select(Impact).where(Impact.position_id == position_id)).one()
    flag = " → MARGIN-RISK VIOLATION (below 2 ADR)" if impact.newly_violates else ""
    say(
        f"   Position #{position_id} recomputed: liquidation price {impact.old_liquidation_price:,.2f} → "
        f"{impact.new_liquidation_price:,.2f}, buffer {impact.old_buffer_adr:.2f} → "
        f"{impact.new_buffer_adr:.2f} ADR{flag}"
    )


def _text_part(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            return payload.decode() if isinstance(payload, bytes) else str(payload)
    return ""

"""alerts.render: golden files for the e-mail, webhook and chat bodies, and the rules behind them.

The golden files in tests/golden/ are compared byte for byte. After an intended change of the output,
rewrite them with `UPDATE_GOLDEN=1 python -m pytest tests/alerts/test_alert_render.py` and review the diff.

The position-impact example is a consistent one (domain.md §2, §5): a long of 40 ETH at 2,250 (90,000
notional) with 13,300 isolated margin, mark 2,105 and a 14-day ADR of 85. Binance cuts tier 2's cap
from 100,000 to 25,000 and raises tier 3's rate from 1% to 2% (its amount follows: 15 + 25,000 × 1.35% =
352.50), so the position, 77,187 notional at its liquidation price, moves from tier 2 to tier 3.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from alerts.model import Alert, Severity
from alerts.render import (
    CHAT_LIMITS,
    SCHEMA,
    iso_utc,
    render_chat,
    render_html,
    render_json,
    render_text,
    subject,
    table_lines,
)

GOLDEN = Path(__file__).parents[1] / "golden"
CREATED = datetime(2026, 3, 14, 9, 30, 5, 123456, tzinfo=UTC)

# The position and the two tiers it liquidates in, before and after the change.
Q, ENTRY, MARGIN, MARK, ADR, THRESHOLD = 40.0, 2_250.0, 13_300.0, 2_105.0, 85.0, 2.0
OLD_TIER = (2, 0.0065, 15.0)  # (tier, rate, maintenance amount)
NEW_TIER = (3, 0.02, 352.5)  # 15 + 25,000 × (2% − 0.65%), the recurrence of domain.md §1


def long_lp(rate: float, amount: float) -> float:
    """Linear isolated long (domain.md §2): LP = (Q·EP − M − A) / (Q·(1 − r))."""
    return (Q * ENTRY - MARGIN - amount) / (Q * (1 - rate))


OLD_LP, NEW_LP = long_lp(*OLD_TIER[1:]), long_lp(*NEW_TIER[1:])


def impact_alert() -> Alert:
    """Shaped like alerts.events.impact_alert's output, with a fixed id and time."""
    old_dist, new_dist = (MARK - OLD_LP) / MARK, (MARK - NEW_LP) / MARK
    old_buf, new_buf = (MARK - OLD_LP) / ADR, (MARK - NEW_LP) / ADR
    impact = {
        "source": "binance-usdm",
        "symbol": "ETH/USDT:USDT",
        "old_tier": OLD_TIER[0],
        "new_tier": NEW_TIER[0],
        "old_rate": OLD_TIER[1],
        "new_rate": NEW_TIER[1],
        "old_amount": OLD_TIER[2],
        "new_amount": NEW_TIER[2],
        "old_liquidation_price": round(OLD_LP, 6),
        "new_liquidation_price": round(NEW_LP, 6),
        "old_distance": round(old_dist, 6),
        "new_distance": round(new_dist, 6),
        "old_buffer_adr": round(old_buf, 4),
        "new_buffer_adr": round(new_buf, 4),
        "mark_price": MARK,
        "adr": ADR,
        "violation": True,
        "newly_violates": True,
        "crosses_tier": True,
    }
    position = {"id": 7, "side": "long", "entry_price": ENTRY, "size": Q, "size_input": "40 ETH", "mode": "isolated"}
    return Alert(
        id="alert_0f3c9a1e5b7d4c2a9e8f7a6b5c4d3e2f",
        kind="position_impact",
        severity=Severity.CRITICAL,
        created_at=CREATED,
        title="ETH/USDT:USDT long #7: liquidation price 1,929.67 → 1,947.64 (buffer 1.85 ADR, below 2)",
        source="binance-usdm",
        symbol="ETH/USDT:USDT",
        lines=(
            "binance-usdm ETH/USDT:USDT long 40 ETH at 2,250.00 (isolated)",
            "mark 2,105.00, ADR 85.00",
            "NEW MARGIN-RISK VIOLATION: buffer below 2 ADR",
            "the position now liquidates in tier 3 (was 2)",
            "cause: ETH/USDT:USDT tier 2 cap 100,000.00 → 25,000.00",
            "cause: ETH/USDT:USDT tier 3 floor 100,000.00 → 25,000.00",
            "cause: ETH/USDT:USDT tier 3 maintenance margin rate 1% → 2%",
            "cause: ETH/USDT:USDT tier 3 maintenance amount 365.00 → 352.50",
        ),
        rows=(
            ("tier at liquidation", "2", "3"),
            ("maintenance rate", "0.65%", "2%"),
            ("maintenance amount", "15.00", "352.50"),
            ("liquidation price", "1,929.67", "1,947.64"),
            ("distance from mark", "8.329%", "7.476%"),
            ("buffer", "2.06 ADR", "1.85 ADR"),
        ),
        data={"impact": impact, "position": position, "threshold_adr": THRESHOLD},
    )


DIGEST_ROWS = (
    ("ETH/USDT:USDT tier 2 cap", "100,000.00", "25,000.00"),
    ("ETH/USDT:USDT tier 3 floor", "100,000.00", "25,000.00"),
    ("ETH/USDT:USDT tier 3 maintenance margin rate", "1%", "2%"),
    ("ETH/USDT:USDT tier 3 maintenance amount", "365.00", "352.50"),
    ("XMR/USDT:USDT tier 1 max leverage", "50.00", "25.00"),
)


def digest_alert(rows: tuple[tuple[str, str, str], ...] = DIGEST_ROWS, extra: tuple[str, ...] = ()) -> Alert:
    """Shaped like alerts.events.digest_alert's output for one poll of binance-usdm."""
    return Alert(
        id="alert_5d1e2c3b4a5f6e7d8c9b0a1f2e3d4c5b",
        kind="tier_changes",
        severity=Severity.WARNING,
        created_at=CREATED,
        title=f"binance-usdm: {len(rows)} tier change(s) on 2 symbol(s)",
        source="binance-usdm",
        lines=(
            "detected between 2026-03-14T09:25:00Z and 2026-03-14T09:30:00Z",
            f"{len(rows)} tier_changed",
            f"{len(rows)} change(s) tighten margin requirements",
            *extra,
        ),
        rows=rows,
        data={
            "source": "binance-usdm",
            "detected_at": "2026-03-14T09:30:00Z",
            "previous_poll_at": "2026-03-14T09:25:00Z",
            "counts": {"tier_changed": len(rows)},
            "symbols": ["ETH/USDT:USDT", "XMR/USDT:USDT"],
            "symbols_total": 2,
            "changes_total": len(rows),
            "tightening": len(rows),
        },
    )


def big_digest() -> Alert:
    """A digest far over Discord's 2000 characters: 30 rows (events.DIGEST_LINES) and a long tail of lines."""
    rows = tuple((f"SYM{i:02d}/USDT:USDT tier {i % 7 + 1} maintenance margin rate", "1%", "2.5%") for i in range(30))
    extra = tuple(f"SYM{i:02d}/USDT:USDT tier 9 removed" for i in range(30, 45))
    return digest_alert(rows, extra)


def check_golden(name: str, actual: str) -> None:
    """Compare with tests/golden/<name>; with UPDATE_GOLDEN=1, rewrite the file first."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8", newline="")
    assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1 to create it"
    assert actual == path.read_text(encoding="utf-8"), f"{name} differs from its golden file (UPDATE_GOLDEN=1)"


def as_json(payload: object) -> str:
    return json.dumps(payload, ensure_ascii=False, indent=2) + "\n"  # key order as sent


# --- the example is consistent ----------------------------------------------------------------------------


def test_example_numbers_are_consistent() -> None:
    """The rows of the golden alert are what domain.md's formulas give for the stated position."""
    rows = dict((label, (old, new)) for label, old, new in impact_alert().rows)
    assert rows["liquidation price"] == (f"{OLD_LP:,.2f}", f"{NEW_LP:,.2f}")
    assert rows["maintenance amount"] == (f"{OLD_TIER[2]:,.2f}", f"{NEW_TIER[2]:,.2f}")
    assert rows["buffer"] == (f"{(MARK - OLD_LP) / ADR:.2f} ADR", f"{(MARK - NEW_LP) / ADR:.2f} ADR")
    assert rows["distance from mark"] == (
        f"{(MARK - OLD_LP) / MARK * 100:.4g}%",
        f"{(MARK - NEW_LP) / MARK * 100:.4g}%",
    )
    assert NEW_TIER[2] == pytest.approx(OLD_TIER[2] + 25_000 * (NEW_TIER[1] - OLD_TIER[1]))
    # The tier at liquidation holds the notional at LP: 10k-100k before, 25k-500k after.
    assert 10_000 <= Q * OLD_LP < 100_000 and 25_000 <= Q * NEW_LP < 500_000
    # Newly violating: at least 2 ADR before, less after.
    assert (MARK - OLD_LP) / ADR >= THRESHOLD > (MARK - NEW_LP) / ADR


# --- golden files -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "alert"),
    [("impact", impact_alert()), ("digest", digest_alert())],
)
def test_email_and_webhook_bodies_match_golden(name: str, alert: Alert) -> None:
    check_golden(f"{name}.txt", render_text(alert))
    check_golden(f"{name}.html", render_html(alert))
    check_golden(f"{name}.json", as_json(render_json(alert)))


@pytest.mark.parametrize(
    ("name", "alert", "flavour"),
    [
        ("impact", impact_alert(), "slack"),
        ("impact", impact_alert(), "discord"),
        ("digest", digest_alert(), "slack"),
        ("big_digest", big_digest(), "discord"),
    ],
)
def test_chat_bodies_match_golden(name: str, alert: Alert, flavour: str) -> None:
    check_golden(f"{name}.{flavour}.json", as_json(render_chat(alert, flavour)))  # type: ignore[arg-type]


# --- text -----------------------------------------------------------------------------------------------------


def test_text_table_aligns_arrows_and_last_digits() -> None:
    lines = table_lines(impact_alert().rows)
    assert lines[0].split() == ["old", "new"]
    body = lines[1:]
    assert len({line.index("→") for line in body}) == 1
    assert len({len(line) for line in body}) == 1  # right-aligned new values end in one column
    assert table_lines(()) == []


def test_text_has_no_trailing_spaces_and_a_complete_footer() -> None:
    text = render_text(impact_alert())
    assert all(line == line.rstrip() for line in text.splitlines())
    for expected in (
        "alert:    alert_0f3c9a1e5b7d4c2a9e8f7a6b5c4d3e2f",
        "kind:     position_impact",
        "severity: critical",
        "source:   binance-usdm",
        "symbol:   ETH/USDT:USDT",
        "created:  2026-03-14T09:30:05Z",
    ):
        assert expected in text.splitlines()


def test_text_leaves_out_absent_source_and_symbol() -> None:
    text = render_text(digest_alert())
    assert "symbol:" not in text and "source:   binance-usdm" in text


@pytest.mark.parametrize(
    ("dt", "expected"),
    [
        (datetime(2026, 3, 14, 9, 30, 5, 999999, tzinfo=UTC), "2026-03-14T09:30:05Z"),
        (datetime(2026, 3, 14, 11, 30, tzinfo=timezone(timedelta(hours=2))), "2026-03-14T09:30:00Z"),
        (datetime(2026, 3, 14, 9, 30), "2026-03-14T09:30:00Z"),  # naive: taken as UTC
    ],
)
def test_iso_utc(dt: datetime, expected: str) -> None:
    assert iso_utc(dt) == expected


# --- HTML -----------------------------------------------------------------------------------------------------

HOSTILE = replace(
    impact_alert(),
    title='<script>alert("x")</script> & co',
    lines=("<b>not bold</b>",),
    rows=(("<i>label</i>", "a<b", 'c"d'),),
    source="<src>",
)


def test_html_escapes_every_piece_of_alert_text() -> None:
    doc = render_html(HOSTILE)
    assert "<script>" not in doc and "<b>" not in doc and "<i>" not in doc and "<src>" not in doc
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in doc
    assert "a&lt;b" in doc and "c&quot;d" in doc


def test_html_is_email_client_safe() -> None:
    doc = render_html(impact_alert())
    assert doc.startswith("<!DOCTYPE html>") and doc.rstrip().endswith("</html>")
    assert "<style" not in doc and "class=" not in doc and "<link" not in doc and "<script" not in doc
    assert doc.count("<tr>") == 1 + len(impact_alert().rows)  # header and one row per change
    assert "2026-03-14T09:30:05Z" in doc


# --- JSON -----------------------------------------------------------------------------------------------------

SCHEMA_KEYS = {"schema", "id", "kind", "severity", "created_at", "title", "source", "symbol", "summary", "changes"}


def test_json_payload_has_every_key_and_nulls() -> None:
    payload = render_json(digest_alert())
    assert set(payload) == SCHEMA_KEYS | {"data"}
    assert payload["schema"] == SCHEMA == "tierdrift.alert/v1"
    assert payload["symbol"] is None and json.loads(json.dumps(payload))["symbol"] is None
    assert payload["severity"] == "warning" and payload["created_at"] == "2026-03-14T09:30:05Z"
    assert payload["changes"][0] == {"label": "ETH/USDT:USDT tier 2 cap", "old": "100,000.00", "new": "25,000.00"}


def test_json_payload_of_a_bare_alert() -> None:
    bare = Alert("alert_1", "test", Severity.INFO, CREATED, "hello")
    payload = render_json(bare)
    assert payload["summary"] == [] and payload["changes"] == [] and payload["data"] == {}
    assert payload["source"] is None


# --- subject --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "title", "expected"),
    [
        (Severity.INFO, "all good", "[tierdrift] all good"),
        (Severity.WARNING, "tighter", "[tierdrift] WARNING: tighter"),
        (Severity.CRITICAL, "liq closer", "[tierdrift] CRITICAL: liq closer"),
        (Severity.INFO, "two\r\nlines", "[tierdrift] two lines"),
    ],
)
def test_subject(severity: Severity, title: str, expected: str) -> None:
    alert = Alert("alert_1", "test", severity, CREATED, title)
    assert subject(alert) == expected


# --- chat -----------------------------------------------------------------------------------------------------


def test_slack_message_shape_and_escaping() -> None:
    body = render_chat(replace(impact_alert(), title="<!channel> a & b"), "slack")
    assert set(body) == {"text"}
    first = body["text"].splitlines()[0]
    assert first == "*&lt;!channel&gt; a &amp; b*"
    assert "```" in body["text"] and "<!channel>" not in body["text"]


def test_discord_message_shape_escaping_and_no_mentions() -> None:
    body = render_chat(replace(impact_alert(), title="1000*PEPE_USDT @everyone", lines=("# not a heading",)), "discord")
    assert body["allowed_mentions"] == {"parse": []}
    lines = body["content"].splitlines()
    assert lines[0] == r"**1000\*PEPE\_USDT @everyone**"
    assert lines[1] == r"\# not a heading"


def test_discord_truncates_cleanly_within_its_limit() -> None:
    alert = big_digest()
    full_length = len(render_chat(alert, "slack")["text"])
    content = render_chat(alert, "discord")["content"]
    assert full_length > CHAT_LIMITS["discord"]  # the example really needs cutting
    assert len(content) <= CHAT_LIMITS["discord"]
    assert content.count("```") % 2 == 0  # the code block is closed
    lines = content.splitlines()
    assert lines[0].startswith("**binance-usdm: 30 tier change")
    assert lines[-1].startswith(r"-# alert alert\_5d1e2c3b4a5f6e7d8c9b0a1f2e3d4c5b · kind tier\_changes")
    assert lines[-2].startswith("… ") and lines[-2].endswith(" more line(s) not shown")
    shown_rows = sum(1 for line in lines if "→" in line)
    hidden = int(lines[-2].split()[1])
    assert shown_rows + hidden == len(alert.rows)  # every summary line fits; only rows were cut


def test_a_message_that_fits_is_not_truncated() -> None:
    content = render_chat(impact_alert(), "discord")["content"]
    assert "not shown" not in content
    block = content.split("```")[1].strip("\n").splitlines()
    assert block == table_lines(impact_alert().rows)


def test_unknown_chat_flavour() -> None:
    with pytest.raises(ValueError, match="unknown chat flavour"):
        render_chat(impact_alert(), "teams")  # type: ignore[arg-type]

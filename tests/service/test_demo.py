"""`tierdrift demo` runs the whole loop offline and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.service.demo import run_demo


def test_demo_shows_the_change_the_violation_and_the_delivered_alerts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # the user's real database must stay untouched
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    said: list[str] = []
    shown: list[tuple[str, str]] = []
    assert run_demo(said.append, lambda title, body: shown.append((title, body)))
    text = "\n".join(said)
    assert "baseline" in text and "tightens" in text
    assert "liquidation price 56,434.34 → 56,917.95" in text
    assert "buffer 2.23 → 1.93 ADR → MARGIN-RISK VIOLATION" in text
    assert "Alerts delivered: 4 sent, 0 failed" in text
    titles = [t for t, _ in shown]
    assert "webhook (signature verified)" in titles
    assert any(t.startswith("email: [tierdrift] CRITICAL") for t in titles)
    assert not (tmp_path / "data").exists()
    assert list((tmp_path / "tmp").iterdir()) == []  # the temporary database is gone

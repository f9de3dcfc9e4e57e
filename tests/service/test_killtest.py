"""A short run of the crash harness (bench/killtest.py): `tierdrift run` killed -9 at random points.

The full measurement runs 50 rounds (docs/benchmarks.md); three keep the harness and its guarantees
checked on every change.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "bench" / "killtest.py"


def test_sigkill_during_polls_and_deliveries_loses_and_doubles_nothing(db_url: str) -> None:
    spec = importlib.util.spec_from_file_location("killtest", HARNESS)
    assert spec is not None and spec.loader is not None
    killtest = importlib.util.module_from_spec(spec)
    sys.modules["killtest"] = killtest  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(killtest)
    result = killtest.run(rounds=3, db_url=db_url, seed=4)
    assert result["problems"] == []
    assert result["settle_exit_code"] == 0
    assert result["polls_with_changes"] >= 1  # the rounds' changes were seen (at the latest when settling)
    assert result["alerts"] >= result["polls_with_changes"]
    assert result["deliveries_received"] >= result["alerts"]


if not HARNESS.exists():  # pragma: no cover - the harness ships with the repository
    pytest.skip("bench/killtest.py is missing", allow_module_level=True)

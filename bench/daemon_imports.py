"""What each library the daemon loads leaves resident: VmRSS after each import, in the daemon's order.

    PYTHONPATH=. python3 bench/daemon_imports.py [--runs 3]

One fresh interpreter per run; the figure of a step is the growth of VmRSS over the previous step (so a
library shared by two steps counts in the first). The last two steps are what this checkout does not load
in the daemon: the rest of ccxt (its `__init__`, the 104 exchange modules) and numpy (which deepdiff
imports when installed, unless `snapshots.diff` keeps it out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

STEPS: list[tuple[str, str]] = [
    ("settings (pydantic, pydantic-settings)", "import monitor.config.settings"),
    ("SQLAlchemy + SQLModel", "import sqlmodel"),
    ("the store's models", "import monitor.store.models"),
    ("Alembic (a database to migrate)", "import alembic.command"),
    ("httpx", "import httpx"),
    ("ccxt, the bybit class (lightccxt)", "from monitor.exchanges.lightccxt import ccxt_package; ccxt_package().bybit"),
    ("APScheduler", "import apscheduler.schedulers.background"),
    ("deepdiff (snapshots.diff)", "from snapshots.diff import _deep_diff; _deep_diff()"),
    ("FastAPI + uvicorn + Jinja2", "import fastapi, uvicorn, jinja2"),
    ("the dashboard (monitor.web.app)", "import monitor.web.app"),
    ("the daemon (monitor.service.daemon)", "import monitor.service.daemon"),
    ("the CLI (monitor.cli.full)", "import monitor.cli.full"),
    ("not loaded: the rest of ccxt", "import ccxt; ccxt.__all__"),
    ("not loaded: numpy", "import numpy"),
]

CHILD = """
import json, sys
def rss():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS:"))
out, prev = [rss()], rss()
for code in json.loads(sys.argv[1]):
    exec(code)
    now = rss()
    out.append(now - prev)
    prev = now
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = []
    for _ in range(args.runs):
        argv = [sys.executable, "-c", CHILD, json.dumps([code for _, code in STEPS])]
        runs.append(json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout))
    print(f"{'the interpreter':42s} {statistics.median(r[0] for r in runs):6.1f} MB")
    total = statistics.median(r[0] for r in runs)
    for i, (label, _) in enumerate(STEPS, start=1):
        step = statistics.median(r[i] for r in runs)
        total += step
        print(f"{label:42s} +{step:5.1f} MB  = {total:6.1f}")


if __name__ == "__main__":
    main()

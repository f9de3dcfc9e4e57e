"""Run every benchmark, then write docs/benchmarks.md from their results (bench/results/*.json).

Usage: python bench/run_all.py [--only NAME ...] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
BENCHES = {
    "snapshots": ["bench/bench_snapshots.py"],
    "impacts": ["bench/bench_impacts.py"],
    "alerts": ["bench/bench_alerts.py"],
    "risk": ["bench/bench_risk.py"],
    "review": ["bench/bench_review.py"],
    "soak": ["bench/soak.py"],
    "killtest": ["bench/killtest.py", "--rounds", "50"],
    "web": ["bench/bench_web.py"],
    "year": ["bench/bench_year.py", "--no-doc"],
}


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def render() -> str:
    out = [
        "# Benchmarks",
        "",
        f"Written by `bench/run_all.py` on {datetime.now(UTC):%Y-%m-%d}, on a {platform.machine()} machine with "
        f"2 cores, Python {platform.python_version()}. The machine is shared and noisy: figures are medians, and "
        "each is compared with a baseline measured in the same run. Reproduce with `make bench`.",
        "",
    ]
    if snap := load("snapshots"):
        imp, poll, proc = snap["import"], snap["unchanged_poll"], snap["tiers_process"]
        out += [
            "## Snapshot store (`bench/bench_snapshots.py`)",
            "",
            "On the 134 recorded Binance USDⓈ-M versions (`../shared/data`). The naive baseline stores every tier of "
            "every poll and deep-diffs the whole previous snapshot against the whole new one.",
            "",
            "| measurement | target | tierdrift | naive baseline | naive / tierdrift |",
            "|---|---|---|---|---|",
            f"| import {imp['files']} versions ({imp['json_mb']} MB of JSON) | ≤ 60 s | {imp['ours_s']} s "
            f"({verdict(imp['ours_s'] <= 60)}) | {imp['naive_s']} s | {imp['naive_s'] / imp['ours_s']:.1f}× |",
            f"| database size after the import | ≤ 30 MB | {imp['ours_db_mb']} MB ({verdict(imp['ours_db_mb'] <= 30)})"
            f" | {imp['naive_db_mb']} MB | {imp['naive_db_mb'] / imp['ours_db_mb']:.1f}× |",
            f"| unchanged poll, {poll['symbols']} symbols (parse, validate, hash, compare, record), median of "
            f"{poll['runs']} | ≤ 100 ms | {poll['ours_median_ms']} ms ({verdict(poll['ours_median_ms'] <= 100)}) | "
            f"{poll['naive_median_ms']} ms | {poll['naive_median_ms'] / poll['ours_median_ms']:.1f}× |",
            f"| tier rows added by unchanged polls | 0 | {poll['tier_rows_added_by_unchanged_polls']} | "
            f"{poll['naive_tier_rows_per_poll']} per poll | |",
            f"| `tierdrift tiers SYMBOL --at DATE`, whole process, median of {proc['runs']} | ≤ 300 ms | "
            f"{proc['ours_median_ms']} ms ({verdict(proc['ours_median_ms'] <= 300)}) | {proc['naive_median_ms']} ms"
            " (a bare sqlite3 script) | |",
            f"| the lookup alone, in-process | | {proc['ours_query_only_median_ms']} ms | "
            f"{proc['naive_query_only_median_ms']} ms | |",
            "",
            f"Python itself starts in {proc['python_startup_median_ms']} ms here. The `tiers` process stays well under "
            "its budget because read-only commands on a SQLite database load neither ccxt, deepdiff, pydantic, "
            "SQLModel nor even SQLAlchemy (they read through the standard library's sqlite3; tests check both and "
            "that both readers agree), build a Typer app of their own command only, and Typer is kept below 0.29, "
            "which loads pydantic on every run. The naive lookup script is a dozen lines of stdlib, not a CLI; its "
            "lookup scans every stored poll of the symbol.",
            "",
        ]
    if imp2 := load("impacts"):
        out += [
            "## Recomputing positions (`bench/bench_impacts.py`)",
            "",
            f"{imp2['positions']:,} open positions (9 in 10 isolated, 1 in 10 cross on one account) over "
            f"{imp2['symbols_changed']} symbols, all of which change in one poll. Median of {imp2['runs']} polls.",
            "",
            "| measurement | target | tierdrift | naive baseline | naive / tierdrift |",
            "|---|---|---|---|---|",
            f"| recompute every position (old and new figures) and write the impacts | ≤ 2 s | "
            f"{imp2['impacts_median_ms'] / 1000:.2f} s ({verdict(imp2['impacts_median_ms'] <= 2000)}) | "
            f"{imp2['naive_impacts_ms'] / 1000:.1f} s | {imp2['naive_over_ours']}× |",
            f"| storing the 700 new versions and their change records (the poll itself) | | "
            f"{imp2['store_median_ms'] / 1000:.2f} s | | |",
            "",
            "The baseline looks each position's table up separately for both sides, recomputes the cross account's "
            "TMM1/UPNL1 from the other positions for each cross position (capped at 50 others, or it would run for "
            "minutes), and inserts impacts one ORM object at a time.",
            "",
        ]
    if al := load("alerts"):
        d, down = al["delivery"], al["down_receiver"]
        out += [
            "## Alert delivery (`bench/bench_alerts.py`)",
            "",
            "| measurement | target | tierdrift | baseline | ratio |",
            "|---|---|---|---|---|",
            f"| deliver {d['alerts']:,} signed webhook alerts to a receiver on 127.0.0.1 (send, then mark each) | "
            f"≤ 10 s | {d['ours_s']} s ({verdict(d['ours_s'] <= 10)}) | {d['raw_httpx_s']} s: the same POSTs "
            f"with plain httpx, no outbox | {d['ours_over_raw']}× |",
            f"| receiver down for {down['simulated_hours']} h, delivery job every 5 s ({down['delivery_runs']:,} "
            f"runs): send attempts | ≤ 1 per alert per back-off step | {down['send_attempts']} | "
            f"{down['naive_attempts_one_per_alert_per_step']:,}: one per alert per step | |",
            "",
            f"With the receiver down, the channel rests between attempts, so the {down['alerts']:,} alerts cost "
            f"{down['send_attempts']} attempts in {down['backoff_steps_in_window']} back-off steps, and each 5 s "
            "run is one cheap query.",
            "",
        ]
    if risk := load("risk"):
        out += [
            "## Risk episodes at a market refresh (`bench/bench_risk.py`)",
            "",
            "| measurement | tierdrift | floor | ratio |",
            "|---|---|---|---|",
            f"| {risk['positions']:,} open positions after a market refresh (every mark moved ±3 %): assess, step "
            "each risk episode, write the levels, enqueue the `position_risk` alerts, one transaction | "
            f"{risk['track_risk_median_ms'] / 1000:.2f} s | {risk['assess_only_median_ms'] / 1000:.2f} s: "
            f"`assess_now` alone, which the market job ran before | {risk['ratio']}× |",
            "",
        ]
    if review := load("review"):
        floor = review["floor_changes_json_s"]
        out += [
            "## Review",
            "",
            f"`bench/bench_review.py` (issue 12): `tierdrift review` over a year of the recorded Binance history with "
            f"{review['trades']:,} trades on {review['instruments']} instruments ({review['table_changes']} table "
            "changes), whole process, median of 5 runs; floor: `changes --json` of the same year, same run.",
            "",
            "| `--format` | median (min–max) | target | floor | ratio |",
            "|---|---|---|---|---|",
            *(
                f"| {fmt} | {r['median_s']:.2f} s ({r['min_s']:.2f}–{r['max_s']:.2f}) | ≤ 3 s "
                f"({verdict(r['median_s'] <= 3)}) | {floor:.2f} s | {r['ratio']:.2f}× |"
                for fmt, r in review["review"].items()
            ),
            "",
        ]
    if soak := load("soak"):
        out += [
            "## Soak (`bench/soak.py`)",
            "",
            f"{soak['cycles']:,} poll cycles of a {soak['symbols']}-symbol table against the loopback fake exchange "
            f"(a change every 25 cycles, {soak['changes_detected']} changes, {soak['alerts_delivered']} alerts "
            f"delivered), median cycle {soak['cycle_median_ms']} ms.",
            "",
            "| measurement | target | measured |",
            "|---|---|---|",
            f"| RSS growth from cycle 100 to the end | ≤ 5% | {soak['growth_after_warmup_pct']}% "
            f"({verdict(soak['growth_after_warmup_pct'] <= 5)}) |",
            f"| steady-state RSS (includes the fake exchange and receiver) | ≤ 250 MB | {soak['rss_end_mb']} MB, "
            f"max {soak['rss_max_mb']} MB ({verdict(soak['rss_max_mb'] <= 250)}) |",
            "",
        ]
    if kill := load("killtest"):
        out += [
            "## Crash test (`bench/killtest.py`)",
            "",
            f"{kill['rounds']} rounds: change tables on the fake exchange, start `tierdrift run`, SIGKILL it after a "
            "random 0.2–5 s (during start-up, polls, impact computation or deliveries); then one clean "
            "`tierdrift run --once`.",
            "",
            "| check | result |",
            "|---|---|",
            f"| problems found (lost change, false change, broken version chain, poll without its digest, impact "
            f"without its alert, unsent or unknown alert, id with two bodies) | {len(kill['problems'])} |",
            f"| polls / polls with changes / change records / stored versions | {kill['polls']} / "
            f"{kill['polls_with_changes']} / {kill['change_records']} / {kill['versions']} |",
            f"| alerts / deliveries received / same-id resends | {kill['alerts']} / {kill['deliveries_received']} / "
            f"{kill['same_id_resends']} |",
            "",
        ]
    if web := load("web"):
        out += web_section(web)
    year = RESULTS / "year.md"  # bench/bench_year.py writes its own section
    if year.exists():
        out += [year.read_text().rstrip(), ""]
    return "\n".join(out).rstrip() + "\n"


def web_section(web: dict[str, Any]) -> list[str]:
    """The `## Web` section from bench/results/web.json (medians of its repeated runs)."""
    pages, api, poll = web["pages_median_server_ms"], web["api"], web["poll"]
    worst = max(pages.values())
    rows = [f"| `{page}` | ≤ 150 ms | {ms} ms ({verdict(ms <= 150)}) |" for page, ms in pages.items()]
    out = [
        "## Web (`bench/bench_web.py`)",
        "",
        "On the 134 recorded Binance versions (built with the importer; positions, impacts and 300 outbox "
        f"deliveries), served as `tierdrift run` serves it (uvicorn in the daemon's process, 127.0.0.1). Medians of "
        f"{web['repeat']} runs in one process; every run is in `bench/results/web.json`.",
        "",
        "| page: median server time | target | measured |",
        "|---|---|---|",
        *rows,
        "",
        f"Slowest page: {worst} ms.",
        "",
        f"| API, load generator in another process ({web['clients']} keep-alive clients) | target | requests/s "
        "| p50 | p99 |",
        "|---|---|---|---|---|",
    ]
    for name, r in api.items():
        target = "" if "floor" in name else "≥ 300/s"
        met = "" if "floor" in name else f" ({verdict(r['per_second'] >= 300)})"
        out.append(f"| `{name}` | {target} | {r['per_second']}{met} | {r['p50_ms']} ms | {r['p99_ms']} ms |")
    out += [
        "",
        "| poll (700 binance-coinm tables, one changed) | target | measured |",
        "|---|---|---|",
        f"| alone / while the API answers {poll['load_per_second']} requests/s (p99 {poll['load_p99_ms']} ms), "
        "the run of the median ratio | "
        f"≤ 1.5× | {poll['alone_median_ms']} ms / {poll['under_300_rps_median_ms']} ms: {poll['ratio']}× "
        f"({verdict(poll['ratio'] <= 1.5)}) |",
        "",
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHES), default=None)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if not args.report_only:
        for name in args.only or BENCHES:
            print(f"== {name}", flush=True)
            subprocess.run([sys.executable, *BENCHES[name]], cwd=ROOT, check=True)
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render())
    print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

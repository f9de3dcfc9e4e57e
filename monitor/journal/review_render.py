"""The review (monitor.journal.review) for people and spreadsheets: text, Markdown, CSV and one HTML file.

Text from outside (symbols, notes, size inputs) is data: every form escapes it its own way (control
characters always; Markdown's punctuation; HTML through `html.escape`). Numbers read as everywhere else
(`snapshots.numbers`). The HTML form is one self-contained file: its charts are inline SVG drawn here,
its style inline, nothing fetched.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from monitor.journal.review import Period
from snapshots.numbers import adr, leverage, money, pct
from snapshots.printable import printable
from snapshots.timefmt import iso

Item = Mapping[str, Any]
Esc = Callable[[object], str]

#: The CSV columns: one row per trade, or one per instrument without a trade in the period.
CSV_COLUMNS = (
    "source", "symbol", "watched", "watch_size", "changes", "change_records", "tightening", "loosening", "mixed",
    "max_leverage_cuts", "tiers_added", "tiers_removed", "largest_rate_jump", "largest_rate_jump_notional",
    "trade_id", "side", "size_input", "entry_price", "margin", "opened_at", "closed_at", "note",
    "entry_tier", "entry_maintenance_margin_rate", "entry_liquidation_price", "entry_buffer_adr",
    "violation_at_entry", "exit_price", "exit_pnl", "exit_liquidation_price", "liquidation_price_move",
    "worst_buffer_adr", "usual_notional", "usual_tier", "next_tier_floor", "headroom_notional",
    "usual_liquidation_price", "next_tier_liquidation_price",
)  # fmt: skip


def _plain(text: object) -> str:
    return printable(str(text), limit=200)


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~])")


def _md(text: object) -> str:
    """Outside text inside Markdown: control characters escaped, then every Markdown punctuation mark."""
    return _MD_SPECIAL.sub(r"\\\1", _plain(text)).replace("&", "&amp;")


def _html(text: object) -> str:
    return html.escape(_plain(text), quote=True)


def _yes(v: object) -> str:
    return "—" if v is None else ("YES" if v else "no")


def title(period: Period) -> str:
    return f"tierdrift review {iso(period.start)} … {iso(period.end)}"


def change_lines(ch: Item) -> list[str]:
    """The lines of an instrument's `changes` (no outside text in them: numbers and our own words)."""
    if not ch["count"]:
        return ["tier changes: none in the period"]
    lines = [
        f"tier changes: {ch['count']} ({ch['records']} records): {ch['tightening']} tightening,"
        f" {ch['loosening']} loosening, {ch['mixed']} mixed; tiers added {ch['tiers_added']},"
        f" removed {ch['tiers_removed']}"
    ]
    jump = ch.get("largest_rate_jump")
    if jump:
        lines.append(
            f"largest maintenance-rate change at a traded size: {pct(jump['old'])} → {pct(jump['new'])}"
            f" at {money(jump['notional'])} notional ({jump['at']})"
        )
    for cut in ch["max_leverage_cuts"]:
        lines.append(
            f"max leverage cut: tier {cut['tier']} {leverage(cut['old'])} → {leverage(cut['new'])} ({cut['at']})"
        )
    for ev in ch["events"]:
        parts = ", ".join(_record_text(r) for r in ev["records"][:8])
        more = f", … {len(ev['records']) - 8} more" if len(ev["records"]) > 8 else ""
        lines.append(f"  {ev['at']} {ev['direction']}: {parts}{more}")
    return lines


def _record_text(r: Item) -> str:
    if r["kind"] != "tier_changed":
        return f"{str(r['kind']).replace('_', ' ')} {r['tier'] if r['tier'] is not None else ''}".strip()
    fmt = {"maintenance_margin_rate": pct, "max_leverage": leverage}.get(str(r["field"]), money)
    return f"tier {r['tier']} {str(r['field']).replace('_', ' ')} {fmt(r['old'])} → {fmt(r['new'])}"


def _figures(rec: Item | None) -> str:
    if rec is None:
        return "not recorded"
    return (
        f"LP {money(rec.get('liquidation_price'))} (tier {rec.get('tier') or '—'},"
        f" {pct(rec.get('maintenance_margin_rate'))}), mark {money(rec.get('mark_price'))},"
        f" buffer {adr(rec.get('buffer_adr'))}, violation {_yes(rec.get('violation'))}"
    )


def trade_lines(t: Item, esc: Esc) -> list[str]:
    """One trade: its entry, exit, violation at entry and what the tier changes during it did."""
    head = (
        f"trade #{t['id']} {t['side']} {esc(t['size_input'])} at {money(t['entry_price'])}"
        f" ({t['mode']}, margin {money(t['margin'])}), {t['opened_at']} → {t['closed_at'] or 'open'}"
    )
    lines = [head, f"  entry: {_figures(t['entry'])}"]
    if t["violation_at_entry"]:
        lines.append("  MARGIN-RISK VIOLATION AT ENTRY")
    ex = t["exit"]
    if ex is not None:
        lines.append(f"  exit at {money(ex.get('price'))}, PnL {money(ex.get('pnl'))}: {_figures(ex)}")
    d = t["during"]
    if d["impacts"]:
        lines.append(
            f"  during: {d['impacts']} impact(s), LP {money(d['liquidation_price_before'])} →"
            f" {money(d['liquidation_price_after'])}, buffer {adr(d['buffer_adr_before'])} →"
            f" {adr(d['buffer_adr_after'])} (worst {adr(d['worst_buffer_adr'])}), tier crossings"
            f" {d['tier_crossings']}, new violations {d['new_violations']}"
        )
    else:
        lines.append("  during: no tier change touched it")
    if t["note"]:
        lines.append(f"  note: {esc(t['note'])}")
    return lines


def _size_line(label: str, s: Item | None) -> str:
    if s is None:
        return f"{label}: —"
    where = (
        f"tier {s.get('tier', '—')}, at {pct(s.get('share_of_tier'))} of tier {s.get('next_tier')}'s floor"
        f" {money(s.get('next_tier_floor'))} (headroom {money(s.get('headroom_notional'))})"
        if s.get("next_tier") is not None
        else f"tier {s.get('tier', '—')} (the top tier)"
    )
    why = f" ({s['reason']})" if s.get("reason") else ""
    return (
        f"{label}: {money(s['notional'])} notional at {money(s['entry_price'])} with margin {money(s['margin'])}:"
        f" {where}; LP {money(s.get('liquidation_price'))}, one tier up LP"
        f" {money(s.get('next_tier_liquidation_price'))}{why}"
    )


def scaling_lines(sc: Item) -> list[str]:
    if sc["usual"] is None:
        return [f"scaling: {sc['reason']}"]
    lines = [_size_line("scaling, usual size", sc["usual"])]
    if sc["largest"] and sc["largest"]["position_id"] != sc["usual"]["position_id"]:
        lines.append(_size_line("scaling, largest size", sc["largest"]))
    return lines


def instrument_head(item: Item, esc: Esc) -> str:
    w = item["watch"]
    watched = ""
    if w is not None:
        size = f" size {money(w['size_notional'])}" if w["size_notional"] else ""
        note = f" ({esc(w['note'])})" if w["note"] else ""
        watched = f", watched{size}{note}"
    return f"{esc(item['symbol'])} on {item['source']}: {len(item['trades'])} trade(s){watched}"


def render_text(items: Sequence[Item], period: Period) -> str:
    out = [title(period), ""]
    if not items:
        out.append("nothing traded or watched in the period")
    for item in items:
        out.append(instrument_head(item, _plain))
        out.extend("  " + line for line in change_lines(item["changes"]))
        for t in item["trades"]:
            out.extend("  " + line for line in trade_lines(t, _plain))
        out.extend("  " + line for line in scaling_lines(item["scaling"]))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def render_md(items: Sequence[Item], period: Period) -> str:
    out = [f"# {title(period)}", ""]
    if not items:
        out.append("Nothing traded or watched in the period.")
    for item in items:
        out += [f"## {instrument_head(item, _md)}", "", "### Tier changes", ""]
        out += [f"- {_md_ours(line)}" for line in change_lines(item["changes"])]
        out += ["", "### Trades", ""]
        for t in item["trades"]:
            lines = trade_lines(t, _md)
            out.append(f"- {_md_ours(lines[0], escaped=True)}")
            out += [f"  - {_md_ours(line.strip(), escaped=True)}" for line in lines[1:]]
        if not item["trades"]:
            out.append("- none in the period")
        out += ["", "### Scaling", ""] + [f"- {_md_ours(line)}" for line in scaling_lines(item["scaling"])] + [""]
    return "\n".join(out).rstrip() + "\n"


def _md_ours(line: str, *, escaped: bool = False) -> str:
    """Our own words in Markdown: only what would turn into markup (a leading `#`, `*`, `_`, `|`) escaped;
    `escaped` lines already carry outside text escaped by `_md`, and only `*`/`_` of ours are left."""
    return line if escaped else re.sub(r"([*_|#<>\[\]`])", r"\\\1", line)


def _row(item: Item, t: Item | None) -> dict[str, Any]:
    ch, sc, w = item["changes"], item["scaling"], item["watch"]
    jump = ch.get("largest_rate_jump") or {}
    usual = sc.get("usual") or {}
    row: dict[str, Any] = {
        "source": item["source"], "symbol": item["symbol"], "watched": w is not None,
        "watch_size": w["size_notional"] if w else None, "changes": ch["count"], "change_records": ch["records"],
        "tightening": ch["tightening"], "loosening": ch["loosening"], "mixed": ch["mixed"],
        "max_leverage_cuts": len(ch["max_leverage_cuts"]), "tiers_added": ch["tiers_added"],
        "tiers_removed": ch["tiers_removed"], "largest_rate_jump": jump.get("jump"),
        "largest_rate_jump_notional": jump.get("notional"), "usual_notional": usual.get("notional"),
        "usual_tier": usual.get("tier"), "next_tier_floor": usual.get("next_tier_floor"),
        "headroom_notional": usual.get("headroom_notional"), "usual_liquidation_price": usual.get("liquidation_price"),
        "next_tier_liquidation_price": usual.get("next_tier_liquidation_price"),
    }  # fmt: skip
    if t is not None:
        entry, ex, d = t["entry"] or {}, t["exit"] or {}, t["during"]
        row.update(
            trade_id=t["id"], side=t["side"], size_input=t["size_input"], entry_price=t["entry_price"],
            margin=t["margin"], opened_at=t["opened_at"], closed_at=t["closed_at"], note=t["note"],
            entry_tier=entry.get("tier"), entry_maintenance_margin_rate=entry.get("maintenance_margin_rate"),
            entry_liquidation_price=entry.get("liquidation_price"), entry_buffer_adr=entry.get("buffer_adr"),
            violation_at_entry=t["violation_at_entry"], exit_price=ex.get("price"), exit_pnl=ex.get("pnl"),
            exit_liquidation_price=ex.get("liquidation_price"), liquidation_price_move=d["liquidation_price_move"],
            worst_buffer_adr=d["worst_buffer_adr"],
        )  # fmt: skip
    return row


def _cell(v: object) -> str:
    """A CSV cell: numbers unformatted, booleans as true/false, and text that a spreadsheet would run as a
    formula (=, +, -, @ first) prefixed with a quote (OWASP's CSV injection advice)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if isinstance(v, float) else str(v)
    text = printable(str(v))
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def render_csv(items: Sequence[Item]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for item in items:
        for t in item["trades"] or [None]:
            row = _row(item, t)
            w.writerow([_cell(row.get(c)) for c in CSV_COLUMNS])
    return buf.getvalue()


def _svg_bars(bars: Sequence[tuple[str, float]], caption: str) -> str:
    """A horizontal bar chart as inline SVG: one bar per (label, value ≥ 0), labels escaped."""
    if not bars:
        return ""
    top = max(v for _, v in bars) or 1.0
    height, width, left = 22 * len(bars) + 30, 640, 220
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img"'
        f' aria-label="{_html(caption)}"><title>{_html(caption)}</title>'
    ]
    for i, (label, value) in enumerate(bars):
        y = 10 + 22 * i
        w = max(1.0, (width - left - 80) * value / top)
        parts.append(
            f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" font-size="12">{_html(label)}</text>'
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="16" fill="#4a7bd0"></rect>'
            f'<text x="{left + w + 4:.1f}" y="{y + 14}" font-size="12">{_html(pct(value))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _chart(item: Item) -> str:
    """Each trade's distance from entry to its liquidation price at entry, and one tier up at its size."""
    bars: list[tuple[str, float]] = []
    for t in item["trades"]:
        lp = (t["entry"] or {}).get("liquidation_price")
        if lp:
            bars.append((f"#{t['id']} at entry", abs(t["entry_price"] - lp) / t["entry_price"]))
    for label, s in (("usual size, one tier up", item["scaling"].get("usual")),):
        if s and s.get("next_tier_liquidation_price"):
            bars.append((label, abs(s["entry_price"] - s["next_tier_liquidation_price"]) / s["entry_price"]))
    caption = f"{item['symbol']}: distance from entry to the liquidation price"
    svg = _svg_bars(bars, caption)
    return f"<figure>{svg}<figcaption>{_html(caption)}</figcaption></figure>" if svg else ""


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
    "h2{border-bottom:1px solid #ccc;padding-bottom:.2em}li{margin:.2em 0}.bad{color:#b00;font-weight:bold}"
    "figcaption{font-size:.85em;color:#555}"
)


def render_html(items: Sequence[Item], period: Period) -> str:
    """One self-contained page: inline style and SVG, no script, nothing fetched."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_html(title(period))}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_html(title(period))}</h1>",
    ]
    if not items:
        out.append("<p>Nothing traded or watched in the period.</p>")
    for item in items:
        out.append(f"<h2>{instrument_head(item, _html)}</h2>")
        out.append("<h3>Tier changes</h3><ul>")
        out += [f"<li>{html.escape(line)}</li>" for line in change_lines(item["changes"])]
        out.append("</ul><h3>Trades</h3><ul>")
        for t in item["trades"]:
            lines = trade_lines(t, _html)
            inner = "".join(
                f'<li class="bad">{line.strip()}</li>' if "VIOLATION" in line else f"<li>{line.strip()}</li>"
                for line in lines[1:]
            )
            out.append(f"<li>{lines[0]}<ul>{inner}</ul></li>")
        if not item["trades"]:
            out.append("<li>none in the period</li>")
        out.append("</ul><h3>Scaling</h3><ul>")
        out += [f"<li>{html.escape(line)}</li>" for line in scaling_lines(item["scaling"])]
        out.append("</ul>")
        out.append(_chart(item))
    out.append("</body></html>")
    return "\n".join(out) + "\n"

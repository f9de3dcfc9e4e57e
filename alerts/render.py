"""Render an `Alert` for people and machines: plain text and HTML e-mail, the webhook JSON, chat messages.

Every function here is pure: the same alert always renders to the same bytes, so a message resent after
a crash is identical to the first attempt, and golden files can pin the output (tests/golden/).

- `render_text` / `render_html`: the two parts of the e-mail; `subject` its Subject line.
- `render_json`: the versioned webhook payload (schema `tierdrift.alert/v1`, see `SCHEMA`).
- `render_chat`: Slack and Discord incoming-webhook bodies, cut to each service's message limit.
- `render_telegram`: a Telegram message in its HTML subset; `fit_lines` cuts any text to a limit.

Alert text quotes exchanges' symbols and error messages and users' notes: it is data in every human
rendering. Its control, format and separator characters are shown as escapes (`snapshots.printable`),
and it is escaped for each medium (HTML, Slack mrkdwn, Discord markdown). The webhook JSON keeps it as is.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

from alerts.model import SCHEMA_VERSION, Alert, Severity
from snapshots.printable import printable

#: The payload's `schema` value; a receiver switches on it. Bump with `alerts.model.SCHEMA_VERSION`.
SCHEMA = f"tierdrift.alert/v{SCHEMA_VERSION}"

ChatFlavour = Literal["slack", "discord"]

#: Characters a chat message may hold. Discord rejects `content` over 2000; Slack truncates `text` over
#: 40,000 and recommends staying under 4,000 (api.slack.com/methods/chat.postMessage, "Truncating content").
CHAT_LIMITS: dict[str, int] = {"slack": 4000, "discord": 2000}

#: A single line longer than this is clipped in chat messages, so that one huge line cannot crowd out the rest.
_CHAT_LINE_MAX = 300

_ARROW = "→"
_SEVERITY_COLOURS = {Severity.INFO: "#4a5568", Severity.WARNING: "#b7791f", Severity.CRITICAL: "#c53030"}


def iso_utc(dt: datetime) -> str:
    """`dt` as ISO 8601 in UTC to the second, with a `Z` (a naive `dt` is taken to be UTC already)."""
    aware = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return aware.replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def printable_alert(alert: Alert) -> Alert:
    """`alert` with every human-readable string (title, lines, rows, source, symbol, id, kind) made
    `printable`: one line each, no character that could act on a terminal or hide text."""
    return replace(
        alert,
        id=printable(alert.id),
        kind=printable(alert.kind),
        title=printable(alert.title),
        source=None if alert.source is None else printable(alert.source),
        symbol=None if alert.symbol is None else printable(alert.symbol),
        lines=tuple(printable(line) for line in alert.lines),
        rows=tuple((printable(a), printable(b), printable(c)) for a, b, c in alert.rows),
    )


#: Kinds whose alert is about one logged position (`data["position"]["id"]`): they link to its page.
POSITION_KINDS = ("position_impact", "position_risk")


def alert_link(alert: Alert, base_url: str | None) -> str | None:
    """The web dashboard page of what `alert` is about, under `base_url` (the `web_public_url` setting):
    `<base>/positions/<id>` for a position's alert, `<base>/symbols/<source>/<symbol>` for a symbol's (the
    ccxt symbol percent-encoded whole, `/` and `:` too), None for the rest or without a base URL."""
    if not base_url:
        return None
    base = quote(base_url.rstrip("/"), safe="/:@!$&'()*+,;=%?#[]")  # ASCII: it goes into a header
    position = alert.data.get("position")
    if alert.kind in POSITION_KINDS and isinstance(position, dict):
        pid = position.get("id")
        if isinstance(pid, int) and not isinstance(pid, bool):
            return f"{base}/positions/{pid}"
    if alert.source and alert.symbol:
        return f"{base}/symbols/{quote(alert.source, safe='')}/{quote(alert.symbol, safe='')}"
    return None


def subject(alert: Alert) -> str:
    """The e-mail Subject: `[tierdrift] <title>`, with `CRITICAL: ` / `WARNING: ` before the title when the
    severity is at least warning. Line breaks in the title become spaces (a header is one line); other
    control characters are shown as escapes."""
    title = printable(" ".join(alert.title.split()))
    if alert.severity >= Severity.WARNING:
        return f"[tierdrift] {alert.severity.name}: {title}"
    return f"[tierdrift] {title}"


# --- plain text ---------------------------------------------------------------------------------------


def table_lines(rows: Sequence[tuple[str, str, str]]) -> list[str]:
    """`rows` as aligned `label  old → new` lines under an `old`/`new` header; [] when there are no rows.

    Labels are left-aligned and values right-aligned, so that figures line up by their last digit.
    """
    if not rows:
        return []
    lw = max(len(label) for label, _, _ in rows)
    ow = max(len("old"), *(len(old) for _, old, _ in rows))
    nw = max(len("new"), *(len(new) for _, _, new in rows))
    out = [f"{'':<{lw}}  {'old':>{ow}}    {'new':>{nw}}".rstrip()]
    out.extend(f"{label:<{lw}}  {old:>{ow}}  {_ARROW} {new:>{nw}}" for label, old, new in rows)
    return out


def _footer_fields(alert: Alert) -> list[tuple[str, str]]:
    """The identifying fields shown under every human-readable rendering; absent source/symbol are left out."""
    fields = [("alert", alert.id), ("kind", alert.kind), ("severity", alert.severity.label)]
    fields += [(k, v) for k, v in (("source", alert.source), ("symbol", alert.symbol)) if v is not None]
    fields.append(("created", iso_utc(alert.created_at)))
    return fields


def render_text(alert: Alert) -> str:
    """The plain-text e-mail body: title (underlined), summary lines, the old → new table, then a footer
    with id, kind, severity, source, symbol and creation time. Ends with a newline, no trailing spaces."""
    alert = printable_alert(alert)
    parts = [alert.title, "=" * min(len(alert.title), 72), ""]
    if alert.lines:
        parts += [*alert.lines, ""]
    if alert.rows:
        parts += [*table_lines(alert.rows), ""]
    fields = _footer_fields(alert)
    kw = max(len(k) for k, _ in fields) + 1
    parts += ["--", *(f"{k + ':':<{kw}} {v}" for k, v in fields)]
    return "\n".join(parts) + "\n"


# --- HTML ---------------------------------------------------------------------------------------------

# E-mail clients drop <style> blocks and external CSS, so every element carries its own inline style.
_FONT = "font-family:Helvetica,Arial,sans-serif;"
_CELL = "padding:4px 10px;border-bottom:1px solid #e2e8f0;"
_NUM = _CELL + "text-align:right;font-family:Menlo,Consolas,monospace;white-space:nowrap;"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _html_table(rows: Sequence[tuple[str, str, str]]) -> list[str]:
    if not rows:
        return []
    head = (
        f'<tr><th style="{_CELL}text-align:left;"></th><th style="{_NUM}">old</th>'
        f'<th style="{_CELL}"></th><th style="{_NUM}">new</th></tr>'
    )
    body = [
        f'<tr><td style="{_CELL}">{_e(label)}</td><td style="{_NUM}">{_e(old)}</td>'
        f'<td style="{_CELL}color:#718096;">{_ARROW}</td><td style="{_NUM}font-weight:bold;">{_e(new)}</td></tr>'
        for label, old, new in rows
    ]
    style = f"border-collapse:collapse;{_FONT}font-size:14px;"
    return [f'<table cellpadding="0" cellspacing="0" border="0" style="{style}">', head, *body, "</table>"]


def render_html(alert: Alert) -> str:
    """The HTML e-mail body: the same content as `render_text` as a small document with inline styles only
    and a `<table>` of old → new values. Every piece of alert text is made printable and escaped with
    `html.escape`."""
    alert = printable_alert(alert)
    colour = _SEVERITY_COLOURS.get(alert.severity, "#4a5568")
    footer = " · ".join(f"{k} {_e(v)}" for k, v in _footer_fields(alert))
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{_e(alert.title)}</title></head>",
        f'<body style="margin:0;padding:16px;{_FONT}color:#1a202c;background:#ffffff;">',
        f'<p style="margin:0 0 4px;font-size:12px;font-weight:bold;color:{colour};">{alert.severity.name}</p>',
        f'<h1 style="margin:0 0 12px;font-size:18px;border-left:4px solid {colour};padding-left:8px;">'
        f"{_e(alert.title)}</h1>",
        *(f'<p style="margin:0 0 4px;font-size:14px;">{_e(line)}</p>' for line in alert.lines),
    ]
    if alert.rows:
        parts += ['<div style="margin:12px 0;">', *_html_table(alert.rows), "</div>"]
    parts += [f'<p style="margin:16px 0 0;font-size:12px;color:#718096;">{footer}</p>', "</body></html>"]
    return "\n".join(parts) + "\n"


# --- JSON ---------------------------------------------------------------------------------------------


def render_json(alert: Alert) -> dict[str, Any]:
    """The webhook payload, schema `tierdrift.alert/v1`. Every key is always present (None → null):

    `schema`, `id` (stable across retries), `kind`, `severity` (label), `created_at` (ISO 8601 UTC, Z),
    `title`, `source`, `symbol`, `summary` (the alert's lines), `changes` (its rows as label/old/new
    objects of display strings) and `data` (the event's raw figures, `alert.data` as is).
    """
    return {
        "schema": SCHEMA,
        "id": alert.id,
        "kind": alert.kind,
        "severity": alert.severity.label,
        "created_at": iso_utc(alert.created_at),
        "title": alert.title,
        "source": alert.source,
        "symbol": alert.symbol,
        "summary": list(alert.lines),
        "changes": [{"label": label, "old": old, "new": new} for label, old, new in alert.rows],
        "data": alert.data,
    }


# --- chat ---------------------------------------------------------------------------------------------


def _slack_escape(text: str) -> str:
    # Slack's three control characters: https://api.slack.com/reference/surfaces/formatting#escaping.
    # Escaping < and > also stops text from forming a <!channel> mention.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _discord_escape(text: str) -> str:
    """Backslash Discord's markdown characters so that text like `1000*` cannot change the formatting, a
    `[x](http://…)` cannot become a masked link and `<@id>` / `<#id>` / `<t:…>` cannot become a mention or
    a tag; the line-start markers (heading, quote, list, subtext) only matter at the start of the line."""
    text = "".join("\\" + ch if ch in "\\*_~`|[<" else ch for ch in text)
    return "\\" + text if text[:1] in ("#", ">", "-") else text


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _code_safe(text: str) -> str:
    # A ``` inside the code block would close it early; a single quote reads the same in a table.
    return text.replace("`", "'")


def _chat_compose(head: str, lines: list[str], table: list[str], foot: str, omitted: int) -> str:
    out = [head, *lines]
    if table:
        out += ["```", *table, "```"]
    if omitted:
        out.append(f"… {omitted} more line(s) not shown")
    out.append(foot)
    return "\n".join(out)


def _chat_fit(head: str, lines: list[str], table: list[str], foot: str, limit: int) -> str:
    """The longest message within `limit` that keeps the title and footer and drops lines from the end
    (table rows first, then summary lines), saying how many were dropped; a table keeps its header row."""
    full = _chat_compose(head, lines, table, foot, 0)
    if len(full) <= limit:
        return full
    body = [("line", s) for s in lines] + [("row", s) for s in table[1:]]
    for keep in range(len(body) - 1, -1, -1):
        kept = body[:keep]
        rows = [s for k, s in kept if k == "row"]
        lines_kept = [s for k, s in kept if k == "line"]
        text = _chat_compose(head, lines_kept, [table[0], *rows] if rows else [], foot, len(body) - keep)
        if len(text) <= limit:
            return text
    return _clip(head, limit)


def render_chat(alert: Alert, flavour: ChatFlavour) -> dict[str, Any]:
    """A Slack (`{"text": …}`) or Discord (`{"content": …}`) incoming-webhook body: the title in bold, the
    summary lines, the old → new table in a code block and a one-line footer, all escaped for the service.

    The message never exceeds `CHAT_LIMITS[flavour]` characters: lines that do not fit are dropped from
    the end and replaced by one `… N more line(s) not shown` line. Discord mentions are disabled.
    """
    if flavour not in CHAT_LIMITS:
        raise ValueError(f"unknown chat flavour {flavour!r}; choose slack or discord")
    alert = printable_alert(alert)
    esc = _slack_escape if flavour == "slack" else _discord_escape
    bold = "*" if flavour == "slack" else "**"
    head = f"{bold}{esc(_clip(alert.title, _CHAT_LINE_MAX))}{bold}"
    lines = [esc(_clip(line, _CHAT_LINE_MAX)) for line in alert.lines]
    table = [_code_safe(_clip(s, _CHAT_LINE_MAX)) for s in table_lines(alert.rows)]
    if flavour == "slack":
        table = [_slack_escape(s) for s in table]
    foot = esc(" · ".join(f"{k} {v}" for k, v in _footer_fields(alert)))
    # Discord shows "-# " lines as small grey subtext; Slack has no equivalent, and italics would break on
    # the underscores in ids, so its footer stays plain.
    text = _chat_fit(head, lines, table, foot if flavour == "slack" else f"-# {foot}", CHAT_LIMITS[flavour])
    if flavour == "slack":
        return {"text": text}
    # Alert text comes from exchanges' symbol names and user notes: never let it ping anyone.
    return {"content": text, "allowed_mentions": {"parse": []}}


# --- Telegram -----------------------------------------------------------------------------------------

#: Characters of a Telegram message after its entities are parsed (core.telegram.org/bots/api#sendmessage);
#: Telegram counts UTF-16 code units, and so does `telegram_length`.
TELEGRAM_LIMIT = 4096


def telegram_length(text: str) -> int:
    """`text`'s length in UTF-16 code units, as Telegram counts (an emoji outside the BMP counts two).
    Measured on the HTML markup, which is never shorter than the text Telegram counts after parsing it."""
    return len(text.encode("utf-16-le")) // 2


def more_hint(alert: Alert) -> str:
    """Where to read what a cut message left out: `tierdrift changes …` for a digest, else the alert list."""
    source, since = alert.data.get("source"), alert.data.get("detected_at")
    if alert.kind == "tier_changes" and isinstance(source, str) and isinstance(since, str):
        return printable(f"tierdrift changes --source {source} --since {since}")
    return "tierdrift alerts list"


def fit_lines(
    head: Sequence[str], body: Sequence[str], foot: Sequence[str], limit: int, length: Callable[[str], int], more: str
) -> str:
    """`head`, `body` and `foot` joined by newlines, within `limit` as `length` measures it: body lines are
    dropped from the end and replaced by one `… N more lines (<more>)` line. One message, never several."""
    full = "\n".join([*head, *body, *foot])
    if length(full) <= limit:
        return full
    for keep in range(len(body) - 1, -1, -1):
        text = "\n".join([*head, *body[:keep], f"… {len(body) - keep} more lines ({more})", *foot])
        if length(text) <= limit:
            return text
    return "\n".join(head)[:limit]  # callers clip every line, so the title alone always fits


def render_telegram(alert: Alert, limit: int = TELEGRAM_LIMIT, link: str | None = None) -> str:
    """A Telegram `sendMessage` text with `parse_mode` HTML: the title in `<b>`, the summary lines, the old →
    new table one `<code>` line per row, and the footer in `<i>`, then `link` (the dashboard page, from
    `alert_link`) as an `<a href>`, kept whatever is cut. Only `<b>`, `<i>`, `<code>` and `<a>` are used;
    every piece of alert text is made printable and then escaped with `html.escape`, so that `<b>`, `&` or
    a link in a symbol or a note stays text. At most `limit` characters (as Telegram counts them): lines
    that do not fit are dropped from the end, with a pointer to where the rest can be read."""
    alert = printable_alert(alert)
    marker = {Severity.CRITICAL: "CRITICAL: ", Severity.WARNING: "WARNING: "}.get(alert.severity, "")
    head = [f"<b>{_e(marker + _clip(alert.title, _CHAT_LINE_MAX))}</b>"]
    body = [_e(_clip(line, _CHAT_LINE_MAX)) for line in alert.lines]
    body += [f"<code>{_e(_clip(row, _CHAT_LINE_MAX))}</code>" for row in table_lines(alert.rows)]
    foot = ["<i>" + _e(" · ".join(f"{k} {v}" for k, v in _footer_fields(alert))) + "</i>"]
    if link:
        foot.append(f'<a href="{_e(link)}">open in tierdrift</a>')
    return fit_lines(head, body, foot, limit, telegram_length, _e(more_hint(alert)))

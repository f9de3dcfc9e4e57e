"""Any service Apprise reaches (Discord, Matrix, Pushover, Signal, Slack, Gotify, …), through its URLs.

Needs the optional extra (`pip install 'tierdrift[apprise]'`); Apprise is imported only when such a channel is
built. Each alert is one notification per URL: the title (with `CRITICAL:`/`WARNING:` before it) and the
plain-text body of `alerts.render.render_text`, with the dashboard link when `web_public_url` is set, and
Apprise's notify type from the severity (info, warning, failure).

What Apprise cannot do, and how the outbox copes (README, "Apprise"):

- No stable id reaches the service: a resend after a crash is a second message the receiver cannot tell from
  the first. Within one process, a URL that took an alert is not sent it again when another URL of the
  channel failed and the delivery is retried.
- `notify()` says only True or False: a failure is always retryable (the outbox backs off and gives up
  after `alert_max_age_hours`); a permanent one (a revoked token) is only ever seen as repeated failures.
  Its reason is Apprise's own log line of the failure, scrubbed of every part of the URLs.
- Apprise's calls block and its sockets are its own: each attempt runs in a worker thread, and the caller
  stops waiting at the channel's `deadline` (or when the delivery is aborted), calling it a retryable
  failure. A worker that is still stuck keeps the channel from starting another until it returns, so one
  dead service costs one thread, and it may still deliver late (a resend at worst).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from alerts.channels.base import SendResult
from alerts.channels.watchdog import Watchdog
from alerts.config import AppriseConfig, apprise_scheme, quiet_apprise_log
from alerts.model import Alert, Severity
from alerts.render import alert_link, printable_alert, render_text

#: Alerts remembered per channel with the URLs that took them (a retry skips those).
_REMEMBERED = 1000
#: Characters of Apprise's failure message kept in an error.
_REASON = 200


class _Capture(logging.Handler):
    """Apprise's warnings and errors, by the thread that logged them (each attempt reads its own)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._lock = threading.Lock()
        self._lines: dict[int, list[str]] = {}

    def watch(self) -> None:
        with self._lock:
            self._lines[threading.get_ident()] = []

    def take(self) -> list[str]:
        with self._lock:
            return self._lines.pop(threading.get_ident(), [])

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            lines = self._lines.get(record.thread or 0)
            if lines is not None and len(lines) < 20:
                lines.append(record.getMessage())


_capture = _Capture()


def _install_capture() -> None:
    log = quiet_apprise_log()
    if _capture not in log.handlers:
        log.addHandler(_capture)


@dataclass
class _Attempt:
    """One send's progress, shared between the caller and the worker that runs Apprise."""

    alert_id: str
    pending: list[int]
    done: threading.Event = field(default_factory=threading.Event)
    failures: list[str] = field(default_factory=list)


class AppriseChannel:
    """Notifies every URL of `config.urls` of each alert. Raises `ValueError` (naming only the scheme) for a
    URL Apprise cannot use; `ImportError` without the extra (the settings check both at load already)."""

    kind = "apprise"

    def __init__(self, config: AppriseConfig, *, public_url: str | None = None) -> None:
        import apprise  # lazily: only an apprise channel needs it (about 0.1 s)

        _install_capture()
        self.name = config.name
        self._config = config
        self._public_url = public_url
        self._types = {
            Severity.INFO: apprise.NotifyType.INFO,
            Severity.WARNING: apprise.NotifyType.WARNING,
            Severity.CRITICAL: apprise.NotifyType.FAILURE,
        }
        self._targets: list[Any] = []
        for n, url in enumerate(config.urls, 1):
            target = apprise.Apprise.instantiate(url.get_secret_value())
            if target is None:
                scheme = apprise_scheme(url.get_secret_value())
                raise ValueError(f"apprise channel {config.name!r}: URL #{n} ({scheme}://…) is not usable")
            # Apprise's own socket timeouts bound each connect and read; the deadline bounds the attempt.
            target.socket_connect_timeout = target.socket_read_timeout = config.timeout
            self._targets.append(target)
        self._schemes = [apprise_scheme(u.get_secret_value()) for u in config.urls]
        self._pieces = _secret_pieces([u.get_secret_value() for u in config.urls])
        self.deadline = config.attempt_deadline
        self._lock = threading.Lock()
        self._took: OrderedDict[str, set[int]] = OrderedDict()  # alert id → indexes of the URLs that took it
        self._running: _Attempt | None = None

    def describe(self) -> str:
        return f"Apprise, {len(self._targets)} URL(s): {', '.join(f'{s}://…' for s in self._schemes)}"

    def close(self) -> None:
        """Nothing to close: Apprise opens a connection per notification."""

    def message(self, alert: Alert) -> tuple[str, str]:
        """(title, body) sent for `alert`: the same on every attempt."""
        shown = printable_alert(alert)
        marker = {Severity.CRITICAL: "CRITICAL: ", Severity.WARNING: "WARNING: "}.get(alert.severity, "")
        body = render_text(alert).split("\n")[3:]  # the title and its underline are the notification's title
        link = alert_link(alert, self._public_url)
        if link:
            body += [f"open in tierdrift: {link}", ""]
        return marker + shown.title, "\n".join(body).strip("\n")

    def send(self, alert: Alert) -> SendResult:
        """Notify each URL that has not taken `alert` yet, within `deadline` seconds in all; never raises for
        a delivery failure."""
        with self._lock:
            if self._running is not None and not self._running.done.is_set():
                return SendResult(
                    ok=False, error=f"an earlier Apprise attempt has not returned after {self.deadline:g} s"
                )
            took = self._took.get(alert.id, set())
            attempt = _Attempt(alert.id, [i for i in range(len(self._targets)) if i not in took])
            self._running = attempt
        title, body = self.message(alert)
        kind = self._types.get(alert.severity, self._types[Severity.INFO])
        worker = threading.Thread(
            target=self._notify, args=(attempt, title, body, kind), name=f"apprise:{self.name}", daemon=True
        )
        with Watchdog(self.deadline) as dog:
            worker.start()
            while not attempt.done.wait(0.05):
                if dog.check():
                    what = "aborted" if dog.reason == "aborted" else f"no answer within {self.deadline:g} s"
                    return SendResult(ok=False, error=f"Apprise {self._where(attempt.pending)}: {what}")
        if attempt.failures:
            return SendResult(ok=False, error="; ".join(attempt.failures)[:600])
        with self._lock:
            self._took.pop(alert.id, None)
        return SendResult.success()

    def _notify(self, attempt: _Attempt, title: str, body: str, kind: Any) -> None:
        """Run in the worker: notify each pending URL in turn, recording who took it and why others failed."""
        try:
            for i in attempt.pending:
                _capture.watch()
                try:
                    ok = bool(self._targets[i].notify(body=body, title=title, notify_type=kind))
                    reason = "" if ok else " ".join(_capture.take()[-1:])
                except Exception as exc:  # a plugin's bug or a library error: retried like any failure
                    ok, reason = False, f"{type(exc).__name__}: {exc}"
                finally:
                    _capture.take()
                if ok:
                    self._remember(attempt.alert_id, i)
                else:
                    why = self._scrub(reason)[:_REASON] or "the service did not accept it"
                    attempt.failures.append(f"Apprise {self._schemes[i]}://… (URL #{i + 1}) failed: {why}")
        finally:
            attempt.done.set()

    def _remember(self, alert_id: str, index: int) -> None:
        with self._lock:
            self._took.setdefault(alert_id, set()).add(index)
            self._took.move_to_end(alert_id)
            while len(self._took) > _REMEMBERED:
                self._took.popitem(last=False)

    def _where(self, indexes: Sequence[int]) -> str:
        return ", ".join(f"{self._schemes[i]}://…" for i in indexes) or "(no URL)"

    def _scrub(self, text: str) -> str:
        """`text` on one line without any part of any URL but its scheme (Apprise URLs put tokens anywhere,
        the host included: `tgram://<bot token>/<chat>`)."""
        out = " ".join(text.split())
        for piece in self._pieces:
            out = out.replace(piece, "…")
        return out


def _secret_pieces(urls: Sequence[str]) -> list[str]:
    """Every part of `urls` that may be a credential, whole and percent-decoded, longest first."""
    pieces: list[str] = []
    for url in urls:
        rest = url.split("://", 1)[-1]
        pieces += [url, rest, unquote(rest)]
        try:
            parts = urlsplit(url)
            pieces += [parts.netloc, parts.username or "", parts.password or "", parts.hostname or ""]
        except ValueError:
            pass
        for chunk in rest.replace("?", "/").replace("&", "/").replace("=", "/").replace("@", "/").split("/"):
            for part in (chunk, *chunk.split(":")):
                pieces += [part, unquote(part)]
    # Short pieces ("1", "on") would mangle every message; 3 characters and more are scrubbed.
    return sorted({p for p in pieces if len(p) >= 3}, key=len, reverse=True)

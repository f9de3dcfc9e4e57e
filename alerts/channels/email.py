"""E-mail through an SMTP relay, with the standard library only: one connection per alert.

`smtp_url` forms (percent-encode `@ : / ? #` in the user name and password):

- `smtp://[user[:password]@]host[:port]`: port 587, STARTTLS required (no fallback to plain text);
- `smtps://[user[:password]@]host[:port]`: port 465, TLS from the first byte;
- `smtp://host[:port]?tls=none`: port 587, no TLS, for a trusted relay; credentials only to a loopback host.

Certificates are verified against the system's CAs plus `ca_file`. The message is multipart/alternative
(text and HTML from alerts.render) with `Message-ID: <{alert.id}@tierdrift>`, the same on every attempt,
so that a resend after a crash threads with (or is dropped as a duplicate of) the first.

Outcomes: connection failures, timeouts, TLS errors, disconnects and 4xx replies are retryable; a refused
login (535) and other 5xx replies are not. An attempt that has not finished within `attempt_deadline`
seconds is cut off (alerts.channels.watchdog: smtplib's timeout bounds each command, not the session) and
retried later. Errors and `describe()` never contain the password, in any form a server could echo: raw,
percent-encoded, or base64 as AUTH PLAIN, LOGIN and CRAM-MD5 send it.
"""

from __future__ import annotations

import base64
import binascii
import re
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import quote

from alerts.channels.base import SendResult
from alerts.channels.watchdog import Watchdog, track_socket
from alerts.config import EmailConfig
from alerts.model import Alert
from alerts.render import render_html, render_text, subject
from alerts.smtpurl import SmtpTarget, parse_smtp_url

__all__ = ["EmailChannel", "SmtpTarget", "build_message", "parse_smtp_url"]


def build_message(alert: Alert, sender: str, to: list[str]) -> EmailMessage:
    """The multipart/alternative message for `alert`. Its headers are the same on every attempt (Date is the
    alert's creation time, Message-ID derives from its id); only the MIME boundary is random."""
    msg = EmailMessage()
    msg["Subject"] = subject(alert)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = format_datetime(alert.created_at)
    msg["Message-ID"] = f"<{alert.id}@tierdrift>"
    # RFC 3834: tells vacation responders and ticket systems not to answer a machine.
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(render_text(alert))
    msg.add_alternative(render_html(alert), subtype="html")
    return msg


# smtplib opens its connection in `_get_socket`, the hook SMTP_SSL overrides too (typeshed omits it).
class _TrackedSMTP(smtplib.SMTP):
    """smtplib.SMTP whose connection the current attempt's watchdog can cut off."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        track_socket(sock)
        return sock


class _TrackedSMTPSSL(smtplib.SMTP_SSL):
    """smtplib.SMTP_SSL whose connection is tracked before the TLS handshake, which a server can drip-feed too."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = smtplib.SMTP._get_socket(self, host, port, timeout)  # type: ignore[attr-defined]
        track_socket(sock)
        return self.context.wrap_socket(sock, server_hostname=host)


_B64_TOKEN = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}")
_AUTH_ARGUMENT = re.compile(r"(?i)\b(AUTH\s+(?:PLAIN|LOGIN|CRAM-MD5|XOAUTH2))\s+\S+")  # an echoed AUTH command


class _Redactor:
    """Removes the credentials from a server's reply, in every form smtplib sends them: the password raw
    and percent-encoded (as in smtp_url), and base64 as AUTH PLAIN (`\\0user\\0password`), AUTH LOGIN
    (user and password separately) and CRAM-MD5 (`user digest`) send them, whole or cut short."""

    def __init__(self, user: str | None, password: str | None) -> None:
        self._user = user.encode() if user else None
        self._password = password.encode() if password else None
        raw = [password, quote(password, safe="")] if password else []
        sent = [self._password, self._user]
        if self._user is not None:
            pw = self._password or b""
            sent += [b"\0" + self._user + b"\0" + pw, self._user + b"\0" + self._user + b"\0" + pw]
        encoded = [base64.b64encode(b).decode() for b in sent if b]
        self._b64 = sorted({f for e in encoded for f in (e, e.rstrip("="))}, key=len, reverse=True)
        self._forms = sorted({*raw, *self._b64}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        line = _AUTH_ARGUMENT.sub(r"\1 ***", " ".join(text.split()))
        # Whole base64 tokens first: replacing a short form inside one would leave the rest unrecognisable.
        line = _B64_TOKEN.sub(lambda m: "***" if self._leaks(m.group()) else m.group(), line)
        for form in self._forms:
            line = line.replace(form, "***")
        return line

    def _leaks(self, token: str) -> bool:
        if any(token in form for form in self._b64):  # an echo cut short
            return True
        body = token.rstrip("=")
        try:
            decoded = base64.b64decode(body[: len(body) - len(body) % 4])
        except (binascii.Error, ValueError):
            return False
        # The user name is in every AUTH PLAIN and CRAM-MD5 answer, before the password when there is one.
        return any(s in decoded for s in (self._user, self._password) if s)


class EmailChannel:
    """Sends each alert as one e-mail to `config.to`. Raises `ValueError` on a malformed `smtp_url`."""

    kind = "email"

    def __init__(self, config: EmailConfig) -> None:
        self.name = config.name
        self._config = config
        self._target = parse_smtp_url(config.smtp_url.get_secret_value())
        self._redact = _Redactor(self._target.username, self._target.password)
        self.deadline = config.attempt_deadline

    def describe(self) -> str:
        return f"{self._target.describe()} → {', '.join(self._config.to)}"

    def close(self) -> None:
        """Nothing to release: each send opens and closes its own connection."""

    def send(self, alert: Alert) -> SendResult:
        """Deliver `alert` once and classify the outcome; never raises for a delivery failure."""
        try:
            context = self._tls_context()
        except ssl.SSLError as exc:  # before OSError, its base class
            return self._fail(f"ca_file is not a PEM certificate bundle: {exc.reason}", retryable=False)
        except OSError as exc:  # a missing or unreadable ca_file: fix the configuration
            return self._fail(f"cannot load ca_file: {exc.strerror or exc}", retryable=False)
        msg = build_message(alert, self._config.sender, self._config.to)
        with Watchdog(self.deadline) as dog:
            try:
                refused = self._deliver(msg, context)
            except (smtplib.SMTPException, OSError) as exc:  # ssl.SSLError and TimeoutError are OSErrors
                return self._cut_off(dog) if dog.reason else self._failure(exc)
        if refused:
            # Others got it: a retry would send them a duplicate, so report the refused ones and stop.
            names = ", ".join(f"{rcpt} ({code})" for rcpt, (code, _) in sorted(refused.items()))
            return self._fail(f"{self._where} refused some recipients: {names}", retryable=False)
        return SendResult.success()

    def _failure(self, exc: smtplib.SMTPException | OSError) -> SendResult:
        if isinstance(exc, smtplib.SMTPException):
            return self._smtp_failure(exc)
        if isinstance(exc, ssl.SSLError):  # certificate rejected or handshake failed: the relay's admin may fix it
            return self._fail(f"TLS with {self._where} failed: {exc.reason or exc}", retryable=True)
        if isinstance(exc, TimeoutError):
            return self._fail(f"{self._where} timed out after {self._config.timeout:g}s", retryable=True)
        # refused, unreachable, DNS: the relay may come back
        return self._fail(f"cannot connect to {self._where}: {exc.strerror or type(exc).__name__}", retryable=True)

    def _cut_off(self, dog: Watchdog) -> SendResult:
        if dog.reason == "aborted":
            return self._fail(f"abandoned while talking to {self._where}: stopping", retryable=True)
        return self._fail(f"no complete answer within {self.deadline:g} s from {self._where}", retryable=True)

    @property
    def _where(self) -> str:
        return f"{self._target.host}:{self._target.port}"

    def _tls_context(self) -> ssl.SSLContext:
        # The default context (system CAs, hostname check) *plus* ca_file: create_default_context(cafile=…)
        # would trust the file *instead of* the system store.
        context = ssl.create_default_context()
        if self._config.ca_file:
            context.load_verify_locations(cafile=self._config.ca_file)
        return context

    def _deliver(self, msg: EmailMessage, context: ssl.SSLContext) -> dict[str, tuple[int, bytes]]:
        target, timeout = self._target, self._config.timeout
        smtp: smtplib.SMTP
        if target.security == "tls":
            smtp = _TrackedSMTPSSL(target.host, target.port, timeout=timeout, context=context)
        else:
            smtp = _TrackedSMTP(target.host, target.port, timeout=timeout)
        with smtp:
            if target.security == "starttls":
                smtp.starttls(context=context)  # raises SMTPNotSupportedError rather than go on in plain text
            if target.username:
                smtp.login(target.username, target.password or "")
            return smtp.send_message(msg, from_addr=self._config.sender, to_addrs=self._config.to)

    def _smtp_failure(self, exc: smtplib.SMTPException) -> SendResult:
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return self._fail(f"{self._where} closed the connection", retryable=True)
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return self._fail(f"{self._where}: {exc} (check the tls setting of smtp_url)", retryable=False)
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = {rcpt: code for rcpt, (code, _) in exc.recipients.items()}
            names = ", ".join(f"{rcpt} ({code})" for rcpt, code in sorted(codes.items()))
            return self._fail(f"{self._where} refused every recipient: {names}", retryable=_all_transient(codes))
        if isinstance(exc, smtplib.SMTPResponseException):
            return self._reply_failure(exc)
        return self._fail(f"SMTP error with {self._where}: {self._clean(str(exc))}", retryable=True)

    def _reply_failure(self, exc: smtplib.SMTPResponseException) -> SendResult:
        code = exc.smtp_code
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        what = "login refused" if isinstance(exc, smtplib.SMTPAuthenticationError) else "rejected"
        user = f" for user {self._target.username}" if what == "login refused" else ""
        # 4xx replies are transient by definition (RFC 5321 §4.2.1); 5xx, and 535 for a login, are not.
        return self._fail(f"{self._where} {what}{user}: {code} {self._clean(text)}", retryable=400 <= code < 500)

    def _clean(self, text: str) -> str:
        """One line, with the credentials removed should a server echo them (see `_Redactor`)."""
        return self._redact(text)

    def _fail(self, error: str, *, retryable: bool) -> SendResult:
        return SendResult(ok=False, error=self._clean(error), retryable=retryable)


def _all_transient(codes: dict[str, int]) -> bool:
    return all(400 <= code < 500 for code in codes.values())

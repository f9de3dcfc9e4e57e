"""The delivery channels and webhook signing, against real receivers on 127.0.0.1.

- E-mail: an in-process aiosmtpd server with a trustme certificate, STARTTLS or implicit TLS, and an
  authenticator checking a password with URL-special characters.
- Webhooks: a stdlib HTTP server that verifies Standard Webhooks signatures with `alerts.signing.verify`,
  and respx where a precise answer (410, 429 + Retry-After, a timeout) is the point of the test.
- Signing: the Standard Webhooks example vector, and a vector computed here with hmac and base64.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import httpx
import pytest
import respx
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr

from alerts.channels.base import Channel
from alerts.channels.email import EmailChannel, SmtpTarget, build_message, parse_smtp_url
from alerts.channels.httpsend import MAX_RETRY_AFTER, USER_AGENT, parse_retry_after
from alerts.channels.webhook import WebhookChannel
from alerts.config import EmailConfig, WebhookConfig
from alerts.model import Alert, Severity
from alerts.render import render_html, render_text, subject
from alerts.signing import sign, verify

NOW = datetime(2026, 3, 14, 9, 30, 5, tzinfo=UTC)
ALERT = Alert(
    id="alert_0f3c9a1e5b7d4c2a9e8f7a6b5c4d3e2f",
    kind="position_impact",
    severity=Severity.CRITICAL,
    created_at=NOW,
    title="ETH/USDT:USDT long #7: liquidation price 1,929.67 → 1,947.64 (buffer 1.85 ADR, below 2)",
    source="binance-usdm",
    symbol="ETH/USDT:USDT",
    lines=("mark 2,105.00, ADR 85.00", "NEW MARGIN-RISK VIOLATION: buffer below 2 ADR"),
    rows=(("liquidation price", "1,929.67", "1,947.64"), ("buffer", "2.06 ADR", "1.85 ADR")),
    data={"impact": {"new_liquidation_price": 1947.640306}, "threshold_adr": 2.0},
)
SECRET = "whsec_" + base64.b64encode(b"tierdrift-test-signing-key-0123").decode()


def free_port() -> int:
    """A port nothing listens on right now (aiosmtpd's Controller cannot bind port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- signing --------------------------------------------------------------------------------------------------


def test_sign_matches_the_standard_webhooks_example() -> None:
    # The example of the spec and its reference libraries (standardwebhooks.com, "Verifying signatures").
    body = b'{"test": 2432232314}'
    got = sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_sign_matches_an_independent_computation() -> None:
    body = json.dumps({"schema": "tierdrift.alert/v1", "title": "é → ü"}, ensure_ascii=False).encode()
    key = base64.b64decode(SECRET.split("_", 1)[1])
    mac = hmac.new(key, b"msg_42.1773480605." + body, hashlib.sha256).digest()
    assert sign(SECRET, "msg_42", 1773480605, body) == "v1," + base64.b64encode(mac).decode()


def signed_headers(body: bytes, *, ts: int = 1_773_480_605, msg_id: str = "msg_1") -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sign(SECRET, msg_id, ts, body)}


def test_verify_accepts_a_good_signature_with_any_header_case() -> None:
    headers = {k.title(): v for k, v in signed_headers(b"{}").items()}
    assert verify(SECRET, headers, b"{}", now=1_773_480_605 + 299)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda h, b: (h, b + b" "), "body altered"),
        (lambda h, b: ({**h, "webhook-id": "msg_2"}, b), "id altered"),
        (lambda h, b: ({**h, "webhook-timestamp": str(1_773_480_605 - 301)}, b), "too old"),
        (lambda h, b: ({**h, "webhook-timestamp": str(1_773_480_605 + 301)}, b), "too far ahead"),
        (lambda h, b: ({**h, "webhook-timestamp": "soon"}, b), "timestamp not a number"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b), "id missing"),
        (lambda h, b: ({**h, "webhook-signature": h["webhook-signature"].replace("v1,", "v2,")}, b), "other version"),
        (lambda h, b: ({**h, "webhook-signature": "v1,!!notbase64"}, b), "garbage signature"),
    ],
)
def test_verify_rejects(change: Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]], why: str) -> None:
    headers, body = change(signed_headers(b"{}", ts=1_773_480_605), b"{}")
    assert not verify(SECRET, headers, body, now=1_773_480_605), why


def test_verify_rejects_another_secret_and_accepts_one_of_several_signatures() -> None:
    headers = signed_headers(b"{}")
    other = "whsec_" + base64.b64encode(b"another key").decode()
    assert not verify(other, headers, b"{}", now=1_773_480_605)
    rotating = {
        **headers,
        "webhook-signature": f"{sign(other, 'msg_1', 1_773_480_605, b'{}')} v1,AAAA {headers['webhook-signature']}",
    }
    assert verify(SECRET, rotating, b"{}", now=1_773_480_605)


def test_a_malformed_secret_is_refused_without_being_echoed() -> None:
    with pytest.raises(ValueError, match="base64") as info:
        sign("whsec_not*base64!", "msg_1", 1, b"")
    assert "not*base64" not in str(info.value)


# --- webhook: a real receiver ---------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool


class Receiver(ThreadingHTTPServer):
    """Plays a webhook consumer: verifies the signature with `secret`, answers 204 or 401, keeps every request."""

    def __init__(self, secret: str) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.secret = secret
        self.requests: list[Received] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        headers = {k.lower(): v for k, v in self.headers.items()}
        ok = verify(self.server.secret, headers, body, now=time.time())
        self.server.requests.append(Received(self.path, headers, body, ok))
        self.send_response(204 if ok else 401)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(SECRET)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(2)


def webhook(url: str, **kw: Any) -> WebhookChannel:
    return WebhookChannel(WebhookConfig(name="hook", url=SecretStr(url), timeout=2, **kw))


def test_signed_json_post_verifies_and_keeps_its_id_across_sends(receiver: Receiver) -> None:
    channel = webhook(f"{receiver.url}/hooks/T000?token=abc", secret=SecretStr(SECRET))
    try:
        first, second = channel.send(ALERT), channel.send(ALERT)
    finally:
        channel.close()
    assert first.ok and second.ok, (first, second)
    a, b = receiver.requests
    assert a.verified and b.verified
    assert a.path == "/hooks/T000?token=abc"
    assert a.headers["content-type"] == "application/json"
    assert a.headers["user-agent"] == USER_AGENT and USER_AGENT.startswith("tierdrift/")
    assert a.headers["webhook-id"] == b.headers["webhook-id"] == ALERT.id
    assert abs(int(a.headers["webhook-timestamp"]) - time.time()) < 60
    payload = json.loads(a.body)
    assert payload["schema"] == "tierdrift.alert/v1" and payload["id"] == ALERT.id
    assert payload["changes"][0] == {"label": "liquidation price", "old": "1,929.67", "new": "1,947.64"}
    assert a.body == b.body  # the same message, byte for byte


def test_a_receiver_with_another_secret_rejects_it(receiver: Receiver) -> None:
    receiver.secret = "whsec_" + base64.b64encode(b"the receiver's key").decode()
    result = webhook(receiver.url, secret=SecretStr(SECRET)).send(ALERT)
    assert not result.ok and not result.retryable
    assert result.error is not None and result.error.startswith("HTTP 401 Unauthorized from http://127.0.0.1:")


def test_without_a_secret_no_signature_headers_are_sent(receiver: Receiver) -> None:
    result = webhook(receiver.url).send(ALERT)
    assert not result.ok  # our receiver insists on a signature
    assert not any(k.startswith("webhook-") for k in receiver.requests[0].headers)


def test_a_closed_port_is_retryable_and_quick() -> None:
    started = time.monotonic()
    result = webhook(f"http://127.0.0.1:{free_port()}/x").send(ALERT)
    assert not result.ok and result.retryable
    assert result.error is not None and result.error.startswith("could not reach http://127.0.0.1:")
    assert time.monotonic() - started < 2


# --- webhook: precise answers (respx) -------------------------------------------------------------------------

HOOK = "https://hooks.example.com/services/T000/B000/XXXXSECRET?token=abc"
FIXED_NOW = 1_773_480_605.0


def respx_channel(fmt: str = "json", **kw: Any) -> WebhookChannel:
    config = WebhookConfig(name="hook", url=SecretStr(HOOK), format=fmt, timeout=2, **kw)
    return WebhookChannel(config, clock=lambda: FIXED_NOW)


@pytest.mark.parametrize(
    ("response", "ok", "retryable", "gone", "retry_after"),
    [
        (httpx.Response(200), True, True, False, None),
        (httpx.Response(204), True, True, False, None),
        (httpx.Response(410, text="gone"), False, False, True, None),
        (httpx.Response(429, headers={"Retry-After": "7"}), False, True, False, 7.0),
        (
            httpx.Response(
                429, headers={"Retry-After": format_datetime(datetime.fromtimestamp(FIXED_NOW + 120, UTC), usegmt=True)}
            ),
            False,
            True,
            False,
            120.0,
        ),
        (httpx.Response(503), False, True, False, None),
        (httpx.Response(500, headers={"Retry-After": "86400"}), False, True, False, MAX_RETRY_AFTER),
        (httpx.Response(408), False, True, False, None),
        (httpx.Response(400, text="bad payload"), False, False, False, None),
        (httpx.Response(404), False, False, False, None),
        (httpx.Response(301, headers={"Location": "https://elsewhere.example/"}), False, False, False, None),
    ],
)
def test_status_codes_map_to_results(
    response: httpx.Response, ok: bool, retryable: bool, gone: bool, retry_after: float | None
) -> None:
    with respx.mock(assert_all_called=True) as router:
        router.post(host="hooks.example.com").mock(return_value=response)
        result = respx_channel().send(ALERT)
    assert (result.ok, result.retryable, result.gone, result.retry_after) == (ok, retryable, gone, retry_after)
    if not ok:
        assert result.error is not None and f"HTTP {response.status_code}" in result.error


@pytest.mark.parametrize(
    "exc", [httpx.ConnectTimeout("timed out"), httpx.ReadTimeout("timed out"), httpx.ConnectError("refused")]
)
def test_transport_failures_are_retryable(exc: Exception) -> None:
    with respx.mock() as router:
        router.post(host="hooks.example.com").mock(side_effect=exc)
        result = respx_channel().send(ALERT)
    assert not result.ok and result.retryable and not result.gone


def test_url_tokens_and_secret_never_appear_in_errors_or_describe() -> None:
    echo = f"no_service: {HOOK}\nsecret {SECRET} path /services/T000/B000/XXXXSECRET"
    outcomes: list[httpx.Response | Exception] = [
        httpx.Response(404, text=echo),
        httpx.Response(503, text=echo),
        httpx.Response(410, text=echo),
        httpx.ConnectError(f"cannot connect to {HOOK}"),
        httpx.ReadTimeout(f"timed out reading {HOOK}"),
    ]
    channel = respx_channel(secret=SecretStr(SECRET))
    texts = [channel.describe(), repr(channel)]
    for outcome in outcomes:
        with respx.mock() as router:
            route = router.post(host="hooks.example.com")
            route.mock(side_effect=outcome) if isinstance(outcome, Exception) else route.mock(return_value=outcome)
            result = channel.send(ALERT)
        assert not result.ok and result.error
        texts.append(result.error)
    for text in texts:
        for leak in ("XXXXSECRET", "token=abc", "T000", "B000", SECRET, SECRET.removeprefix("whsec_")):
            assert leak not in text, (leak, text)
        assert "\n" not in text
    assert channel.describe() == "POST https://hooks.example.com/… (json, signed)"


@pytest.mark.parametrize(
    ("fmt", "keys"), [("json", {"schema"}), ("slack", {"text"}), ("discord", {"content", "allowed_mentions"})]
)
def test_formats_send_their_bodies(fmt: str, keys: set[str]) -> None:
    with respx.mock() as router:
        route = router.post(host="hooks.example.com").mock(return_value=httpx.Response(204))
        assert respx_channel(fmt).send(ALERT).ok
    request = route.calls.last.request
    body = json.loads(request.content)
    assert keys <= set(body)
    assert request.headers["content-type"] == "application/json"
    assert "webhook-signature" not in request.headers
    if fmt != "json":
        text = body.get("text") or body["content"]
        assert text.startswith("*") and "1,947.64" in text


def test_an_injected_client_is_used_and_left_open() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    channel = respx_channel()
    channel = WebhookChannel(channel._config, client=client, clock=lambda: FIXED_NOW)
    assert channel.send(ALERT).ok and len(seen) == 1
    channel.close()
    assert not client.is_closed
    client.close()


def test_bad_webhook_configuration_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="http:// or https://") as info:
        webhook("ftp://hooks.example.com/secret-path")
    assert "secret-path" not in str(info.value)
    with pytest.raises(ValueError, match="base64"):
        webhook(HOOK, secret=SecretStr("whsec_***"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        ("86400", MAX_RETRY_AFTER),
        (format_datetime(datetime.fromtimestamp(FIXED_NOW + 30, UTC), usegmt=True), 30.0),
        (format_datetime(datetime.fromtimestamp(FIXED_NOW - 30, UTC), usegmt=True), 0.0),
        ("-5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, FIXED_NOW) == expected


# --- e-mail: a real SMTP server -------------------------------------------------------------------------------

USER, PASSWORD = "alice", "p@ss:w/rd%#1"
TO = ["ops@example.com", "risk@example.com"]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@dataclass
class Inbox:
    """The server side: accepted messages, how each session looked, and the logins tried."""

    data_reply: str = "250 Message accepted for delivery"
    messages: list[tuple[Envelope, bool, bool]] = field(default_factory=list)  # (envelope, tls, authenticated)
    mechanisms: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        tls = server.transport is not None and server.transport.get_extra_info("cipher") is not None
        self.messages.append((envelope, tls, bool(session.authenticated)))
        return self.data_reply

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.mechanisms.append(mechanism)
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


StartServer = Callable[..., tuple[Inbox, int]]


@pytest.fixture
def smtp_server() -> Iterator[StartServer]:
    """Start aiosmtpd servers on 127.0.0.1 with Controller keyword arguments; all stop at teardown."""
    controllers: list[Controller] = []

    def start(**kw: Any) -> tuple[Inbox, int]:
        inbox, port = Inbox(), free_port()
        kw.setdefault("authenticator", inbox.authenticate)
        controller = Controller(inbox, hostname="127.0.0.1", port=port, ready_timeout=5, **kw)
        controller.start()
        controllers.append(controller)
        return inbox, port

    yield start
    for controller in controllers:
        controller.stop()


def email(url: str, ca_file: str | None = None) -> EmailChannel:
    config = EmailConfig(smtp_url=SecretStr(url), to=TO, sender="tierdrift@example.com", ca_file=ca_file, timeout=2)
    return EmailChannel(config)


def login_url(scheme: str, port: int, password: str = PASSWORD) -> str:
    return f"{scheme}://{USER}:{quote(password, safe='')}@127.0.0.1:{port}"


def assert_is_the_alert(envelope: Envelope) -> None:
    msg = message_from_bytes(cast(bytes, envelope.original_content), policy=policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content().replace("\r\n", "\n") == render_text(ALERT)
    assert parts[1].get_content().replace("\r\n", "\n") == render_html(ALERT)
    assert msg["Subject"] == subject(ALERT) and msg["Subject"].startswith("[tierdrift] CRITICAL: ")
    assert msg["To"] == "ops@example.com, risk@example.com"
    assert msg["From"] == "tierdrift@example.com"
    assert msg["Message-ID"] == f"<{ALERT.id}@tierdrift>"
    assert envelope.mail_from == "tierdrift@example.com" and envelope.rcpt_tos == TO


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
def test_starttls_with_auth_delivers_a_multipart_message(
    smtp_server: StartServer, server_tls: ssl.SSLContext, ca_file: str, mechanism: str
) -> None:
    other = {"LOGIN": "PLAIN", "PLAIN": "LOGIN"}[mechanism]
    inbox, port = smtp_server(
        tls_context=server_tls, require_starttls=True, auth_require_tls=True, auth_exclude_mechanism=[other]
    )
    result = email(login_url("smtp", port), ca_file).send(ALERT)
    assert result.ok, result.error
    assert inbox.mechanisms == [mechanism]
    [(envelope, tls, authenticated)] = inbox.messages
    assert tls and authenticated
    assert_is_the_alert(envelope)


def test_implicit_tls_smtps(smtp_server: StartServer, server_tls: ssl.SSLContext, ca_file: str) -> None:
    # aiosmtpd cannot tell that an ssl_context listener is encrypted, so it must allow AUTH "without TLS".
    inbox, port = smtp_server(ssl_context=server_tls, auth_require_tls=False)
    result = email(login_url("smtps", port), ca_file).send(ALERT)
    assert result.ok, result.error
    [(envelope, tls, authenticated)] = inbox.messages
    assert tls and authenticated
    assert_is_the_alert(envelope)


def test_wrong_password_is_final_and_not_echoed(
    smtp_server: StartServer, server_tls: ssl.SSLContext, ca_file: str
) -> None:
    _, port = smtp_server(tls_context=server_tls, require_starttls=True)
    channel = email(login_url("smtp", port, password="Wr0ng-Secret"), ca_file)
    result = channel.send(ALERT)
    assert not result.ok and not result.retryable
    assert result.error is not None and "535" in result.error and "alice" in result.error
    for text in (result.error, channel.describe(), repr(channel)):
        assert "Wr0ng-Secret" not in text and quote("Wr0ng-Secret") not in text


def test_server_down_is_retryable_and_quick() -> None:
    started = time.monotonic()
    result = email(login_url("smtp", free_port())).send(ALERT)
    assert not result.ok and result.retryable
    assert result.error is not None and "cannot connect to 127.0.0.1:" in result.error
    assert PASSWORD not in result.error
    assert time.monotonic() - started < 2


def test_starttls_is_required_not_optional(smtp_server: StartServer) -> None:
    inbox, port = smtp_server()  # no tls_context: the server does not offer STARTTLS
    result = email(login_url("smtp", port)).send(ALERT)
    assert not result.ok and not result.retryable
    assert result.error is not None and "STARTTLS" in result.error
    assert inbox.messages == [] and inbox.mechanisms == []  # the password never went out


def test_an_untrusted_certificate_is_refused(smtp_server: StartServer, server_tls: ssl.SSLContext) -> None:
    inbox, port = smtp_server(tls_context=server_tls, require_starttls=True)
    result = email(login_url("smtp", port)).send(ALERT)  # no ca_file: trustme's CA is unknown
    assert not result.ok and result.retryable
    assert result.error is not None and "certificate" in result.error.lower()
    assert inbox.mechanisms == []


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [("451 4.3.0 Try again later", True), ("554 5.7.1 Message rejected", False)],
)
def test_smtp_replies_map_to_retryable(
    smtp_server: StartServer, server_tls: ssl.SSLContext, ca_file: str, reply: str, retryable: bool
) -> None:
    inbox, port = smtp_server(tls_context=server_tls, require_starttls=True)
    inbox.data_reply = reply
    result = email(login_url("smtp", port), ca_file).send(ALERT)
    assert not result.ok and result.retryable is retryable
    assert result.error is not None and reply.split()[0] in result.error


def test_a_plain_local_relay_without_tls_or_auth(smtp_server: StartServer) -> None:
    inbox, port = smtp_server(authenticator=None)
    result = email(f"smtp://127.0.0.1:{port}?tls=none").send(ALERT)
    assert result.ok, result.error
    [(envelope, tls, _)] = inbox.messages
    assert not tls
    assert_is_the_alert(envelope)


def test_message_headers_are_stable_across_attempts() -> None:
    first, second = build_message(ALERT, "a@example.com", TO), build_message(ALERT, "a@example.com", TO)
    for header in ("Message-ID", "Date", "Subject", "To"):
        assert first[header] == second[header]
    assert first["Auto-Submitted"] == "auto-generated"


# --- e-mail: URL parsing --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", SmtpTarget("mail.example.com", 587, "starttls")),
        ("smtps://mail.example.com", SmtpTarget("mail.example.com", 465, "tls")),
        ("smtp://mail.example.com:2525?tls=starttls", SmtpTarget("mail.example.com", 2525, "starttls")),
        ("smtp://relay:25?tls=none", SmtpTarget("relay", 25, "none")),
        (
            "smtp://bob%40example.com:p%40ss%3Aw%2Frd@h",
            SmtpTarget("h", 587, "starttls", "bob@example.com", "p@ss:w/rd"),
        ),
        ("smtps://bob:@h:4650", SmtpTarget("h", 4650, "tls", "bob", "")),
        ("smtp://bob:pw@localhost:25?tls=none", SmtpTarget("localhost", 25, "none", "bob", "pw")),
    ],
)
def test_parse_smtp_url(url: str, expected: SmtpTarget) -> None:
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://bob:hunter2@h", "smtp:// or smtps://"),
        ("smtp://bob:hunter2@h:port", "not a valid URL"),
        ("smtp://bob:hunter2@", "no host"),
        ("smtps://bob:hunter2@h?tls=none", "always TLS"),
        ("smtp://bob:hunter2@h?tls=maybe", "starttls or none"),
        ("smtp://bob:hunter2@h?verify=no", "unknown parameter"),
        ("smtp://bob:hunter2@remote.example.com?tls=none", "without TLS"),
        ("smtp://bob:hunter2@h/inbox", "no path"),
    ],
)
def test_bad_smtp_urls_are_refused_without_echoing_them(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_smtp_url(url)
    assert "hunter2" not in str(info.value)


def test_email_describe_names_host_user_and_recipients_only() -> None:
    channel = email("smtps://alice:hunter2@mail.example.com")
    assert channel.describe() == "smtps://alice@mail.example.com:465 (tls) → ops@example.com, risk@example.com"
    assert "hunter2" not in repr(channel) and "hunter2" not in repr(channel._target)


def test_channels_satisfy_the_protocol() -> None:
    channels: list[Channel] = [email("smtp://h"), webhook(HOOK)]
    assert [(c.name, c.kind) for c in channels] == [("email", "email"), ("hook", "webhook")]

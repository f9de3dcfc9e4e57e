"""What the fake does instead of (or before) a normal answer, and the exchanges' own error texts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus

from monitor.fake_exchange.payloads import Response, now_ms

#: Bybit's messages for the retCodes the fetchers treat specially (v5 error-code page, ccxt's comments).
BYBIT_MESSAGES: dict[int, str] = {
    10002: "invalid request, please check your server timestamp or recv_window param",
    10006: "Too many visits!",
    10016: "System error. Please try again later.",
}
#: Binance's HTTP 451 body (recorded in shared/data/real-responses/komekome_bapi_error_envelopes.txt, whose
#: log cuts it after "received t"; the rest is the sentence Binance ends it with).
GEO_BLOCK_BODY = (
    '{\n  "code": 0,\n  "msg": "Service unavailable from a restricted location according to \'b. Eligibility\' in'
    " https://www.binance.com/en/terms. Please contact customer service if you believe you received this message in"
    ' error."\n}'
)
#: The web endpoint's HTTP 400 body, byte for byte as recorded (same file).
BAPI_ILLEGAL_PARAMETER = (
    '{"code":"000002","message":"illegal parameter","messageDetail":null,"data":null,"success":false}'
)


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do instead of (or before) a normal answer. Build one with the class methods."""

    kind: str  # http | slow | malformed | empty | repeat_cursor | raw
    status: int = 200
    body: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "text/plain"

    @classmethod
    def http(
        cls,
        status: int,
        *,
        retry_after: float | None = None,
        body: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        content_type: str = "text/plain",
    ) -> Fault:
        """Answer `status` (e.g. 429, 503) with a short text body, an optional `Retry-After` and `headers`."""
        return cls(
            "http", status=status, body=body, retry_after=retry_after, headers=tuple(headers), content_type=content_type
        )

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Wait `seconds` before answering normally: longer than the client's timeout makes it time out."""
        return cls("slow", delay=seconds)

    @classmethod
    def malformed(cls) -> Fault:
        """Answer 200 with JSON cut off in the middle."""
        return cls("malformed", body='{"retCode":0,"result":{"list":[{"symbol":')

    @classmethod
    def empty(cls) -> Fault:
        """Answer a well-formed response holding no symbol at all."""
        return cls("empty")

    @classmethod
    def repeat_cursor(cls) -> Fault:
        """Bybit pages: answer the requested page, but give the request's own cursor as the next one.

        A request without a cursor (the first page) is answered normally, so queue it with `after=1`
        (or `times=2`) to make the chain loop on its second page.
        """
        return cls("repeat_cursor")

    @classmethod
    def raw(cls, body: str, *, status: int = 200) -> Fault:
        """Answer exactly `body` as JSON with `status`, e.g. an error retCode or a body missing a field."""
        return cls("raw", status=status, body=body)

    # How the real endpoints fail (domain doc §8), as they answer.

    @classmethod
    def bybit_ip_limit(cls, *, reset_ms: int | None = None) -> Fault:
        """Bybit's IP over its limit: HTTP 403 "access too frequent" with its `X-Bapi-*` headers, no `Retry-After`.

        `X-Bapi-Limit-Reset-Timestamp` is `reset_ms` (ms since the epoch), by default the time the fault
        is made: Bybit sends the current time when no per-endpoint window is exceeded.
        """
        reset = reset_ms if reset_ms is not None else now_ms()
        headers = (("X-Bapi-Limit", "600"), ("X-Bapi-Limit-Status", "0"), ("X-Bapi-Limit-Reset-Timestamp", str(reset)))
        return cls.http(403, body="access too frequent", headers=headers)

    @classmethod
    def bybit_error(cls, code: int, message: str | None = None) -> Fault:
        """A Bybit answer with a non-zero `retCode` (HTTP 200), with Bybit's message for the known codes."""
        words = message if message is not None else BYBIT_MESSAGES.get(code, "error")
        envelope = {"retCode": code, "retMsg": words, "result": {}, "retExtInfo": {}, "time": now_ms()}
        return cls.raw(json.dumps(envelope, separators=(",", ":")))

    @classmethod
    def geo_blocked(cls) -> Fault:
        """Binance from a restricted location: HTTP 451 with its `{"code":0,"msg":…}` body."""
        return cls.http(451, body=GEO_BLOCK_BODY, content_type="application/json")

    @classmethod
    def bapi_error(cls, *, status: int = 400) -> Fault:
        """The web endpoint refusing a request: its recorded `"success":false` envelope, HTTP 400 (or `status`)."""
        return cls.raw(BAPI_ILLEGAL_PARAMETER, status=status)

    @classmethod
    def bot_challenge(cls) -> Fault:
        """www.binance.com's bot challenge: HTTP 202 with an empty body."""
        return cls.http(202, body="", content_type="text/html")


@dataclass(slots=True)
class Queued:
    fault: Fault
    times: int
    after: int


def fault_response(fault: Fault) -> Response:
    if fault.kind == "http":
        reason = HTTPStatus(fault.status).phrase if fault.status in HTTPStatus._value2member_map_ else "Error"
        headers = fault.headers + (() if fault.retry_after is None else (("Retry-After", f"{fault.retry_after:g}"),))
        body = fault.body if fault.body is not None else f"{fault.status} {reason}"
        return Response(fault.status, body.encode(), content_type=fault.content_type, headers=headers)
    return Response(fault.status, (fault.body or "").encode())

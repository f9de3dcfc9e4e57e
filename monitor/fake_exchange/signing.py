"""Binance's checks of a SIGNED request (API key, timestamp, HMAC-SHA256 signature, receive window)."""

from __future__ import annotations

import hashlib
import hmac
from http import HTTPStatus

from monitor.fake_exchange import payloads
from monitor.fake_exchange.transport import RecordedRequest

_DEFAULT_RECV_WINDOW_MS = 5000


def check_signature(request: RecordedRequest, api_key: str, api_secret: str) -> payloads.Response | None:
    """Binance's checks of a SIGNED request, with its error codes; None when it passes."""
    key = request.headers.get("x-mbx-apikey")
    if not key:
        return payloads.json_answer(HTTPStatus.UNAUTHORIZED, {"code": -2014, "msg": "API-key format invalid."})
    if not hmac.compare_digest(key, api_key):
        return payloads.json_answer(
            HTTPStatus.UNAUTHORIZED, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
        )
    stamp = request.query.get("timestamp", "")
    if not stamp.isdigit():
        msg = "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
        return payloads.json_answer(HTTPStatus.BAD_REQUEST, {"code": -1102, "msg": msg})
    # The signature covers the query string exactly as sent, minus the signature parameter.
    parts = request.raw_query.split("&")
    payload = "&".join(p for p in parts if not p.startswith("signature="))
    expected = hmac.new(api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(request.query.get("signature", ""), expected):
        return payloads.json_answer(
            HTTPStatus.BAD_REQUEST, {"code": -1022, "msg": "Signature for this request is not valid."}
        )
    window_text = request.query.get("recvWindow", "")
    window = int(window_text) if window_text.isdigit() else _DEFAULT_RECV_WINDOW_MS
    server_ms = payloads.now_ms()
    if int(stamp) > server_ms + 1000 or server_ms - int(stamp) > window:
        msg = "Timestamp for this request is outside of the recvWindow."
        return payloads.json_answer(HTTPStatus.BAD_REQUEST, {"code": -1021, "msg": msg})
    return None

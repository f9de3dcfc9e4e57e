"""Standard Webhooks signatures (https://www.standardwebhooks.com, spec "Signature scheme"), written from the spec.

A signed request carries three headers:

- `webhook-id`: the message id, identical on every retry, so that receivers can de-duplicate;
- `webhook-timestamp`: integer Unix seconds when the attempt was signed, so that receivers can reject replays;
- `webhook-signature`: space-separated `v1,<base64 signature>` entries (several while a secret is rotated).

The signature is HMAC-SHA256, keyed with the base64-decoded part of the `whsec_<base64>` secret, over
`{webhook-id}.{webhook-timestamp}.{raw body}`. `sign` produces one entry; `verify` is what a receiver runs
(our tests use it to play the receiver).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
#: Receivers reject timestamps further than this from their clock, in either direction (the spec's 5 minutes).
DEFAULT_TOLERANCE = 300


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (the prefix is optional). Raises `ValueError`, without
    echoing the secret, when the rest is not valid base64."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the webhook secret is not whsec_ followed by valid base64") from None
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def _signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = b"%s.%d.%s" % (msg_id.encode("utf-8"), timestamp, body)
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for one message: `v1,<base64 HMAC-SHA256>` of `msg_id.timestamp.body`."""
    return "v1," + base64.b64encode(_signature(secret_key(secret), msg_id, timestamp, body)).decode("ascii")


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float, tolerance: float = DEFAULT_TOLERANCE
) -> bool:
    """True when `headers` (looked up case-insensitively) carry a valid `v1` signature of `body` and a
    timestamp within `tolerance` seconds of `now` (Unix seconds). Any missing or malformed header is False;
    entries of other versions are ignored; each candidate is compared in constant time."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = (lower.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not msg_id or not stamp or not signatures:
        return False
    try:
        timestamp = int(stamp)
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = _signature(secret_key(secret), msg_id, timestamp, body)
    return any(_matches(entry, expected) for entry in signatures.split(" "))


def _matches(entry: str, expected: bytes) -> bool:
    version, _, encoded = entry.partition(",")
    if version != "v1":
        return False
    try:
        given = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(given, expected)

"""Verification of App Store Connect webhook signatures.

App Store Connect signs each delivery with HMAC-SHA256 over the raw request
body, keyed by the webhook's secret, and sends it as
``x-apple-signature: hmacsha256=<hex digest>``. Everything here is pure so it
tests without HTTP.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

SIGNATURE_HEADER = "x-apple-signature"
SCHEME = "hmacsha256"
DIGEST_SIZE = hashlib.sha256().digest_size


class SignatureError(Exception):
    """The signature header is missing, malformed or matches no secret.

    ``reason`` is a short phrase safe to log and to return to the sender: it
    never contains the header value, a digest or a secret.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def sign(secret: bytes | str, body: bytes) -> str:
    """Return the ``x-apple-signature`` value App Store Connect would send."""
    key = secret.encode() if isinstance(secret, str) else secret
    return f"{SCHEME}={hmac.new(key, body, hashlib.sha256).hexdigest()}"


def parse_signature(value: str | None) -> bytes:
    """Return the 32-byte digest carried by a ``x-apple-signature`` value.

    The scheme name is case-insensitive, whitespace around the value and
    around ``=`` is ignored, and the hex digits may be in either case.
    """
    if value is None or not value.strip():
        raise SignatureError("missing x-apple-signature header")
    if not value.isascii():
        raise SignatureError("x-apple-signature header contains non-ASCII bytes")

    scheme, separator, hex_digest = value.strip().partition("=")
    if not separator:
        raise SignatureError(
            "x-apple-signature header is not in the form hmacsha256=<hex>"
        )
    if scheme.strip().lower() != SCHEME:
        raise SignatureError("x-apple-signature header uses an unsupported scheme")

    hex_digest = hex_digest.strip()
    if len(hex_digest) != DIGEST_SIZE * 2:
        raise SignatureError("x-apple-signature digest is not 64 hexadecimal digits")
    try:
        return bytes.fromhex(hex_digest)
    except ValueError:
        raise SignatureError("x-apple-signature digest is not hexadecimal") from None


def verify(body: bytes, header_value: str | None, secrets: Sequence[bytes]) -> int:
    """Check a delivery and return the index of the secret that signed it.

    Every secret is tried, with a constant-time comparison each, so the time
    taken does not depend on which secret matched or how many digits did.
    Raises :class:`SignatureError` when no secret matches.
    """
    if not secrets:
        raise SignatureError("no webhook secret is configured")
    received = parse_signature(header_value)

    matched = -1
    for index, secret in enumerate(secrets):
        expected = hmac.new(secret, body, hashlib.sha256).digest()
        if hmac.compare_digest(expected, received) and matched < 0:
            matched = index
    if matched < 0:
        raise SignatureError("x-apple-signature does not match the body")
    return matched

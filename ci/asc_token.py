"""ES256 JSON Web Tokens for the App Store Connect API, cached until near expiry."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import jwt

from ci.credentials import AscCredentials

logger = logging.getLogger(__name__)

AUDIENCE = "appstoreconnect-v1"

#: Seconds between a token's ``iat`` and ``exp``. Apple rejects tokens whose
#: lifetime exceeds 20 minutes. 15 minutes keeps 5 minutes of margin in case
#: Apple's check also uses its own clock, and lets one token serve a whole
#: job's burst of requests.
TOKEN_LIFETIME = 15 * 60
#: ``iat`` is set this many seconds in the past, so a runner clock slightly
#: ahead of Apple's does not produce a token that is not yet valid.
TOKEN_BACKDATE = 60
#: A cached token is replaced when it has less than this many seconds left.
TOKEN_RENEW_MARGIN = 60


class TokenSigner:
    """Sign and cache App Store Connect JWTs with an API key.

    ``clock`` returns Unix seconds; tests pass a fake one.
    """

    def __init__(
        self,
        credentials: AscCredentials,
        *,
        clock: Callable[[], float] = time.time,
        lifetime: int = TOKEN_LIFETIME,
    ) -> None:
        if not 0 < lifetime <= 20 * 60:
            raise ValueError(f"token lifetime {lifetime}s is outside 1..1200 seconds")
        self.credentials = credentials
        self.clock = clock
        self.lifetime = lifetime
        self._token: str | None = None
        self._expires_at = 0.0

    def token(self) -> str:
        """Return the cached token, signing a new one when under a minute is left."""
        if self._token is None or self._expires_at - self.clock() < TOKEN_RENEW_MARGIN:
            self._token = self._sign()
        return self._token

    def invalidate(self) -> None:
        """Drop the cached token so the next request signs a new one."""
        self._token = None

    def _sign(self) -> str:
        issued_at = int(self.clock()) - TOKEN_BACKDATE
        expires_at = issued_at + self.lifetime
        claims: dict[str, Any] = {"aud": AUDIENCE, "iat": issued_at, "exp": expires_at}
        if self.credentials.issuer_id is None:
            claims["sub"] = "user"
        else:
            claims["iss"] = self.credentials.issuer_id
        token = jwt.encode(
            claims,
            self.credentials.private_key,
            algorithm="ES256",
            headers={"kid": self.credentials.key_id, "typ": "JWT"},
        )
        self._expires_at = float(expires_at)
        logger.debug(
            "signed App Store Connect token for key %s", self.credentials.key_id
        )
        return token

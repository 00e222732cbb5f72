"""One retry policy and one error family for every API the CI helpers call.

App Store Connect, GitHub, Slack and Jira clients all send their requests
through :class:`HttpClient.request`, so timeouts, backoff, ``Retry-After``
handling and error messages behave the same everywhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from relay.backoff import retry_delay

logger = logging.getLogger(__name__)

#: Seconds to connect and to wait for each read of a response.
DEFAULT_TIMEOUT = (10.0, 60.0)
#: Attempts for one request, the first included.
DEFAULT_ATTEMPTS = 5
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class ApiError(Exception):
    """A request to a remote API failed.

    Carries the HTTP method, the URL, the status (None when no response came
    back) and the API's own error entries, so callers can branch on them and
    the message reads ``<METHOD> <URL> returned <status>: <code> <detail>``.
    """

    def __init__(
        self,
        method: str,
        url: str,
        status: int | None,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        response: requests.Response | None = None,
        hint: str | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.errors = errors or []
        self.response = response
        self.hint = hint
        text = message if hint is None else f"{message}. {hint}"
        super().__init__(text)

    @property
    def codes(self) -> list[str]:
        """Every error code the API returned, in order."""
        return [str(entry.get("code")) for entry in self.errors if entry.get("code")]


class AuthError(ApiError):
    """401 or 403: the credentials are wrong, expired or lack a permission."""


class NotFoundError(ApiError):
    """404: the resource does not exist or the credentials cannot see it."""


class ConflictError(ApiError):
    """409 (or GitHub's 422 for an existing object): the request clashes with current state."""


class ValidationError(ApiError):
    """400 or 422: the API rejected the request body or parameters."""


class RateLimitedError(ApiError):
    """429 after every retry was used."""


class ServerError(ApiError):
    """5xx after every retry was used."""


class ConnectionFailedError(ApiError):
    """No response arrived: DNS, connection refused, TLS or a timeout."""


ErrorParser = Callable[[requests.Response], tuple[str, list[dict[str, Any]]]]


def default_error_parser(
    response: requests.Response,
) -> tuple[str, list[dict[str, Any]]]:
    """Return a one-line summary and the error entries of a failed response."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip().replace("\n", " ")
        return (text[:300] or response.reason or ""), []
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            entries = [entry for entry in errors if isinstance(entry, dict)]
            summary = "; ".join(
                " ".join(
                    str(part)
                    for part in (
                        entry.get("code"),
                        entry.get("detail") or entry.get("title"),
                    )
                    if part
                )
                for entry in entries
            )
            return summary, entries
        for key in ("message", "error", "errorMessages"):
            if body.get(key):
                return str(body[key]), []
    return str(body)[:300], []


def error_class_for(status: int) -> type[ApiError]:
    """Map an HTTP status to the exception class that names its meaning."""
    if status in (401, 403):
        return AuthError
    if status == 404:
        return NotFoundError
    if status == 409:
        return ConflictError
    if status in (400, 422):
        return ValidationError
    if status == 429:
        return RateLimitedError
    if status >= 500:
        return ServerError
    return ApiError


def _describe_failure(exc: requests.RequestException) -> str:
    """Say in one phrase why no response came, without requests' nested repr."""
    if isinstance(exc, requests.Timeout):
        return "timed out; check the network or try again later"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed; check the URL and the certificate"
    if isinstance(exc, requests.ConnectionError):
        return (
            "could not connect (refused, unreachable or unknown host); check the base "
            "URL setting and the network"
        )
    return type(exc).__name__


class HttpClient:
    """A ``requests`` session with timeouts, retries and typed errors.

    ``name`` prefixes log lines (``asc``, ``github``, ``slack``, ``jira``).
    ``sleep`` is injectable so tests run retries without waiting.
    """

    def __init__(
        self,
        name: str,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        error_parser: ErrorParser = default_error_parser,
        redact_url: Callable[[str], str] | None = None,
    ) -> None:
        self.name = name
        self.session = session or requests.Session()
        self.timeout = timeout
        self.attempts = attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.sleep = sleep
        self.error_parser = error_parser
        # A Slack incoming-webhook URL is itself a secret: logs and errors show
        # the URL only through this function.
        self.redact_url = redact_url or (lambda url: url)

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        expected: tuple[int, ...] = (),
        retry_statuses: frozenset[int] = RETRY_STATUSES,
    ) -> requests.Response:
        """Send a request, retrying network errors and ``retry_statuses``.

        Returns the response when its status is below 400 or listed in
        ``expected``; raises the matching :class:`ApiError` subclass otherwise.
        """
        shown = self.redact_url(url)
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                response = self.session.request(
                    method,
                    url,
                    headers=dict(headers or {}),
                    params=params,
                    json=json,
                    data=data,
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                if attempt >= self.attempts:
                    raise ConnectionFailedError(
                        method,
                        shown,
                        None,
                        f"{method} {shown} failed after {attempt} attempts: "
                        f"{_describe_failure(exc)}",
                    ) from exc
                delay = retry_delay(
                    attempt, base=self.backoff_base, cap=self.backoff_cap
                )
                logger.warning(
                    "%s %s %s failed (%s); retry %d in %.1fs",
                    self.name,
                    method,
                    shown,
                    type(exc).__name__,
                    attempt,
                    delay,
                )
                self.sleep(delay)
                continue

            elapsed_ms = (time.monotonic() - started) * 1000
            logger.info(
                "%s %s %s -> %d (%.0f ms)",
                self.name,
                method,
                shown,
                response.status_code,
                elapsed_ms,
            )
            status = response.status_code
            if status < 400 or status in expected:
                return response
            if status in retry_statuses and attempt < self.attempts:
                delay = retry_delay(
                    attempt,
                    response.headers,
                    base=self.backoff_base,
                    cap=self.backoff_cap,
                )
                if status == 429 and "X-Rate-Limit" in response.headers:
                    logger.warning(
                        "%s rate limit reached (X-Rate-Limit: %s)",
                        self.name,
                        response.headers["X-Rate-Limit"],
                    )
                logger.warning(
                    "%s %s %s returned %d; retry %d in %.1fs",
                    self.name,
                    method,
                    shown,
                    status,
                    attempt,
                    delay,
                )
                self.sleep(delay)
                continue
            raise self.error_for(method, shown, response)

    def error_for(self, method: str, url: str, response: requests.Response) -> ApiError:
        """Build the exception for a failed response."""
        summary, errors = self.error_parser(response)
        status = response.status_code
        message = f"{method} {url} returned {status}"
        if summary:
            message = f"{message}: {summary}"
        cls = error_class_for(status)
        return cls(method, url, status, message, errors=errors, response=response)

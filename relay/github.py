"""The relay's GitHub client: ``repository_dispatch`` and the token it needs.

Requests are sent once each; the dispatcher decides about retries from the
:class:`DispatchResult`, so a slow GitHub never keeps a thread asleep.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
import requests

from relay import __version__
from relay.backoff import hinted_delay
from relay.config import GitHubAuth, Route

logger = logging.getLogger(__name__)

API_VERSION = "2022-11-28"
TIMEOUT = (5.0, 20.0)
#: GitHub rejects app JWTs that live longer than 10 minutes.
APP_JWT_LIFETIME = 9 * 60
#: An installation token lives an hour; it is renewed this long before expiry.
TOKEN_RENEW_MARGIN = 5 * 60
#: GitHub's documented wait after a secondary rate limit that came without a hint.
SECONDARY_LIMIT_WAIT = 60.0


@dataclass(frozen=True)
class DispatchResult:
    """The result of one dispatch.

    ``outcome`` is ``sent``, ``retry`` (try again, after ``retry_after``
    seconds when GitHub sent a hint) or ``fatal`` (retrying cannot help).
    """

    outcome: str
    status: int | None
    message: str
    retry_after: float | None = None


class GitHubError(Exception):
    """A call made to get a token or to read the repository failed."""

    def __init__(
        self, message: str, status: int | None = None, *, retryable: bool = True
    ) -> None:
        self.status = status
        self.retryable = retryable
        super().__init__(message)


class GitHubClient:
    """Calls GitHub for one route, with a token or as a GitHub App installation."""

    def __init__(
        self,
        api_url: str,
        route: Route,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if route.github is None:
            raise ValueError(f"route {route.name!r} has no GitHub credentials")
        self.api_url = api_url.rstrip("/")
        self.route = route
        self.auth: GitHubAuth = route.github
        self.session = session or requests.Session()
        self.clock = clock
        self._lock = threading.Lock()
        self._installation_token: str | None = None
        self._installation_expires = 0.0
        self._installation_id = self.auth.installation_id

    # Dispatch

    def dispatch(
        self, event_type: str, client_payload: dict[str, Any]
    ) -> DispatchResult:
        """Send one ``repository_dispatch`` and classify the response."""
        url = f"{self.api_url}/repos/{self.route.repository}/dispatches"
        body: dict[str, Any] = {
            "event_type": event_type,
            "client_payload": client_payload,
        }
        for attempt in (1, 2):
            try:
                headers = self._headers(self._token())
            except GitHubError as exc:
                return self._token_failure(exc)
            try:
                response = self.session.post(
                    url, json=body, headers=headers, timeout=TIMEOUT
                )
            except requests.RequestException as exc:
                return DispatchResult(
                    "retry", None, f"POST {url} failed: {type(exc).__name__}"
                )
            if response.status_code == 401 and self.auth.kind == "app" and attempt == 1:
                # The cached installation token may have been revoked: renew once.
                self._forget_token()
                continue
            return self._classify(url, response)
        raise AssertionError("unreachable")

    def _classify(self, url: str, response: requests.Response) -> DispatchResult:
        status = response.status_code
        if status == 204:
            return DispatchResult("sent", status, f"POST {url} returned 204")
        detail = _message(response)
        text = f"POST {url} returned {status}" + (f": {detail}" if detail else "")
        if 200 <= status < 300:
            # GitHub responds to a dispatch with 204 and no body, so anything else comes
            # from something that is not the GitHub API.
            return DispatchResult(
                "fatal",
                status,
                f"{text}. That is not GitHub's answer to a dispatch: check "
                "GITHUB_API_URL (GitHub Enterprise Server needs https://HOST/api/v3)",
            )
        if status == 401:
            return DispatchResult(
                "fatal",
                status,
                f"{text}. The token is invalid or expired: create a new one and restart the relay",
            )
        if status == 404:
            return DispatchResult(
                "fatal",
                status,
                f"{text}. Either {self.route.repository!r} is the wrong repository name or "
                "the token cannot see it: check GITHUB_REPOSITORY and grant the token "
                "Contents: read and write on that repository",
            )
        if status == 422:
            return DispatchResult(
                "fatal",
                status,
                f"{text}. GitHub rejected the payload; check the event type and payload limits",
            )
        if status in (403, 429):
            if _is_rate_limited(response):
                wait = hinted_delay(response.headers)
                if wait is None:
                    wait = SECONDARY_LIMIT_WAIT
                return DispatchResult(
                    "retry", status, f"{text} (rate limited)", retry_after=wait
                )
            return DispatchResult(
                "fatal",
                status,
                f"{text}. The token lacks permission: a fine-grained token needs "
                "Contents: read and write, a classic token the repo scope",
            )
        if status >= 500:
            return DispatchResult(
                "retry", status, text, retry_after=hinted_delay(response.headers)
            )
        return DispatchResult("fatal", status, text)

    def _token_failure(self, exc: GitHubError) -> DispatchResult:
        if exc.retryable and (
            exc.status is None or exc.status >= 500 or exc.status == 429
        ):
            return DispatchResult("retry", exc.status, str(exc))
        return DispatchResult("fatal", exc.status, str(exc))

    # Repository check

    def repository(self) -> dict[str, Any]:
        """Return ``GET /repos/{owner}/{repo}``, raising :class:`GitHubError`."""
        url = f"{self.api_url}/repos/{self.route.repository}"
        try:
            response = self.session.get(
                url, headers=self._headers(self._token()), timeout=TIMEOUT
            )
        except requests.RequestException as exc:
            raise GitHubError(f"GET {url} failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise GitHubError(
                f"GET {url} returned {response.status_code}: {_message(response)}",
                response.status_code,
            )
        data = _json_object(response)
        if data is None:
            raise GitHubError(
                f"GET {url} returned 200 with a body that is not a GitHub API response: "
                "check GITHUB_API_URL (GitHub Enterprise Server needs https://HOST/api/v3)",
                200,
                retryable=False,
            )
        return data

    # Authentication

    def _headers(self, token: str) -> dict[str, str]:
        return {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {token}",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": f"asc-relay/{__version__}",
        }

    def _token(self) -> str:
        if self.auth.token:
            return self.auth.token
        with self._lock:
            if self._installation_token and self.clock() < self._installation_expires:
                return self._installation_token
            token, expires_at = self._new_installation_token()
            self._installation_token = token
            self._installation_expires = expires_at - TOKEN_RENEW_MARGIN
            return token

    def _forget_token(self) -> None:
        with self._lock:
            self._installation_token = None

    def app_jwt(self) -> str:
        """Return a JWT that authenticates as the GitHub App itself (RS256).

        It uses the wall clock, which GitHub checks, rather than ``self.clock``,
        which only decides when a cached installation token is renewed.
        """
        now = int(time.time())
        claims = {
            "iat": now - 60,
            "exp": now + APP_JWT_LIFETIME,
            "iss": self.auth.app_id,
        }
        try:
            return jwt.encode(
                claims, self.auth.app_private_key or "", algorithm="RS256"
            )
        except (ValueError, TypeError, jwt.PyJWTError):
            raise GitHubError(
                "GITHUB_APP_PRIVATE_KEY is not a PEM RSA private key: use the .pem file "
                "downloaded from the GitHub App's settings page",
                retryable=False,
            ) from None

    def _new_installation_token(self) -> tuple[str, float]:
        headers = self._headers(self.app_jwt())
        if self._installation_id is None:
            url = f"{self.api_url}/repos/{self.route.repository}/installation"
            data = self._app_call("GET", url, headers, None)
            if "id" not in data:
                raise GitHubError(f"GET {url} returned no installation id")
            self._installation_id = str(data["id"])
        url = f"{self.api_url}/app/installations/{self._installation_id}/access_tokens"
        owner_and_name = self.route.repository.split("/", 1)
        data = self._app_call(
            "POST", url, headers, {"repositories": [owner_and_name[1]]}
        )
        if not isinstance(data.get("token"), str):
            raise GitHubError(f"POST {url} returned no token: check GITHUB_API_URL")
        token = data["token"]
        expires = _parse_time(data.get("expires_at")) or self.clock() + 3600
        logger.info(
            "installation token created for %s",
            self.route.repository,
            extra={"route": self.route.name},
        )
        return token, expires

    def _app_call(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: dict[str, Any] | None,
    ) -> dict[str, Any]:
        try:
            response = self.session.request(
                method, url, headers=headers, json=body, timeout=TIMEOUT
            )
        except requests.RequestException as exc:
            raise GitHubError(f"{method} {url} failed: {type(exc).__name__}") from None
        if response.status_code not in (200, 201):
            hint = ""
            if response.status_code == 404:
                hint = (
                    f". The GitHub App is not installed on {self.route.repository}: "
                    "install it there or set GITHUB_APP_INSTALLATION_ID"
                )
            elif response.status_code == 401:
                hint = ". Check GITHUB_APP_ID, the private key and the VM's clock"
            raise GitHubError(
                f"{method} {url} returned {response.status_code}: {_message(response)}{hint}",
                response.status_code,
            )
        data = _json_object(response)
        if data is None:
            raise GitHubError(
                f"{method} {url} returned {response.status_code} with a body that is not "
                "a GitHub API response: check GITHUB_API_URL"
            )
        return data


def _is_rate_limited(response: requests.Response) -> bool:
    if response.status_code == 429:
        return True
    if "retry-after" in response.headers:
        return True
    if response.headers.get("x-ratelimit-remaining") == "0":
        return True
    return "rate limit" in _message(response).lower()


def _json_object(response: requests.Response) -> dict[str, Any] | None:
    """Return the body as a JSON object, or None when it is anything else."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return " ".join(response.text.split())[:200]
    if isinstance(body, dict):
        parts = [str(body.get("message") or "")]
        errors = body.get("errors")
        if isinstance(errors, list):
            parts += [
                str(e.get("message") or e.get("code") or e)
                if isinstance(e, dict)
                else str(e)
                for e in errors
            ]
        return "; ".join(part for part in parts if part)[:500]
    return str(body)[:200]


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None

"""A local stand-in for the GitHub REST API, served on 127.0.0.1.

It implements the calls the relay makes, with GitHub's status codes and
error bodies: ``repository_dispatch`` (204, or 401/404/422 as GitHub answers
them), ``GET /repos/{owner}/{repo}``, and the GitHub App installation-token
flow, verifying app JWTs with the app's public key. Tests queue scripted
answers (a 502, a 429 with ``Retry-After``, a secondary rate limit) with
:meth:`GitHubStandIn.fail_next`.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt

DOCS = "https://docs.github.com/rest"
DISPATCH_DOCS = (
    "https://docs.github.com/rest/repos/repos#create-a-repository-dispatch-event"
)
SECONDARY_LIMIT_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before "
    "you try again. If you reach out to GitHub Support for help, please include "
    "the request ID ABCD:1234."
)


@dataclass
class Scripted:
    """One queued response: status, JSON body and headers."""

    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    """A dispatch GitHub accepted."""

    repository: str
    event_type: str
    client_payload: dict[str, Any]
    authorization: str
    at: float


class GitHubStandIn:
    """Start with :meth:`start`; ``url`` is the API base to configure."""

    def __init__(
        self,
        *,
        tokens: set[str] | None = None,
        repositories: set[str] | None = None,
        app_id: str | None = None,
        app_public_key: Any = None,
        installation_id: int = 4242,
        push: bool = True,
        latency: float = 0.0,
    ) -> None:
        self.tokens = set(tokens or {"test-token"})
        self.repositories = set(repositories or {"example/ios-app"})
        self.app_id = app_id
        self.app_public_key = app_public_key
        self.installation_id = installation_id
        self.push = push
        self.latency = latency
        self.dispatches: list[Received] = []
        self.requests: list[tuple[str, str]] = []
        self.tokens_issued = 0
        self._scripted: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> GitHubStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                standin._handle(self, "GET")

            def do_POST(self) -> None:
                standin._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def fail_next(self, *answers: Scripted) -> None:
        """Return these responses to the next dispatches, in order."""
        with self._lock:
            self._scripted.extend(answers)

    def dispatched_ids(self) -> list[str]:
        with self._lock:
            return [str(item.client_payload.get("id")) for item in self.dispatches]

    # Request handling

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        path = handler.path.split("?", 1)[0]
        with self._lock:
            self.requests.append((method, path))
        if self.latency:
            time.sleep(self.latency)

        routes = [
            ("POST", r"^/repos/([^/]+/[^/]+)/dispatches$", self._dispatch),
            ("GET", r"^/repos/([^/]+/[^/]+)/installation$", self._installation),
            ("GET", r"^/repos/([^/]+/[^/]+)$", self._repository),
            ("POST", r"^/app/installations/(\d+)/access_tokens$", self._access_token),
        ]
        for route_method, pattern, action in routes:
            match = re.match(pattern, path)
            if match and method == route_method:
                status, body, headers = action(handler, match.group(1), raw)
                break
        else:
            status, body, headers = (
                404,
                {"message": "Not Found", "documentation_url": DOCS, "status": "404"},
                {},
            )
        self._send(handler, status, body, headers)

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        body: dict[str, Any] | None,
        headers: dict[str, str],
    ) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("x-github-request-id", "ABCD:1234")
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        if data:
            handler.wfile.write(data)

    def _bearer(self, handler: BaseHTTPRequestHandler) -> str:
        value = handler.headers.get("Authorization", "")
        return value.split(" ", 1)[1] if " " in value else ""

    def _unauthorized(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        return (
            401,
            {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"},
            {},
        )

    def _not_found(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        return (
            404,
            {
                "message": "Not Found",
                "documentation_url": DISPATCH_DOCS,
                "status": "404",
            },
            {},
        )

    def _dispatch(
        self, handler: BaseHTTPRequestHandler, repository: str, raw: bytes
    ) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        token = self._bearer(handler)
        if token not in self.tokens:
            return self._unauthorized()
        if repository not in self.repositories:
            return self._not_found()
        with self._lock:
            scripted = self._scripted.popleft() if self._scripted else None
        if scripted is not None:
            return scripted.status, scripted.body, scripted.headers

        try:
            body = json.loads(raw)
        except ValueError:
            return (
                400,
                {
                    "message": "Problems parsing JSON",
                    "documentation_url": DISPATCH_DOCS,
                    "status": "400",
                },
                {},
            )
        event_type = body.get("event_type")
        payload = body.get("client_payload", {})
        problem = None
        if not isinstance(event_type, str) or not 1 <= len(event_type) <= 100:
            problem = "event_type must be 1 to 100 characters"
        elif not isinstance(payload, dict):
            problem = "client_payload is not an object"
        elif len(payload) > 10:
            problem = (
                f"No more than 10 properties are allowed; {len(payload)} were supplied."
            )
        elif len(json.dumps(payload)) > 65_535:
            problem = "client_payload is too large"
        if problem:
            return (
                422,
                {
                    "message": f"Invalid request.\n\n{problem}",
                    "documentation_url": DISPATCH_DOCS,
                    "status": "422",
                },
                {},
            )
        with self._lock:
            self.dispatches.append(
                Received(repository, event_type, payload, token, time.time())
            )
        return 204, None, {}

    def _repository(
        self, handler: BaseHTTPRequestHandler, repository: str, raw: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if self._bearer(handler) not in self.tokens:
            return self._unauthorized()
        if repository not in self.repositories:
            return self._not_found()
        return (
            200,
            {
                "full_name": repository,
                "private": True,
                "default_branch": "main",
                "permissions": {"admin": False, "push": self.push, "pull": True},
            },
            {},
        )

    def _app_claims(self, handler: BaseHTTPRequestHandler) -> dict[str, Any] | None:
        if self.app_public_key is None:
            return None
        try:
            return dict(
                jwt.decode(
                    self._bearer(handler),
                    self.app_public_key,
                    algorithms=["RS256"],
                    options={"require": ["iat", "exp", "iss"]},
                )
            )
        except jwt.PyJWTError:
            return None

    def _installation(
        self, handler: BaseHTTPRequestHandler, repository: str, raw: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        claims = self._app_claims(handler)
        if claims is None or str(claims["iss"]) != self.app_id:
            return (
                401,
                {
                    "message": "A JSON web token could not be decoded",
                    "documentation_url": DOCS,
                    "status": "401",
                },
                {},
            )
        if repository not in self.repositories:
            return self._not_found()
        return 200, {"id": self.installation_id, "app_id": int(self.app_id or 0)}, {}

    def _access_token(
        self, handler: BaseHTTPRequestHandler, installation: str, raw: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        claims = self._app_claims(handler)
        if claims is None or str(claims["iss"]) != self.app_id:
            return (
                401,
                {
                    "message": "A JSON web token could not be decoded",
                    "documentation_url": DOCS,
                    "status": "401",
                },
                {},
            )
        if int(installation) != self.installation_id:
            return self._not_found()
        with self._lock:
            self.tokens_issued += 1
            token = f"ghs_installation{self.tokens_issued:04d}"
            self.tokens.add(token)
        expires = datetime.now(UTC) + timedelta(hours=1)
        return (
            201,
            {
                "token": token,
                "expires_at": expires.isoformat(timespec="seconds").replace(
                    "+00:00", "Z"
                ),
                "permissions": {"contents": "write", "metadata": "read"},
                "repository_selection": "selected",
            },
            {},
        )

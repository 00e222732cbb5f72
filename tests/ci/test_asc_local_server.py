"""The client against a real HTTP server on 127.0.0.1, without mocks."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ci.asc import AppStoreConnect
from ci.http import ConflictError
from tests.ci.conftest import FakeClock, decode_token, load_fixture

UPLOAD_PATH = "/asc/v1/buildUploads/xx-xx-xx-xxx-xx"


class FakeAppStoreConnect(BaseHTTPRequestHandler):
    """Replies from ``server.replies`` in order and records each request."""

    server: Any

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.requests.append(
            {
                "method": self.command,
                "path": self.path,
                "authorization": self.headers.get("Authorization", ""),
                "body": self.rfile.read(length).decode() if length else "",
            }
        )
        status, body = self.server.replies.pop(0)
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _reply
    do_POST = _reply

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeAppStoreConnect)
    httpd.requests = []  # type: ignore[attr-defined]
    httpd.replies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def client(
    server: ThreadingHTTPServer, asc_environ: dict[str, str], clock: FakeClock
) -> AppStoreConnect:
    host, port = server.server_address[:2]
    asc_environ["ASC_API_URL"] = f"http://{host}:{port}/asc"
    return AppStoreConnect.from_environ(
        asc_environ, sleep=clock.sleep, clock=clock.time
    )


def test_webhook_link_over_http_with_401_refresh(
    server: Any, client: AppStoreConnect, private_key: ec.EllipticCurvePrivateKey
) -> None:
    unauthorized = {
        "errors": [
            {
                "status": "401",
                "code": "NOT_AUTHORIZED",
                "title": "Authentication credentials are missing or invalid.",
                "detail": "Provide a properly configured and signed bearer token",
            }
        ]
    }
    server.replies.extend(
        [(401, unauthorized), (200, load_fixture("build-upload-complete.json"))]
    )

    body = client.get(
        "https://api.appstoreconnect.apple.com/v1/buildUploads/xx-xx-xx-xxx-xx",
        {"include": "build"},
    )

    assert body["data"]["attributes"]["state"]["state"] == "COMPLETE"
    assert [request["path"] for request in server.requests] == [
        f"{UPLOAD_PATH}?include=build",
        f"{UPLOAD_PATH}?include=build",
    ]
    tokens = [
        request["authorization"].removeprefix("Bearer ") for request in server.requests
    ]
    assert tokens[0] != tokens[1]
    assert decode_token(tokens[1], private_key)["aud"] == "appstoreconnect-v1"


def test_conflict_over_http_keeps_entries(server: Any, client: AppStoreConnect) -> None:
    conflict = {
        "errors": [
            {"status": "409", "code": "ENTITY_ERROR", "title": "Invalid entity"},
            {
                "status": "409",
                "code": "ENTITY_ERROR.ATTRIBUTE.INVALID.DUPLICATE",
                "title": "Duplicate",
                "detail": "The version number has been previously used.",
                "source": {"pointer": "/data/attributes/versionString"},
            },
        ]
    }
    server.replies.append((409, conflict))
    body = {
        "data": {"type": "appStoreVersions", "attributes": {"versionString": "1.0"}}
    }

    with pytest.raises(ConflictError) as caught:
        client.post("/v1/appStoreVersions", body)

    assert caught.value.codes == [
        "ENTITY_ERROR",
        "ENTITY_ERROR.ATTRIBUTE.INVALID.DUPLICATE",
    ]
    assert json.loads(server.requests[0]["body"]) == body
    assert server.requests[0]["path"] == "/asc/v1/appStoreVersions"

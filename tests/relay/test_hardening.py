"""Hostile and unusual input for the relay: odd routes and ids, GitHub responses
that are not JSON or never arrive, payload limits, secrets, and live processes
that share a database or stop in the middle of a dispatch."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import relay.github
from relay.app import create_app
from relay.config import load_settings
from relay.dispatcher import Dispatcher
from relay.events import (
    MAX_PAYLOAD_CHARS,
    MAX_PAYLOAD_KEYS,
    Event,
    Resource,
    build_client_payload,
    payload_size,
)
from relay.samples import load_sample, with_fresh_id
from relay.signatures import sign
from relay.store import Store
from tests.relay.conftest import (
    REPOSITORY,
    SECRET,
    TOKEN,
    make_route,
    make_settings,
)
from tests.relay.live import REPO_ROOT, start_relay, wait_for
from tests.standins.github import GitHubStandIn


def client_for(store: Store, *routes: Any, **changes: Any) -> FlaskClient:
    return create_app(
        make_settings(store.path, *routes, **changes), store
    ).test_client()


def signed_post(
    client: FlaskClient, body: bytes, path: str = "/webhook", **headers: str
) -> Any:
    all_headers = {
        "content-type": "application/json",
        "x-apple-signature": sign(SECRET, body),
    }
    all_headers.update(headers)
    return client.post(path, data=body, headers=all_headers)


def row_count(store: Store) -> int:
    return int(
        store.connection().execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]
    )


def event_body(event_id: Any, **attributes: Any) -> bytes:
    document = {
        "data": {
            "type": "appStoreVersionAppVersionStateUpdated",
            "id": event_id,
            "attributes": {
                "oldValue": "IN_REVIEW",
                "newValue": "ACCEPTED",
                **attributes,
            },
            "relationships": {
                "instance": {"data": {"type": "appStoreVersions", "id": "v-1"}}
            },
        }
    }
    return json.dumps(document).encode()


class ScriptedServer:
    """A loopback HTTP server that sends one fixed response to every POST.

    With ``hang`` it reads the request and never responds, like a stalled GitHub.
    """

    def __init__(
        self,
        status: int = 204,
        body: bytes = b"",
        content_type: str = "application/json",
        *,
        hang: bool = False,
    ) -> None:
        self.posts = 0
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                server.posts += 1
                if hang:
                    server.release.wait(10)
                    return
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


# Requests


@pytest.mark.parametrize(
    "path",
    [
        "/webhook/..",
        "/webhook/%2e%2e",
        "/webhook/%2F",
        "/webhook/%C3%A9",
        "/webhook/%00",
        "/webhook/",
        "/webhook/default/extra",
        "/webhook/" + "a" * 300,
    ],
)
def test_webhook_odd_route_names_are_404(store: Store, path: str) -> None:
    client = client_for(store)
    response = signed_post(client, load_sample("build-upload-complete"), path)
    assert response.status_code == 404
    assert response.is_json
    assert row_count(store) == 0


def test_webhook_same_id_new_body_is_duplicate(
    store: Store, github: GitHubStandIn
) -> None:
    client = client_for(store, github_api_url=github.url)
    first = signed_post(client, event_body("same-id"))
    second = signed_post(client, event_body("same-id", note="changed"))
    assert first.get_json()["status"] == "accepted"
    assert second.status_code == 200
    assert second.get_json()["status"] == "duplicate"

    dispatcher = Dispatcher(make_settings(store.path, github_api_url=github.url), store)
    while dispatcher.run_once():
        pass
    assert github.dispatched_ids() == ["same-id"]


@pytest.mark.parametrize(
    "event_id",
    [1, 1.5, True, "", None, {"nested": 1}, [1, 2], "é" * 600, " padded "],
    ids=["int", "float", "bool", "empty", "null", "object", "list", "long", "spaces"],
)
def test_webhook_odd_id_types_dedupe(store: Store, event_id: Any) -> None:
    client = client_for(store)
    body = event_body(event_id)
    first = signed_post(client, body)
    repeat = signed_post(client, body)
    assert first.status_code == 200
    assert first.get_json()["status"] == "accepted"
    assert repeat.get_json()["status"] == "duplicate"
    assert row_count(store) == 1


def test_webhook_numeric_and_string_ids_match(store: Store) -> None:
    client = client_for(store)
    signed_post(client, event_body(7))
    repeat = signed_post(client, event_body("7"))
    assert repeat.get_json()["status"] == "duplicate"


@pytest.mark.parametrize(
    "uuid",
    ["u" * 129, "caf\u00e9-uuid", "tab\tinside"],
    ids=["over-128", "non-ascii", "control-character"],
)
def test_webhook_unusable_request_uuid_is_dropped(
    store: Store, uuid: str, caplog: Any
) -> None:
    client = client_for(store)
    body = with_fresh_id(load_sample("build-upload-complete"))
    header = uuid.encode("utf-8").decode("latin-1")
    with caplog.at_level("INFO"):
        response = signed_post(client, body, **{"x-apple-request-uuid": header})
    assert response.status_code == 200
    assert store.get(response.get_json()["delivery"])["request_uuid"] is None
    assert header not in caplog.text


@pytest.mark.parametrize(
    "signature",
    [
        "hmacsha256=" + "0" * 64,
        "hmacsha256=" + "z" * 64,
        "sha1=" + "0" * 40,
        "hmacsha256=" + "0" * 63,
        "hmacsha256:" + "ab" * 32,
    ],
    ids=["wrong", "not-hex", "other-scheme", "short", "no-equals-sign"],
)
def test_webhook_401_answer_never_echoes_input(
    store: Store, signature: str, caplog: Any
) -> None:
    client = client_for(store)
    body = with_fresh_id(load_sample("build-upload-complete"))
    with caplog.at_level("INFO"):
        response = client.post(
            "/webhook", data=body, headers={"x-apple-signature": signature}
        )
    assert response.status_code == 401
    assert signature not in response.get_data(as_text=True)
    assert SECRET not in response.get_data(as_text=True)
    assert sign(SECRET, body) not in response.get_data(as_text=True)
    assert signature not in caplog.text
    assert row_count(store) == 0


def test_invalid_and_filtered_deliveries_never_dispatched(
    store: Store, github: GitHubStandIn
) -> None:
    route = make_route(events=frozenset({"buildUploadStateUpdated"}))
    client = client_for(store, route, github_api_url=github.url)
    invalid = signed_post(client, b'{"data": []}')
    filtered = signed_post(client, with_fresh_id(load_sample("webhook-ping-created")))
    assert invalid.status_code == 400
    assert filtered.get_json()["status"] == "filtered"

    settings = make_settings(store.path, route, github_api_url=github.url)
    assert Dispatcher(settings, store).run_once() is False
    assert github.requests == []


def test_many_routes_keep_secrets_apart(tmp_path: Path) -> None:
    names = [f"app-{number}" for number in range(40)]
    routes = {
        name: {"repository": REPOSITORY, "secret_env": f"SECRET_{number}"}
        for number, name in enumerate(names)
    }
    config = tmp_path / "relay.yml"
    config.write_text(json.dumps({"routes": routes}))
    env = {"RELAY_CONFIG": str(config), "GITHUB_TOKEN": TOKEN}
    env.update({f"SECRET_{number}": f"secret-{number}-value" for number in range(40)})
    settings = load_settings(env)
    store = Store(str(tmp_path / "relay.db"))
    client = create_app(settings, store).test_client()

    for number, name in enumerate(names):
        body = with_fresh_id(load_sample("build-upload-complete"))
        own = sign(f"secret-{number}-value", body)
        neighbour = sign(f"secret-{(number + 1) % 40}-value", body)
        path = f"/webhook/{name}"
        wrong = client.post(path, data=body, headers={"x-apple-signature": neighbour})
        right = client.post(path, data=body, headers={"x-apple-signature": own})
        assert wrong.status_code == 401, name
        assert right.status_code == 200, name
    assert {row["route"] for row in store.recent(limit=100)} == set(names)
    store.close()


def test_github_token_file_is_read(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("token-from-file\n")
    env = {
        "ASC_WEBHOOK_SECRET": SECRET,
        "GITHUB_REPOSITORY": REPOSITORY,
        "GITHUB_TOKEN_FILE": str(token_file),
    }
    github = load_settings(env).routes["default"].github
    assert github is not None
    assert github.token == "token-from-file"
    assert "token-from-file" in load_settings(env).secret_values()


# Dispatch payloads


def test_dispatch_payload_never_contains_secrets(
    store: Store, github: GitHubStandIn
) -> None:
    client = client_for(store, github_api_url=github.url)
    body = with_fresh_id(load_sample("app-version-in-review"))
    signed_post(client, body, **{"x-apple-request-uuid": "req-42"})
    Dispatcher(make_settings(store.path, github_api_url=github.url), store).run_once()

    assert len(github.dispatches) == 1
    sent = json.dumps(github.dispatches[0].client_payload)
    digest = sign(SECRET, body).split("=", 1)[1]
    assert SECRET not in sent
    assert TOKEN not in sent
    assert digest not in sent
    assert "x-apple-signature" not in sent


history_entries = st.lists(
    st.fixed_dictionaries(
        {
            "event": st.text(max_size=40),
            "old_state": st.text(max_size=600),
            "new_state": st.text(max_size=600),
            "timestamp": st.none() | st.text(max_size=30),
            "received_at": st.just("2026-01-01T00:00:00.000Z"),
        }
    ),
    max_size=50,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=history_entries,
    padding=st.text(max_size=2000),
    copies=st.integers(min_value=0, max_value=60),
)
def test_client_payload_stays_within_limits(
    history: list[dict[str, Any]], padding: str, copies: int
) -> None:
    event = Event(
        type="appStoreVersionAppVersionStateUpdated",
        id="event-1",
        old_state="x" * 512,
        new_state="\u00e9" * 512,
        resource=Resource("appStoreVersions", "v-1", "https://example.invalid/v1/x"),
        timestamp="2026-01-01T00:00:00Z",
    )
    document = {"data": {"attributes": {"padding": [padding] * copies}}}
    payload = build_client_payload(
        event,
        route="default",
        relay={"delivery": 1, "received_at": "now", "request_uuid": None},
        history=history,
        document=document,
    )
    assert len(payload) <= MAX_PAYLOAD_KEYS
    assert payload_size(payload) <= MAX_PAYLOAD_CHARS
    if "payload" not in payload:
        assert "payload" in payload["relay"]["truncated"]
    if len(payload["relay"]["history"]) < len(history):
        assert "history" in payload["relay"]["truncated"]


def test_dispatch_long_history_is_accepted_by_github(
    store: Store, github: GitHubStandIn
) -> None:
    client = client_for(store, github_api_url=github.url)
    padding = "\u00e9" * 500
    for number in range(70):
        body = event_body(f"id-{number}", note=padding * 4)
        document = json.loads(body)
        document["data"]["attributes"]["newValue"] = f"STATE_{number}_{padding}"
        signed_post(client, json.dumps(document).encode())

    dispatcher = Dispatcher(make_settings(store.path, github_api_url=github.url), store)
    while dispatcher.run_once():
        pass
    assert len(github.dispatches) == 70
    assert store.counts() == {"dispatched": 70}
    last = github.dispatches[-1].client_payload
    assert len(last["relay"]["history"]) <= 50
    assert "history" in last["relay"]["truncated"]


# GitHub answers


def test_dispatch_read_timeout_is_retried(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay.github, "TIMEOUT", (2.0, 0.5))
    server = ScriptedServer(hang=True)
    try:
        client = client_for(store)
        signed_post(client, with_fresh_id(load_sample("build-upload-complete")))
        settings = make_settings(store.path, github_api_url=server.url)
        started = time.monotonic()
        Dispatcher(settings, store).run_once()
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    row = store.recent()[0]
    assert row["state"] == "pending"
    assert "ReadTimeout" in row["last_error"]
    assert elapsed < 5.0


@pytest.mark.parametrize(
    ("status", "body", "content_type", "state"),
    [
        (502, b"<html><body>Bad gateway</body></html>", "text/html", "pending"),
        (500, b"", "application/json", "pending"),
        (503, b"{not json", "application/json", "pending"),
        (204, b"", "application/json", "dispatched"),
        (418, b"\xff\xfe\x00", "application/octet-stream", "failed"),
    ],
    ids=["html-502", "empty-500", "broken-json-503", "204", "binary-418"],
)
def test_dispatch_non_json_responses(
    store: Store, status: int, body: bytes, content_type: str, state: str
) -> None:
    server = ScriptedServer(status, body, content_type)
    try:
        client = client_for(store)
        signed_post(client, with_fresh_id(load_sample("build-upload-complete")))
        settings = make_settings(store.path, github_api_url=server.url)
        Dispatcher(settings, store).run_once()
    finally:
        server.stop()
    row = store.recent()[0]
    assert row["state"] == state
    assert row["last_status"] == status
    assert server.posts == 1


# Operator commands


def test_redeliver_leaves_sending_delivery_alone(store: Store) -> None:
    client = client_for(store)
    signed_post(client, with_fresh_id(load_sample("build-upload-complete")))
    claimed = store.claim_next()
    assert claimed is not None
    assert store.requeue(claimed["id"], force=True) == "sending"
    assert store.get(claimed["id"])["state"] == "sending"
    assert store.get(claimed["id"])["attempts"] == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["events", "--state", "unknown"],
        ["events", "--limit", "ten"],
        ["redeliver", "first"],
        ["redeliver"],
        ["send-test"],
        ["send-test", "http://127.0.0.1:9/webhook", "--sample", "no-such-sample"],
        ["serve", "--port", "eighty"],
        ["no-such-command"],
    ],
    ids=[
        "bad-state",
        "bad-limit",
        "bad-id",
        "no-id",
        "no-url",
        "bad-sample",
        "bad-port",
        "bad-command",
    ],
)
def test_cli_usage_errors_exit_2(argv: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "relay.cli", *argv],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "usage: asc-relay" in result.stderr


# Live processes


def test_serve_accepts_chunked_signed_body(relay: Any, github: GitHubStandIn) -> None:
    body = with_fresh_id(load_sample("build-upload-complete"))
    response = requests.post(
        relay.url + "/webhook",
        data=iter([body[:25], body[25:]]),
        headers={"x-apple-signature": sign(SECRET, body)},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    assert wait_for(lambda: len(github.dispatches) == 1)


def test_serve_malformed_requests_get_4xx(relay: Any) -> None:
    port = int(relay.url.rsplit(":", 1)[1])
    requests_to_send = [
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        (
            b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nx-apple-request-uuid: "
        + b"a" * 20000
        + b"\r\nContent-Length: 0\r\n\r\n",
        b"POST /webhook HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"x-h%d: 1\r\n" % number for number in range(200))
        + b"Content-Length: 0\r\n\r\n",
    ]
    for raw in requests_to_send:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(raw)
            status_line = connection.recv(4096).split(b"\r\n", 1)[0]
        status = int(status_line.split()[1])
        assert 400 <= status < 500, status_line
    assert "Traceback" not in relay.log.read_text()


def test_serve_two_relays_share_database(tmp_path: Path, github: GitHubStandIn) -> None:
    database = str(tmp_path / "shared.db")
    first = start_relay(tmp_path, github, database)
    second = start_relay(tmp_path, github, database)
    try:
        ids = [f"shared-{number}" for number in range(20)]
        for number, event_id in enumerate(ids):
            target = first if number % 2 else second
            body = with_fresh_id(load_sample("build-upload-complete"), event_id)
            assert target.post(body).status_code == 200
        repeat = with_fresh_id(load_sample("build-upload-complete"), ids[0])
        assert first.post(repeat).json()["status"] == "duplicate"

        assert wait_for(lambda: len(github.dispatches) >= len(ids))
        time.sleep(1.0)
        assert sorted(github.dispatched_ids()) == sorted(ids)
    finally:
        for running in (first, second):
            running.process.send_signal(signal.SIGTERM)
        for running in (first, second):
            running.process.wait(timeout=30)


@pytest.fixture
def slow_github() -> Iterator[GitHubStandIn]:
    standin = GitHubStandIn(
        tokens={TOKEN}, repositories={REPOSITORY}, latency=1.5
    ).start()
    yield standin
    standin.stop()


def test_serve_sigterm_mid_dispatch_loses_nothing(
    tmp_path: Path, slow_github: GitHubStandIn
) -> None:
    database = str(tmp_path / "relay.db")
    running = start_relay(tmp_path, slow_github, database)
    body = with_fresh_id(load_sample("build-upload-complete"), "in-flight")
    assert running.post(body).status_code == 200
    assert wait_for(
        lambda: ("POST", "/repos/example/ios-app/dispatches") in slow_github.requests
    )
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(timeout=30) == 0

    restarted = start_relay(tmp_path, slow_github, database)
    try:
        reader = Store(database)
        assert wait_for(lambda: reader.get(1)["state"] == "dispatched", timeout=20)
        reader.close()
    finally:
        restarted.process.send_signal(signal.SIGTERM)
        restarted.process.wait(timeout=30)
    payloads = [item.client_payload for item in slow_github.dispatches]
    assert [payload["id"] for payload in payloads] in (["in-flight"], ["in-flight"] * 2)
    if len(payloads) == 2:
        assert payloads[1]["relay"]["maybe_sent"] is True


def test_webhook_recovers_after_write_failure(store: Store) -> None:
    client = client_for(store)
    store.connection().execute("PRAGMA query_only = ON")
    failed = signed_post(client, with_fresh_id(load_sample("build-upload-complete")))
    store.connection().execute("PRAGMA query_only = OFF")
    recovered = signed_post(client, with_fresh_id(load_sample("build-upload-complete")))
    assert failed.status_code == 503
    assert failed.headers["Retry-After"] == "30"
    assert recovered.status_code == 200

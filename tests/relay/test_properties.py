"""Property-based tests: no input gives a 500, and nothing unsigned is queued."""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.app import create_app
from relay.signatures import sign
from relay.store import Store
from tests.relay.conftest import SECRET, make_route, make_settings
from tests.relay.live import Relay, start_relay
from tests.standins.github import GitHubStandIn

header_names = st.sampled_from(
    [
        "x-apple-signature",
        "X-Apple-Signature",
        "content-type",
        "x-apple-request-uuid",
        "content-length",
        "transfer-encoding",
        "x-forwarded-for",
        "x-custom",
    ]
)
header_values = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=120),
    st.builds(
        lambda hexes: f"hmacsha256={hexes}",
        st.text("0123456789abcdefABCDEF", max_size=70),
    ),
    st.builds(lambda text: f"hmacsha256={text}", st.text(max_size=70)),
).filter(lambda value: "\r" not in value and "\n" not in value)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
event_like = st.fixed_dictionaries(
    {
        "data": st.fixed_dictionaries(
            {},
            optional={
                "type": st.one_of(st.text(max_size=40), st.integers(), st.none()),
                "id": json_values,
                "attributes": json_values,
                "relationships": st.one_of(
                    json_values,
                    st.fixed_dictionaries({"instance": json_values}),
                ),
            },
        )
    }
)
lone_surrogates = st.builds(
    lambda digits, where: (
        b'{"data": {"type": "t' + digits + b'", "id": "x"}}'
        if where
        else b'{"data": {"type": "t", "id": "' + digits + b'"}}'
    ),
    st.sampled_from([b"\\ud800", b"\\udbff", b"\\udc00", b"\\udfff"]),
    st.booleans(),
)
bodies = st.one_of(
    st.binary(max_size=600),
    json_values.map(lambda value: json.dumps(value).encode()),
    event_like.map(lambda value: json.dumps(value).encode()),
    lone_surrogates,
)
valid_events = st.builds(
    lambda event_type, event_id, state: json.dumps(
        {
            "data": {
                "type": event_type,
                "id": event_id,
                "attributes": {"newState": state},
            }
        }
    ).encode(),
    st.sampled_from(
        ["buildUploadStateUpdated", "webhookPingCreated", "futureEventType"]
    ),
    st.text(min_size=1, max_size=30),
    st.sampled_from(["COMPLETE", "FAILED"]),
)
ALLOWED_STATUSES = {200, 400, 401, 404, 405, 413}


@pytest.fixture(scope="module")
def app_and_store(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[object, Store]]:
    database = str(tmp_path_factory.mktemp("properties") / "relay.db")
    store = Store(database)
    routes = (
        make_route(),
        make_route("second", events=frozenset({"buildUploadStateUpdated"})),
    )
    app = create_app(make_settings(database, *routes), store)
    yield app, store
    store.close()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    path=st.sampled_from(
        ["/webhook", "/webhook/second", "/webhook/none", "/healthz", "/x"]
    ),
    method=st.sampled_from(
        ["POST", "POST", "POST", "GET", "PUT", "DELETE", "OPTIONS", "HEAD"]
    ),
    headers=st.lists(st.tuples(header_names, header_values), max_size=5),
    body=bodies,
)
def test_random_requests_never_500_or_queue_unsigned(
    app_and_store: tuple[object, Store],
    path: str,
    method: str,
    headers: list[tuple[str, str]],
    body: bytes,
) -> None:
    app, store = app_and_store
    client = app.test_client()  # type: ignore[attr-defined]
    before = store.counts().get("pending", 0) + store.counts().get("filtered", 0)
    clean = [
        (name, value) for name, value in headers if name.lower() != "content-length"
    ]
    response = client.open(path, method=method, data=body, headers=clean)
    assert response.status_code in ALLOWED_STATUSES
    after = store.counts().get("pending", 0) + store.counts().get("filtered", 0)
    if after > before:
        signature = {k.lower(): v for k, v in clean}.get("x-apple-signature")
        assert signature is not None
        assert signature.strip().lower() == sign(SECRET, body).lower()


@settings(max_examples=100, deadline=None)
@given(body=bodies)
def test_signed_random_bodies_get_200_or_400(
    body: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    database = str(tmp_path_factory.mktemp("signed") / "relay.db")
    store = Store(database)
    client = create_app(make_settings(database), store).test_client()
    response = client.post(
        "/webhook", data=body, headers={"x-apple-signature": sign(SECRET, body)}
    )
    assert response.status_code in (200, 400)
    assert sum(store.counts().values()) == 1
    store.close()


raw_header_bytes = st.binary(min_size=0, max_size=80).filter(
    lambda value: b"\r" not in value and b"\n" not in value
)


@pytest.fixture(scope="module")
def live_relay(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Relay, GitHubStandIn]]:
    from tests.relay.conftest import REPOSITORY, TOKEN

    github = GitHubStandIn(tokens={TOKEN}, repositories={REPOSITORY}).start()
    directory: Path = tmp_path_factory.mktemp("live")
    relay = start_relay(directory, github, str(directory / "relay.db"))
    yield relay, github
    relay.kill_group()
    github.stop()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(signature=raw_header_bytes, body=st.binary(max_size=300))
def test_live_server_raw_header_bytes_never_500(
    live_relay: tuple[Relay, GitHubStandIn], signature: bytes, body: bytes
) -> None:
    relay, github = live_relay
    port = int(relay.url.rsplit(":", 1)[1])
    request = (
        b"POST /webhook HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n"
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n"
        + b"x-apple-signature: "
        + signature
        + b"\r\n\r\n"
        + body
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    assert not status_line.startswith(b"HTTP/1.1 5"), answer[:300]
    # Nothing unsigned may reach the database, which is what the dispatcher reads.
    with sqlite3.connect(relay.database) as db:
        assert db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 0
    assert github.dispatches == []


SIGNATURE_KINDS = ["right", "other-secret", "one-digit-off", "missing", "wrong-scheme"]


@settings(max_examples=150, deadline=None)
@given(body=valid_events, kind=st.sampled_from(SIGNATURE_KINDS))
def test_valid_events_queued_only_with_valid_signature(
    body: bytes, kind: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    database = str(tmp_path_factory.mktemp("queued") / "relay.db")
    store = Store(database)
    client = create_app(make_settings(database), store).test_client()
    digest = sign(SECRET, body).split("=", 1)[1]
    headers = {
        "right": {"x-apple-signature": f"hmacsha256={digest}"},
        "other-secret": {"x-apple-signature": sign("another-secret-value", body)},
        "one-digit-off": {
            "x-apple-signature": "hmacsha256="
            + digest[:-1]
            + ("0" if digest[-1] != "0" else "1")
        },
        "missing": {},
        "wrong-scheme": {"x-apple-signature": f"sha256={digest}"},
    }[kind]
    response = client.post("/webhook", data=body, headers=headers)
    queued = store.counts().get("pending", 0)
    store.close()
    if kind == "right":
        assert response.status_code == 200
        assert queued == 1
    else:
        assert response.status_code == 401
        assert queued == 0

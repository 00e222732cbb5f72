from __future__ import annotations

import logging
import sqlite3
from typing import Any

import pytest
from flask.testing import FlaskClient

from relay.app import create_app
from relay.samples import load_sample, with_fresh_id
from relay.signatures import sign
from relay.store import Store
from tests.relay.conftest import SECRET, make_route, make_settings


def client_for(store: Store, *routes: Any, **changes: Any) -> FlaskClient:
    settings = make_settings(store.path, *routes, **changes)
    return create_app(settings, store).test_client()


def post(
    client: FlaskClient,
    body: bytes,
    path: str = "/webhook",
    secret: str = SECRET,
    **headers: str,
) -> Any:
    all_headers = {
        "content-type": "application/json",
        "x-apple-signature": sign(secret, body),
    }
    all_headers.update({key.replace("_", "-"): value for key, value in headers.items()})
    return client.post(path, data=body, headers=all_headers)


def test_webhook_accepts_signed_sample(store: Store) -> None:
    client = client_for(store)
    body = load_sample("build-upload-complete")
    response = post(
        client, body, x_apple_request_uuid="7b64238e-16db-31a0-5fd5-944a7c61b45f"
    )
    assert response.status_code == 200
    assert response.json == {"status": "accepted", "delivery": 1}
    row = store.get(1)
    assert row["state"] == "pending"
    assert row["event_type"] == "buildUploadStateUpdated"
    assert row["new_state"] == "COMPLETE"
    assert row["request_uuid"] == "7b64238e-16db-31a0-5fd5-944a7c61b45f"
    assert bytes(row["body"]) == body


def test_webhook_commits_before_answering(store: Store) -> None:
    client = client_for(store)
    post(client, load_sample("webhook-ping-created"))
    other = sqlite3.connect(store.path)
    assert other.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 1
    other.close()


def test_webhook_answers_repeat_without_new_row(store: Store) -> None:
    client = client_for(store)
    body = load_sample("app-version-in-review")
    first = post(client, body)
    second = post(client, body)
    assert first.json["status"] == "accepted"
    assert second.status_code == 200
    assert second.json == {"status": "duplicate", "delivery": first.json["delivery"]}
    assert store.counts() == {"pending": 1}
    assert store.get(1)["repeats"] == 1


def test_webhook_same_id_other_route_is_new(store: Store) -> None:
    client = client_for(store, make_route(), make_route("other-app"))
    body = load_sample("app-version-in-review")
    assert post(client, body).json["status"] == "accepted"
    assert post(client, body, "/webhook/other-app").json["status"] == "accepted"


def test_webhook_dedupes_by_body_hash_without_id(store: Store) -> None:
    client = client_for(store)
    body = b'{"data": {"type": "webhookPingCreated"}}'
    assert post(client, body).json["status"] == "accepted"
    assert post(client, body).json["status"] == "duplicate"


def test_webhook_accepts_previous_secret(store: Store) -> None:
    route = make_route(secrets=(b"new-secret-value-1234", SECRET.encode()))
    client = client_for(store, route)
    assert post(client, load_sample("webhook-ping-created")).status_code == 200
    body = with_fresh_id(load_sample("webhook-ping-created"))
    assert post(client, body, secret="new-secret-value-1234").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-apple-signature": ""},
        {"x-apple-signature": "hmacsha256=zz"},
        {"x-apple-signature": "sha256=" + "0" * 64},
        {"x-apple-signature": "hmacsha256=" + "0" * 64},
    ],
    ids=["missing", "empty", "malformed", "wrong-scheme", "wrong-digest"],
)
def test_webhook_rejects_bad_signature(store: Store, headers: dict[str, str]) -> None:
    client = client_for(store)
    response = client.post(
        "/webhook",
        data=load_sample("webhook-ping-created"),
        headers={"content-type": "application/json", **headers},
    )
    assert response.status_code == 401
    assert response.json["error"] == "invalid_signature"
    assert store.counts() == {}


def test_webhook_rejects_non_ascii_signature_bytes(store: Store) -> None:
    client = client_for(store)
    body = load_sample("webhook-ping-created")
    header = sign(SECRET, body)[:-1] + "\u00e9"
    response = client.post("/webhook", data=body, headers={"x-apple-signature": header})
    assert response.status_code == 401
    assert "non-ASCII" in response.json["message"]


def test_webhook_rejects_two_signature_headers(store: Store) -> None:
    client = client_for(store)
    body = load_sample("webhook-ping-created")
    good = sign(SECRET, body)
    response = client.post(
        "/webhook",
        data=body,
        headers=[("x-apple-signature", good), ("x-apple-signature", good)],
    )
    assert response.status_code == 401


def test_webhook_rejects_signature_from_other_route(store: Store) -> None:
    client = client_for(
        store, make_route(), make_route("other", secrets=(b"other-secret-12345",))
    )
    response = post(client, load_sample("webhook-ping-created"), "/webhook/other")
    assert response.status_code == 401


def test_webhook_rejects_tampered_body(store: Store) -> None:
    client = client_for(store)
    body = load_sample("build-upload-complete")
    tampered = body.replace(b"COMPLETE", b"FAILED")
    response = client.post(
        "/webhook", data=tampered, headers={"x-apple-signature": sign(SECRET, body)}
    )
    assert response.status_code == 401


def test_webhook_records_signed_invalid_body(store: Store) -> None:
    client = client_for(store)
    response = post(client, b'{"not": "an event"}')
    assert response.status_code == 400
    assert response.json["error"] == "invalid_payload"
    assert response.json["message"] == "body has no data object"
    row = store.get(response.json["delivery"])
    assert row["state"] == "invalid"
    assert bytes(row["body"]) == b'{"not": "an event"}'


@pytest.mark.parametrize(
    "body", [b"", b"not json", b"[1, 2]", b'{"data": {"id": "x"}}']
)
def test_webhook_answers_400_for_signed_non_events(store: Store, body: bytes) -> None:
    client = client_for(store)
    assert post(client, body).status_code == 400
    assert store.counts() == {"invalid": 1}


def test_webhook_rejects_body_over_limit(store: Store) -> None:
    client = client_for(store, max_body_bytes=1024)
    body = b'{"data": {"type": "x", "pad": "' + b"a" * 2000 + b'"}}'
    response = post(client, body)
    assert response.status_code == 413
    assert response.json["error"] == "payload_too_large"
    assert response.headers["Connection"] == "close"
    assert store.counts() == {}


def test_webhook_accepts_body_at_limit(store: Store) -> None:
    prefix, suffix = b'{"data": {"type": "x", "pad": "', b'"}}'
    body = prefix + b"a" * (1024 - len(prefix) - len(suffix)) + suffix
    client = client_for(store, max_body_bytes=1024)
    assert len(body) == 1024
    assert post(client, body).status_code == 200


def test_webhook_unknown_route_is_404(store: Store) -> None:
    client = client_for(store)
    response = post(client, load_sample("webhook-ping-created"), "/webhook/nope")
    assert response.status_code == 404
    assert response.json["error"] == "not_found"


def test_webhook_default_route_has_no_named_alias(store: Store) -> None:
    client = client_for(store)
    assert (
        post(
            client, load_sample("webhook-ping-created"), "/webhook/default"
        ).status_code
        == 404
    )


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_webhook_other_methods_are_405(store: Store, method: str) -> None:
    client = client_for(store)
    response = getattr(client, method)("/webhook")
    assert response.status_code == 405
    assert response.json["error"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


def test_unknown_path_is_json_404(store: Store) -> None:
    response = client_for(store).get("/admin")
    assert response.status_code == 404
    assert response.is_json


def test_webhook_records_filtered_event_without_dispatch(store: Store) -> None:
    route = make_route(events=frozenset({"buildUploadStateUpdated"}))
    client = client_for(store, route)
    response = post(client, load_sample("app-version-in-review"))
    assert response.json["status"] == "filtered"
    assert store.get(response.json["delivery"])["state"] == "filtered"


def test_webhook_filter_on_states(store: Store) -> None:
    route = make_route(states=frozenset({"COMPLETE"}))
    client = client_for(store, route)
    assert (
        post(client, load_sample("build-upload-complete")).json["status"] == "accepted"
    )
    failed = with_fresh_id(load_sample("build-upload-failed"))
    assert post(client, failed).json["status"] == "filtered"


def test_webhook_answers_503_when_database_fails(store: Store, caplog: Any) -> None:
    client = client_for(store)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    store.record = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR):
        response = post(client, load_sample("webhook-ping-created"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    assert "disk I/O error" in caplog.text


def test_webhook_logs_never_contain_secret_or_signature(
    store: Store, caplog: Any
) -> None:
    client = client_for(store)
    body = load_sample("build-upload-complete")
    signature = sign(SECRET, body)
    with caplog.at_level(logging.DEBUG):
        post(client, body)
        client.post(
            "/webhook", data=body, headers={"x-apple-signature": signature[:-1] + "0"}
        )
    assert SECRET not in caplog.text
    assert signature.split("=")[1] not in caplog.text
    assert signature.split("=")[1][:-1] not in caplog.text


def test_healthz_is_ok(store: Store) -> None:
    response = client_for(store).get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_fails_without_dispatcher(store: Store) -> None:
    response = client_for(store).get("/readyz")
    assert response.status_code == 503
    assert response.json["problems"] == ["dispatcher has not started"]


def test_readyz_ok_with_fresh_heartbeat(store: Store) -> None:
    store.beat("dispatcher", 1)
    response = client_for(store).get("/readyz")
    assert response.status_code == 200


def test_readyz_fails_with_stale_heartbeat(store: Store) -> None:
    store.connection().execute(
        "INSERT INTO heartbeats (name, beat_at, pid) VALUES ('dispatcher', 1000, 1)"
    )
    response = client_for(store).get("/readyz")
    assert response.status_code == 503
    assert "silent" in response.json["problems"][0]


def test_webhook_options_is_405(store: Store) -> None:
    response = client_for(store).options("/webhook")
    assert response.status_code == 405
    assert response.is_json


def test_webhook_blank_request_uuid_is_null(store: Store) -> None:
    client = client_for(store)
    response = post(
        client, load_sample("webhook-ping-created"), x_apple_request_uuid="   "
    )
    assert store.get(response.json["delivery"])["request_uuid"] is None


def test_text_log_escapes_line_breaks() -> None:
    from relay.logs import TextFormatter

    record = logging.LogRecord(
        "relay.app",
        logging.INFO,
        __file__,
        1,
        "delivery accepted: %s",
        ("x\nERROR forged",),
        None,
    )
    record.event_type = "a\r\nb"
    line = TextFormatter().format(record)
    assert "\n" not in line
    assert "\r" not in line
    assert "x\\nERROR forged" in line
    assert "event_type=a\\r\\nb" in line


def test_webhook_redelivery_of_failed_delivery_is_queued_again(store: Store) -> None:
    client = client_for(store)
    body = load_sample("build-upload-complete")
    first = post(client, body).json["delivery"]
    store.finish(first, "failed", payload=None, status=401, error="Bad credentials")

    response = post(client, body)
    assert response.status_code == 200
    assert response.json == {"status": "requeued", "delivery": first}
    row = store.get(first)
    assert row["state"] == "pending"
    assert row["attempts"] == 0
    assert post(client, body).json["status"] == "duplicate"


def test_readyz_fails_when_database_file_is_deleted(store: Store) -> None:
    import os

    store.beat("dispatcher", 1)
    client = client_for(store)
    os.remove(store.path)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert any("is missing" in problem for problem in response.json["problems"])


def test_rejection_log_is_rate_limited(caplog: Any) -> None:
    from relay.app import RejectionLog

    rejections = RejectionLog(limit=3, window=3600)
    with caplog.at_level(logging.WARNING):
        for _ in range(10):
            rejections.warn(
                "x-apple-signature does not match the body", {"route": "default"}
            )
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3

    rejections._window_start -= 3600  # the next window begins
    with caplog.at_level(logging.WARNING):
        rejections.warn("missing x-apple-signature header", {"route": "default"})
    assert caplog.records[-1].getMessage() == (
        "rejected delivery: missing x-apple-signature header (7 more rejections not logged)"
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"data": {"type": "t\\ud800", "id": "a"}}',
        b'{"data": {"type": "x", "id": "\\udfff"}}',
    ],
    ids=["type", "id"],
)
def test_webhook_records_body_with_lone_surrogate(store: Store, body: bytes) -> None:
    response = post(client_for(store), body)
    assert response.status_code == 400
    assert "unpaired UTF-16 surrogate" in response.json["message"]
    assert store.counts() == {"invalid": 1}


def test_text_log_escapes_control_characters() -> None:
    from relay.logs import one_line

    assert one_line("a\x00b\x1b[31mc\td\\e") == "a\\x00b\\x1b[31mc\\td\\\\e"


def test_setup_logging_redacts_configured_secret(capsys: Any) -> None:
    from relay.logs import setup_logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        setup_logging("text", secrets=["s3cret-value-123"])
        logging.getLogger("relay.test").warning("token is %s", "s3cret-value-123")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    err = capsys.readouterr().err
    assert "[redacted]" in err
    assert "s3cret-value-123" not in err


def test_webhook_requeue_clears_last_error(store: Store) -> None:
    client = client_for(store)
    body = load_sample("build-upload-failed")
    first = post(client, body).json["delivery"]
    store.finish(first, "failed", payload=None, status=401, error="Bad credentials")
    assert post(client, body).json["status"] == "requeued"
    assert store.get(first)["last_error"] is None

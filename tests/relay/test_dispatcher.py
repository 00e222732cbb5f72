from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from relay.config import GitHubAuth
from relay.dispatcher import Dispatcher
from relay.events import parse_event
from relay.github import GitHubClient
from relay.samples import load_sample, with_fresh_id
from relay.store import NewDelivery, Store
from tests.relay.conftest import REPOSITORY, TOKEN, make_route, make_settings
from tests.standins.github import SECONDARY_LIMIT_MESSAGE, GitHubStandIn, Scripted


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def record(store: Store, body: bytes, route: str = "default") -> int:
    event, _ = parse_event(body)
    delivery = NewDelivery.for_event(
        route, body, event, state="pending", request_uuid="req-1"
    )
    return store.record(delivery).id


def dispatcher_for(
    store: Store, github: GitHubStandIn, clock: Clock | None = None, **changes: Any
) -> Dispatcher:
    settings = make_settings(store.path, github_api_url=github.url, **changes)
    return Dispatcher(settings, store, clock=clock or time.time)


def test_dispatch_sends_payload_and_marks_dispatched(
    store: Store, github: GitHubStandIn
) -> None:
    body = load_sample("build-upload-complete")
    delivery = record(store, body)
    assert dispatcher_for(store, github).run_once() is True

    assert len(github.dispatches) == 1
    sent = github.dispatches[0]
    assert sent.repository == REPOSITORY
    assert sent.event_type == "asc-webhook"
    payload = sent.client_payload
    assert payload["event"] == "buildUploadStateUpdated"
    assert payload["old_state"] == "PROCESSING"
    assert payload["new_state"] == "COMPLETE"
    assert payload["resource"]["url"] == (
        "https://api.appstoreconnect.apple.com/v1/buildUploads/xxx-xx-xx-xx-xxx"
    )
    assert payload["timestamp"] is None
    assert payload["route"] == "default"
    assert payload["relay"]["request_uuid"] == "req-1"
    assert payload["relay"]["history"] == []
    assert payload["payload"] == json.loads(body)
    row = store.get(delivery)
    assert row["state"] == "dispatched"
    assert row["last_status"] == 204
    assert json.loads(row["dispatched_payload"]) == payload


def test_dispatch_returns_false_when_nothing_due(
    store: Store, github: GitHubStandIn
) -> None:
    assert dispatcher_for(store, github).run_once() is False


def test_dispatch_includes_history_of_same_resource(
    store: Store, github: GitHubStandIn
) -> None:
    for name in (
        "app-version-waiting-for-review",
        "app-version-in-review",
        "app-version-pending-developer-release",
    ):
        record(store, with_fresh_id(load_sample(name)))
    dispatcher = dispatcher_for(store, github)
    while dispatcher.run_once():
        pass
    last = github.dispatches[-1].client_payload
    assert [entry["new_state"] for entry in last["relay"]["history"]] == [
        "WAITING_FOR_REVIEW",
        "IN_REVIEW",
    ]
    assert last["relay"]["history"][0]["timestamp"] == "2025-12-18T03:41:21.179Z"


def test_dispatch_keeps_order_of_receipt(store: Store, github: GitHubStandIn) -> None:
    ids = [
        record(store, with_fresh_id(load_sample("webhook-ping-created"), f"e{i}"))
        for i in range(5)
    ]
    dispatcher = dispatcher_for(store, github)
    while dispatcher.run_once():
        pass
    assert github.dispatched_ids() == ["e0", "e1", "e2", "e3", "e4"]
    assert all(store.get(i)["state"] == "dispatched" for i in ids)


@pytest.mark.parametrize(
    ("scripted", "expected_delay"),
    [
        (Scripted(502, {"message": "Server Error"}), None),
        (Scripted(503, {"message": "Service Unavailable"}, {"Retry-After": "7"}), 7.0),
        (Scripted(429, {"message": "Too Many Requests"}, {"Retry-After": "30"}), 30.0),
        (Scripted(403, {"message": SECONDARY_LIMIT_MESSAGE, "status": "403"}), 60.0),
        (
            Scripted(
                403,
                {"message": "API rate limit exceeded", "status": "403"},
                {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "{reset}"},
            ),
            120.0,
        ),
    ],
    ids=[
        "502",
        "503-retry-after",
        "429-retry-after",
        "secondary-limit",
        "primary-limit",
    ],
)
def test_dispatch_retries_transient_failures(
    store: Store,
    github: GitHubStandIn,
    scripted: Scripted,
    expected_delay: float | None,
) -> None:
    clock = Clock()
    if "x-ratelimit-reset" in scripted.headers:
        scripted.headers["x-ratelimit-reset"] = str(int(time.time()) + 120)
    delivery = record(store, load_sample("webhook-ping-created"))
    github.fail_next(scripted)
    dispatcher = dispatcher_for(store, github, clock)

    dispatcher.run_once()
    row = store.get(delivery)
    assert row["state"] == "pending"
    assert row["last_status"] == scripted.status
    delay = row["next_attempt_at"] - clock.now
    if expected_delay is None:
        assert 1.0 <= delay <= 2.0
    else:
        assert delay == pytest.approx(expected_delay, abs=2.0)

    assert dispatcher.run_once() is False, "not due before the delay"
    clock.now += delay + 0.01
    assert dispatcher.run_once() is True
    assert store.get(delivery)["state"] == "dispatched"
    assert len(github.dispatches) == 1


def test_dispatch_backoff_grows_and_is_capped(
    store: Store, github: GitHubStandIn
) -> None:
    clock = Clock()
    delivery = record(store, load_sample("webhook-ping-created"))
    dispatcher = dispatcher_for(store, github, clock)
    delays = []
    for _ in range(12):
        github.fail_next(Scripted(500, {"message": "Server Error"}))
        clock.now = store.get(delivery)["next_attempt_at"] + 0.001
        assert dispatcher.run_once() is True
        delays.append(store.get(delivery)["next_attempt_at"] - clock.now)
    assert delays[3] > delays[0]
    assert max(delays) <= 600.0
    assert delays[-1] >= 300.0


@pytest.mark.parametrize(
    ("repository", "token", "hint"),
    [
        ("example/ios-app", "wrong-token", "invalid or expired"),
        ("example/wrong-name", TOKEN, "wrong repository name"),
    ],
    ids=["401", "404"],
)
def test_dispatch_fails_fast_on_401_404(
    store: Store,
    github: GitHubStandIn,
    repository: str,
    token: str,
    hint: str,
    caplog: Any,
) -> None:
    route = make_route(repository=repository, github=GitHubAuth(token=token))
    settings = make_settings(store.path, route, github_api_url=github.url)
    delivery = record(store, load_sample("webhook-ping-created"))
    with caplog.at_level(logging.ERROR):
        Dispatcher(settings, store).run_once()
    row = store.get(delivery)
    assert row["state"] == "failed"
    assert hint in row["last_error"]
    assert hint in caplog.text
    assert token not in caplog.text
    assert github.dispatches == []


def test_dispatch_stops_on_422(store: Store, github: GitHubStandIn) -> None:
    github.fail_next(
        Scripted(422, {"message": "Invalid request.\n\nclient_payload is too large"})
    )
    delivery = record(store, load_sample("webhook-ping-created"))
    dispatcher_for(store, github).run_once()
    row = store.get(delivery)
    assert row["state"] == "failed"
    assert "client_payload is too large" in row["last_error"]


def test_dispatch_stops_on_plain_403(store: Store, github: GitHubStandIn) -> None:
    github.fail_next(
        Scripted(403, {"message": "Resource not accessible by personal access token"})
    )
    delivery = record(store, load_sample("webhook-ping-created"))
    dispatcher_for(store, github).run_once()
    row = store.get(delivery)
    assert row["state"] == "failed"
    assert "Contents: read and write" in row["last_error"]


def test_dispatch_gives_up_after_max_age(store: Store, github: GitHubStandIn) -> None:
    clock = Clock()
    delivery = record(store, load_sample("webhook-ping-created"))
    github.fail_next(Scripted(502, {"message": "Bad Gateway"}))
    clock.now = time.time() + 3600
    dispatcher_for(store, github, clock, max_retry_age=600.0).run_once()
    row = store.get(delivery)
    assert row["state"] == "failed"
    assert row["last_error"].startswith("gave up after 1 attempts")


def test_dispatch_retries_connection_refused(store: Store, database: str) -> None:
    settings = make_settings(database, github_api_url="http://127.0.0.1:9")
    delivery = record(store, load_sample("webhook-ping-created"))
    Dispatcher(settings, store).run_once()
    row = store.get(delivery)
    assert row["state"] == "pending"
    assert "ConnectionError" in row["last_error"]


def test_dispatch_dry_run_records_payload_without_calling(
    store: Store, github: GitHubStandIn
) -> None:
    delivery = record(store, load_sample("build-upload-failed"))
    dispatcher_for(store, github, dry_run=True).run_once()
    row = store.get(delivery)
    assert row["state"] == "dry_run"
    assert json.loads(row["dispatched_payload"])["new_state"] == "FAILED"
    assert github.requests == []


def test_dispatch_marks_recovered_delivery_maybe_sent(
    store: Store, github: GitHubStandIn
) -> None:
    delivery = record(store, load_sample("webhook-ping-created"))
    assert store.claim_next() is not None
    assert store.recover_in_flight() == 1
    dispatcher_for(store, github).run_once()
    assert github.dispatches[0].client_payload["relay"]["maybe_sent"] is True
    assert store.get(delivery)["state"] == "dispatched"


def test_dispatch_fails_delivery_of_removed_route(
    store: Store, github: GitHubStandIn
) -> None:
    delivery = record(store, load_sample("webhook-ping-created"), route="gone")
    dispatcher_for(store, github).run_once()
    row = store.get(delivery)
    assert row["state"] == "failed"
    assert "no longer configured" in row["last_error"]


def test_second_dispatcher_waits_for_lock(store: Store, github: GitHubStandIn) -> None:
    first = dispatcher_for(store, github)
    second = dispatcher_for(store, github)
    assert first.acquire_lock(wait=False) is True
    assert second.acquire_lock(wait=False) is False


def test_dispatcher_thread_heartbeat_and_stop(
    store: Store, github: GitHubStandIn
) -> None:
    record(store, load_sample("webhook-ping-created"))
    dispatcher = dispatcher_for(store, github)
    thread = dispatcher.start()
    deadline = time.monotonic() + 5
    while not github.dispatches and time.monotonic() < deadline:
        time.sleep(0.01)
    dispatcher.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert len(github.dispatches) == 1
    assert store.last_beat("dispatcher") is not None


# GitHub App authentication


@pytest.fixture
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def app_standin(key: rsa.RSAPrivateKey) -> GitHubStandIn:
    return GitHubStandIn(
        tokens=set(),
        repositories={REPOSITORY},
        app_id="12345",
        app_public_key=key.public_key(),
    ).start()


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_app_auth_finds_installation_and_caches_token(
    store: Store, app_key: rsa.RSAPrivateKey
) -> None:
    standin = app_standin(app_key)
    try:
        route = make_route(
            github=GitHubAuth(app_id="12345", app_private_key=pem(app_key))
        )
        client = GitHubClient(standin.url, route)
        first = client.dispatch("asc-webhook", {"id": "1"})
        second = client.dispatch("asc-webhook", {"id": "2"})
    finally:
        standin.stop()
    assert first.outcome == "sent"
    assert second.outcome == "sent"
    assert standin.tokens_issued == 1
    assert ("GET", f"/repos/{REPOSITORY}/installation") in standin.requests
    assert standin.dispatches[0].authorization == "ghs_installation0001"


def test_app_auth_renews_token_near_expiry(app_key: rsa.RSAPrivateKey) -> None:
    standin = app_standin(app_key)
    clock = Clock()
    try:
        route = make_route(
            github=GitHubAuth(
                app_id="12345", app_private_key=pem(app_key), installation_id="4242"
            )
        )
        client = GitHubClient(standin.url, route, clock=clock)
        client.dispatch("asc-webhook", {"id": "1"})
        clock.now += 56 * 60
        client.dispatch("asc-webhook", {"id": "2"})
    finally:
        standin.stop()
    assert standin.tokens_issued == 2
    assert ("GET", f"/repos/{REPOSITORY}/installation") not in standin.requests


def test_app_auth_renews_token_once_on_401(app_key: rsa.RSAPrivateKey) -> None:
    standin = app_standin(app_key)
    try:
        route = make_route(
            github=GitHubAuth(app_id="12345", app_private_key=pem(app_key))
        )
        client = GitHubClient(standin.url, route)
        client.dispatch("asc-webhook", {"id": "1"})
        standin.tokens.clear()  # the installation token is revoked
        result = client.dispatch("asc-webhook", {"id": "2"})
    finally:
        standin.stop()
    assert result.outcome == "sent"
    assert standin.tokens_issued == 2


def test_app_auth_wrong_key_is_fatal(app_key: rsa.RSAPrivateKey) -> None:
    standin = app_standin(app_key)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    try:
        route = make_route(
            github=GitHubAuth(app_id="12345", app_private_key=pem(other))
        )
        result = GitHubClient(standin.url, route).dispatch("asc-webhook", {})
    finally:
        standin.stop()
    assert result.outcome == "fatal"
    assert result.status == 401
    assert "GITHUB_APP_ID, the private key and the VM's clock" in result.message


def test_app_auth_garbage_key_is_fatal_and_clear(tmp_path: Path) -> None:
    route = make_route(github=GitHubAuth(app_id="12345", app_private_key="not a key"))
    result = GitHubClient("http://127.0.0.1:9", route).dispatch("asc-webhook", {})
    assert result.outcome == "fatal"
    assert "GITHUB_APP_PRIVATE_KEY is not a PEM RSA private key" in result.message


def test_dispatch_sets_aside_delivery_that_crashes(
    store: Store, github: GitHubStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = record(store, with_fresh_id(load_sample("webhook-ping-created"), "bad"))
    good = record(store, with_fresh_id(load_sample("webhook-ping-created"), "good"))
    dispatcher = dispatcher_for(store, github)
    original = dispatcher._payload

    def explode_once(row: Any) -> dict[str, Any]:
        if row["event_id"] == "bad":
            raise ValueError("unexpected shape")
        return original(row)

    monkeypatch.setattr(dispatcher, "_payload", explode_once)
    while dispatcher.run_once():
        pass
    assert store.get(bad)["state"] == "failed"
    assert (
        store.get(bad)["last_error"] == "internal error: ValueError: unexpected shape"
    )
    assert store.get(good)["state"] == "dispatched"
    assert github.dispatched_ids() == ["good"]


def test_dispatch_keeps_order_per_resource_across_retries(
    store: Store, github: GitHubStandIn
) -> None:
    clock = Clock()
    first = record(store, with_fresh_id(load_sample("app-version-in-review"), "A"))
    second = record(
        store, with_fresh_id(load_sample("app-version-pending-developer-release"), "B")
    )
    other = record(store, with_fresh_id(load_sample("build-upload-complete"), "C"))
    github.fail_next(Scripted(502, {"message": "Bad Gateway"}))
    dispatcher = dispatcher_for(store, github, clock)

    while dispatcher.run_once():
        pass
    assert store.get(first)["state"] == "pending"
    assert store.get(second)["state"] == "pending", "B must wait for A"
    assert github.dispatched_ids() == ["C"]
    assert store.get(other)["state"] == "dispatched"

    clock.now = store.get(first)["next_attempt_at"] + 0.01
    while dispatcher.run_once():
        pass
    assert github.dispatched_ids() == ["C", "A", "B"]


@pytest.mark.parametrize(
    "headers",
    [{"Retry-After": "0"}, {"Retry-After": "nan"}, {"Retry-After": "-5"}],
    ids=["zero", "nan", "negative"],
)
def test_dispatch_hint_never_shortens_backoff(
    store: Store, github: GitHubStandIn, headers: dict[str, str]
) -> None:
    clock = Clock()
    delivery = record(store, load_sample("webhook-ping-created"))
    github.fail_next(Scripted(503, {"message": "Service Unavailable"}, headers))
    dispatcher_for(store, github, clock).run_once()
    row = store.get(delivery)
    assert row["state"] == "pending"
    assert row["next_attempt_at"] - clock.now >= 1.0


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, {"message": "ok"}), (201, {"id": 1})],
    ids=["200", "201"],
)
def test_dispatch_other_2xx_is_not_github(
    store: Store, github: GitHubStandIn, status: int, body: dict[str, Any]
) -> None:
    delivery = record(store, load_sample("webhook-ping-created"))
    github.fail_next(Scripted(status, body))
    dispatcher_for(store, github).run_once()
    row = store.get(delivery)
    assert row["state"] == "failed"
    assert "check GITHUB_API_URL" in row["last_error"]


def test_github_message_survives_deep_json(store: Store, github: GitHubStandIn) -> None:
    from relay.github import _message

    class Deep:
        status_code = 500
        text = "[" * 100_000

        def json(self) -> Any:
            return json.loads(self.text)

    assert _message(Deep()).startswith("[[[")  # type: ignore[arg-type]

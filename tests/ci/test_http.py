from __future__ import annotations

import pytest
import requests
import responses

from ci.http import (
    AuthError,
    ConflictError,
    ConnectionFailedError,
    HttpClient,
    NotFoundError,
    RateLimitedError,
    ServerError,
    ValidationError,
)

SECRET_URL = "https://hooks.slack.test/services/T000/B000/s3cretPathValue"


def redact(url: str) -> str:
    return url.replace("s3cretPathValue", "***")


def client(attempts: int = 3) -> HttpClient:
    return HttpClient(
        "test", attempts=attempts, sleep=lambda _: None, redact_url=redact
    )


@responses.activate(assert_all_requests_are_fired=True)
def test_connection_failure_is_one_clear_line() -> None:
    for _ in range(3):
        responses.post(
            SECRET_URL,
            body=requests.ConnectionError(
                "HTTPSConnectionPool(host='hooks.slack.test', port=443): Max retries "
                "exceeded with url: /services/T000/B000/s3cretPathValue"
            ),
        )
    with pytest.raises(ConnectionFailedError) as caught:
        client().request("POST", SECRET_URL, json={})
    message = str(caught.value)
    assert "failed after 3 attempts: could not connect" in message
    assert "s3cretPathValue" not in message
    assert "HTTPSConnectionPool" not in message


@responses.activate(assert_all_requests_are_fired=True)
def test_timeout_says_timed_out() -> None:
    responses.get("https://api.test/x", body=requests.ReadTimeout("read timed out"))
    with pytest.raises(ConnectionFailedError, match="timed out"):
        client(attempts=1).request("GET", "https://api.test/x")


@responses.activate(assert_all_requests_are_fired=True)
def test_retry_then_success() -> None:
    responses.get("https://api.test/x", status=503, headers={"Retry-After": "1"})
    responses.get("https://api.test/x", json={"ok": True})
    slept: list[float] = []
    http = HttpClient("test", sleep=slept.append)
    assert http.request("GET", "https://api.test/x").json() == {"ok": True}
    assert slept == [1.0]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, AuthError),
        (403, AuthError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, ValidationError),
        (400, ValidationError),
        (429, RateLimitedError),
        (500, ServerError),
    ],
)
@responses.activate
def test_status_maps_to_error_class(status: int, error: type[Exception]) -> None:
    responses.get(
        "https://api.test/x",
        status=status,
        json={
            "errors": [
                {"status": str(status), "code": "SOME_CODE", "detail": "something"}
            ]
        },
    )
    with pytest.raises(error) as caught:
        client(attempts=1).request("GET", "https://api.test/x")
    assert f"GET https://api.test/x returned {status}: SOME_CODE something" in str(
        caught.value
    )

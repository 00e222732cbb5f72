"""Fixtures for the App Store Connect client and automations.

A P-256 key is generated per test session (none is committed), the client
talks to a ``responses`` mock at a 127.0.0.1 base URL, and a fake clock
replaces both ``time.time`` and ``time.sleep`` so retries and token expiry
run instantly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from responses import registries

from ci.asc import AppStoreConnect

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "api"
BASE_URL = "http://127.0.0.1:9901"
KEY_ID = "ABC123DEF4"
ISSUER_ID = "57246542-96fe-1a63-e053-0824d011072a"
START_TIME = 1_767_000_000.0


class FakeClock:
    """A clock whose ``sleep`` advances ``time`` and records each delay."""

    def __init__(self, now: float = START_TIME) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture(scope="session")
def private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def private_key_pem(private_key: ec.EllipticCurvePrivateKey) -> str:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


@pytest.fixture
def asc_environ(private_key_pem: str) -> dict[str, str]:
    return {
        "APP_STORE_CONNECT_API_KEY_KEY_ID": KEY_ID,
        "APP_STORE_CONNECT_API_KEY_ISSUER_ID": ISSUER_ID,
        "APP_STORE_CONNECT_API_KEY_KEY": private_key_pem,
        "ASC_API_URL": BASE_URL,
    }


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def asc(asc_environ: dict[str, str], clock: FakeClock) -> AppStoreConnect:
    return AppStoreConnect.from_environ(
        asc_environ, sleep=clock.sleep, clock=clock.time
    )


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def ordered() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(
        assert_all_requests_are_fired=True, registry=registries.OrderedRegistry
    ) as mock:
        yield mock


def url(path: str) -> str:
    return f"{BASE_URL}{path}"


def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def bearer_token(request: Any) -> str:
    header = request.headers["Authorization"]
    assert header.startswith("Bearer ")
    return header[len("Bearer ") :]


def decode_token(token: str, key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    """Verify the signature with the public key and return the claims."""
    return jwt.decode(
        token,
        key.public_key(),
        algorithms=["ES256"],
        audience="appstoreconnect-v1",
        options={"verify_exp": False, "verify_iat": False},
    )


def resource(
    resource_type: str,
    resource_id: str,
    attributes: dict[str, Any] | None = None,
    **relationships: Any,
) -> dict[str, Any]:
    """Build a JSON:API resource object in App Store Connect's shape.

    Each keyword is a relationship: a ``(type, id)`` tuple, a list of them for
    to-many, or None for an empty to-one.
    """
    links = f"https://api.appstoreconnect.apple.com/v1/{resource_type}/{resource_id}"
    rels: dict[str, Any] = {}
    for name, value in relationships.items():
        if value is None:
            data: Any = None
        elif isinstance(value, list):
            data = [{"type": kind, "id": ident} for kind, ident in value]
        else:
            data = {"type": value[0], "id": value[1]}
        rels[name] = {
            "data": data,
            "links": {
                "self": f"{links}/relationships/{name}",
                "related": f"{links}/{name}",
            },
        }
    return {
        "type": resource_type,
        "id": resource_id,
        "attributes": attributes or {},
        "relationships": rels,
        "links": {"self": links},
    }


def document(
    data: Any, included: list[dict[str, Any]] | None = None, next_url: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"data": data, "links": {"self": "https://example.invalid"}}
    if included is not None:
        body["included"] = included
    if next_url is not None:
        body["links"]["next"] = next_url
    if isinstance(data, list):
        body["meta"] = {"paging": {"total": len(data), "limit": 200}}
    return body


def error_entry(
    status: int, code: str, detail: str, *, pointer: str | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": f"err-{code.lower()}",
        "status": str(status),
        "code": code,
        "title": detail.split(".")[0],
        "detail": detail,
    }
    if pointer is not None:
        entry["source"] = {"pointer": pointer}
    return entry


def error_body(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"errors": list(entries)}

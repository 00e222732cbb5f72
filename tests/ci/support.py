"""Helpers shared by the CI helper tests: sample files and event documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_SAMPLES = ROOT / "relay" / "data" / "webhooks"
API_FIXTURES = ROOT / "tests" / "fixtures" / "api"

ASC_URL = "http://127.0.0.1:9/asc"
GITHUB_URL = "http://127.0.0.1:9/github"
JIRA_URL = "http://127.0.0.1:9/jira"
SLACK_API_URL = "http://127.0.0.1:9/slack/api"
SLACK_WEBHOOK_URL = "http://127.0.0.1:9/slack/services/T000/B000/s3cr3tWebhookPath"

#: Distinctive fake secrets; tests assert that none of them is ever printed.
SECRETS = {
    "GITHUB_TOKEN": "ghs_fakeGithubTokenValue123",
    "JIRA_API_TOKEN": "fake-jira-api-token-456",
    "SLACK_BOT_TOKEN": "xoxb-fake-slack-bot-token-789",
    "SLACK_WEBHOOK_URL": SLACK_WEBHOOK_URL,
}


def sample_paths() -> list[Path]:
    """Return every raw webhook body in the relay's samples, headers excluded."""
    return sorted(
        path
        for path in WEBHOOK_SAMPLES.glob("*.json")
        if not path.name.endswith(".headers.json")
    )


def load_sample(name: str) -> dict[str, Any]:
    return json.loads((WEBHOOK_SAMPLES / name).read_text(encoding="utf-8"))


def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((API_FIXTURES / name).read_text(encoding="utf-8"))


def client_payload(
    event: str,
    resource_type: str,
    resource_id: str,
    *,
    old_state: str | None = None,
    new_state: str | None = None,
    timestamp: str | None = None,
    history: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Build a client_payload in the shape the relay sends."""
    return {
        "event": event,
        "id": f"evt-{resource_id}",
        "old_state": old_state,
        "new_state": new_state,
        "resource": {
            "type": resource_type,
            "id": resource_id,
            "url": f"https://api.appstoreconnect.apple.com/v1/{resource_type}/{resource_id}",
        },
        "timestamp": timestamp,
        "route": "default",
        "relay": {
            "received_at": "2026-12-04T10:00:00Z",
            "request_uuid": "7b64238e-16db-31a0-5fd5-944a7c61b45f",
            "history": history or [],
        },
    }


def github_event(payload: dict[str, Any]) -> dict[str, Any]:
    """Wrap a client_payload the way GitHub writes $GITHUB_EVENT_PATH."""
    return {
        "action": "asc-webhook",
        "client_payload": payload,
        "repository": {"full_name": "acme/app"},
    }


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def no_sleep(seconds: float) -> None:
    """Stand in for time.sleep so retries run instantly."""


def make_asc(base_url: str = ASC_URL) -> Any:
    """Return an App Store Connect client with a throwaway P-256 key."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from ci.asc import AppStoreConnect
    from ci.credentials import AscCredentials

    credentials = AscCredentials(
        key_id="ABCDE12345",
        issuer_id="57246542-96fe-1a63-e053-0824d011072a",
        private_key=ec.generate_private_key(ec.SECP256R1()),
    )
    return AppStoreConnect(credentials, base_url=base_url, sleep=no_sleep)


def version_document(
    version_id: str = "ver-1",
    *,
    version_string: str = "1.101.0",
    state: str = "READY_FOR_DISTRIBUTION",
    app_name: str = "Acme & Co",
    build_number: str = "42",
) -> dict[str, Any]:
    """Return the real appStoreVersions fixture with its app and build included."""
    document = load_fixture("app-store-version-ready-for-sale.json")
    data = document["data"]
    data["id"] = version_id
    data["attributes"]["versionString"] = version_string
    data["attributes"]["appVersionState"] = state
    data["relationships"]["app"] = {"data": {"type": "apps", "id": "app-1"}}
    data["relationships"]["build"]["data"] = {"type": "builds", "id": "build-1"}
    document["included"] = [
        {
            "type": "apps",
            "id": "app-1",
            "attributes": {"name": app_name, "bundleId": "com.acme.app", "sku": "ACME"},
        },
        {
            "type": "builds",
            "id": "build-1",
            "attributes": {"version": build_number, "processingState": "VALID"},
        },
    ]
    return document


def http(name: str) -> Any:
    """Return an HttpClient that retries without sleeping."""
    from ci.http import HttpClient

    return HttpClient(name, sleep=no_sleep)

"""Tests for reading GitHub event files, replays and raw webhook bodies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ci.errors import ConfigError
from ci.event import (
    AscEvent,
    event_from_document,
    event_from_webhook_body,
    load_event_file,
    load_payload_file,
)
from tests.ci.support import (
    WEBHOOK_SAMPLES,
    client_payload,
    github_event,
    load_sample,
    write_json,
)


def test_webhook_body_app_version_sample() -> None:
    event = event_from_webhook_body(
        load_sample("app-version-ready-for-distribution.json")
    )
    assert event.type == "appStoreVersionAppVersionStateUpdated"
    assert event.old_state == "PENDING_DEVELOPER_RELEASE"
    assert event.new_state == "READY_FOR_DISTRIBUTION"
    assert event.resource_type == "appStoreVersions"
    assert event.resource_id == "xxx-xx-xx-xx-xxx"
    assert event.resource_url == (
        "https://api.appstoreconnect.apple.com/v1/appStoreVersions/xxx-xx-xx-xx-xxx"
    )
    assert event.timestamp == "2025-12-23T06:03:50.925Z"


def test_webhook_body_build_upload_sample() -> None:
    event = event_from_webhook_body(load_sample("build-upload-failed.json"))
    assert event.type == "buildUploadStateUpdated"
    assert event.old_state == "PROCESSING"
    assert event.new_state == "FAILED"
    assert event.timestamp is None


def test_webhook_body_ping_has_no_resource() -> None:
    event = event_from_webhook_body(load_sample("webhook-ping-created.json"))
    assert event.type == "webhookPingCreated"
    assert event.resource_id is None
    assert event.resource_url is None
    assert event.new_state is None


def test_webhook_body_beta_state_names() -> None:
    body = {
        "data": {
            "type": "buildBetaDetailExternalBuildStateUpdated",
            "id": "4a9eacca",
            "version": 1,
            "attributes": {
                "newExternalBuildState": "BETA_APPROVED",
                "oldExternalBuildState": "IN_BETA_REVIEW",
                "timestamp": "2025-04-16T05:00:52.745Z",
            },
            "relationships": {
                "instance": {"data": {"type": "buildBetaDetails", "id": "bbd-1"}}
            },
        }
    }
    event = event_from_webhook_body(body)
    assert event.old_state == "IN_BETA_REVIEW"
    assert event.new_state == "BETA_APPROVED"
    assert event.resource_id == "bbd-1"
    # Apple's example has no links.self, so the URL is built from type and id.
    assert event.resource_url == (
        "https://api.appstoreconnect.apple.com/v1/buildBetaDetails/bbd-1"
    )


def test_webhook_body_background_asset_instance() -> None:
    body = {
        "data": {
            "type": "backgroundAssetVersionStateUpdated",
            "id": "e1",
            "attributes": {
                "timestamp": "2025-07-10T22:35:02.541411Z",
                "newState": "COMPLETE",
                "oldState": "PROCESSING",
            },
            "relationships": {
                "instance": {
                    "id": "7012",
                    "type": "backgroundAssetVersions",
                    "links": {
                        "self": "https://api.appstoreconnect.apple.com/v1/backgroundAssetVersions/7012"
                    },
                }
            },
        }
    }
    event = event_from_webhook_body(body)
    assert event.resource_type == "backgroundAssetVersions"
    assert event.resource_id == "7012"
    assert event.new_state == "COMPLETE"


def test_event_file_repository_dispatch(tmp_path: Path) -> None:
    history = [
        {
            "event": "appStoreVersionAppVersionStateUpdated",
            "old_state": "READY_FOR_REVIEW",
            "new_state": "WAITING_FOR_REVIEW",
            "timestamp": "2025-12-18T03:41:21.179Z",
            "received_at": "2025-12-18T03:41:22Z",
        }
    ]
    payload = client_payload(
        "appStoreVersionAppVersionStateUpdated",
        "appStoreVersions",
        "v-1",
        old_state="WAITING_FOR_REVIEW",
        new_state="REJECTED",
        timestamp="2025-12-19T03:41:21Z",
        history=history,
    )
    path = write_json(tmp_path / "event.json", github_event(payload))
    event = load_event_file(path)
    assert event.new_state == "REJECTED"
    assert event.resource_id == "v-1"
    assert event.request_uuid == "7b64238e-16db-31a0-5fd5-944a7c61b45f"
    assert len(event.history) == 1
    assert event.history[0].new_state == "WAITING_FOR_REVIEW"
    assert event.history[0].timestamp == "2025-12-18T03:41:21.179Z"


def test_event_file_client_payload_without_payload_key(tmp_path: Path) -> None:
    payload = client_payload(
        "buildUploadStateUpdated", "buildUploads", "bu-1", new_state="COMPLETE"
    )
    payload.pop("timestamp")
    path = write_json(tmp_path / "event.json", github_event(payload))
    event = load_event_file(path)
    assert event.payload is None
    assert event.timestamp is None


@pytest.mark.parametrize(
    "sample", ["build-upload-complete.json", "app-version-in-review.json"]
)
def test_replay_accepts_raw_body(sample: str) -> None:
    raw_text = (WEBHOOK_SAMPLES / sample).read_text()
    event = event_from_document({"inputs": {"payload": raw_text}})
    assert event == event_from_webhook_body(json.loads(raw_text))


def test_replay_accepts_client_payload() -> None:
    payload = client_payload(
        "buildUploadStateUpdated", "buildUploads", "bu-1", new_state="FAILED"
    )
    event = event_from_document({"inputs": {"payload": json.dumps(payload)}})
    assert event.type == "buildUploadStateUpdated"
    assert event.resource_id == "bu-1"
    assert event.new_state == "FAILED"


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ({"inputs": {"payload": "{not json"}}, "not valid JSON"),
        ({"inputs": {"payload": ""}}, "inputs.payload is empty"),
        ({"inputs": {"payload": "[1]"}}, "must be a JSON object"),
        ({"action": "opened", "pull_request": {}}, "not an App Store Connect event"),
        ([1, 2], "expected a JSON object"),
        ({"client_payload": {"id": "x"}}, "no 'event'"),
    ],
)
def test_event_document_rejected(document: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        event_from_document(document, source="event.json")
    assert fragment in str(caught.value)


def test_payload_file_raw_sample() -> None:
    event = load_payload_file(WEBHOOK_SAMPLES / "app-version-developer-rejected.json")
    assert isinstance(event, AscEvent)
    assert event.new_state == "DEVELOPER_REJECTED"


def test_payload_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_payload_file(tmp_path / "missing.json")
    assert "not found" in str(caught.value)


def test_event_file_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text('{"client_payload": ')
    with pytest.raises(ConfigError) as caught:
        load_event_file(path)
    assert "line 1" in str(caught.value)

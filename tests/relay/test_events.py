from __future__ import annotations

import json

import pytest

from relay.events import (
    MAX_PAYLOAD_CHARS,
    Event,
    InvalidPayload,
    Resource,
    build_client_payload,
    dedupe_key,
    parse_event,
    payload_size,
)
from relay.samples import SAMPLE_NAMES, load_sample

STATE_SAMPLES = {
    "build-upload-complete": ("buildUploadStateUpdated", "PROCESSING", "COMPLETE"),
    "build-upload-failed": ("buildUploadStateUpdated", "PROCESSING", "FAILED"),
    "app-version-prepare-for-submission": (
        "appStoreVersionAppVersionStateUpdated",
        "DEVELOPER_REJECTED",
        "PREPARE_FOR_SUBMISSION",
    ),
    "app-version-ready-for-review": (
        "appStoreVersionAppVersionStateUpdated",
        "PREPARE_FOR_SUBMISSION",
        "READY_FOR_REVIEW",
    ),
    "app-version-waiting-for-review": (
        "appStoreVersionAppVersionStateUpdated",
        "READY_FOR_REVIEW",
        "WAITING_FOR_REVIEW",
    ),
    "app-version-developer-rejected": (
        "appStoreVersionAppVersionStateUpdated",
        "WAITING_FOR_REVIEW",
        "DEVELOPER_REJECTED",
    ),
    "app-version-in-review": (
        "appStoreVersionAppVersionStateUpdated",
        "WAITING_FOR_REVIEW",
        "IN_REVIEW",
    ),
    "app-version-pending-developer-release": (
        "appStoreVersionAppVersionStateUpdated",
        "IN_REVIEW",
        "PENDING_DEVELOPER_RELEASE",
    ),
    "app-version-ready-for-distribution": (
        "appStoreVersionAppVersionStateUpdated",
        "PENDING_DEVELOPER_RELEASE",
        "READY_FOR_DISTRIBUTION",
    ),
}


def test_every_bundled_sample_has_an_expectation() -> None:
    assert set(SAMPLE_NAMES) == set(STATE_SAMPLES) | {"webhook-ping-created"}


@pytest.mark.parametrize("name", sorted(STATE_SAMPLES))
def test_parse_event_reads_state_samples(name: str) -> None:
    event, _ = parse_event(load_sample(name))
    event_type, old_state, new_state = STATE_SAMPLES[name]
    assert event.type == event_type
    assert event.old_state == old_state
    assert event.new_state == new_state
    assert event.id == "xxx-xx-xx-xx-xxx"
    assert event.resource is not None
    assert event.resource.url.startswith("https://api.appstoreconnect.apple.com/v1/")


def test_parse_event_reads_ping() -> None:
    event, document = parse_event(load_sample("webhook-ping-created"))
    assert event.type == "webhookPingCreated"
    assert event.id == "65726e27-cb79-47f2-a3e4-c8ced9f356e8"
    assert event.resource is None
    assert event.old_state is None
    assert event.timestamp == "2025-12-26T15:47:38.472168681Z"
    assert document["data"]["version"] == 1


def test_parse_event_build_upload_has_no_timestamp() -> None:
    event, _ = parse_event(load_sample("build-upload-complete"))
    assert event.timestamp is None


def test_parse_event_reads_external_beta_state() -> None:
    body = json.dumps(
        {
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
                    "instance": {"data": {"type": "buildBetaDetails", "id": "ad7e"}}
                },
            }
        }
    ).encode()
    event, _ = parse_event(body)
    assert (event.old_state, event.new_state) == ("IN_BETA_REVIEW", "BETA_APPROVED")
    assert event.resource == Resource(
        "buildBetaDetails",
        "ad7e",
        "https://api.appstoreconnect.apple.com/v1/buildBetaDetails/ad7e",
    )


def test_parse_event_background_asset_form() -> None:
    body = json.dumps(
        {
            "data": {
                "type": "backgroundAssetVersionStateUpdated",
                "id": "e1",
                "attributes": {
                    "timestamp": "2025-07-10T22:35:02.541411Z",
                    "newState": "FAILED",
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
    ).encode()
    event, _ = parse_event(body)
    assert event.resource == Resource(
        "backgroundAssetVersions",
        "7012",
        "https://api.appstoreconnect.apple.com/v1/backgroundAssetVersions/7012",
    )
    assert event.new_state == "FAILED"


def test_parse_event_falls_back_to_other_relationship() -> None:
    body = json.dumps(
        {
            "data": {
                "type": "alternativeDistributionTerritoryAvailabilityUpdated",
                "id": "e2",
                "attributes": {
                    "available": True,
                    "territories": ["FRA"],
                    "appId": "123",
                },
                "relationships": {
                    "marketplaceApp": {"data": {"type": "apps", "id": "123"}}
                },
            }
        }
    ).encode()
    event, _ = parse_event(body)
    assert event.resource is not None
    assert event.resource.type == "apps"


def test_parse_event_builds_url_when_links_missing() -> None:
    body = json.dumps(
        {
            "data": {
                "type": "appStoreVersionAppVersionStateUpdated",
                "id": "e3",
                "attributes": {
                    "newValue": "READY_FOR_REVIEW",
                    "oldValue": "PREPARE_FOR_SUBMISSION",
                },
                "relationships": {
                    "instance": {"data": {"type": "appStoreVersions", "id": "a/b"}}
                },
            }
        }
    ).encode()
    event, _ = parse_event(body)
    assert event.resource is not None
    assert (
        event.resource.url
        == "https://api.appstoreconnect.apple.com/v1/appStoreVersions/a%2Fb"
    )


def test_parse_event_ignores_non_https_self_link() -> None:
    body = json.dumps(
        {
            "data": {
                "type": "x",
                "id": "e4",
                "relationships": {
                    "instance": {
                        "data": {"type": "builds", "id": "9"},
                        "links": {"self": "javascript:alert(1)"},
                    }
                },
            }
        }
    ).encode()
    event, _ = parse_event(body)
    assert event.resource is not None
    assert event.resource.url == "https://api.appstoreconnect.apple.com/v1/builds/9"


def test_parse_event_accepts_unknown_event_type() -> None:
    event, _ = parse_event(
        b'{"data": {"type": "somethingAppleAddsIn2027", "id": "n1"}}'
    )
    assert event.type == "somethingAppleAddsIn2027"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[]", "not a JSON object"),
        (b'"data"', "not a JSON object"),
        (b"{}", "no data object"),
        (b'{"data": []}', "no data object"),
        (b'{"data": {}}', "no data.type"),
        (b'{"data": {"type": 5}}', "no data.type"),
        (b'{"data": {"type": "  "}}', "no data.type"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
    ids=[
        "empty",
        "truncated",
        "binary",
        "array",
        "string",
        "no-data",
        "data-list",
        "no-type",
        "numeric-type",
        "blank-type",
        "deep-nesting",
    ],
)
def test_parse_event_rejects(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidPayload) as caught:
        parse_event(body)
    assert reason in str(caught.value)


def test_parse_event_cuts_huge_strings() -> None:
    body = json.dumps({"data": {"type": "t" * 5000, "id": "i" * 5000}}).encode()
    event, _ = parse_event(body)
    assert len(event.type) == 512
    assert event.id is not None and len(event.id) == 512


def test_dedupe_key_uses_event_id() -> None:
    event, _ = parse_event(b'{"data": {"type": "x", "id": "abc"}}')
    assert dedupe_key(event, b"ignored") == "id:abc"


def test_dedupe_key_hashes_body_without_id() -> None:
    event, _ = parse_event(b'{"data": {"type": "x"}}')
    first = dedupe_key(event, b'{"data": {"type": "x"}}')
    second = dedupe_key(event, b'{"data": {"type": "x"} }')
    assert first.startswith("sha256:")
    assert first != second


def _event() -> Event:
    return Event(
        type="appStoreVersionAppVersionStateUpdated",
        id="e1",
        old_state="IN_REVIEW",
        new_state="PENDING_DEVELOPER_RELEASE",
        resource=Resource(
            "appStoreVersions", "v1", "https://example.test/v1/appStoreVersions/v1"
        ),
        timestamp="2025-12-18T22:34:18.785Z",
    )


def test_build_client_payload_has_documented_keys() -> None:
    document = {"data": {"type": "x"}}
    payload = build_client_payload(
        _event(),
        route="default",
        relay={"received_at": "2026-01-01T00:00:00.000Z", "request_uuid": "u"},
        history=[{"event": "x", "old_state": "A", "new_state": "B"}],
        document=document,
    )
    assert set(payload) == {
        "event",
        "id",
        "old_state",
        "new_state",
        "resource",
        "timestamp",
        "route",
        "relay",
        "payload",
    }
    assert len(payload) <= 10
    assert payload["resource"] == {
        "type": "appStoreVersions",
        "id": "v1",
        "url": "https://example.test/v1/appStoreVersions/v1",
    }
    assert payload["relay"]["history"] == [
        {"event": "x", "old_state": "A", "new_state": "B"}
    ]
    assert payload["payload"] == document
    assert "truncated" not in payload["relay"]


def test_build_client_payload_drops_body_first() -> None:
    document = {"data": {"type": "x", "attributes": {"blob": "x" * 70_000}}}
    payload = build_client_payload(
        _event(),
        route="default",
        relay={},
        history=[{"event": "old"}],
        document=document,
    )
    assert "payload" not in payload
    assert payload["relay"]["truncated"] == ["payload"]
    assert payload["relay"]["history"] == [{"event": "old"}]
    assert payload_size(payload) <= MAX_PAYLOAD_CHARS


def test_build_client_payload_drops_oldest_history_next() -> None:
    history = [{"event": f"entry-{index}", "note": "n" * 1000} for index in range(100)]
    payload = build_client_payload(
        _event(),
        route="default",
        relay={},
        history=history,
        document={"data": {}},
    )
    kept = payload["relay"]["history"]
    assert payload["relay"]["truncated"] == ["payload", "history"]
    assert payload["relay"]["history_dropped"] == 100 - len(kept)
    assert kept[-1]["event"] == "entry-99"
    assert kept[0]["event"] != "entry-0"
    assert payload_size(payload) <= MAX_PAYLOAD_CHARS


def test_payload_size_counts_escaped_non_ascii() -> None:
    assert payload_size({"a": "é"}) == len('{"a":"\\u00e9"}')


@pytest.mark.parametrize(
    "body",
    [
        b'{"data": {"type": "x", "v": NaN}}',
        b'{"data": {"type": "x", "v": Infinity}}',
        b'{"data": {"type": "x", "v": 1e400}}',
    ],
    ids=["nan", "infinity", "overflow"],
)
def test_parse_event_rejects_non_json_numbers(body: bytes) -> None:
    with pytest.raises(InvalidPayload, match="not valid JSON"):
        parse_event(body)


def test_parse_event_long_ids_with_shared_prefix_differ() -> None:
    first, _ = parse_event(
        json.dumps({"data": {"type": "x", "id": "p" * 600 + "1"}}).encode()
    )
    second, _ = parse_event(
        json.dumps({"data": {"type": "x", "id": "p" * 600 + "2"}}).encode()
    )
    assert first.id != second.id
    assert first.id is not None and len(first.id) == 512
    assert dedupe_key(first, b"") != dedupe_key(second, b"")

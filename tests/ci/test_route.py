"""Tests for mapping App Store Connect events to automations."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci.event import ACTIONS, AscEvent, event_from_webhook_body, route
from ci.settings import Settings, parse_settings
from tests.ci.support import load_sample, sample_paths

EXPECTED_SAMPLE_ACTIONS = {
    "app-version-developer-rejected.json": "notify-review-state",
    "app-version-in-review.json": "none",
    "app-version-pending-developer-release.json": "none",
    "app-version-prepare-for-submission.json": "none",
    "app-version-ready-for-distribution.json": "release",
    "app-version-ready-for-review.json": "none",
    "app-version-waiting-for-review.json": "none",
    "build-upload-complete.json": "submit-for-review",
    "build-upload-failed.json": "notify-build-failed",
    "webhook-ping-created.json": "none",
}


def test_route_table_covers_every_sample() -> None:
    names = {path.name for path in sample_paths()}
    assert names == set(EXPECTED_SAMPLE_ACTIONS)


@pytest.mark.parametrize("path", sample_paths(), ids=lambda path: path.name)
def test_route_sample(path: Path) -> None:
    event = event_from_webhook_body(load_sample(path.name))
    chosen = route(event, Settings())
    assert chosen.action == EXPECTED_SAMPLE_ACTIONS[path.name]
    assert chosen.action in ACTIONS


@pytest.mark.parametrize(
    ("event_type", "state", "action"),
    [
        ("buildUploadStateUpdated", "COMPLETE", "submit-for-review"),
        ("buildUploadStateUpdated", "FAILED", "notify-build-failed"),
        ("buildUploadStateUpdated", "PROCESSING", "none"),
        ("appStoreVersionAppVersionStateUpdated", "READY_FOR_DISTRIBUTION", "release"),
        ("appStoreVersionAppVersionStateUpdated", "REJECTED", "notify-review-state"),
        (
            "appStoreVersionAppVersionStateUpdated",
            "METADATA_REJECTED",
            "notify-review-state",
        ),
        (
            "appStoreVersionAppVersionStateUpdated",
            "INVALID_BINARY",
            "notify-review-state",
        ),
        ("appStoreVersionAppVersionStateUpdated", "IN_REVIEW", "none"),
        ("appStoreVersionAppVersionStateUpdated", "SOME_FUTURE_STATE", "none"),
        (
            "buildBetaDetailExternalBuildStateUpdated",
            "BETA_APPROVED",
            "notify-beta-state",
        ),
        (
            "buildBetaDetailExternalBuildStateUpdated",
            "BETA_REJECTED",
            "notify-beta-state",
        ),
        ("buildBetaDetailExternalBuildStateUpdated", "IN_BETA_REVIEW", "none"),
        ("betaFeedbackScreenshotSubmissionCreated", None, "notify-feedback"),
        ("betaFeedbackCrashSubmissionCreated", None, "notify-feedback"),
        ("webhookPingCreated", None, "none"),
        ("backgroundAssetVersionStateUpdated", "COMPLETE", "none"),
        ("somethingNewFromApple", "X", "none"),
    ],
)
def test_route_each_action(event_type: str, state: str | None, action: str) -> None:
    event = AscEvent(type=event_type, new_state=state, resource_id="r-1")
    assert route(event, Settings()).action == action


def test_route_actions_all_reachable() -> None:
    reached = set()
    for event_type, state in [
        ("buildUploadStateUpdated", "COMPLETE"),
        ("buildUploadStateUpdated", "FAILED"),
        ("appStoreVersionAppVersionStateUpdated", "REJECTED"),
        ("appStoreVersionAppVersionStateUpdated", "READY_FOR_DISTRIBUTION"),
        ("buildBetaDetailExternalBuildStateUpdated", "BETA_APPROVED"),
        ("betaFeedbackCrashSubmissionCreated", None),
        ("webhookPingCreated", None),
    ]:
        reached.add(
            route(
                AscEvent(type=event_type, new_state=state, resource_id="r1"), Settings()
            ).action
        )
    assert reached == set(ACTIONS)


def test_route_submit_disabled() -> None:
    settings = parse_settings("submit_for_review:\n  enabled: false\n")
    event = event_from_webhook_body(load_sample("build-upload-complete.json"))
    chosen = route(event, settings)
    assert chosen.action == "none"
    assert "submit_for_review.enabled" in chosen.reason


def test_route_release_disabled() -> None:
    settings = parse_settings("release:\n  enabled: false\n")
    event = event_from_webhook_body(
        load_sample("app-version-ready-for-distribution.json")
    )
    assert route(event, settings).action == "none"


def test_route_notify_states_from_settings() -> None:
    settings = parse_settings("slack:\n  notify_states: [IN_REVIEW]\n")
    in_review = event_from_webhook_body(load_sample("app-version-in-review.json"))
    rejected = event_from_webhook_body(
        load_sample("app-version-developer-rejected.json")
    )
    assert route(in_review, settings).action == "notify-review-state"
    assert route(rejected, settings).action == "none"


def test_route_beta_states_from_settings() -> None:
    settings = parse_settings("slack:\n  beta_notify_states: [IN_BETA_REVIEW]\n")
    event = AscEvent(
        type="buildBetaDetailExternalBuildStateUpdated",
        new_state="IN_BETA_REVIEW",
        resource_id="d1",
    )
    assert route(event, settings).action == "notify-beta-state"


def test_route_feedback_disabled() -> None:
    settings = parse_settings("slack:\n  notify_feedback: false\n")
    event = AscEvent(type="betaFeedbackScreenshotSubmissionCreated", resource_id="f")
    assert route(event, settings).action == "none"


def test_route_ping_logs_connected(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    event = event_from_webhook_body(load_sample("webhook-ping-created.json"))
    chosen = route(event, Settings())
    assert "relay connected" in chosen.reason
    assert "relay connected" in caplog.text


def test_route_event_without_resource_is_none() -> None:
    from ci.event import NONE

    event = event_from_webhook_body(
        {
            "data": {
                "type": "buildUploadStateUpdated",
                "id": "e1",
                "attributes": {"newState": "COMPLETE"},
            }
        }
    )
    chosen = route(event, parse_settings(""))
    assert chosen.action == NONE
    assert "names no resource id" in chosen.reason

"""Tests for the Slack notifications: build failures, review and beta states,
TestFlight feedback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from responses import matchers

from ci.event import AscEvent, HistoryEntry
from ci.notify import (
    humanize_seconds,
    itms_code,
    notify_beta_state,
    notify_build_failed,
    notify_feedback,
    notify_review_state,
    parse_timestamp,
    review_duration,
)
from ci.settings import Settings, parse_settings
from ci.slack import SECTION_TEXT_LIMIT, TRUNCATION_MARKER, Slack
from tests.ci.support import (
    ASC_URL,
    SLACK_WEBHOOK_URL,
    http,
    load_fixture,
    make_asc,
    version_document,
)


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def slack() -> Slack:
    return Slack(webhook_url=SLACK_WEBHOOK_URL, http=http("slack"))


def posted(mocked: responses.RequestsMock) -> dict[str, Any]:
    body = mocked.calls[-1].request.body
    return json.loads(body)


def mock_slack(mocked: responses.RequestsMock) -> None:
    mocked.post(SLACK_WEBHOOK_URL, body="ok")


# Build failed


def test_build_failed_lists_itms_code(mocked: responses.RequestsMock) -> None:
    mocked.get(
        f"{ASC_URL}/v1/buildUploads/bu-1",
        json=load_fixture("build-upload-failed.json"),
        match=[matchers.query_param_matcher({"include": "build"})],
    )
    mock_slack(mocked)

    outcome = notify_build_failed(
        make_asc(), "bu-1", parse_settings("app_name: Acme\n"), slack()
    )

    assert [step.status for step in outcome.steps] == ["done"]
    assert outcome.outputs["error_codes"] == "ITMS-90683"
    assert outcome.outputs["version"] == "1.101.0"
    assert outcome.outputs["build_number"] == "3"
    message = json.dumps(posted(mocked), ensure_ascii=False)
    assert "Acme 1.101.0 (3)" in message
    assert "*Error ITMS-90683*" in message
    assert "NSMicrophoneUsageDescription" in message
    assert "IOS" in message


def test_build_failed_app_from_build(mocked: responses.RequestsMock) -> None:
    upload = load_fixture("build-upload-failed.json")
    upload["data"]["relationships"]["build"] = {"data": {"type": "builds", "id": "b-9"}}
    upload["data"]["attributes"]["state"]["warnings"] = [
        {"code": "90725", "description": "SDK version issue"}
    ]
    mocked.get(f"{ASC_URL}/v1/buildUploads/bu-1", json=upload)
    mocked.get(
        f"{ASC_URL}/v1/builds/b-9",
        json={
            "data": {
                "type": "builds",
                "id": "b-9",
                "attributes": {"version": "3"},
                "relationships": {"app": {"data": {"type": "apps", "id": "a-1"}}},
            },
            "included": [
                {"type": "apps", "id": "a-1", "attributes": {"name": "Widgets"}}
            ],
        },
        match=[matchers.query_param_matcher({"include": "app"})],
    )
    mock_slack(mocked)

    notify_build_failed(make_asc(), "bu-1", Settings(), slack())

    message = json.dumps(posted(mocked))
    assert "Widgets 1.101.0 (3)" in message
    assert "*Warning ITMS-90725*" in message


def test_build_failed_complete_upload_skipped(mocked: responses.RequestsMock) -> None:
    mocked.get(
        f"{ASC_URL}/v1/buildUploads/bu-1",
        json=load_fixture("build-upload-complete.json"),
    )
    outcome = notify_build_failed(make_asc(), "bu-1", Settings(), slack())
    assert [step.status for step in outcome.steps] == ["skipped"]
    assert "not FAILED" in outcome.steps[0].detail


def test_build_failed_without_slack_skipped(mocked: responses.RequestsMock) -> None:
    mocked.get(
        f"{ASC_URL}/v1/buildUploads/bu-1", json=load_fixture("build-upload-failed.json")
    )
    outcome = notify_build_failed(
        make_asc(), "bu-1", parse_settings("app_name: A\n"), None
    )
    assert [step.status for step in outcome.steps] == ["skipped"]
    assert outcome.failed is False
    assert "SLACK_WEBHOOK_URL" in outcome.steps[0].detail


def test_build_failed_slack_error_fails(mocked: responses.RequestsMock) -> None:
    mocked.get(
        f"{ASC_URL}/v1/buildUploads/bu-1", json=load_fixture("build-upload-failed.json")
    )
    mocked.post(SLACK_WEBHOOK_URL, status=404, body="no_service")
    outcome = notify_build_failed(
        make_asc(), "bu-1", parse_settings("app_name: A\n"), slack()
    )
    assert outcome.failed is True
    assert "no_service" in outcome.steps[0].detail
    assert "s3cr3t" not in outcome.steps[0].detail


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("90683", "ITMS-90683"),
        (90683, "ITMS-90683"),
        ("ITMS-4238", "ITMS-4238"),
        ("STATE_ERROR", "STATE_ERROR"),
        (None, "unknown code"),
    ],
)
def test_itms_code(code: object, expected: str) -> None:
    assert itms_code(code) == expected


# Review state


def review_event(history: list[tuple[str, str | None, str | None]]) -> AscEvent:
    return AscEvent(
        type="appStoreVersionAppVersionStateUpdated",
        old_state="IN_REVIEW",
        new_state="REJECTED",
        resource_type="appStoreVersions",
        resource_id="ver-1",
        timestamp="2025-12-19T05:41:21.179Z",
        received_at="2025-12-19T05:41:22Z",
        history=tuple(
            HistoryEntry(
                "appStoreVersionAppVersionStateUpdated",
                None,
                state,
                timestamp,
                received,
            )
            for state, timestamp, received in history
        ),
    )


def test_review_state_includes_duration(mocked: responses.RequestsMock) -> None:
    mocked.get(
        f"{ASC_URL}/v1/appStoreVersions/ver-1",
        json=version_document(state="REJECTED"),
        match=[matchers.query_param_matcher({"include": "app,build"})],
    )
    mock_slack(mocked)
    event = review_event(
        [
            ("WAITING_FOR_REVIEW", "2025-12-18T03:41:21.179Z", None),
            ("IN_REVIEW", "2025-12-18T22:05:50.038Z", None),
        ]
    )

    outcome = notify_review_state(make_asc(), "ver-1", Settings(), slack(), event=event)

    message = json.dumps(posted(mocked))
    assert "Acme &amp; Co 1.101.0 (IOS): rejected" in message
    assert "Review took*\\n1 day 2 hours" in message
    assert outcome.outputs["review_seconds"] == str(26 * 3600)
    assert outcome.outputs["state"] == "REJECTED"


def test_review_state_without_history(mocked: responses.RequestsMock) -> None:
    mocked.get(
        f"{ASC_URL}/v1/appStoreVersions/ver-1",
        json=version_document(state="METADATA_REJECTED"),
    )
    mock_slack(mocked)
    outcome = notify_review_state(make_asc(), "ver-1", Settings(), slack())
    message = json.dumps(posted(mocked))
    assert "metadata rejected" in message
    assert "Review took" not in message
    assert "review_seconds" not in outcome.outputs


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        ([("WAITING_FOR_REVIEW", "2025-12-19T03:41:21.179Z", None)], 7200.0),
        ([("IN_REVIEW", None, "2025-12-19T05:11:21.179Z")], 1800.0),
        (
            [
                ("WAITING_FOR_REVIEW", "2025-12-01T00:00:00Z", None),
                ("DEVELOPER_REJECTED", "2025-12-02T00:00:00Z", None),
                ("WAITING_FOR_REVIEW", "2025-12-19T04:41:21.179Z", None),
            ],
            3600.0,
        ),
        ([("READY_FOR_REVIEW", "2025-12-19T03:41:21Z", None)], None),
        ([("WAITING_FOR_REVIEW", "2025-12-20T03:41:21Z", None)], None),
        ([], None),
    ],
)
def test_review_duration(
    history: list[tuple[str, str | None, str | None]], expected: float | None
) -> None:
    assert review_duration(review_event(history)) == expected


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "less than a minute"),
        (60, "1 minute"),
        (3599, "59 minutes"),
        (3600, "1 hour"),
        (3 * 3600 + 120, "3 hours 2 minutes"),
        (86400 + 7200 + 60, "1 day 2 hours"),
        (5 * 86400, "5 days"),
    ],
)
def test_humanize_seconds(seconds: float, text: str) -> None:
    assert humanize_seconds(seconds) == text


@pytest.mark.parametrize(
    "value",
    [
        "2025-12-26T15:47:38.472168681Z",
        "2025-04-16T05:00:52.745Z",
        "2025-12-05T14:30:45Z",
        "2025-12-15T19:12:55-08:00",
    ],
)
def test_parse_timestamp_apple_formats(value: str) -> None:
    parsed = parse_timestamp(value)
    assert parsed is not None
    assert parsed.tzinfo is not None


def test_parse_timestamp_invalid() -> None:
    assert parse_timestamp("yesterday") is None


# TestFlight


def beta_detail_document(state: str) -> dict[str, Any]:
    return {
        "data": {
            "type": "buildBetaDetails",
            "id": "bbd-1",
            "attributes": {
                "internalBuildState": "IN_BETA_TESTING",
                "externalBuildState": state,
            },
            "relationships": {"build": {"data": {"type": "builds", "id": "b-1"}}},
        },
        "included": [{"type": "builds", "id": "b-1", "attributes": {"version": "77"}}],
    }


def build_document() -> dict[str, Any]:
    return {
        "data": {
            "type": "builds",
            "id": "b-1",
            "attributes": {"version": "77"},
            "relationships": {
                "app": {"data": {"type": "apps", "id": "a-1"}},
                "preReleaseVersion": {
                    "data": {"type": "preReleaseVersions", "id": "p-1"}
                },
            },
        },
        "included": [
            {"type": "apps", "id": "a-1", "attributes": {"name": "Acme"}},
            {
                "type": "preReleaseVersions",
                "id": "p-1",
                "attributes": {"version": "2.0.0"},
            },
        ],
    }


@pytest.mark.parametrize(
    ("state", "phrase"),
    [
        ("BETA_APPROVED", "passed TestFlight beta review"),
        ("BETA_REJECTED", "was rejected in TestFlight beta review"),
    ],
)
def test_beta_state_message(
    mocked: responses.RequestsMock, state: str, phrase: str
) -> None:
    mocked.get(
        f"{ASC_URL}/v1/buildBetaDetails/bbd-1",
        json=beta_detail_document(state),
        match=[matchers.query_param_matcher({"include": "build"})],
    )
    mocked.get(
        f"{ASC_URL}/v1/builds/b-1",
        json=build_document(),
        match=[matchers.query_param_matcher({"include": "app,preReleaseVersion"})],
    )
    mock_slack(mocked)
    outcome = notify_beta_state(make_asc(), "bbd-1", Settings(), slack())
    message = json.dumps(posted(mocked))
    assert f"Acme 2.0.0 (77) {phrase}" in message
    assert outcome.outputs["state"] == state


def screenshot_document(email: str = "tester@example.test") -> dict[str, Any]:
    return {
        "data": {
            "type": "betaFeedbackScreenshotSubmissions",
            "id": "fs-1",
            "attributes": {
                "createdDate": "2025-05-08T01:29:36.16Z",
                "comment": 'The "Save" button <does nothing>\nSecond line & 🙂',
                "email": email,
                "deviceModel": "iPhone16,2",
                "osVersion": "18.4",
                "appPlatform": "IOS",
                "locale": "en-US",
                "batteryPercentage": 81,
                "buildBundleId": "com.acme.app",
                "screenshots": [
                    {
                        "url": "https://example.test/s1.png?sig=a|b",
                        "width": 1179,
                        "height": 2556,
                        "expirationDate": "2025-05-09T01:29:36Z",
                    }
                ],
            },
            "relationships": {
                "build": {"data": {"type": "builds", "id": "b-1"}},
                "tester": {"data": {"type": "betaTesters", "id": "t-1"}},
            },
        },
        "included": [
            {"type": "builds", "id": "b-1", "attributes": {"version": "77"}},
            {
                "type": "betaTesters",
                "id": "t-1",
                "attributes": {"firstName": "Jo", "lastName": "Doe", "email": email},
            },
        ],
    }


def test_screenshot_feedback_hides_tester(mocked: responses.RequestsMock) -> None:
    mocked.get(
        f"{ASC_URL}/v1/betaFeedbackScreenshotSubmissions/fs-1",
        json=screenshot_document(),
        match=[matchers.query_param_matcher({"include": "build,tester"})],
    )
    mock_slack(mocked)
    notify_feedback(make_asc(), Settings(), slack(), screenshot_id="fs-1")
    message = json.dumps(posted(mocked), ensure_ascii=False)
    assert "tester@example.test" not in message
    assert "Jo Doe" not in message
    assert (
        '>The \\"Save\\" button &lt;does nothing&gt;\\n>Second line &amp; 🙂' in message
    )
    assert "iPhone16,2" in message
    assert "18.4" in message
    assert "(77)" in message
    assert "<https://example.test/s1.png?sig=a%7Cb|Screenshot 1" in message


def test_screenshot_feedback_long_comment_cut(mocked: responses.RequestsMock) -> None:
    body = screenshot_document()
    comment = 'He said "it\'s broken"\nline two 🚀 & <x> ' + "🙂" * 5000
    body["data"]["attributes"]["comment"] = comment
    mocked.get(f"{ASC_URL}/v1/betaFeedbackScreenshotSubmissions/fs-1", json=body)
    mock_slack(mocked)

    outcome = notify_feedback(make_asc(), Settings(), slack(), screenshot_id="fs-1")

    raw = mocked.calls[-1].request.body
    message = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    sections = [
        block["text"]["text"]
        for block in message["blocks"]
        if block["type"] == "section" and "text" in block
    ]
    quoted = next(text for text in sections if "He said" in text)
    assert not outcome.failed
    assert quoted.startswith('>He said "it\'s broken"\n>line two 🚀 &amp; &lt;x&gt; ')
    assert quoted.endswith(TRUNCATION_MARKER)
    assert len(quoted) <= SECTION_TEXT_LIMIT
    assert all(len(text) <= SECTION_TEXT_LIMIT for text in sections)
    # A code point cut in half leaves a lone surrogate, which UTF-8 cannot encode.
    json.dumps(message, ensure_ascii=False).encode("utf-8")


def test_screenshot_feedback_shows_tester_when_allowed(
    mocked: responses.RequestsMock,
) -> None:
    mocked.get(
        f"{ASC_URL}/v1/betaFeedbackScreenshotSubmissions/fs-1",
        json=screenshot_document(),
    )
    mock_slack(mocked)
    settings = parse_settings("slack:\n  include_tester_email: true\n")
    notify_feedback(make_asc(), settings, slack(), screenshot_id="fs-1")
    message = json.dumps(posted(mocked))
    assert "Jo Doe &lt;tester@example.test&gt;" in message


def test_crash_feedback_quotes_log_head(mocked: responses.RequestsMock) -> None:
    document = screenshot_document()
    document["data"]["type"] = "betaFeedbackCrashSubmissions"
    document["data"]["id"] = "fc-1"
    del document["data"]["attributes"]["screenshots"]
    log_lines = [f"Thread 0 frame {number} <main> ```" for number in range(50)]
    mocked.get(
        f"{ASC_URL}/v1/betaFeedbackCrashSubmissions/fc-1",
        json=document,
        match=[matchers.query_param_matcher({"include": "build,tester"})],
    )
    mocked.get(
        f"{ASC_URL}/v1/betaFeedbackCrashSubmissions/fc-1/crashLog",
        json={
            "data": {
                "type": "betaCrashLogs",
                "id": "cl-1",
                "attributes": {"logText": "\n".join(log_lines)},
            }
        },
    )
    mock_slack(mocked)
    settings = parse_settings("slack:\n  crash_log_lines: 3\n")

    outcome = notify_feedback(make_asc(), settings, slack(), crash_id="fc-1")

    blocks = posted(mocked)["blocks"]
    log_block = blocks[-1]["text"]["text"]
    assert log_block.startswith("```\nThread 0 frame 0 &lt;main&gt;")
    assert "frame 2" in log_block
    assert "frame 3" not in log_block
    assert "47 more lines" in log_block
    assert log_block.count("```") == 2
    assert outcome.outputs["feedback_kind"] == "crash"


def test_crash_feedback_without_log(mocked: responses.RequestsMock) -> None:
    document = screenshot_document()
    document["data"]["type"] = "betaFeedbackCrashSubmissions"
    mocked.get(f"{ASC_URL}/v1/betaFeedbackCrashSubmissions/fc-1", json=document)
    mocked.get(
        f"{ASC_URL}/v1/betaFeedbackCrashSubmissions/fc-1/crashLog",
        status=404,
        json={
            "errors": [
                {
                    "status": "404",
                    "code": "NOT_FOUND",
                    "title": "The specified resource does not exist",
                }
            ]
        },
    )
    mock_slack(mocked)
    notify_feedback(make_asc(), Settings(), slack(), crash_id="fc-1")
    assert "No crash log is available" in json.dumps(posted(mocked))

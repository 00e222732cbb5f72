from __future__ import annotations

import copy
import logging
from typing import Any

import pytest
import responses
from responses import matchers

from ci.asc import AppStoreConnect
from ci.errors import ConfigError
from ci.outcome import Outcome
from ci.submit import SubmitOptions, submit_for_review
from tests.ci.conftest import (
    FakeClock,
    bearer_token,
    document,
    error_body,
    error_entry,
    load_fixture,
    resource,
    url,
)

APP = "6450000001"
UPLOAD = "bu-0001"
BUILD = "b-0001"
VERSION = "asv-0001"
VERSION_STRING = "1.101.0"
SUBMISSION = "rs-0001"

IN_FLIGHT = "WAITING_FOR_REVIEW,IN_REVIEW,UNRESOLVED_ISSUES"
DRAFT = "READY_FOR_REVIEW"
WRITES = {"POST", "PATCH", "DELETE"}


# Response builders in App Store Connect's shapes


def upload_body(
    state: str = "COMPLETE",
    build: str | None = BUILD,
    processing: str | None = "VALID",
    platform: str = "IOS",
) -> dict[str, Any]:
    """A build upload based on the real capture, with its build included."""
    body = copy.deepcopy(load_fixture("build-upload-complete.json"))
    data = body["data"]
    data["id"] = UPLOAD
    data["attributes"]["state"]["state"] = state
    data["attributes"]["platform"] = platform
    data["relationships"]["build"] = {
        "data": None if build is None else {"type": "builds", "id": build},
        "links": {"related": f"{data['links']['self']}/build"},
    }
    body["included"] = []
    if build is not None and processing is not None:
        body["included"].append(
            resource("builds", build, {"version": "1", "processingState": processing})
        )
    return body


def mock_upload(mock: responses.RequestsMock, **kwargs: Any) -> None:
    mock.get(
        url(f"/v1/buildUploads/{UPLOAD}"),
        json=upload_body(**kwargs),
        match=[matchers.query_param_matcher({"include": "build"})],
    )


def mock_build(mock: responses.RequestsMock, encryption: bool | None) -> None:
    build = resource(
        "builds",
        BUILD,
        {
            "version": "1",
            "processingState": "VALID",
            "usesNonExemptEncryption": encryption,
        },
        app=("apps", APP),
    )
    app = resource("apps", APP, {"name": "Demo", "bundleId": "com.example.demo"})
    mock.get(
        url(f"/v1/builds/{BUILD}"),
        json=document(build, [app]),
        match=[matchers.query_param_matcher({"include": "app"})],
    )


def version_resource(
    state: str = "PREPARE_FOR_SUBMISSION",
    build: str | None = None,
    platform: str = "IOS",
    version_id: str = VERSION,
) -> dict[str, Any]:
    return resource(
        "appStoreVersions",
        version_id,
        {
            "platform": platform,
            "versionString": VERSION_STRING,
            "appVersionState": state,
            "appStoreState": state,
            "releaseType": "MANUAL",
        },
        build=None if build is None else ("builds", build),
    )


def mock_versions(
    mock: responses.RequestsMock,
    versions: list[dict[str, Any]],
    platform: str = "IOS",
) -> None:
    included = [
        resource("builds", item["relationships"]["build"]["data"]["id"])
        for item in versions
        if item["relationships"]["build"]["data"]
    ]
    mock.get(
        url(f"/v1/apps/{APP}/appStoreVersions"),
        json=document(versions, included),
        match=[
            matchers.query_param_matcher(
                {
                    "filter[platform]": platform,
                    "filter[versionString]": VERSION_STRING,
                    "include": "build",
                    "limit": "200",
                }
            )
        ],
    )


def submission_resource(
    submission_id: str, state: str, version_ids: list[str | None]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A review submission and its included items, one per version id."""
    items = []
    for index, version_id in enumerate(version_ids):
        relationships: dict[str, Any] = {}
        if version_id is None:
            relationships["appEvent"] = ("appEvents", f"event-{index}")
        else:
            relationships["appStoreVersion"] = ("appStoreVersions", version_id)
        items.append(
            resource(
                "reviewSubmissionItems",
                f"{submission_id}-item-{index}",
                {"state": "READY_FOR_REVIEW"},
                **relationships,
            )
        )
    submission = resource(
        "reviewSubmissions",
        submission_id,
        {"platform": "IOS", "state": state, "submittedDate": None},
        items=[("reviewSubmissionItems", item["id"]) for item in items],
    )
    return submission, items


def mock_submissions(
    mock: responses.RequestsMock,
    states: str,
    submissions: list[tuple[dict[str, Any], list[dict[str, Any]]]],
    platform: str = "IOS",
) -> None:
    data = [submission for submission, _ in submissions]
    included = [item for _, items in submissions for item in items]
    mock.get(
        url(f"/v1/apps/{APP}/reviewSubmissions"),
        json=document(data, included),
        match=[
            matchers.query_param_matcher(
                {
                    "filter[platform]": platform,
                    "filter[state]": states,
                    "include": "items",
                    "limit": "200",
                }
            )
        ],
    )


def mock_create_submission(mock: responses.RequestsMock, platform: str = "IOS") -> None:
    mock.post(
        url("/v1/reviewSubmissions"),
        status=201,
        json=document(resource("reviewSubmissions", SUBMISSION, {"state": DRAFT})),
        match=[
            matchers.json_params_matcher(
                {
                    "data": {
                        "type": "reviewSubmissions",
                        "attributes": {"platform": platform},
                        "relationships": {"app": {"data": {"type": "apps", "id": APP}}},
                    }
                }
            )
        ],
    )


def mock_add_item(
    mock: responses.RequestsMock,
    submission_id: str = SUBMISSION,
    version_id: str = VERSION,
) -> None:
    mock.post(
        url("/v1/reviewSubmissionItems"),
        status=201,
        json=document(resource("reviewSubmissionItems", "item-new")),
        match=[
            matchers.json_params_matcher(
                {
                    "data": {
                        "type": "reviewSubmissionItems",
                        "relationships": {
                            "reviewSubmission": {
                                "data": {
                                    "type": "reviewSubmissions",
                                    "id": submission_id,
                                }
                            },
                            "appStoreVersion": {
                                "data": {"type": "appStoreVersions", "id": version_id}
                            },
                        },
                    }
                }
            )
        ],
    )


def mock_submit(mock: responses.RequestsMock, submission_id: str = SUBMISSION) -> None:
    mock.patch(
        url(f"/v1/reviewSubmissions/{submission_id}"),
        json=document(
            resource(
                "reviewSubmissions", submission_id, {"state": "WAITING_FOR_REVIEW"}
            )
        ),
        match=[
            matchers.json_params_matcher(
                {
                    "data": {
                        "type": "reviewSubmissions",
                        "id": submission_id,
                        "attributes": {"submitted": True},
                    }
                }
            )
        ],
    )


def mock_attach(mock: responses.RequestsMock, version_id: str = VERSION) -> None:
    mock.patch(
        url(f"/v1/appStoreVersions/{version_id}/relationships/build"),
        status=204,
        match=[matchers.json_params_matcher({"data": {"type": "builds", "id": BUILD}})],
    )


def steps(outcome: Outcome) -> dict[str, str]:
    return {step.name: step.status for step in outcome.steps}


def detail(outcome: Outcome, name: str) -> str:
    return next(step.detail for step in outcome.steps if step.name == name)


def run(
    asc: AppStoreConnect, clock: FakeClock, upload_id: str = UPLOAD, **options: Any
) -> Outcome:
    options.setdefault("uses_non_exempt_encryption", False)
    return submit_for_review(asc, upload_id, SubmitOptions(**options), clock=clock.time)


# Full flows


def test_submit_fresh_version_end_to_end(
    asc: AppStoreConnect,
    clock: FakeClock,
    ordered: responses.RequestsMock,
    private_key_pem: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    mock_upload(ordered)
    mock_build(ordered, encryption=None)
    mock_versions(ordered, [])
    ordered.post(
        url("/v1/appStoreVersions"),
        status=201,
        json=document(version_resource()),
        match=[
            matchers.json_params_matcher(
                {
                    "data": {
                        "type": "appStoreVersions",
                        "attributes": {
                            "platform": "IOS",
                            "versionString": VERSION_STRING,
                        },
                        "relationships": {"app": {"data": {"type": "apps", "id": APP}}},
                    }
                }
            )
        ],
    )
    mock_attach(ordered)
    ordered.patch(
        url(f"/v1/builds/{BUILD}"),
        json=document(resource("builds", BUILD, {"usesNonExemptEncryption": False})),
        match=[
            matchers.json_params_matcher(
                {
                    "data": {
                        "type": "builds",
                        "id": BUILD,
                        "attributes": {"usesNonExemptEncryption": False},
                    }
                }
            )
        ],
    )
    ordered.get(
        url(f"/v1/appStoreVersions/{VERSION}/appStoreVersionLocalizations"),
        json=document([]),
        match=[
            matchers.query_param_matcher({"filter[locale]": "en-GB", "limit": "200"})
        ],
    )
    ordered.post(
        url("/v1/appStoreVersionLocalizations"),
        status=201,
        json=document(resource("appStoreVersionLocalizations", "loc-1")),
        match=[
            matchers.json_params_matcher(
                {
                    "data": {
                        "type": "appStoreVersionLocalizations",
                        "attributes": {"locale": "en-GB", "whatsNew": "Bug fixes."},
                        "relationships": {
                            "appStoreVersion": {
                                "data": {"type": "appStoreVersions", "id": VERSION}
                            }
                        },
                    }
                }
            )
        ],
    )
    mock_submissions(ordered, IN_FLIGHT, [])
    mock_submissions(ordered, DRAFT, [])
    mock_create_submission(ordered)
    mock_add_item(ordered)
    mock_submit(ordered)

    outcome = run(asc, clock, whats_new="Bug fixes.", whats_new_locale="en-GB")

    assert steps(outcome) == {
        "build upload": "done",
        "build": "done",
        "app": "done",
        "App Store version": "done",
        "attach build": "done",
        "export compliance": "done",
        "what's new": "done",
        "create review submission": "done",
        "add version to submission": "done",
        "review submission": "done",
    }
    assert not outcome.failed
    assert outcome.outputs["review_submission_id"] == SUBMISSION
    assert outcome.outputs["app_store_version_id"] == VERSION
    assert outcome.outputs["platform"] == "IOS"
    assert clock.sleeps == []
    token = bearer_token(ordered.calls[0].request)
    assert token not in caplog.text
    assert all(token not in step.detail for step in outcome.steps)
    key_line = private_key_pem.splitlines()[1]
    assert key_line not in caplog.text


def _mock_already_submitted_state(mock: responses.RequestsMock) -> None:
    """What App Store Connect returns after a successful run."""
    mock_build(mock, encryption=False)
    mock_versions(mock, [version_resource("WAITING_FOR_REVIEW", build=BUILD)])
    mock.get(
        url(f"/v1/appStoreVersions/{VERSION}/appStoreVersionLocalizations"),
        json=document(
            [
                resource(
                    "appStoreVersionLocalizations",
                    "loc-1",
                    {"locale": "en-US", "whatsNew": "Bug fixes."},
                )
            ]
        ),
        match=[
            matchers.query_param_matcher({"filter[locale]": "en-US", "limit": "200"})
        ],
    )
    mock_submissions(
        mock,
        IN_FLIGHT,
        [submission_resource(SUBMISSION, "WAITING_FOR_REVIEW", [VERSION])],
    )


def test_rerun_changes_nothing(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock
) -> None:
    mock_upload(ordered)
    _mock_already_submitted_state(ordered)

    outcome = run(asc, clock, whats_new="Bug fixes.")

    assert [call.request.method for call in ordered.calls] == ["GET"] * 5
    assert steps(outcome) == {
        "build upload": "done",
        "build": "done",
        "app": "done",
        "App Store version": "unchanged",
        "attach build": "unchanged",
        "export compliance": "unchanged",
        "what's new": "unchanged",
        "review submission": "unchanged",
    }
    assert "already submitted" in detail(outcome, "review submission")
    assert outcome.outputs["review_submission_id"] == SUBMISSION


def test_build_waits_until_valid(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock
) -> None:
    mock_upload(ordered, state="PROCESSING", build=None)
    mock_upload(ordered, state="COMPLETE", build=None)
    mock_upload(ordered, state="COMPLETE", processing="PROCESSING")
    mock_upload(ordered, state="COMPLETE", processing="VALID")
    _mock_already_submitted_state(ordered)

    outcome = run(
        asc,
        clock,
        whats_new="Bug fixes.",
        build_poll_interval=10,
        build_poll_max_interval=15,
    )

    assert not outcome.failed
    assert steps(outcome)["build"] == "done"
    assert len(clock.sleeps) == 3
    assert 5 <= clock.sleeps[0] <= 10
    assert all(delay <= 15 for delay in clock.sleeps)


def test_build_wait_times_out(
    asc: AppStoreConnect, clock: FakeClock, mocked: responses.RequestsMock
) -> None:
    mock_upload(mocked, state="COMPLETE", processing="PROCESSING")

    outcome = run(asc, clock, build_wait_timeout=100, build_poll_interval=10)

    assert outcome.failed
    assert steps(outcome)["build"] == "failed"
    assert "Timed out after 100 s" in detail(outcome, "build")
    assert "submit_for_review.build_wait_timeout" in detail(outcome, "build")
    assert sum(clock.sleeps) == pytest.approx(100)


def test_build_upload_failed_stops(
    asc: AppStoreConnect, clock: FakeClock, mocked: responses.RequestsMock
) -> None:
    mocked.get(
        url("/v1/buildUploads/xx-xx-xx-xx-xxx"),
        json=load_fixture("build-upload-failed.json"),
        match=[matchers.query_param_matcher({"include": "build"})],
    )

    outcome = run(asc, clock, upload_id="xx-xx-xx-xx-xxx")

    assert steps(outcome) == {"build upload": "done", "build": "failed"}
    assert "90683 Missing purpose string" in detail(outcome, "build")
    assert clock.sleeps == []


@pytest.mark.parametrize("state", ["INVALID", "FAILED"])
def test_build_processing_failed_stops(
    asc: AppStoreConnect, clock: FakeClock, mocked: responses.RequestsMock, state: str
) -> None:
    mock_upload(mocked, processing=state)

    outcome = run(asc, clock)

    assert steps(outcome)["build"] == "failed"
    assert f"processing state {state}" in detail(outcome, "build")


# App Store version


def test_version_conflict_second_entry_looks_up(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock
) -> None:
    mock_upload(ordered)
    mock_build(ordered, encryption=False)
    mock_versions(ordered, [])
    ordered.post(
        url("/v1/appStoreVersions"),
        status=409,
        json=error_body(
            error_entry(
                409, "ENTITY_ERROR", "There is a problem with the request entity"
            ),
            error_entry(
                409,
                "ENTITY_ERROR.ATTRIBUTE.INVALID.DUPLICATE",
                "The version number has been previously used.",
                pointer="/data/attributes/versionString",
            ),
        ),
    )
    mock_versions(ordered, [version_resource(build=BUILD)])
    mock_submissions(ordered, IN_FLIGHT, [])
    mock_submissions(
        ordered, DRAFT, [submission_resource(SUBMISSION, DRAFT, [VERSION])]
    )
    mock_submit(ordered)

    outcome = run(asc, clock)

    assert not outcome.failed
    assert steps(outcome)["App Store version"] == "unchanged"
    assert steps(outcome)["attach build"] == "unchanged"
    assert steps(outcome)["create review submission"] == "unchanged"
    assert steps(outcome)["add version to submission"] == "unchanged"
    assert steps(outcome)["review submission"] == "done"


def test_version_conflict_other_reason_stops(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock
) -> None:
    mock_upload(ordered)
    mock_build(ordered, encryption=False)
    mock_versions(ordered, [])
    ordered.post(
        url("/v1/appStoreVersions"),
        status=409,
        json=error_body(
            error_entry(
                409, "ENTITY_ERROR", "There is a problem with the request entity"
            ),
            error_entry(
                409,
                "ENTITY_ERROR.RELATIONSHIP.INVALID",
                "You cannot create a new version of the App in the current state.",
                pointer="/data/relationships/app",
            ),
        ),
    )

    outcome = run(asc, clock)

    message = detail(outcome, "App Store version")
    assert steps(outcome)["App Store version"] == "failed"
    assert "ENTITY_ERROR There is a problem" in message
    assert "ENTITY_ERROR.RELATIONSHIP.INVALID You cannot create" in message
    assert "(at /data/relationships/app)" in message


@pytest.mark.parametrize(
    "state", ["READY_FOR_DISTRIBUTION", "PENDING_DEVELOPER_RELEASE", "SOMETHING_NEW"]
)
def test_version_past_review_stops(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock, state: str
) -> None:
    mock_upload(ordered)
    mock_build(ordered, encryption=False)
    mock_versions(ordered, [version_resource(state, build="b-old")])

    outcome = run(asc, clock)

    assert steps(outcome)["App Store version"] == "failed"
    assert state in detail(outcome, "App Store version")
    assert "CFBundleShortVersionString" in detail(outcome, "App Store version")


def test_version_in_review_other_build_stops(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock
) -> None:
    mock_upload(ordered)
    mock_build(ordered, encryption=False)
    mock_versions(ordered, [version_resource("WAITING_FOR_REVIEW", build="b-old")])

    outcome = run(asc, clock)

    assert steps(outcome)["attach build"] == "failed"
    assert "b-old" in detail(outcome, "attach build")


def test_attach_error_reported_on_step(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock
) -> None:
    mock_upload(ordered)
    mock_build(ordered, encryption=False)
    mock_versions(ordered, [version_resource()])
    ordered.patch(
        url(f"/v1/appStoreVersions/{VERSION}/relationships/build"),
        status=422,
        json=error_body(
            error_entry(
                422,
                "ENTITY_ERROR.RELATIONSHIP.INVALID",
                "The build is not valid for this version.",
                pointer="/data",
            )
        ),
    )

    outcome = run(asc, clock)

    assert steps(outcome)["attach build"] == "failed"
    assert "returned 422: ENTITY_ERROR.RELATIONSHIP.INVALID" in detail(
        outcome, "attach build"
    )


# Export compliance


def test_export_compliance_missing_stops(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock
) -> None:
    mock_upload(ordered)
    mock_build(ordered, encryption=None)
    mock_versions(ordered, [version_resource(build=BUILD)])

    outcome = run(asc, clock, uses_non_exempt_encryption=None)

    message = detail(outcome, "export compliance")
    assert steps(outcome)["export compliance"] == "failed"
    assert "submit_for_review.uses_non_exempt_encryption" in message
    assert "ITSAppUsesNonExemptEncryption" in message
    assert all(call.request.method == "GET" for call in ordered.calls)


def test_export_compliance_keeps_plist_value(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock
) -> None:
    mock_upload(ordered)
    _mock_already_submitted_state(ordered)

    outcome = run(asc, clock, uses_non_exempt_encryption=True, whats_new="Bug fixes.")

    assert steps(outcome)["export compliance"] == "unchanged"
    assert "is ignored" in detail(outcome, "export compliance")


# Review submissions


@pytest.mark.parametrize(
    "state", ["WAITING_FOR_REVIEW", "IN_REVIEW", "UNRESOLVED_ISSUES"]
)
def test_this_version_in_flight_not_resubmitted(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock, state: str
) -> None:
    mock_upload(ordered)
    mock_build(ordered, encryption=False)
    mock_versions(ordered, [version_resource("WAITING_FOR_REVIEW", build=BUILD)])
    mock_submissions(
        ordered,
        IN_FLIGHT,
        [
            submission_resource("rs-old", state, ["asv-old"]),
            submission_resource(SUBMISSION, state, [None, VERSION]),
        ],
    )

    outcome = run(asc, clock, cancel_other_submission=True)

    assert not outcome.failed
    assert steps(outcome)["review submission"] == "unchanged"
    assert f"already submitted ({SUBMISSION}, {state})" in detail(
        outcome, "review submission"
    )
    assert outcome.outputs["review_submission_id"] == SUBMISSION
    assert all(call.request.method == "GET" for call in ordered.calls)


def test_other_version_in_flight_stops(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock
) -> None:
    mock_upload(ordered)
    mock_build(ordered, encryption=False)
    mock_versions(ordered, [version_resource(build=BUILD)])
    mock_submissions(
        ordered, IN_FLIGHT, [submission_resource("rs-old", "IN_REVIEW", ["asv-old"])]
    )

    outcome = run(asc, clock)

    message = detail(outcome, "review submission")
    assert steps(outcome)["review submission"] == "failed"
    assert "rs-old" in message
    assert "asv-old" in message
    assert "submit_for_review.cancel_other_submission" in message
    assert all(call.request.method == "GET" for call in ordered.calls)


def test_other_version_in_flight_canceled(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock
) -> None:
    mock_upload(ordered)
    mock_build(ordered, encryption=False)
    mock_versions(ordered, [version_resource(build=BUILD)])
    mock_submissions(
        ordered,
        IN_FLIGHT,
        [submission_resource("rs-old", "WAITING_FOR_REVIEW", ["asv-old"])],
    )
    ordered.patch(
        url("/v1/reviewSubmissions/rs-old"),
        json=document(resource("reviewSubmissions", "rs-old", {"state": "CANCELING"})),
        match=[
            matchers.json_params_matcher(
                {
                    "data": {
                        "type": "reviewSubmissions",
                        "id": "rs-old",
                        "attributes": {"canceled": True},
                    }
                }
            )
        ],
    )
    mock_submissions(ordered, DRAFT, [])
    mock_create_submission(ordered)
    mock_add_item(ordered)
    mock_submit(ordered)

    outcome = run(asc, clock, cancel_other_submission=True)

    assert not outcome.failed
    assert steps(outcome)["cancel other submission"] == "done"
    assert steps(outcome)["review submission"] == "done"


def test_empty_draft_reused(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock
) -> None:
    mock_upload(ordered)
    mock_build(ordered, encryption=False)
    mock_versions(ordered, [version_resource(build=BUILD)])
    mock_submissions(ordered, IN_FLIGHT, [])
    mock_submissions(ordered, DRAFT, [submission_resource("rs-draft", DRAFT, [])])
    mock_add_item(ordered, submission_id="rs-draft")
    mock_submit(ordered, submission_id="rs-draft")

    outcome = run(asc, clock)

    assert steps(outcome)["create review submission"] == "unchanged"
    assert steps(outcome)["add version to submission"] == "done"
    assert outcome.outputs["review_submission_id"] == "rs-draft"


def test_draft_with_other_items_stops(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock
) -> None:
    mock_upload(ordered)
    mock_build(ordered, encryption=False)
    mock_versions(ordered, [version_resource(build=BUILD)])
    mock_submissions(ordered, IN_FLIGHT, [])
    mock_submissions(ordered, DRAFT, [submission_resource("rs-draft", DRAFT, [None])])

    outcome = run(asc, clock)

    assert steps(outcome)["review submission"] == "failed"
    assert "a non-version item" in detail(outcome, "review submission")


# Platforms


def test_mac_version_chosen_for_mac_upload(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock
) -> None:
    mock_upload(ordered, platform="MAC_OS")
    mock_build(ordered, encryption=False)
    # The IOS entry must be ignored even if a filter upstream lets it through.
    mock_versions(
        ordered,
        [
            version_resource(build="b-ios", platform="IOS", version_id="asv-ios"),
            version_resource(platform="MAC_OS", version_id="asv-mac"),
        ],
        platform="MAC_OS",
    )
    mock_attach(ordered, version_id="asv-mac")
    mock_submissions(ordered, IN_FLIGHT, [], platform="MAC_OS")
    mock_submissions(ordered, DRAFT, [], platform="MAC_OS")
    mock_create_submission(ordered, platform="MAC_OS")
    mock_add_item(ordered, version_id="asv-mac")
    mock_submit(ordered)

    outcome = run(asc, clock)

    assert not outcome.failed
    assert outcome.outputs["app_store_version_id"] == "asv-mac"
    assert outcome.outputs["platform"] == "MAC_OS"


def test_ios_version_not_reused_for_mac(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock
) -> None:
    mock_upload(ordered, platform="MAC_OS")
    mock_build(ordered, encryption=False)
    mock_versions(
        ordered,
        [version_resource(platform="IOS", version_id="asv-ios")],
        platform="MAC_OS",
    )
    ordered.post(
        url("/v1/appStoreVersions"),
        status=201,
        json=document(version_resource(platform="MAC_OS", version_id="asv-mac")),
        match=[
            matchers.json_params_matcher(
                {
                    "data": {
                        "type": "appStoreVersions",
                        "attributes": {
                            "platform": "MAC_OS",
                            "versionString": VERSION_STRING,
                        },
                        "relationships": {"app": {"data": {"type": "apps", "id": APP}}},
                    }
                }
            )
        ],
    )
    mock_attach(ordered, version_id="asv-mac")
    mock_submissions(ordered, IN_FLIGHT, [], platform="MAC_OS")
    mock_submissions(ordered, DRAFT, [], platform="MAC_OS")
    mock_create_submission(ordered, platform="MAC_OS")
    mock_add_item(ordered, version_id="asv-mac")
    mock_submit(ordered)

    outcome = run(asc, clock)

    assert steps(outcome)["App Store version"] == "done"
    assert outcome.outputs["app_store_version_id"] == "asv-mac"


def test_upload_for_other_platform_skipped(
    asc: AppStoreConnect, clock: FakeClock, mocked: responses.RequestsMock
) -> None:
    mock_upload(mocked, platform="TV_OS")

    outcome = run(asc, clock, platform="ios")

    assert steps(outcome) == {"build upload": "skipped"}
    assert "TV_OS" in detail(outcome, "build upload")
    assert not outcome.failed


# Options


def test_dry_run_sends_no_writes(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock
) -> None:
    mock_upload(ordered)
    mock_build(ordered, encryption=None)
    mock_versions(ordered, [])

    outcome = run(
        asc, clock, dry_run=True, uses_non_exempt_encryption=True, whats_new="x"
    )

    assert all(call.request.method == "GET" for call in ordered.calls)
    assert not outcome.failed
    assert steps(outcome)["App Store version"] == "skipped"
    assert steps(outcome)["export compliance"] == "skipped"
    assert "would create App Store version 1.101.0 (IOS)" in detail(
        outcome, "App Store version"
    )


def test_whats_new_updates_existing_text(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock
) -> None:
    mock_upload(ordered)
    mock_build(ordered, encryption=False)
    mock_versions(ordered, [version_resource("DEVELOPER_REJECTED", build=BUILD)])
    ordered.get(
        url(f"/v1/appStoreVersions/{VERSION}/appStoreVersionLocalizations"),
        json=document(
            [
                resource(
                    "appStoreVersionLocalizations",
                    "loc-1",
                    {"locale": "en-US", "whatsNew": "Old text."},
                )
            ]
        ),
    )
    ordered.patch(
        url("/v1/appStoreVersionLocalizations/loc-1"),
        json=document(resource("appStoreVersionLocalizations", "loc-1")),
        match=[
            matchers.json_params_matcher(
                {
                    "data": {
                        "type": "appStoreVersionLocalizations",
                        "id": "loc-1",
                        "attributes": {"whatsNew": "New text."},
                    }
                }
            )
        ],
    )
    mock_submissions(ordered, IN_FLIGHT, [])
    mock_submissions(
        ordered, DRAFT, [submission_resource(SUBMISSION, DRAFT, [VERSION])]
    )
    mock_submit(ordered)

    outcome = run(asc, clock, whats_new="New text.")

    assert steps(outcome)["what's new"] == "done"
    assert not outcome.failed


def test_beta_groups_added(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock
) -> None:
    mock_upload(ordered)
    _mock_already_submitted_state(ordered)
    ordered.get(
        url(f"/v1/apps/{APP}/betaGroups"),
        json=document([resource("betaGroups", "g-qa", {"name": "QA"})]),
        match=[matchers.query_param_matcher({"filter[name]": "QA", "limit": "200"})],
    )
    ordered.get(
        url("/v1/builds"),
        json=document([]),
        match=[
            matchers.query_param_matcher(
                {"filter[betaGroups]": "g-qa", "filter[id]": BUILD, "limit": "1"}
            )
        ],
    )
    ordered.post(
        url(f"/v1/builds/{BUILD}/relationships/betaGroups"),
        status=204,
        match=[
            matchers.json_params_matcher(
                {"data": [{"type": "betaGroups", "id": "g-qa"}]}
            )
        ],
    )

    outcome = run(asc, clock, whats_new="Bug fixes.", beta_groups=["QA"])

    assert steps(outcome)["beta groups"] == "done"
    assert not outcome.failed


def test_beta_group_unknown_fails(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock
) -> None:
    mock_upload(ordered)
    _mock_already_submitted_state(ordered)
    ordered.get(
        url(f"/v1/apps/{APP}/betaGroups"),
        json=document([resource("betaGroups", "g-qa2", {"name": "QA 2"})]),
        match=[matchers.query_param_matcher({"filter[name]": "QA", "limit": "200"})],
    )

    outcome = run(asc, clock, whats_new="Bug fixes.", beta_groups=["QA"])

    assert steps(outcome)["beta groups"] == "failed"
    assert "'QA' was not found" in detail(outcome, "beta groups")
    assert "submit_for_review.beta_groups" in detail(outcome, "beta groups")


@pytest.mark.parametrize(
    ("options", "text"),
    [
        ({"platform": "WINDOWS"}, "WINDOWS"),
        ({"build_wait_timeout": -1}, "build_wait_timeout"),
        ({"build_poll_interval": 0}, "build_poll_interval"),
        ({"whats_new_locale": " "}, "whats_new_locale"),
    ],
)
def test_options_invalid_rejected(options: dict[str, Any], text: str) -> None:
    with pytest.raises(ConfigError, match=text):
        SubmitOptions(**options)


def test_upload_unknown_platform_fails(
    asc: AppStoreConnect,
    clock: FakeClock,
    mocked: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    mock_upload(mocked, platform="WATCH_OS")

    outcome = run(asc, clock)

    assert steps(outcome) == {"build upload": "failed"}
    assert "'WATCH_OS'" in detail(outcome, "build upload")
    assert "unknown buildUploads.platform value 'WATCH_OS'" in caplog.text


def test_unresolved_issues_counts_as_submitted(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock
) -> None:
    mock_upload(ordered)
    mock_build(ordered, encryption=False)
    mock_versions(ordered, [version_resource("REJECTED", build=BUILD)])
    mock_submissions(
        ordered,
        IN_FLIGHT,
        [submission_resource(SUBMISSION, "UNRESOLVED_ISSUES", [VERSION])],
    )

    outcome = run(asc, clock)

    assert not outcome.failed
    assert steps(outcome)["review submission"] == "unchanged"
    assert "resubmit in App Store Connect" in detail(outcome, "review submission")


def test_app_fetched_when_not_included(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock
) -> None:
    mock_upload(ordered)
    build = resource("builds", BUILD, {"usesNonExemptEncryption": False})
    build["relationships"]["app"] = {"links": {"related": "x"}}
    ordered.get(url(f"/v1/builds/{BUILD}"), json=document(build))
    ordered.get(url(f"/v1/builds/{BUILD}/app"), json=document(resource("apps", APP)))
    mock_versions(ordered, [version_resource("IN_REVIEW", build=BUILD)])
    mock_submissions(
        ordered, IN_FLIGHT, [submission_resource(SUBMISSION, "IN_REVIEW", [VERSION])]
    )

    outcome = run(asc, clock)

    assert outcome.outputs["app_id"] == APP
    assert steps(outcome)["review submission"] == "unchanged"


def test_items_without_linkage_fetched(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock
) -> None:
    mock_upload(ordered)
    mock_build(ordered, encryption=False)
    mock_versions(ordered, [version_resource("WAITING_FOR_REVIEW", build=BUILD)])
    submission, _ = submission_resource(SUBMISSION, "WAITING_FOR_REVIEW", [VERSION])
    # Only links for the items: the submission alone does not show what it holds.
    submission["relationships"]["items"] = {"links": {"related": "x"}}
    mock_submissions(ordered, IN_FLIGHT, [(submission, [])])
    _, items = submission_resource(SUBMISSION, "WAITING_FOR_REVIEW", [VERSION])
    ordered.get(
        url(f"/v1/reviewSubmissions/{SUBMISSION}/items"),
        json=document(items, [version_resource("WAITING_FOR_REVIEW")]),
        match=[
            matchers.query_param_matcher({"include": "appStoreVersion", "limit": "200"})
        ],
    )

    outcome = run(asc, clock)

    assert steps(outcome)["review submission"] == "unchanged"
    assert "already submitted" in detail(outcome, "review submission")


def test_included_item_links_only_fetched(
    asc: AppStoreConnect, clock: FakeClock, ordered: responses.RequestsMock
) -> None:
    mock_upload(ordered)
    mock_build(ordered, encryption=False)
    mock_versions(ordered, [version_resource(build=BUILD)])
    submission, items = submission_resource("rs-draft", DRAFT, ["asv-other"])
    bare_items = copy.deepcopy(items)
    for item in bare_items:
        for relationship in item["relationships"].values():
            del relationship["data"]
    mock_submissions(ordered, IN_FLIGHT, [])
    mock_submissions(ordered, DRAFT, [(submission, bare_items)])
    ordered.get(
        url("/v1/reviewSubmissions/rs-draft/items"),
        json=document(items),
        match=[
            matchers.query_param_matcher({"include": "appStoreVersion", "limit": "200"})
        ],
    )

    outcome = run(asc, clock)

    assert steps(outcome)["review submission"] == "failed"
    assert "asv-other" in detail(outcome, "review submission")


def test_empty_upload_id_fails(asc: AppStoreConnect, clock: FakeClock) -> None:
    outcome = run(asc, clock, upload_id="")

    assert steps(outcome) == {"build upload": "failed"}
    assert "empty" in detail(outcome, "build upload")

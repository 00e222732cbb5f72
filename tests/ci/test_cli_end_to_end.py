"""``asc-ci handle`` on every bundled webhook sample, with the APIs mocked.

Each sample runs through the command line as a workflow would run it: the raw
body from ``relay/data/webhooks/``, default settings, fake secrets in the
environment. The mocks return the APIs' documented shapes, and each test
checks the action, the exit status, the outputs and that no secret or
traceback reaches stdout, stderr, the step summary or ``$GITHUB_OUTPUT``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import responses
from responses import matchers

from ci import cli
from tests.ci.conftest import document, resource
from tests.ci.support import (
    ASC_URL,
    GITHUB_URL,
    SECRETS,
    SLACK_WEBHOOK_URL,
    load_fixture,
    load_sample,
    sample_paths,
    version_document,
)
from tests.ci.test_cli import assert_no_secret, outputs_of, summary_of
from tests.ci.test_route import EXPECTED_SAMPLE_ACTIONS

REPO = f"{GITHUB_URL}/repos/acme/app"
MERGE_SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
BUILD = "b-0001"
APP = "6450000001"
VERSION = "asv-0001"
SUBMISSION = "rs-0001"


@pytest.fixture
def env(tmp_path: Path, private_key_pem: str) -> dict[str, str]:
    """An Actions-like environment with every credential set to a fake secret."""
    (tmp_path / "workspace").mkdir()
    return {
        "GITHUB_WORKSPACE": str(tmp_path / "workspace"),
        "GITHUB_OUTPUT": str(tmp_path / "output.txt"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_REPOSITORY": "acme/app",
        "GITHUB_API_URL": GITHUB_URL,
        "ASC_API_URL": ASC_URL,
        "APP_STORE_CONNECT_API_KEY_KEY_ID": "ABCDE12345",
        "APP_STORE_CONNECT_API_KEY_ISSUER_ID": "57246542-96fe-1a63-e053-0824d011072a",
        "APP_STORE_CONNECT_API_KEY_KEY": private_key_pem,
        **SECRETS,
    }


def sample_id(name: str) -> str:
    return str(load_sample(name)["data"]["relationships"]["instance"]["data"]["id"])


def slack_texts(mock: responses.RequestsMock) -> list[str]:
    return [
        call.request.body.decode() if isinstance(call.request.body, bytes) else ""
        for call in mock.calls
        if call.request.url == SLACK_WEBHOOK_URL
    ]


# Mocks per sample, in the order the automation sends the requests


def mock_nothing(mock: responses.RequestsMock, name: str) -> None:
    """Events routed to ``none`` must not call any API."""


def mock_review_state(mock: responses.RequestsMock, name: str) -> None:
    version_id = sample_id(name)
    mock.get(
        f"{ASC_URL}/v1/appStoreVersions/{version_id}",
        json=version_document(version_id, state="DEVELOPER_REJECTED"),
        match=[matchers.query_param_matcher({"include": "app,build"})],
    )
    mock.post(SLACK_WEBHOOK_URL, body="ok")


def mock_release(mock: responses.RequestsMock, name: str) -> None:
    version_id = sample_id(name)
    mock.get(
        f"{ASC_URL}/v1/appStoreVersions/{version_id}",
        json=version_document(version_id),
        match=[matchers.query_param_matcher({"include": "app,build"})],
    )
    mock.post(
        f"{REPO}/merges",
        status=201,
        json={"sha": MERGE_SHA},
        match=[
            matchers.json_params_matcher(
                {
                    "base": "master",
                    "head": "develop",
                    "commit_message": "Merge develop into master for Acme & Co 1.101.0",
                }
            )
        ],
    )
    mock.get(f"{REPO}/git/ref/tags/v1.101.0", status=404, json={"message": "Not Found"})
    mock.post(
        f"{REPO}/git/refs",
        status=201,
        json={"ref": "refs/tags/v1.101.0", "object": {"sha": MERGE_SHA}},
        match=[
            matchers.json_params_matcher(
                {"ref": "refs/tags/v1.101.0", "sha": MERGE_SHA}
            )
        ],
    )
    mock.post(SLACK_WEBHOOK_URL, body="ok")


def mock_build_failed(mock: responses.RequestsMock, name: str) -> None:
    upload_id = sample_id(name)
    body = copy.deepcopy(load_fixture("build-upload-failed.json"))
    body["data"]["id"] = upload_id
    mock.get(f"{ASC_URL}/v1/buildUploads/{upload_id}", json=body)
    mock.post(SLACK_WEBHOOK_URL, body="ok")


def mock_submit(mock: responses.RequestsMock, name: str) -> None:
    """A fresh submission: new version, build attached, draft created, submitted."""
    upload_id = sample_id(name)
    upload = copy.deepcopy(load_fixture("build-upload-complete.json"))
    upload["data"]["id"] = upload_id
    upload["data"]["relationships"]["build"] = {"data": {"type": "builds", "id": BUILD}}
    upload["included"] = [
        resource("builds", BUILD, {"version": "1", "processingState": "VALID"})
    ]
    mock.get(
        f"{ASC_URL}/v1/buildUploads/{upload_id}",
        json=upload,
        match=[matchers.query_param_matcher({"include": "build"})],
    )

    build = resource(
        "builds",
        BUILD,
        {"version": "1", "processingState": "VALID", "usesNonExemptEncryption": False},
        app=("apps", APP),
    )
    mock.get(
        f"{ASC_URL}/v1/builds/{BUILD}",
        json=document(build, [resource("apps", APP, {"name": "Demo"})]),
        match=[matchers.query_param_matcher({"include": "app"})],
    )

    mock.get(
        f"{ASC_URL}/v1/apps/{APP}/appStoreVersions",
        json=document([]),
        match=[
            matchers.query_param_matcher(
                {
                    "filter[platform]": "IOS",
                    "filter[versionString]": "1.101.0",
                    "include": "build",
                    "limit": "200",
                }
            )
        ],
    )

    version = resource(
        "appStoreVersions",
        VERSION,
        {
            "platform": "IOS",
            "versionString": "1.101.0",
            "appVersionState": "PREPARE_FOR_SUBMISSION",
        },
        build=None,
    )
    mock.post(f"{ASC_URL}/v1/appStoreVersions", status=201, json=document(version))
    mock.patch(
        f"{ASC_URL}/v1/appStoreVersions/{VERSION}/relationships/build",
        status=204,
        match=[matchers.json_params_matcher({"data": {"type": "builds", "id": BUILD}})],
    )

    for states in (
        "WAITING_FOR_REVIEW,IN_REVIEW,UNRESOLVED_ISSUES",
        "READY_FOR_REVIEW",
    ):
        mock.get(
            f"{ASC_URL}/v1/apps/{APP}/reviewSubmissions",
            json=document([], []),
            match=[
                matchers.query_param_matcher(
                    {
                        "filter[platform]": "IOS",
                        "filter[state]": states,
                        "include": "items",
                        "limit": "200",
                    }
                )
            ],
        )

    mock.post(
        f"{ASC_URL}/v1/reviewSubmissions",
        status=201,
        json=document(
            resource("reviewSubmissions", SUBMISSION, {"state": "READY_FOR_REVIEW"})
        ),
    )
    mock.post(
        f"{ASC_URL}/v1/reviewSubmissionItems",
        status=201,
        json=document(resource("reviewSubmissionItems", "item-1")),
    )
    mock.patch(
        f"{ASC_URL}/v1/reviewSubmissions/{SUBMISSION}",
        json=document(
            resource("reviewSubmissions", SUBMISSION, {"state": "WAITING_FOR_REVIEW"})
        ),
        match=[
            matchers.json_params_matcher(
                {
                    "data": {
                        "type": "reviewSubmissions",
                        "id": SUBMISSION,
                        "attributes": {"submitted": True},
                    }
                }
            )
        ],
    )


MOCKS: dict[str, Callable[[responses.RequestsMock, str], None]] = {
    "none": mock_nothing,
    "notify-review-state": mock_review_state,
    "release": mock_release,
    "notify-build-failed": mock_build_failed,
    "submit-for-review": mock_submit,
}

#: Outputs each action writes besides ``action`` and ``result``.
EXPECTED_OUTPUTS: dict[str, dict[str, str]] = {
    "none": {},
    "notify-review-state": {"version": "1.101.0"},
    "release": {"tag": "v1.101.0", "merge_sha": MERGE_SHA, "version": "1.101.0"},
    "notify-build-failed": {"error_codes": "ITMS-90683"},
    "submit-for-review": {
        "app_store_version_id": VERSION,
        "review_submission_id": SUBMISSION,
        "version_string": "1.101.0",
    },
}


def test_samples_all_have_mocks() -> None:
    assert set(EXPECTED_SAMPLE_ACTIONS.values()) <= set(MOCKS)


@pytest.mark.parametrize("path", sample_paths(), ids=lambda path: path.name)
def test_handle_sample_action_and_exit(
    path: Path,
    env: dict[str, str],
    ordered: responses.RequestsMock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    action = EXPECTED_SAMPLE_ACTIONS[path.name]
    MOCKS[action](ordered, path.name)

    code = cli.main(["handle", "--payload-file", str(path)], env)

    captured = capsys.readouterr()
    outputs = outputs_of(env)
    summary = summary_of(env)
    assert code == 0, captured.err
    assert outputs["action"] == action
    assert outputs["result"] == "success"
    for name, value in EXPECTED_OUTPUTS[action].items():
        assert outputs.get(name) == value, name
    assert "Traceback" not in captured.err
    assert "failed" not in captured.out
    assert_no_secret(
        captured.out,
        captured.err,
        summary,
        Path(env["GITHUB_OUTPUT"]).read_text(),
        *slack_texts(ordered),
    )


def test_handle_sample_slack_message_names_version(
    env: dict[str, str],
    ordered: responses.RequestsMock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = "app-version-developer-rejected.json"
    mock_review_state(ordered, name)

    code = cli.main(["handle", "--payload-file", str(sample_path(name))], env)

    assert code == 0, capsys.readouterr().err
    posted = json.loads(slack_texts(ordered)[0])
    text = json.dumps(posted, ensure_ascii=False)
    assert "1.101.0" in text
    assert "developer rejected" in text.lower()


def sample_path(name: str) -> Path:
    return next(path for path in sample_paths() if path.name == name)


# Export compliance through ``asc-ci submit-for-review``


def mock_submit_until_compliance(mock: responses.RequestsMock, upload_id: str) -> None:
    """A build with no ``usesNonExemptEncryption``, already on its version."""
    upload = copy.deepcopy(load_fixture("build-upload-complete.json"))
    upload["data"]["id"] = upload_id
    upload["data"]["relationships"]["build"] = {"data": {"type": "builds", "id": BUILD}}
    upload["included"] = [
        resource("builds", BUILD, {"version": "1", "processingState": "VALID"})
    ]
    mock.get(f"{ASC_URL}/v1/buildUploads/{upload_id}", json=upload)
    build = resource(
        "builds",
        BUILD,
        {"version": "1", "processingState": "VALID", "usesNonExemptEncryption": None},
        app=("apps", APP),
    )
    mock.get(
        f"{ASC_URL}/v1/builds/{BUILD}",
        json=document(build, [resource("apps", APP, {"name": "Demo"})]),
    )
    version = resource(
        "appStoreVersions",
        VERSION,
        {
            "platform": "IOS",
            "versionString": "1.101.0",
            "appVersionState": "PREPARE_FOR_SUBMISSION",
        },
        build=("builds", BUILD),
    )
    mock.get(
        f"{ASC_URL}/v1/apps/{APP}/appStoreVersions",
        json=document([version], [resource("builds", BUILD)]),
    )


def test_submit_without_encryption_value_stops(
    env: dict[str, str],
    ordered: responses.RequestsMock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mock_submit_until_compliance(ordered, "bu-7")

    code = cli.main(["submit-for-review", "--build-upload", "bu-7"], env)

    captured = capsys.readouterr()
    summary = summary_of(env)
    assert code == 1
    assert outputs_of(env)["result"] == "failed"
    assert "failed    export compliance:" in captured.out
    assert "submit_for_review.uses_non_exempt_encryption" in captured.out
    assert "ITSAppUsesNonExemptEncryption" in captured.out
    assert "| export compliance | ❌ failed |" in summary
    assert "submit_for_review.uses_non_exempt_encryption" in summary
    assert all(call.request.method == "GET" for call in ordered.calls)
    assert "Traceback" not in captured.err
    assert_no_secret(
        captured.out, captured.err, summary, Path(env["GITHUB_OUTPUT"]).read_text()
    )


def test_submit_encryption_value_from_settings(
    env: dict[str, str],
    ordered: responses.RequestsMock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mock_submit_until_compliance(ordered, "bu-7")
    ordered.patch(
        f"{ASC_URL}/v1/builds/{BUILD}",
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
    # The run goes on to the review submission, which fails here on purpose so
    # the test ends after the export compliance step.
    ordered.get(
        f"{ASC_URL}/v1/apps/{APP}/reviewSubmissions",
        status=403,
        json={
            "errors": [
                {
                    "status": "403",
                    "code": "FORBIDDEN_ERROR",
                    "title": "This request is forbidden for security reasons",
                    "detail": "The API key in use does not allow this request",
                }
            ]
        },
    )
    config = Path(env["GITHUB_WORKSPACE"]) / "settings.yml"
    config.write_text("submit_for_review:\n  uses_non_exempt_encryption: false\n")
    argv = ["submit-for-review", "--build-upload", "bu-7", "--config", str(config)]

    code = cli.main(argv, env)

    captured = capsys.readouterr()
    assert code == 1
    assert "done      export compliance:" in captured.out
    assert "FORBIDDEN_ERROR" in captured.out
    assert "Traceback" not in captured.err
    assert_no_secret(captured.out, captured.err, summary_of(env))

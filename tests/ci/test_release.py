"""Tests for the release automation: merge, tag, GitHub release, Jira, Slack."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date

import pytest
import responses
from responses import matchers
from responses.registries import OrderedRegistry

from ci.github import GitHub
from ci.jira import Jira
from ci.outcome import Outcome
from ci.release import run_release
from ci.settings import Settings, parse_settings
from ci.slack import Slack
from tests.ci.support import (
    ASC_URL,
    GITHUB_URL,
    JIRA_URL,
    SECRETS,
    SLACK_WEBHOOK_URL,
    http,
    make_asc,
    version_document,
)

REPO = f"{GITHUB_URL}/repos/acme/app"
MERGE_SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
MASTER_SHA = "aa218f56b14c9653891f9e74264a383fa43fefbd"
OTHER_SHA = "1111111111111111111111111111111111111111"
TODAY = date(2026, 12, 4)
JIRA_SETTINGS = "jira:\n  project: IOS\n"


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture
def ordered() -> Iterator[responses.RequestsMock]:
    """A mock that also fails when requests arrive out of registration order."""
    with responses.RequestsMock(
        assert_all_requests_are_fired=True, registry=OrderedRegistry
    ) as rsps:
        yield rsps


def github() -> GitHub:
    return GitHub(
        SECRETS["GITHUB_TOKEN"], "acme/app", api_url=GITHUB_URL, http=http("github")
    )


def jira() -> Jira:
    return Jira(
        JIRA_URL, "release@acme.test", SECRETS["JIRA_API_TOKEN"], http=http("jira")
    )


def slack() -> Slack:
    return Slack(webhook_url=SLACK_WEBHOOK_URL, http=http("slack"))


def mock_version(mocked: responses.RequestsMock, **kwargs: str) -> None:
    mocked.get(
        f"{ASC_URL}/v1/appStoreVersions/ver-1",
        json=version_document(**kwargs),
        match=[matchers.query_param_matcher({"include": "app,build"})],
    )


def mock_merge(
    mocked: responses.RequestsMock, status: int, body: object = None
) -> None:
    mocked.post(
        f"{REPO}/merges",
        status=status,
        json=body,
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


def mock_tag_missing(mocked: responses.RequestsMock, tag: str = "v1.101.0") -> None:
    mocked.get(f"{REPO}/git/ref/tags/{tag}", status=404, json={"message": "Not Found"})


def mock_tag_at(
    mocked: responses.RequestsMock, sha: str, tag: str = "v1.101.0"
) -> None:
    mocked.get(
        f"{REPO}/git/ref/tags/{tag}",
        json={"ref": f"refs/tags/{tag}", "object": {"sha": sha, "type": "commit"}},
    )


def mock_create_tag(
    mocked: responses.RequestsMock, sha: str, tag: str = "v1.101.0"
) -> None:
    mocked.post(
        f"{REPO}/git/refs",
        status=201,
        json={"ref": f"refs/tags/{tag}", "object": {"sha": sha, "type": "commit"}},
        match=[matchers.json_params_matcher({"ref": f"refs/tags/{tag}", "sha": sha})],
    )


def mock_slack(mocked: responses.RequestsMock) -> None:
    mocked.post(SLACK_WEBHOOK_URL, body="ok")


def jira_issue(key: str, category: str = "indeterminate") -> dict[str, object]:
    status = "Done" if category == "done" else "In Progress"
    return {
        "id": key.split("-")[1],
        "key": key,
        "fields": {
            "summary": f"Fix <{key}> & more",
            "status": {"name": status, "statusCategory": {"key": category}},
        },
    }


def mock_jira_versions(
    mocked: responses.RequestsMock, versions: list[dict[str, object]]
) -> None:
    mocked.get(f"{JIRA_URL}/rest/api/3/project/IOS/versions", json=versions)


def run(
    settings: Settings, *, with_slack: bool = True, dry_run: bool = False
) -> Outcome:
    return run_release(
        make_asc(),
        "ver-1",
        settings,
        github=github(),
        jira=jira() if settings.jira.enabled else None,
        slack=slack() if with_slack else None,
        today=TODAY,
        dry_run=dry_run,
    )


def statuses(outcome: Outcome) -> dict[str, str]:
    return {step.name: step.status for step in outcome.steps}


def detail(outcome: Outcome, name: str) -> str:
    return next(step.detail for step in outcome.steps if step.name == name)


def test_release_full_run(ordered: responses.RequestsMock) -> None:
    mock_version(ordered)
    mock_merge(ordered, 201, {"sha": MERGE_SHA})
    mock_tag_missing(ordered)
    mock_create_tag(ordered, MERGE_SHA)
    mock_jira_versions(
        ordered,
        [
            {"id": "10000", "name": "1.101.0", "released": False},
            {"id": "10001", "name": "1.101.0 (build 5)", "released": False},
        ],
    )
    jql = 'project = "IOS" AND fixVersion = 10000 ORDER BY key ASC'
    page = {"jql": jql, "fields": "summary,status", "maxResults": "100"}
    ordered.get(
        f"{JIRA_URL}/rest/api/3/search/jql",
        json={
            "issues": [jira_issue("IOS-1"), jira_issue("IOS-2", "done")],
            "nextPageToken": "t2",
            "isLast": False,
        },
        match=[matchers.query_param_matcher(page)],
    )
    ordered.get(
        f"{JIRA_URL}/rest/api/3/search/jql",
        json={"issues": [jira_issue("IOS-3")], "isLast": True},
        match=[matchers.query_param_matcher({**page, "nextPageToken": "t2"})],
    )
    for key in ("IOS-1", "IOS-3"):
        ordered.get(
            f"{JIRA_URL}/rest/api/3/issue/{key}/transitions",
            json={
                "transitions": [
                    {"id": "21", "name": "Start", "to": {"name": "In Progress"}},
                    {"id": "31", "name": "Done", "to": {"name": "Done"}},
                ]
            },
        )
        ordered.post(
            f"{JIRA_URL}/rest/api/3/issue/{key}/transitions",
            status=204,
            match=[matchers.json_params_matcher({"transition": {"id": "31"}})],
        )
    ordered.put(
        f"{JIRA_URL}/rest/api/3/version/10000",
        json={"id": "10000", "released": True},
        match=[
            matchers.json_params_matcher(
                {"released": True, "releaseDate": "2026-12-04"}
            )
        ],
    )
    mock_slack(ordered)

    outcome = run(parse_settings(JIRA_SETTINGS))

    assert statuses(outcome) == {
        "merge": "done",
        "tag": "done",
        "github release": "skipped",
        "jira version": "unchanged",
        "jira issues": "done",
        "jira release": "done",
        "slack": "done",
    }
    assert outcome.failed is False
    assert "2 moved to Done, 1 already done (IOS-1, IOS-3)" in detail(
        outcome, "jira issues"
    )
    assert outcome.outputs["tag"] == "v1.101.0"
    assert outcome.outputs["merge_sha"] == MERGE_SHA
    assert outcome.outputs["version"] == "1.101.0"
    assert outcome.outputs["jira_version_id"] == "10000"

    slack_call = json.loads(ordered.calls[-1].request.body)
    text = json.dumps(slack_call)
    assert "Acme &amp; Co 1.101.0" in text
    assert f"<{JIRA_URL}/browse/IOS-1|IOS-1> Fix &lt;IOS-1&gt; &amp; more" in text


def test_release_already_merged_and_tagged(mocked: responses.RequestsMock) -> None:
    mock_version(mocked)
    mock_merge(mocked, 204)
    mocked.get(
        f"{REPO}/git/ref/heads/master",
        json={
            "ref": "refs/heads/master",
            "object": {"sha": MASTER_SHA, "type": "commit"},
        },
    )
    mock_tag_at(mocked, MASTER_SHA)

    outcome = run(Settings(), with_slack=False)

    assert statuses(outcome) == {
        "merge": "unchanged",
        "tag": "unchanged",
        "github release": "skipped",
        "jira": "skipped",
        "slack": "skipped",
    }
    assert outcome.failed is False
    assert "Slack is not configured" in detail(outcome, "slack")


def test_release_tag_on_other_commit(mocked: responses.RequestsMock) -> None:
    mock_version(mocked)
    mock_merge(mocked, 201, {"sha": MERGE_SHA})
    mock_tag_at(mocked, OTHER_SHA)
    mock_slack(mocked)

    outcome = run(Settings())

    assert statuses(outcome)["tag"] == "failed"
    assert OTHER_SHA in detail(outcome, "tag")
    assert MERGE_SHA in detail(outcome, "tag")
    assert statuses(outcome)["slack"] == "done"
    assert outcome.failed is True


def test_release_annotated_tag_same_commit(mocked: responses.RequestsMock) -> None:
    mock_version(mocked)
    mock_merge(mocked, 201, {"sha": MERGE_SHA})
    mocked.get(
        f"{REPO}/git/ref/tags/v1.101.0",
        json={"ref": "refs/tags/v1.101.0", "object": {"sha": OTHER_SHA, "type": "tag"}},
    )
    mocked.get(
        f"{REPO}/git/tags/{OTHER_SHA}",
        json={"sha": OTHER_SHA, "object": {"sha": MERGE_SHA, "type": "commit"}},
    )
    outcome = run(Settings(), with_slack=False)
    assert statuses(outcome)["tag"] == "unchanged"


def test_release_conflict_opens_pull(ordered: responses.RequestsMock) -> None:
    mock_version(ordered)
    mock_merge(ordered, 409, {"message": "Merge conflict"})
    ordered.get(
        f"{REPO}/pulls",
        json=[],
        match=[
            matchers.query_param_matcher(
                {"head": "acme:develop", "base": "master", "state": "open"}
            )
        ],
    )
    ordered.post(
        f"{REPO}/pulls",
        status=201,
        json={"number": 12, "html_url": "https://github.com/acme/app/pull/12"},
        match=[
            matchers.json_params_matcher(
                {
                    "head": "develop",
                    "base": "master",
                    "title": "Merge develop into master for Acme & Co 1.101.0",
                },
                strict_match=False,
            )
        ],
    )
    mock_slack(ordered)

    outcome = run(Settings())

    assert statuses(outcome)["merge"] == "done"
    assert "merge conflict; opened pull request #12" in detail(outcome, "merge")
    assert statuses(outcome)["tag"] == "skipped"
    assert "pull/12" in detail(outcome, "tag")
    assert outcome.outputs["pull_request"] == "https://github.com/acme/app/pull/12"
    assert outcome.failed is False
    assert "pull/12" in ordered.calls[-1].request.body.decode()


def test_release_protected_branch_reuses_pull(mocked: responses.RequestsMock) -> None:
    mock_version(mocked)
    mock_merge(
        mocked,
        422,
        {
            "message": "Protected branch update failed for refs/heads/master.",
            "errors": ['Required status check "build" is expected.'],
        },
    )
    mocked.get(
        f"{REPO}/pulls",
        json=[{"number": 7, "html_url": "https://github.com/acme/app/pull/7"}],
    )

    outcome = run(Settings(), with_slack=False)

    assert statuses(outcome)["merge"] == "unchanged"
    assert "branch protection blocks the merge" in detail(outcome, "merge")
    assert "#7 from develop into master is already open" in detail(outcome, "merge")
    assert statuses(outcome)["tag"] == "skipped"


BLOCKED_MERGES = [
    pytest.param(409, {"message": "Merge conflict"}, "merge conflict", id="conflict"),
    pytest.param(
        403,
        {"message": "Protected branch update failed for refs/heads/master."},
        "branch protection blocks the merge",
        id="protected-403",
    ),
    pytest.param(
        422,
        {"message": 'Required status check "build" is expected.'},
        "branch protection blocks the merge",
        id="status-check-422",
    ),
    pytest.param(
        409,
        {
            "message": "Repository rule violations found\n\n"
            "Changes must be made through a pull request.\n\n"
        },
        "branch protection blocks the merge",
        id="ruleset-409",
    ),
]


@pytest.mark.parametrize(("status", "body", "reason"), BLOCKED_MERGES)
def test_release_blocked_merge_opens_pull(
    ordered: responses.RequestsMock, status: int, body: object, reason: str
) -> None:
    mock_version(ordered)
    mock_merge(ordered, status, body)
    ordered.get(
        f"{REPO}/pulls",
        json=[],
        match=[
            matchers.query_param_matcher(
                {"head": "acme:develop", "base": "master", "state": "open"}
            )
        ],
    )
    ordered.post(
        f"{REPO}/pulls",
        status=201,
        json={"number": 12, "html_url": "https://github.com/acme/app/pull/12"},
        match=[
            matchers.json_params_matcher(
                {"head": "develop", "base": "master"}, strict_match=False
            )
        ],
    )

    outcome = run(Settings(), with_slack=False)

    assert statuses(outcome)["merge"] == "done"
    assert f"{reason}; opened pull request #12" in detail(outcome, "merge")
    assert statuses(outcome)["tag"] == "skipped"
    assert outcome.outputs["pull_request"] == "https://github.com/acme/app/pull/12"
    assert outcome.failed is False


@pytest.mark.parametrize(("status", "body", "reason"), BLOCKED_MERGES)
def test_release_blocked_merge_reuses_pull(
    ordered: responses.RequestsMock, status: int, body: object, reason: str
) -> None:
    mock_version(ordered)
    mock_merge(ordered, status, body)
    ordered.get(
        f"{REPO}/pulls",
        json=[{"number": 7, "html_url": "https://github.com/acme/app/pull/7"}],
    )

    outcome = run(Settings(), with_slack=False)

    assert statuses(outcome)["merge"] == "unchanged"
    assert f"{reason}; pull request #7" in detail(outcome, "merge")
    assert statuses(outcome)["tag"] == "skipped"
    # The version GET and the merge POST, then only the pull request lookup.
    assert [call.request.method for call in ordered.calls] == ["GET", "POST", "GET"]
    assert outcome.failed is False


def test_release_annotated_tag_other_commit(mocked: responses.RequestsMock) -> None:
    mock_version(mocked)
    mock_merge(mocked, 201, {"sha": MERGE_SHA})
    tag_object_sha = "2222222222222222222222222222222222222222"
    mocked.get(
        f"{REPO}/git/ref/tags/v1.101.0",
        json={
            "ref": "refs/tags/v1.101.0",
            "object": {"sha": tag_object_sha, "type": "tag"},
        },
    )
    mocked.get(
        f"{REPO}/git/tags/{tag_object_sha}",
        json={"sha": tag_object_sha, "object": {"sha": OTHER_SHA, "type": "commit"}},
    )

    outcome = run(Settings(), with_slack=False)

    assert statuses(outcome)["tag"] == "failed"
    assert OTHER_SHA in detail(outcome, "tag")
    assert MERGE_SHA in detail(outcome, "tag")
    assert tag_object_sha not in detail(outcome, "tag")
    assert outcome.failed is True


@pytest.mark.parametrize(
    ("message", "setting"),
    [
        ("Base does not exist", "release.merge_into"),
        ("Head does not exist", "release.merge_from"),
    ],
)
def test_release_missing_branch(
    mocked: responses.RequestsMock, message: str, setting: str
) -> None:
    mock_version(mocked)
    mock_merge(mocked, 404, {"message": message})
    outcome = run(Settings(), with_slack=False)
    assert statuses(outcome)["merge"] == "failed"
    assert setting in detail(outcome, "merge")
    assert statuses(outcome)["tag"] == "skipped"
    assert outcome.failed is True


def test_release_jira_suffix_not_taken(mocked: responses.RequestsMock) -> None:
    mock_version(mocked)
    mock_merge(mocked, 201, {"sha": MERGE_SHA})
    mock_tag_missing(mocked)
    mock_create_tag(mocked, MERGE_SHA)
    mock_jira_versions(
        mocked,
        [
            {"id": "1", "name": "1.101.0 (build 5)", "released": False},
            {"id": "2", "name": "iOS 1.101.0", "released": False},
            {"id": "3", "name": "1.100.0", "released": True},
        ],
    )
    mock_slack(mocked)

    outcome = run(parse_settings(JIRA_SETTINGS))

    assert statuses(outcome)["jira version"] == "failed"
    message = detail(outcome, "jira version")
    assert "'1.101.0' not found in project IOS" in message
    assert "'1.101.0 (build 5)'" in message
    assert "'iOS 1.101.0'" in message
    assert "jira.version_name" in message
    assert statuses(outcome)["slack"] == "done"
    assert outcome.failed is True


def test_release_jira_already_released(mocked: responses.RequestsMock) -> None:
    mock_version(mocked)
    mock_merge(mocked, 201, {"sha": MERGE_SHA})
    mock_tag_at(mocked, MERGE_SHA)
    mock_jira_versions(mocked, [{"id": "10000", "name": "1.101.0", "released": True}])
    mocked.get(
        f"{JIRA_URL}/rest/api/3/search/jql",
        json={"issues": [jira_issue("IOS-9", "done")], "isLast": True},
    )
    outcome = run(parse_settings(JIRA_SETTINGS), with_slack=False)
    assert statuses(outcome)["jira issues"] == "unchanged"
    assert statuses(outcome)["jira release"] == "unchanged"


def test_release_jira_transition_missing(mocked: responses.RequestsMock) -> None:
    mock_version(mocked)
    mock_merge(mocked, 201, {"sha": MERGE_SHA})
    mock_tag_at(mocked, MERGE_SHA)
    mock_jira_versions(mocked, [{"id": "10000", "name": "1.101.0", "released": False}])
    mocked.get(
        f"{JIRA_URL}/rest/api/3/search/jql",
        json={"issues": [jira_issue("IOS-1")], "isLast": True},
    )
    mocked.get(
        f"{JIRA_URL}/rest/api/3/issue/IOS-1/transitions",
        json={
            "transitions": [
                {"id": "21", "name": "Start", "to": {"name": "In Progress"}}
            ]
        },
    )
    mocked.put(f"{JIRA_URL}/rest/api/3/version/10000", json={"id": "10000"})
    outcome = run(parse_settings(JIRA_SETTINGS), with_slack=False)
    assert statuses(outcome)["jira issues"] == "failed"
    assert "IOS-1 has no transition 'Done'" in detail(outcome, "jira issues")
    assert "'Start'" in detail(outcome, "jira issues")
    assert statuses(outcome)["jira release"] == "done"


def test_release_github_release_reused(mocked: responses.RequestsMock) -> None:
    mock_version(mocked)
    mock_merge(mocked, 201, {"sha": MERGE_SHA})
    mock_tag_at(mocked, MERGE_SHA)
    mocked.get(
        f"{REPO}/releases/tags/v1.101.0", status=404, json={"message": "Not Found"}
    )
    mocked.post(
        f"{REPO}/releases",
        status=422,
        json={
            "message": "Validation Failed",
            "errors": [
                {"resource": "Release", "code": "already_exists", "field": "tag_name"}
            ],
        },
    )
    outcome = run(
        parse_settings("release:\n  github_release: true\n"), with_slack=False
    )
    assert statuses(outcome)["github release"] == "unchanged"


def test_release_github_release_created(mocked: responses.RequestsMock) -> None:
    mock_version(mocked)
    mock_merge(mocked, 201, {"sha": MERGE_SHA})
    mock_tag_at(mocked, MERGE_SHA)
    mocked.get(
        f"{REPO}/releases/tags/v1.101.0", status=404, json={"message": "Not Found"}
    )
    mocked.post(
        f"{REPO}/releases",
        status=201,
        json={"html_url": "https://github.com/acme/app/releases/tag/v1.101.0"},
        match=[
            matchers.json_params_matcher(
                {"tag_name": "v1.101.0", "name": "Acme & Co 1.101.0", "draft": False},
                strict_match=False,
            )
        ],
    )
    outcome = run(
        parse_settings("release:\n  github_release: true\n"), with_slack=False
    )
    assert statuses(outcome)["github release"] == "done"
    assert outcome.outputs["release_url"].endswith("/releases/tag/v1.101.0")


def test_release_wrong_state_stops(mocked: responses.RequestsMock) -> None:
    mock_version(mocked, state="IN_REVIEW")
    outcome = run(Settings())
    assert statuses(outcome) == {"check version": "failed"}
    assert "IN_REVIEW" in detail(outcome, "check version")


def test_release_dry_run_calls_only_asc(
    mocked: responses.RequestsMock, capsys: pytest.CaptureFixture[str]
) -> None:
    # Only the GET of the version is registered, so any GitHub, Jira or Slack
    # request would raise ConnectionError.
    mock_version(mocked)
    outcome = run(parse_settings(JIRA_SETTINGS), dry_run=True)
    assert statuses(outcome) == {
        "merge": "skipped",
        "tag": "skipped",
        "jira": "skipped",
        "slack": "skipped",
    }
    assert "would merge develop into master" in detail(outcome, "merge")
    printed = json.loads(capsys.readouterr().out)
    assert "1.101.0" in printed["text"]


def test_release_tag_created_concurrently(ordered: responses.RequestsMock) -> None:
    mock_version(ordered)
    mock_merge(ordered, 201, {"sha": MERGE_SHA})
    mock_tag_missing(ordered)
    ordered.post(
        f"{REPO}/git/refs",
        status=422,
        json={"message": "Reference already exists"},
    )
    mock_tag_at(ordered, MERGE_SHA)
    outcome = run(Settings(), with_slack=False)
    assert statuses(outcome)["tag"] == "unchanged"
    assert outcome.failed is False

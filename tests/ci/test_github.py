"""Tests for the GitHub REST client used by the release steps."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses
from responses import matchers

from ci.errors import ConfigError
from ci.github import GitHub, is_protection_error
from ci.http import ApiError, ConflictError, ValidationError
from tests.ci.support import GITHUB_URL, SECRETS, http

REPO = f"{GITHUB_URL}/repos/acme/app"
MERGE_SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
TAG_OBJECT_SHA = "940bd336248efae0f9ee5bc7b2d5c985887b16ac"


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def client() -> GitHub:
    return GitHub.from_environ(
        {
            "GITHUB_TOKEN": SECRETS["GITHUB_TOKEN"],
            "GITHUB_REPOSITORY": "acme/app",
            "GITHUB_API_URL": GITHUB_URL,
        },
        http=http("github"),
    )


def test_merge_created(mocked: responses.RequestsMock) -> None:
    mocked.post(
        f"{REPO}/merges",
        status=201,
        json={"sha": MERGE_SHA, "commit": {"message": "Merge"}},
        match=[
            matchers.json_params_matcher(
                {"base": "master", "head": "develop", "commit_message": "msg"}
            ),
            matchers.header_matcher(
                {
                    "Authorization": f"Bearer {SECRETS['GITHUB_TOKEN']}",
                    "Accept": "application/vnd.github+json",
                    "X-GitHub-Api-Version": "2022-11-28",
                }
            ),
        ],
    )
    result = client().merge("master", "develop", "msg")
    assert result.merged is True
    assert result.sha == MERGE_SHA


def test_merge_already_contained(mocked: responses.RequestsMock) -> None:
    mocked.post(f"{REPO}/merges", status=204)
    result = client().merge("master", "develop", "msg")
    assert result.merged is False
    assert result.sha is None


def test_merge_conflict_error(mocked: responses.RequestsMock) -> None:
    mocked.post(
        f"{REPO}/merges",
        status=409,
        json={
            "message": "Merge conflict",
            "documentation_url": "https://docs.github.com/rest/branches/branches#merge-a-branch",
        },
    )
    with pytest.raises(ConflictError) as caught:
        client().merge("master", "develop", "msg")
    assert str(caught.value) == f"POST {REPO}/merges returned 409: Merge conflict"
    assert is_protection_error(caught.value) is False


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (
            409,
            {"message": "Protected branch update failed for refs/heads/master."},
        ),
        (
            422,
            {
                "message": "Protected branch update failed for refs/heads/master.",
                "errors": ['Required status check "ci" is expected.'],
            },
        ),
        (
            403,
            {"message": "Changes must be made through a pull request."},
        ),
        (
            422,
            {
                "message": "Repository rule violations found",
                "errors": [{"message": "Changes must be made through a pull request."}],
            },
        ),
    ],
)
def test_protection_errors_recognised(
    mocked: responses.RequestsMock, status: int, body: dict[str, object]
) -> None:
    mocked.post(f"{REPO}/merges", status=status, json=body)
    with pytest.raises(ApiError) as caught:
        client().merge("master", "develop", "msg")
    assert is_protection_error(caught.value) is True


def test_validation_error_lists_codes(mocked: responses.RequestsMock) -> None:
    mocked.post(
        f"{REPO}/releases",
        status=422,
        json={
            "message": "Validation Failed",
            "errors": [
                {"resource": "Release", "code": "already_exists", "field": "tag_name"}
            ],
            "documentation_url": "https://docs.github.com/rest/releases/releases#create-a-release",
        },
    )
    with pytest.raises(ValidationError) as caught:
        client().create_release("v1", "n", "b")
    assert "Validation Failed; already_exists tag_name" in str(caught.value)
    assert caught.value.codes == ["already_exists"]


def test_tag_commit_lightweight(mocked: responses.RequestsMock) -> None:
    mocked.get(
        f"{REPO}/git/ref/tags/v1.0.0",
        json={
            "ref": "refs/tags/v1.0.0",
            "object": {"sha": MERGE_SHA, "type": "commit"},
        },
    )
    assert client().tag_commit("v1.0.0") == MERGE_SHA


def test_tag_commit_annotated_peeled(mocked: responses.RequestsMock) -> None:
    mocked.get(
        f"{REPO}/git/ref/tags/v1.0.0",
        json={
            "ref": "refs/tags/v1.0.0",
            "object": {"sha": TAG_OBJECT_SHA, "type": "tag"},
        },
    )
    mocked.get(
        f"{REPO}/git/tags/{TAG_OBJECT_SHA}",
        json={
            "sha": TAG_OBJECT_SHA,
            "tag": "v1.0.0",
            "object": {"sha": MERGE_SHA, "type": "commit"},
        },
    )
    assert client().tag_commit("v1.0.0") == MERGE_SHA


def test_tag_commit_missing(mocked: responses.RequestsMock) -> None:
    mocked.get(
        f"{REPO}/git/ref/tags/v1.0.0",
        status=404,
        json={
            "message": "Not Found",
            "documentation_url": "https://docs.github.com/rest",
        },
    )
    assert client().tag_commit("v1.0.0") is None


def test_find_open_pull_query(mocked: responses.RequestsMock) -> None:
    mocked.get(
        f"{REPO}/pulls",
        json=[{"number": 7, "html_url": "https://github.com/acme/app/pull/7"}],
        match=[
            matchers.query_param_matcher(
                {"head": "acme:develop", "base": "master", "state": "open"}
            )
        ],
    )
    pull = client().find_open_pull("develop", "master")
    assert pull is not None
    assert pull["number"] == 7


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"GITHUB_REPOSITORY": "acme/app"}, "GITHUB_TOKEN is not set"),
        ({"GITHUB_TOKEN": SECRETS["GITHUB_TOKEN"]}, "GITHUB_REPOSITORY is ''"),
        (
            {"GITHUB_TOKEN": SECRETS["GITHUB_TOKEN"], "GITHUB_REPOSITORY": "acme"},
            "owner/name",
        ),
    ],
)
def test_from_environ_rejects(environ: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        GitHub.from_environ(environ)
    assert fragment in str(caught.value)
    assert SECRETS["GITHUB_TOKEN"] not in str(caught.value)

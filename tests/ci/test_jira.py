"""Tests for the Jira Cloud client: versions, paged search, transitions."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
import responses
from responses import matchers
from responses.registries import OrderedRegistry

from ci.errors import ConfigError
from ci.http import NotFoundError
from ci.jira import (
    Jira,
    JiraVersion,
    Transition,
    find_transition,
    jql_quote,
    near_versions,
)
from tests.ci.support import JIRA_URL, SECRETS, http

AUTH = (
    "Basic "
    + base64.b64encode(
        f"release@acme.test:{SECRETS['JIRA_API_TOKEN']}".encode()
    ).decode()
)


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


def client() -> Jira:
    return Jira.from_environ(
        {
            "JIRA_BASE_URL": JIRA_URL,
            "JIRA_EMAIL": "release@acme.test",
            "JIRA_API_TOKEN": SECRETS["JIRA_API_TOKEN"],
        },
        http=http("jira"),
    )


def issue(
    key: str, status: str = "In Progress", category: str = "indeterminate"
) -> dict[str, object]:
    return {
        "id": key.split("-")[1],
        "key": key,
        "self": f"{JIRA_URL}/rest/api/3/issue/{key}",
        "fields": {
            "summary": f"Fix {key}",
            "status": {
                "name": status,
                "statusCategory": {"key": category, "name": status},
            },
        },
    }


def test_project_versions_basic_auth(mocked: responses.RequestsMock) -> None:
    mocked.get(
        f"{JIRA_URL}/rest/api/3/project/IOS/versions",
        json=[
            {"id": "10000", "name": "1.2.0", "released": False, "archived": False},
            {"id": "10001", "name": "1.1.0", "released": True, "archived": False},
        ],
        match=[matchers.header_matcher({"Authorization": AUTH})],
    )
    versions = client().project_versions("IOS")
    assert versions == [
        JiraVersion("10000", "1.2.0", False),
        JiraVersion("10001", "1.1.0", True),
    ]


def test_search_follows_next_page_token(ordered: responses.RequestsMock) -> None:
    jql = 'project = "IOS" AND fixVersion = 10000'
    base = {"jql": jql, "fields": "summary,status", "maxResults": "100"}
    ordered.get(
        f"{JIRA_URL}/rest/api/3/search/jql",
        json={
            "issues": [issue("IOS-1"), issue("IOS-2")],
            "nextPageToken": "p2",
            "isLast": False,
        },
        match=[matchers.query_param_matcher(base)],
    )
    ordered.get(
        f"{JIRA_URL}/rest/api/3/search/jql",
        json={"issues": [issue("IOS-3")], "nextPageToken": "p3", "isLast": False},
        match=[matchers.query_param_matcher({**base, "nextPageToken": "p2"})],
    )
    ordered.get(
        f"{JIRA_URL}/rest/api/3/search/jql",
        json={"issues": [issue("IOS-4", "Done", "done")], "isLast": True},
        match=[matchers.query_param_matcher({**base, "nextPageToken": "p3"})],
    )
    issues = client().search_issues(jql)
    assert [item.key for item in issues] == ["IOS-1", "IOS-2", "IOS-3", "IOS-4"]
    assert [item.done for item in issues] == [False, False, False, True]


def test_error_body_parsed(mocked: responses.RequestsMock) -> None:
    mocked.get(
        f"{JIRA_URL}/rest/api/3/project/NOPE/versions",
        status=404,
        json={
            "errorMessages": ["No project could be found with key 'NOPE'."],
            "errors": {},
        },
    )
    with pytest.raises(NotFoundError) as caught:
        client().project_versions("NOPE")
    assert "returned 404: No project could be found with key 'NOPE'." in str(
        caught.value
    )
    assert SECRETS["JIRA_API_TOKEN"] not in str(caught.value)


def test_transition_posts_id(mocked: responses.RequestsMock) -> None:
    mocked.post(
        f"{JIRA_URL}/rest/api/3/issue/IOS-1/transitions",
        status=204,
        match=[matchers.json_params_matcher({"transition": {"id": "31"}})],
    )
    client().transition("IOS-1", "31")


def test_release_version_put(mocked: responses.RequestsMock) -> None:
    mocked.put(
        f"{JIRA_URL}/rest/api/3/version/10000",
        json={
            "id": "10000",
            "name": "1.2.0",
            "released": True,
            "releaseDate": "2026-12-04",
        },
        match=[
            matchers.json_params_matcher(
                {"released": True, "releaseDate": "2026-12-04"}
            )
        ],
    )
    client().release_version("10000", "2026-12-04")


@pytest.mark.parametrize(
    ("wanted", "expected_id"),
    [
        ("Done", "31"),
        ("done", "31"),
        ("Closed", "41"),
        ("Released", "51"),
        ("Nope", None),
    ],
)
def test_find_transition(wanted: str, expected_id: str | None) -> None:
    transitions = [
        Transition("21", "Start", "In Progress"),
        Transition("31", "Done", "Done"),
        Transition("41", "Close issue", "Closed"),
        Transition("51", "Released", "Shipped"),
    ]
    found = find_transition(transitions, wanted)
    assert (found.id if found else None) == expected_id


def test_near_versions_lists_suffixed() -> None:
    versions = [
        JiraVersion("1", "1.2.0 (build 5)", False),
        JiraVersion("2", "iOS 1.2.0", False),
        JiraVersion("3", "11.2.0", False),
        JiraVersion("4", "1.2.0.1", False),
        JiraVersion("5", "2.0.0", False),
    ]
    candidates = near_versions(versions, "1.2.0")
    assert candidates[:2] == ["1.2.0 (build 5)", "iOS 1.2.0"]
    assert "2.0.0" not in candidates


def test_jql_quote_escapes() -> None:
    assert jql_quote('a "b" \\c') == '"a \\"b\\" \\\\c"'


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({}, "JIRA_BASE_URL, JIRA_EMAIL, JIRA_API_TOKEN are not"),
        (
            {"JIRA_BASE_URL": JIRA_URL, "JIRA_EMAIL": "a@b.test"},
            "JIRA_API_TOKEN is not",
        ),
        (
            {
                "JIRA_BASE_URL": "acme.atlassian.net",
                "JIRA_EMAIL": "a@b.test",
                "JIRA_API_TOKEN": SECRETS["JIRA_API_TOKEN"],
            },
            "https://your-site.atlassian.net",
        ),
    ],
)
def test_from_environ_rejects(environ: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Jira.from_environ(environ)
    assert fragment in str(caught.value)
    assert SECRETS["JIRA_API_TOKEN"] not in str(caught.value)

"""Jira Cloud REST v3 calls for closing a fix version at release time.

Credentials come from ``JIRA_BASE_URL`` (``https://your-site.atlassian.net``),
``JIRA_EMAIL`` and ``JIRA_API_TOKEN`` (basic auth with an API token).

Issue search uses ``GET /rest/api/3/search/jql``. Atlassian removed the older
``/rest/api/3/search`` from Jira Cloud in 2025 (changelog CHANGE-2046), and the
new endpoint pages with ``nextPageToken`` (absent on the last page, which also
has ``isLast: true``) instead of ``startAt`` and ``total``.
"""

from __future__ import annotations

import base64
import difflib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from ci.errors import ConfigError
from ci.http import HttpClient

logger = logging.getLogger(__name__)

BASE_URL_VAR = "JIRA_BASE_URL"
EMAIL_VAR = "JIRA_EMAIL"
TOKEN_VAR = "JIRA_API_TOKEN"

#: Issues requested per search page. Jira may return fewer; the loop follows
#: ``nextPageToken`` either way.
SEARCH_PAGE_SIZE = 100
#: A safety stop for a server that keeps returning a next page.
MAX_SEARCH_PAGES = 200


def parse_jira_error(response: requests.Response) -> tuple[str, list[dict[str, Any]]]:
    """Summarize Jira's ``{"errorMessages": [...], "errors": {field: text}}``."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip().replace("\n", " ")[:300], []
    if not isinstance(body, dict):
        return str(body)[:300], []
    messages = [str(text) for text in body.get("errorMessages") or []]
    entries = [{"message": text} for text in messages]
    field_errors = body.get("errors")
    if isinstance(field_errors, dict):
        for name, text in field_errors.items():
            messages.append(f"{name}: {text}")
            entries.append({"code": name, "message": str(text)})
    if not messages and body.get("message"):
        messages.append(str(body["message"]))
    return "; ".join(messages), entries


@dataclass(frozen=True)
class JiraVersion:
    """A project version (a "fix version") in Jira."""

    id: str
    name: str
    released: bool


@dataclass(frozen=True)
class JiraIssue:
    """An issue with its status and whether that status is in the Done category."""

    key: str
    summary: str
    status: str
    done: bool


@dataclass(frozen=True)
class Transition:
    id: str
    name: str
    to_status: str


class Jira:
    """A Jira Cloud client using basic auth with an API token."""

    def __init__(
        self,
        base_url: str,
        email: str,
        api_token: str,
        *,
        http: HttpClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        credentials = f"{email}:{api_token}".encode()
        self._authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
        self.http = http or HttpClient("jira", error_parser=parse_jira_error)
        self.http.error_parser = parse_jira_error

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], http: HttpClient | None = None
    ) -> Jira:
        """Build a client from the environment; raise ConfigError naming gaps."""
        missing = [
            name
            for name in (BASE_URL_VAR, EMAIL_VAR, TOKEN_VAR)
            if not environ.get(name, "").strip()
        ]
        if missing:
            raise ConfigError(
                f"jira.project is set but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not: set {BASE_URL_VAR} "
                "(https://your-site.atlassian.net), JIRA_EMAIL and JIRA_API_TOKEN, "
                "or remove jira.project to turn the Jira steps off"
            )
        base_url = environ[BASE_URL_VAR].strip()
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ConfigError(
                f"{BASE_URL_VAR} is {base_url!r}: set it to the site URL, such as "
                "https://your-site.atlassian.net"
            )
        return cls(
            base_url, environ[EMAIL_VAR].strip(), environ[TOKEN_VAR].strip(), http=http
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> requests.Response:
        return self.http.request(
            method,
            f"{self.base_url}{path}",
            headers={
                "Authorization": self._authorization,
                "Accept": "application/json",
            },
            params=params,
            json=json,
        )

    def browse_url(self, key: str) -> str:
        return f"{self.base_url}/browse/{key}"

    def project_versions(self, project: str) -> list[JiraVersion]:
        """List every version of a project (``GET /project/{key}/versions``)."""
        response = self.request(
            "GET", f"/rest/api/3/project/{quote(project, safe='')}/versions"
        )
        return [
            JiraVersion(
                id=str(item["id"]),
                name=str(item.get("name", "")),
                released=bool(item.get("released", False)),
            )
            for item in response.json()
        ]

    def search_issues(self, jql: str) -> list[JiraIssue]:
        """Return every issue matching ``jql``, following ``nextPageToken``."""
        issues: list[JiraIssue] = []
        token: str | None = None
        for _ in range(MAX_SEARCH_PAGES):
            params: dict[str, Any] = {
                "jql": jql,
                "fields": "summary,status",
                "maxResults": SEARCH_PAGE_SIZE,
            }
            if token:
                params["nextPageToken"] = token
            body = self.request("GET", "/rest/api/3/search/jql", params=params).json()
            issues.extend(_issue(item) for item in body.get("issues") or [])
            token = body.get("nextPageToken")
            if not token or body.get("isLast") is True:
                return issues
        logger.warning(
            "Jira search %r still had more pages after %d; using the first %d issues",
            jql,
            MAX_SEARCH_PAGES,
            len(issues),
        )
        return issues

    def transitions(self, key: str) -> list[Transition]:
        body = self.request(
            "GET", f"/rest/api/3/issue/{quote(key, safe='')}/transitions"
        ).json()
        return [
            Transition(
                id=str(item["id"]),
                name=str(item.get("name", "")),
                to_status=str((item.get("to") or {}).get("name", "")),
            )
            for item in body.get("transitions") or []
        ]

    def transition(self, key: str, transition_id: str) -> None:
        self.request(
            "POST",
            f"/rest/api/3/issue/{quote(key, safe='')}/transitions",
            json={"transition": {"id": transition_id}},
        )

    def release_version(self, version_id: str, release_date: str) -> None:
        """Mark a version released on ``release_date`` (``YYYY-MM-DD``)."""
        self.request(
            "PUT",
            f"/rest/api/3/version/{quote(version_id, safe='')}",
            json={"released": True, "releaseDate": release_date},
        )


def find_transition(transitions: list[Transition], name: str) -> Transition | None:
    """Match ``name`` to a transition name, then to a target status name.

    The comparison ignores case and surrounding spaces.
    """
    key = name.strip().casefold()
    for transition in transitions:
        if transition.name.strip().casefold() == key:
            return transition
    for transition in transitions:
        if transition.to_status.strip().casefold() == key:
            return transition
    return None


def near_versions(
    versions: list[JiraVersion], version_name: str, limit: int = 5
) -> list[str]:
    """Return version names that resemble ``version_name`` without matching it exactly.

    Names that contain ``version_name`` as a whole version number ("1.2.0 (build 5)",
    "iOS 1.2.0", but not "1.2.0.1" or "11.2.0") come first, then close
    spellings by difflib.
    """
    pattern = re.compile(r"(?<![\w.])" + re.escape(version_name) + r"(?![\w]|\.\w)")
    containing = [
        v.name for v in versions if v.name != version_name and pattern.search(v.name)
    ]
    names = [v.name for v in versions if v.name != version_name]
    similar = difflib.get_close_matches(version_name, names, n=limit, cutoff=0.75)
    ordered: list[str] = []
    for name in containing + similar:
        if name not in ordered:
            ordered.append(name)
    return ordered[:limit]


def jql_quote(value: str) -> str:
    """Quote a value for JQL, escaping backslashes and double quotes."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _issue(item: Mapping[str, Any]) -> JiraIssue:
    fields = item.get("fields") or {}
    status = fields.get("status") or {}
    category = (status.get("statusCategory") or {}).get("key")
    return JiraIssue(
        key=str(item["key"]),
        summary=str(fields.get("summary") or ""),
        status=str(status.get("name") or ""),
        done=category == "done",
    )

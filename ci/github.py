"""GitHub REST calls for the release steps: merge, pull request, tag, release.

Reads ``GITHUB_TOKEN``, ``GITHUB_REPOSITORY`` and ``GITHUB_API_URL`` as
GitHub Actions sets them. Each method returns plain data or raises
:class:`ci.http.ApiError`; deciding what a status means for the release is
left to :mod:`ci.release`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from ci.errors import ConfigError
from ci.http import ApiError, HttpClient

logger = logging.getLogger(__name__)

TOKEN_VAR = "GITHUB_TOKEN"
REPOSITORY_VAR = "GITHUB_REPOSITORY"
API_URL_VAR = "GITHUB_API_URL"
DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"

#: Phrases GitHub uses when branch protection or a ruleset blocks a push.
PROTECTION_PHRASES = (
    "protected branch",
    "required status check",
    "changes must be made through a pull request",
    "review required",
    "approving review",
    "repository rule violations",
    "cannot update this protected ref",
)


def parse_github_error(response: requests.Response) -> tuple[str, list[dict[str, Any]]]:
    """Return GitHub's ``message`` plus its ``errors`` entries, for ApiError.

    GitHub error bodies look like ``{"message": "...", "errors": [{"code":
    "already_exists", ...}] | ["text", ...], "documentation_url": "..."}``.
    """
    try:
        body = response.json()
    except ValueError:
        return response.text.strip().replace("\n", " ")[:300], []
    if not isinstance(body, dict):
        return str(body)[:300], []

    entries: list[dict[str, Any]] = []
    for entry in body.get("errors") or []:
        if isinstance(entry, dict):
            entries.append(entry)
        else:
            entries.append({"message": str(entry)})

    parts = [str(body.get("message") or "")]
    for entry in entries:
        text = " ".join(
            str(entry[key]) for key in ("code", "field", "message") if entry.get(key)
        )
        if text:
            parts.append(text)
    return "; ".join(part for part in parts if part), entries


def error_text(exc: ApiError) -> str:
    """Return the message and every error entry of a GitHub error, lower-cased."""
    parts = [str(exc)]
    for entry in exc.errors:
        parts.extend(str(value) for value in entry.values())
    return " ".join(parts).lower()


def is_protection_error(exc: ApiError) -> bool:
    """Tell whether a 403/405/409/422 comes from branch protection or a ruleset."""
    if exc.status not in (403, 405, 409, 422):
        return False
    text = error_text(exc)
    return any(phrase in text for phrase in PROTECTION_PHRASES)


@dataclass(frozen=True)
class MergeResult:
    """The outcome of ``POST /merges``: ``sha`` is the merge commit, or None
    when the base already contained the head (204)."""

    merged: bool
    sha: str | None


class GitHub:
    """A GitHub REST client for one repository."""

    def __init__(
        self,
        token: str,
        repository: str,
        *,
        api_url: str = DEFAULT_API_URL,
        http: HttpClient | None = None,
    ) -> None:
        self.token = token
        self.owner, self.name = repository.split("/", 1)
        self.api_url = api_url.rstrip("/")
        self.http = http or HttpClient("github", error_parser=parse_github_error)
        self.http.error_parser = parse_github_error

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], http: HttpClient | None = None
    ) -> GitHub:
        """Build a client from the Actions variables; raise ConfigError when missing."""
        token = environ.get(TOKEN_VAR, "").strip()
        if not token:
            raise ConfigError(
                f"{TOKEN_VAR} is not set: pass it to the step with "
                "`env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}` and grant "
                "`contents: write` and `pull-requests: write`"
            )
        repository = environ.get(REPOSITORY_VAR, "").strip()
        if repository.count("/") != 1 or not all(repository.split("/")):
            raise ConfigError(
                f"{REPOSITORY_VAR} is {repository!r}: set it to owner/name "
                "(GitHub Actions sets it for every job)"
            )
        api_url = environ.get(API_URL_VAR, "").strip() or DEFAULT_API_URL
        return cls(token, repository, api_url=api_url, http=http)

    @property
    def repository(self) -> str:
        return f"{self.owner}/{self.name}"

    def url(self, path: str) -> str:
        return f"{self.api_url}/repos/{self.owner}/{self.name}{path}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        expected: tuple[int, ...] = (),
    ) -> requests.Response:
        return self.http.request(
            method,
            self.url(path),
            headers={
                "Authorization": f"Bearer {self.token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
            },
            params=params,
            json=json,
            expected=expected,
        )

    # Merges and pull requests

    def merge(self, base: str, head: str, commit_message: str) -> MergeResult:
        """Merge ``head`` into ``base`` on the server (``POST /merges``)."""
        response = self.request(
            "POST",
            "/merges",
            json={"base": base, "head": head, "commit_message": commit_message},
        )
        if response.status_code == 204:
            return MergeResult(merged=False, sha=None)
        return MergeResult(merged=True, sha=str(response.json()["sha"]))

    def branch_sha(self, branch: str) -> str:
        """Return the commit SHA at the tip of ``branch``."""
        response = self.request("GET", f"/git/ref/heads/{quote(branch, safe='/')}")
        return str(response.json()["object"]["sha"])

    def find_open_pull(self, head: str, base: str) -> dict[str, Any] | None:
        """Return the open pull request from ``head`` into ``base``, or None."""
        response = self.request(
            "GET",
            "/pulls",
            params={"head": f"{self.owner}:{head}", "base": base, "state": "open"},
        )
        pulls = response.json()
        return pulls[0] if pulls else None

    def create_pull(
        self, head: str, base: str, title: str, body: str
    ) -> dict[str, Any]:
        """Open a pull request from ``head`` into ``base``."""
        response = self.request(
            "POST",
            "/pulls",
            json={"head": head, "base": base, "title": title, "body": body},
        )
        return dict(response.json())

    # Tags and releases

    def tag_commit(self, tag: str) -> str | None:
        """Return the commit a tag points at (annotated tags peeled), or None.

        ``GET /git/ref/tags/{tag}`` matches the ref exactly; a 404 means the
        tag does not exist.
        """
        response = self.request(
            "GET", f"/git/ref/tags/{quote(tag, safe='/')}", expected=(404,)
        )
        if response.status_code == 404:
            return None
        target = response.json()["object"]
        # An annotated tag points at a tag object, which may itself point at
        # another tag; follow the chain to the commit.
        for _ in range(5):
            if target["type"] != "tag":
                break
            tag_object = self.request("GET", f"/git/tags/{target['sha']}").json()
            target = tag_object["object"]
        return str(target["sha"])

    def create_tag(self, tag: str, sha: str) -> None:
        """Create a lightweight tag ``refs/tags/{tag}`` at ``sha``."""
        self.request("POST", "/git/refs", json={"ref": f"refs/tags/{tag}", "sha": sha})

    def release_by_tag(self, tag: str) -> dict[str, Any] | None:
        response = self.request(
            "GET", f"/releases/tags/{quote(tag, safe='')}", expected=(404,)
        )
        if response.status_code == 404:
            return None
        return dict(response.json())

    def create_release(self, tag: str, name: str, body: str) -> dict[str, Any]:
        """Create a published release for an existing tag."""
        response = self.request(
            "POST",
            "/releases",
            json={"tag_name": tag, "name": name, "body": body, "draft": False},
        )
        return dict(response.json())

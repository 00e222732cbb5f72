"""Release steps on Jira: close the fix version's issues and release the version.

The version is matched by exact name. Near names such as "1.2.0 (build 5)" are
listed in the failure and never used.
"""

from __future__ import annotations

import logging
from datetime import date

from ci.http import ApiError
from ci.jira import (
    Jira,
    JiraIssue,
    JiraVersion,
    find_transition,
    jql_quote,
    near_versions,
)
from ci.outcome import Outcome
from ci.release_version import VersionInfo
from ci.settings import Settings, render_template

logger = logging.getLogger(__name__)


def jira_steps(
    jira: Jira, settings: Settings, info: VersionInfo, today: date, outcome: Outcome
) -> list[JiraIssue]:
    """Close the Jira fix version: transition its issues, then mark it released."""
    project = str(settings.jira.project)
    name = render_template(settings.jira.version_name, **info.template_values())
    try:
        versions = jira.project_versions(project)
    except ApiError as exc:
        outcome.add(
            "jira version", "failed", f"{exc}; check jira.project ({project!r})"
        )
        return []

    version = next((item for item in versions if item.name == name), None)
    if version is None:
        outcome.add(
            "jira version", "failed", _version_not_found(project, name, versions)
        )
        return []
    outcome.add(
        "jira version", "unchanged", f"found {name} (id {version.id}) in {project}"
    )
    outcome.outputs["jira_version_id"] = version.id

    jql = (
        f"project = {jql_quote(project)} AND fixVersion = {version.id} ORDER BY key ASC"
    )
    try:
        issues = jira.search_issues(jql)
    except ApiError as exc:
        outcome.add("jira issues", "failed", str(exc))
        return []
    _transition_issues(jira, settings, issues, outcome)
    _release_version(jira, settings, version, today, outcome)
    return issues


def _version_not_found(project: str, name: str, versions: list[JiraVersion]) -> str:
    candidates = near_versions(versions, name)
    detail = f"Jira version {name!r} not found in project {project}"
    if candidates:
        listed = ", ".join(repr(item) for item in candidates)
        return (
            f"{detail}; near candidates: {listed}. Versions must match exactly: "
            "rename the Jira version or change jira.version_name (for example "
            "'iOS {version}')"
        )
    return f"{detail}; create it in Jira or change jira.version_name"


def _transition_issues(
    jira: Jira, settings: Settings, issues: list[JiraIssue], outcome: Outcome
) -> None:
    transition_name = settings.jira.done_transition
    moved: list[str] = []
    already: list[str] = []
    failures: list[str] = []
    for issue in issues:
        if issue.done:
            already.append(issue.key)
            continue
        try:
            transitions = jira.transitions(issue.key)
            match = find_transition(transitions, transition_name)
            if match is None:
                available = ", ".join(repr(item.name) for item in transitions) or "none"
                failures.append(
                    f"{issue.key} has no transition {transition_name!r} from "
                    f"{issue.status!r} (available: {available})"
                )
                continue
            jira.transition(issue.key, match.id)
        except ApiError as exc:
            failures.append(f"{issue.key}: {exc}")
            continue
        moved.append(issue.key)

    summary = f"{len(moved)} moved to {transition_name}, {len(already)} already done"
    if moved:
        summary += f" ({', '.join(moved)})"
    if failures:
        outcome.add(
            "jira issues",
            "failed",
            f"{summary}, {len(failures)} failed: {'; '.join(failures)}. Check "
            "jira.done_transition against the project's workflow",
        )
    elif moved:
        outcome.add("jira issues", "done", summary)
    else:
        outcome.add("jira issues", "unchanged", summary)


def _release_version(
    jira: Jira, settings: Settings, version: JiraVersion, today: date, outcome: Outcome
) -> None:
    if version.released:
        outcome.add("jira release", "unchanged", f"{version.name} is already released")
        return
    if not settings.jira.release_version:
        outcome.add("jira release", "skipped", "jira.release_version is false")
        return
    try:
        jira.release_version(version.id, today.isoformat())
    except ApiError as exc:
        outcome.add("jira release", "failed", str(exc))
        return
    outcome.add(
        "jira release", "done", f"marked {version.name} released on {today.isoformat()}"
    )

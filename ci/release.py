"""The release automation, run when a version becomes READY_FOR_DISTRIBUTION.

Steps, each reported on its own so that one failure does not hide the rest:
merge ``release.merge_from`` into ``release.merge_into``, tag the merge
commit, optionally publish a GitHub release, close the Jira fix version, and
post to Slack. Every step checks the current state first, so running the
automation twice changes nothing the second time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from ci.asc import AppStoreConnect, attribute
from ci.github import GitHub, is_protection_error
from ci.http import ApiError
from ci.jira import (
    Jira,
    JiraIssue,
    JiraVersion,
    find_transition,
    jql_quote,
    near_versions,
)
from ci.notify import send_message
from ci.outcome import Outcome
from ci.settings import Settings, render_template
from ci.slack import (
    Message,
    Slack,
    context_block,
    escape,
    fields_block,
    header_block,
    link,
    section_block,
)

logger = logging.getLogger(__name__)

ACTION = "release"
RELEASED_STATE = "READY_FOR_DISTRIBUTION"
#: Issues listed by name in the Slack message; the rest are counted.
MAX_LISTED_ISSUES = 30


@dataclass(frozen=True)
class VersionInfo:
    """Facts about an App Store version that the release steps use."""

    id: str
    version: str
    platform: str
    app_name: str
    build: str
    state: str | None

    def template_values(self) -> dict[str, str]:
        return {
            "version": self.version,
            "build": self.build,
            "platform": self.platform,
            "app": self.app_name,
        }


@dataclass
class MergeState:
    """Result of the merge step: the commit to tag, or the pull request to wait for."""

    sha: str | None = None
    pull_request: str | None = None


def fetch_version(
    asc: AppStoreConnect, version_id: str, settings: Settings
) -> VersionInfo:
    """Fetch ``GET /v1/appStoreVersions/{id}?include=app,build``."""
    document = asc.app_store_version(version_id, include=("app", "build"))
    version = document.data or {}
    app = document.related(version, "app")
    build = document.related(version, "build")
    return VersionInfo(
        id=version_id,
        version=str(attribute(version, "versionString") or ""),
        platform=str(attribute(version, "platform") or settings.platform),
        app_name=str(attribute(app, "name") or settings.app_name or "the app"),
        build=str(attribute(build, "version") or ""),
        state=attribute(version, "appVersionState"),
    )


def run_release(
    asc: AppStoreConnect,
    version_id: str,
    settings: Settings,
    *,
    github: GitHub | None,
    jira: Jira | None,
    slack: Slack | None,
    today: date,
    dry_run: bool = False,
) -> Outcome:
    """Run every release step for one App Store version and report each."""
    outcome = Outcome(ACTION)
    info = fetch_version(asc, version_id, settings)
    outcome.outputs.update(
        {
            "version": info.version,
            "app_store_version_id": info.id,
            "platform": info.platform,
        }
    )
    if info.build:
        outcome.outputs["build_number"] = info.build
    logger.info(
        "release %s %s (%s), App Store version %s",
        info.app_name,
        info.version,
        info.platform,
        info.id,
    )

    if not info.version:
        outcome.add(
            "check version",
            "failed",
            f"App Store version {version_id} has no versionString",
        )
        return outcome
    if info.state != RELEASED_STATE:
        outcome.add(
            "check version",
            "failed",
            f"{info.app_name} {info.version} is in state {info.state}, not "
            f"{RELEASED_STATE}: the release steps run only for a released version",
        )
        return outcome

    if dry_run:
        return _plan(
            info, settings, outcome, jira_enabled=jira is not None, slack=slack
        )

    merge = MergeState()
    if github is not None:
        merge = merge_step(github, settings, info, outcome)
        tag = tag_step(github, settings, info, merge, outcome)
        github_release_step(github, settings, info, tag, outcome)
    else:
        outcome.add("merge", "skipped", "GitHub is not configured")

    issues: list[JiraIssue] = []
    if jira is not None and settings.jira.enabled:
        issues = jira_steps(jira, settings, info, today, outcome)
    else:
        outcome.add("jira", "skipped", "jira.project is not set")

    if settings.slack.notify_release:
        message = release_message(info, outcome, merge, issues, jira)
        send_message(slack, message, outcome, "slack")
    else:
        outcome.add("slack", "skipped", "slack.notify_release is false")
    return outcome


def merge_step(
    github: GitHub, settings: Settings, info: VersionInfo, outcome: Outcome
) -> MergeState:
    """Merge ``merge_from`` into ``merge_into``, or open a pull request when blocked."""
    source = settings.release.merge_from
    target = settings.release.merge_into
    if not settings.release.merge:
        outcome.add("merge", "skipped", "release.merge is false")
        try:
            return MergeState(sha=github.branch_sha(target))
        except ApiError as exc:
            outcome.add(
                "find commit to tag",
                "failed",
                f"{exc}; check release.merge_into ({target!r})",
            )
            return MergeState()

    message = f"Merge {source} into {target} for {info.app_name} {info.version}"
    try:
        result = github.merge(base=target, head=source, commit_message=message)
    except ApiError as exc:
        if exc.status == 404:
            outcome.add("merge", "failed", _missing_branch_detail(exc, source, target))
            return MergeState()
        if exc.status == 409 or is_protection_error(exc):
            reason = (
                "branch protection blocks the merge"
                if is_protection_error(exc)
                else "merge conflict"
            )
            return _pull_request_instead(github, settings, info, outcome, reason)
        outcome.add("merge", "failed", str(exc))
        return MergeState()

    if result.merged:
        outcome.add("merge", "done", f"merged {source} into {target} as {result.sha}")
        outcome.outputs["merge_sha"] = str(result.sha)
        return MergeState(sha=result.sha)

    try:
        head = github.branch_sha(target)
    except ApiError as exc:
        outcome.add("merge", "failed", f"{target} already contains {source}, but {exc}")
        return MergeState()
    outcome.add("merge", "unchanged", f"{target} already contains {source} (at {head})")
    outcome.outputs["merge_sha"] = head
    return MergeState(sha=head)


def _missing_branch_detail(exc: ApiError, source: str, target: str) -> str:
    text = str(exc).lower()
    if "base does not exist" in text:
        return f"{exc}; branch {target!r} does not exist: fix release.merge_into"
    if "head does not exist" in text:
        return f"{exc}; branch {source!r} does not exist: fix release.merge_from"
    return (
        f"{exc}; check that the branches {source!r} (release.merge_from) and "
        f"{target!r} (release.merge_into) exist and GITHUB_TOKEN can read them"
    )


def _pull_request_instead(
    github: GitHub, settings: Settings, info: VersionInfo, outcome: Outcome, reason: str
) -> MergeState:
    source = settings.release.merge_from
    target = settings.release.merge_into
    try:
        existing = github.find_open_pull(head=source, base=target)
        if existing is not None:
            url = str(existing.get("html_url"))
            outcome.add(
                "merge",
                "unchanged",
                f"{reason}; pull request #{existing.get('number')} from {source} into "
                f"{target} is already open: {url}",
            )
            outcome.outputs["pull_request"] = url
            return MergeState(pull_request=url)
        created = github.create_pull(
            head=source,
            base=target,
            title=f"Merge {source} into {target} for {info.app_name} {info.version}",
            body=(
                f"{info.app_name} {info.version} ({info.platform}) is ready for "
                f"distribution on the App Store. asc-ci could not merge {source} into "
                f"{target} directly ({reason}); merge this pull request, then run "
                f"`asc-ci release --version {info.id}` to tag the merge commit."
            ),
        )
    except ApiError as exc:
        outcome.add(
            "merge", "failed", f"{reason}, and opening a pull request failed: {exc}"
        )
        return MergeState()
    url = str(created.get("html_url"))
    outcome.add(
        "merge",
        "done",
        f"{reason}; opened pull request #{created.get('number')}: {url}",
    )
    outcome.outputs["pull_request"] = url
    return MergeState(pull_request=url)


def tag_step(
    github: GitHub,
    settings: Settings,
    info: VersionInfo,
    merge: MergeState,
    outcome: Outcome,
) -> str | None:
    """Tag the merge commit; return the tag name when it points at the right commit."""
    template = settings.release.tag
    if template is None:
        outcome.add("tag", "skipped", "release.tag is null")
        return None
    tag = render_template(template, **info.template_values())
    outcome.outputs["tag"] = tag
    if merge.sha is None:
        waiting = (
            f" until pull request {merge.pull_request} is merged"
            if merge.pull_request
            else ""
        )
        outcome.add(
            "tag",
            "skipped",
            f"no merge commit to tag{waiting}; run "
            f"`asc-ci release --version {info.id}` afterwards",
        )
        return None

    try:
        existing = github.tag_commit(tag)
        if existing == merge.sha:
            outcome.add("tag", "unchanged", f"{tag} already points at {merge.sha}")
            return tag
        if existing is not None:
            outcome.add(
                "tag",
                "failed",
                f"tag {tag} already points at {existing}, not at the merge commit "
                f"{merge.sha}: check which commit was released, then move or delete "
                "the tag, or set release.tag to another name",
            )
            return None
        github.create_tag(tag, merge.sha)
    except ApiError as exc:
        # 422 "Reference already exists": another run created the tag after
        # the lookup above, so check where it points now.
        if exc.status == 422 and _tag_commit_or_none(github, tag) == merge.sha:
            outcome.add("tag", "unchanged", f"{tag} already points at {merge.sha}")
            return tag
        outcome.add("tag", "failed", str(exc))
        return None
    outcome.add("tag", "done", f"tagged {merge.sha} as {tag}")
    return tag


def _tag_commit_or_none(github: GitHub, tag: str) -> str | None:
    try:
        return github.tag_commit(tag)
    except ApiError as exc:
        logger.warning("could not read tag %s again: %s", tag, exc)
        return None


def github_release_step(
    github: GitHub,
    settings: Settings,
    info: VersionInfo,
    tag: str | None,
    outcome: Outcome,
) -> None:
    if not settings.release.github_release:
        outcome.add("github release", "skipped", "release.github_release is false")
        return
    if tag is None:
        outcome.add("github release", "skipped", "no tag to publish a release for")
        return
    name = render_template(settings.release.release_name, **info.template_values())
    body = (
        f"{info.app_name} {info.version} ({info.platform}"
        f"{', build ' + info.build if info.build else ''}) is live on the App Store."
    )
    try:
        existing = github.release_by_tag(tag)
        if existing is not None:
            url = str(existing.get("html_url"))
            outcome.add(
                "github release", "unchanged", f"release for {tag} exists: {url}"
            )
            outcome.outputs["release_url"] = url
            return
        try:
            created = github.create_release(tag, name, body)
        except ApiError as exc:
            if exc.status == 422 and "already_exists" in str(exc):
                outcome.add(
                    "github release", "unchanged", f"release for {tag} already exists"
                )
                return
            raise
    except ApiError as exc:
        outcome.add("github release", "failed", str(exc))
        return
    url = str(created.get("html_url"))
    outcome.add("github release", "done", f"published {name}: {url}")
    outcome.outputs["release_url"] = url


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


def release_message(
    info: VersionInfo,
    outcome: Outcome,
    merge: MergeState,
    issues: list[JiraIssue],
    jira: Jira | None,
) -> Message:
    """Build the Slack message announcing the release."""
    title = f"{info.app_name} {info.version} is live on the App Store"
    fields = [("Version", info.version), ("Platform", info.platform)]
    if info.build:
        fields.append(("Build", info.build))
    if "tag" in outcome.outputs:
        fields.append(("Tag", outcome.outputs["tag"]))
    blocks = [header_block(f":rocket: {title}"), fields_block(fields)]
    if merge.pull_request:
        blocks.append(
            section_block(
                ":warning: The merge needs a human: "
                + link(merge.pull_request, "open pull request")
            )
        )
    if issues:
        lines = []
        for issue in issues[:MAX_LISTED_ISSUES]:
            key = (
                link(jira.browse_url(issue.key), issue.key)
                if jira
                else escape(issue.key)
            )
            lines.append(f"• {key} {escape(issue.summary)}")
        if len(issues) > MAX_LISTED_ISSUES:
            lines.append(f"… and {len(issues) - MAX_LISTED_ISSUES} more")
        blocks.append(
            section_block(
                f"*Issues in this release ({len(issues)})*\n" + "\n".join(lines)
            )
        )
    failed = [step.name for step in outcome.steps if step.status == "failed"]
    if failed:
        blocks.append(
            context_block(
                escape(f"Failed steps: {', '.join(failed)}; see the workflow run")
            )
        )
    return Message(text=title, blocks=blocks)


def _plan(
    info: VersionInfo,
    settings: Settings,
    outcome: Outcome,
    *,
    jira_enabled: bool,
    slack: Slack | None,
) -> Outcome:
    """Report what a real run would do, without calling GitHub, Jira or Slack."""
    release = settings.release
    if release.merge:
        outcome.add(
            "merge",
            "skipped",
            f"dry run: would merge {release.merge_from} into {release.merge_into}",
        )
    if release.tag is not None:
        tag = render_template(release.tag, **info.template_values())
        outcome.outputs["tag"] = tag
        outcome.add("tag", "skipped", f"dry run: would tag the merge commit as {tag}")
        if release.github_release:
            outcome.add(
                "github release",
                "skipped",
                f"dry run: would publish a release for {tag}",
            )
    if jira_enabled and settings.jira.enabled:
        name = render_template(settings.jira.version_name, **info.template_values())
        outcome.add(
            "jira",
            "skipped",
            f"dry run: would move the issues of {settings.jira.project} version "
            f"{name!r} to {settings.jira.done_transition!r} and release it",
        )
    if settings.slack.notify_release:
        message = release_message(info, outcome, MergeState(), [], None)
        send_message(slack, message, outcome, "slack", dry_run=True)
    return outcome

"""The release automation, run when a version becomes READY_FOR_DISTRIBUTION.

Steps, each reported on its own so that one failure does not hide the rest:
merge ``release.merge_from`` into ``release.merge_into``, tag the merge
commit, optionally publish a GitHub release, close the Jira fix version, and
post to Slack. Every step checks the current state first, so running the
automation twice changes nothing the second time.

The GitHub steps live in ``ci.release_github``, the Jira steps in
``ci.release_jira`` and the version lookup in ``ci.release_version``.
"""

from __future__ import annotations

import logging
from datetime import date

from ci.asc import AppStoreConnect
from ci.github import GitHub
from ci.jira import Jira, JiraIssue
from ci.notify_send import send_message
from ci.outcome import Outcome
from ci.release_github import MergeState, github_release_step, merge_step, tag_step
from ci.release_jira import jira_steps
from ci.release_version import VersionInfo, fetch_version
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

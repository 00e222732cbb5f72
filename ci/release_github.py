"""Release steps on GitHub: merge the release branch, tag it, publish a release.

A merge that GitHub rejects for a conflict or a protected branch becomes a pull
request. A tag that already exists on another commit is a failure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ci.github import GitHub, is_protection_error
from ci.http import ApiError
from ci.outcome import Outcome
from ci.release_version import VersionInfo
from ci.settings import Settings, render_template

logger = logging.getLogger(__name__)


@dataclass
class MergeState:
    """Result of the merge step: the commit to tag, or the pull request to wait for."""

    sha: str | None = None
    pull_request: str | None = None


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

"""Slack notifications: failed build uploads, review states, TestFlight events.

Each function fetches the resource the webhook names, builds one Block Kit
message and posts it. Without Slack configured the post step is reported as
skipped, not failed, so a repository can use the other automations alone.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ci.asc import AppStoreConnect, Document, attribute, related_id
from ci.event import AscEvent, HistoryEntry
from ci.http import ApiError
from ci.outcome import Outcome
from ci.settings import Settings
from ci.slack import (
    SECTION_TEXT_LIMIT,
    Message,
    Slack,
    context_block,
    escape,
    fields_block,
    header_block,
    link,
    section_block,
    truncate,
)

logger = logging.getLogger(__name__)

NOT_CONFIGURED = (
    "Slack is not configured: set SLACK_WEBHOOK_URL, or SLACK_BOT_TOKEN and "
    "slack.channel, to receive this message"
)
#: Error and warning entries shown one per block; Slack allows 50 blocks.
MAX_LISTED_PROBLEMS = 20
#: States that mean the review started, newest first in preference.
REVIEW_START_STATES = ("WAITING_FOR_REVIEW", "IN_REVIEW")

_STATE_EMOJI = {
    "REJECTED": ":x:",
    "METADATA_REJECTED": ":x:",
    "INVALID_BINARY": ":x:",
    "DEVELOPER_REJECTED": ":leftwards_arrow_with_hook:",
    "PENDING_DEVELOPER_RELEASE": ":white_check_mark:",
    "READY_FOR_DISTRIBUTION": ":rocket:",
    "BETA_APPROVED": ":white_check_mark:",
    "BETA_REJECTED": ":x:",
}


def send_message(
    slack: Slack | None,
    message: Message,
    outcome: Outcome,
    step: str = "slack",
    *,
    dry_run: bool = False,
) -> None:
    """Post ``message`` and record the result as ``step`` of ``outcome``."""
    if dry_run:
        print(json.dumps(message.payload(), indent=2, ensure_ascii=False))
        outcome.add(
            step, "skipped", "dry run: printed the Slack message instead of posting it"
        )
        return
    if slack is None:
        logger.info("%s", NOT_CONFIGURED)
        outcome.add(step, "skipped", NOT_CONFIGURED)
        return
    try:
        slack.post(message)
    except ApiError as exc:
        logger.error("Slack message failed: %s", exc)
        outcome.add(step, "failed", str(exc))
        return
    outcome.add(step, "done", f"posted to {slack.destination}")


def itms_code(code: Any) -> str:
    """Return Apple's ``ITMS-90683`` spelling for a bare numeric code."""
    text = str(code or "").strip()
    return f"ITMS-{text}" if text.isdigit() else text or "unknown code"


def readable_state(state: str | None) -> str:
    """Turn ``METADATA_REJECTED`` into ``metadata rejected`` for messages."""
    return (state or "unknown").replace("_", " ").lower()


# Failed build uploads


def notify_build_failed(
    asc: AppStoreConnect,
    build_upload_id: str,
    settings: Settings,
    slack: Slack | None,
    *,
    dry_run: bool = False,
) -> Outcome:
    """Report a failed build upload with every error and warning Apple returned."""
    outcome = Outcome("notify-build-failed")
    document = asc.build_upload(build_upload_id)
    upload = document.data or {}
    version = str(attribute(upload, "cfBundleShortVersionString") or "?")
    build_number = str(attribute(upload, "cfBundleVersion") or "?")
    platform = str(attribute(upload, "platform") or settings.platform)
    state_detail = attribute(upload, "state") or {}
    state = state_detail.get("state")
    outcome.outputs.update(
        {
            "version": version,
            "build_number": build_number,
            "build_upload_id": build_upload_id,
        }
    )

    if state != "FAILED":
        outcome.add(
            "check upload",
            "skipped",
            f"build upload {build_upload_id} is in state {state}, not FAILED: "
            "nothing to report",
        )
        return outcome

    app_name = _app_name_for_upload(asc, document, upload, settings)
    errors = [
        entry for entry in state_detail.get("errors") or [] if isinstance(entry, dict)
    ]
    warnings = [
        entry for entry in state_detail.get("warnings") or [] if isinstance(entry, dict)
    ]
    title = f"Build upload failed: {app_name} {version} ({build_number})"
    blocks: list[dict[str, Any]] = [
        header_block(f":x: {title}"),
        fields_block(
            [
                ("App", app_name),
                ("Version", version),
                ("Build", build_number),
                ("Platform", platform),
            ]
        ),
    ]
    blocks.extend(_problem_blocks(":x:", "Error", errors))
    blocks.extend(_problem_blocks(":warning:", "Warning", warnings))
    if not errors and not warnings:
        blocks.append(
            section_block("App Store Connect reported no error codes for this upload.")
        )
    outcome.outputs["error_codes"] = ",".join(
        itms_code(entry.get("code")) for entry in errors
    )
    send_message(slack, Message(text=title, blocks=blocks), outcome, dry_run=dry_run)
    return outcome


def _problem_blocks(
    emoji: str, label: str, entries: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    blocks = [
        section_block(
            f"{emoji} *{label} {escape(itms_code(entry.get('code')))}*\n"
            f"{escape(str(entry.get('description') or entry.get('message') or ''))}"
        )
        for entry in entries[:MAX_LISTED_PROBLEMS]
    ]
    if len(entries) > MAX_LISTED_PROBLEMS:
        rest = ", ".join(
            itms_code(entry.get("code")) for entry in entries[MAX_LISTED_PROBLEMS:]
        )
        blocks.append(
            context_block(escape(f"{len(entries) - MAX_LISTED_PROBLEMS} more: {rest}"))
        )
    return blocks


def _app_name_for_upload(
    asc: AppStoreConnect, document: Document, upload: dict[str, Any], settings: Settings
) -> str:
    # A build upload has no app relationship; its build has one, but a failed
    # upload usually never gets a build.
    if settings.app_name:
        return settings.app_name
    linkage = related_id(upload, "build")
    if linkage is None:
        return "the app"
    try:
        build_document = asc.build(linkage[1], include=("app",))
    except ApiError as exc:
        logger.warning("could not fetch the app of build %s: %s", linkage[1], exc)
        return "the app"
    app = build_document.related(build_document.data or {}, "app")
    return str(attribute(app, "name") or "the app")


# App Store review states


def notify_review_state(
    asc: AppStoreConnect,
    version_id: str,
    settings: Settings,
    slack: Slack | None,
    *,
    state: str | None = None,
    event: AscEvent | None = None,
    dry_run: bool = False,
) -> Outcome:
    """Report a version's review state, with how long the review took when known."""
    outcome = Outcome("notify-review-state")
    document = asc.app_store_version(version_id, include=("app", "build"))
    version = document.data or {}
    app = document.related(version, "app")
    build = document.related(version, "build")
    app_name = str(attribute(app, "name") or settings.app_name or "the app")
    version_string = str(attribute(version, "versionString") or "?")
    platform = str(attribute(version, "platform") or settings.platform)
    current = (
        state
        or (event.new_state if event else None)
        or attribute(version, "appVersionState")
    )
    outcome.outputs.update(
        {
            "version": version_string,
            "state": str(current),
            "app_store_version_id": version_id,
        }
    )

    title = f"{app_name} {version_string} ({platform}): {readable_state(current)}"
    fields = [
        ("Version", version_string),
        ("State", str(current)),
        ("Platform", platform),
    ]
    build_number = attribute(build, "version")
    if build_number:
        fields.append(("Build", str(build_number)))
        outcome.outputs["build_number"] = str(build_number)
    duration = review_duration(event) if event is not None else None
    if duration is not None:
        fields.append(("Review took", humanize_seconds(duration)))
        outcome.outputs["review_seconds"] = str(int(duration))

    emoji = _STATE_EMOJI.get(str(current), ":information_source:")
    blocks = [header_block(f"{emoji} {title}"), fields_block(fields)]
    send_message(slack, Message(text=title, blocks=blocks), outcome, dry_run=dry_run)
    return outcome


def review_duration(event: AscEvent) -> float | None:
    """Return seconds from the start of review to this event, or None if unknown.

    The start is the newest WAITING_FOR_REVIEW entry in the relay's history,
    which marks the submission, or else the newest IN_REVIEW entry. The end is
    the event's timestamp, or the time the relay received it.
    """
    end = parse_timestamp(event.timestamp) or parse_timestamp(event.received_at)
    if end is None:
        return None
    start = _review_start(event.history)
    if start is None or start > end:
        return None
    return (end - start).total_seconds()


def _review_start(history: Sequence[HistoryEntry]) -> datetime | None:
    for state in REVIEW_START_STATES:
        for entry in reversed(history):
            if entry.new_state == state:
                when = parse_timestamp(entry.timestamp) or parse_timestamp(
                    entry.received_at
                )
                if when is not None:
                    return when
    return None


_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def parse_timestamp(value: str | None) -> datetime | None:
    """Parse an RFC 3339 time with 0 to 9 fractional digits; None when invalid."""
    if not value:
        return None
    text = _FRACTION.sub(
        r"\1", value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    )
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        logger.warning("ignoring timestamp %r: not RFC 3339", value)
        return None
    if parsed.tzinfo is None:
        return None
    return parsed


def humanize_seconds(seconds: float) -> str:
    """Format a duration in its two largest non-zero units: ``1 day 3 hours``."""
    total = int(seconds)
    if total < 60:
        return "less than a minute"
    units = [("day", 86400), ("hour", 3600), ("minute", 60)]
    parts = []
    for name, size in units:
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count} {name}{'s' if count != 1 else ''}")
    return " ".join(parts[:2])


# TestFlight


def notify_beta_state(
    asc: AppStoreConnect,
    build_beta_detail_id: str,
    settings: Settings,
    slack: Slack | None,
    *,
    state: str | None = None,
    dry_run: bool = False,
) -> Outcome:
    """Report an external TestFlight review result for a build."""
    outcome = Outcome("notify-beta-state")
    document = asc.build_beta_detail(build_beta_detail_id)
    detail = document.data or {}
    current = state or attribute(detail, "externalBuildState")
    build = document.related(detail, "build")
    build_number = str(attribute(build, "version") or "?")
    app_name = settings.app_name or "the app"
    version = "?"
    linkage = related_id(detail, "build")
    if linkage is not None:
        try:
            build_document = asc.build(linkage[1], include=("app", "preReleaseVersion"))
        except ApiError as exc:
            logger.warning("could not fetch build %s: %s", linkage[1], exc)
        else:
            resource = build_document.data or {}
            build_number = str(attribute(resource, "version") or build_number)
            app = build_document.related(resource, "app")
            pre_release = build_document.related(resource, "preReleaseVersion")
            app_name = str(attribute(app, "name") or app_name)
            version = str(attribute(pre_release, "version") or version)
    outcome.outputs.update(
        {"state": str(current), "build_number": build_number, "version": version}
    )

    build_name = f"{app_name} {version} ({build_number})"
    if current == "BETA_APPROVED":
        title = f"{build_name} passed TestFlight beta review"
    elif current == "BETA_REJECTED":
        title = f"{build_name} was rejected in TestFlight beta review"
    else:
        title = f"{build_name}: external TestFlight state {current}"
    emoji = _STATE_EMOJI.get(str(current), ":information_source:")
    blocks = [
        header_block(f"{emoji} {title}"),
        fields_block(
            [("Version", version), ("Build", build_number), ("State", str(current))]
        ),
    ]
    send_message(slack, Message(text=title, blocks=blocks), outcome, dry_run=dry_run)
    return outcome


def notify_feedback(
    asc: AppStoreConnect,
    settings: Settings,
    slack: Slack | None,
    *,
    screenshot_id: str | None = None,
    crash_id: str | None = None,
    dry_run: bool = False,
) -> Outcome:
    """Report a TestFlight screenshot or crash submission."""
    outcome = Outcome("notify-feedback")
    log_text: str | None = None
    if crash_id:
        crash = asc.beta_feedback_crash(crash_id)
        document, log_text, kind = crash.document, crash.log_text, "crash"
        outcome.outputs["feedback_id"] = crash_id
    elif screenshot_id:
        document, kind = asc.beta_feedback_screenshot(screenshot_id), "screenshot"
        outcome.outputs["feedback_id"] = screenshot_id
    else:
        raise ValueError("notify_feedback needs screenshot_id or crash_id")
    outcome.outputs["feedback_kind"] = kind

    submission = document.data or {}
    build = document.related(submission, "build")
    tester = document.related(submission, "tester")
    app_name = settings.app_name or str(
        attribute(submission, "buildBundleId") or "the app"
    )
    build_number = str(attribute(build, "version") or "?")
    outcome.outputs["build_number"] = build_number

    title = f"New TestFlight {kind} feedback for {app_name} ({build_number})"
    emoji = ":boom:" if kind == "crash" else ":camera_with_flash:"
    blocks: list[dict[str, Any]] = [
        header_block(f"{emoji} {title}"),
        fields_block(_feedback_fields(submission, build_number, tester, settings)),
    ]
    comment = attribute(submission, "comment")
    if comment:
        quoted = "\n".join(f">{escape(line)}" for line in str(comment).splitlines())
        blocks.append(section_block(quoted))
    links = _screenshot_links(submission)
    if links:
        blocks.append(section_block(" · ".join(links)))
    if kind == "crash":
        blocks.append(_crash_log_block(log_text, settings.slack.crash_log_lines))
    send_message(slack, Message(text=title, blocks=blocks), outcome, dry_run=dry_run)
    return outcome


def _feedback_fields(
    submission: dict[str, Any],
    build_number: str,
    tester: dict[str, Any] | None,
    settings: Settings,
) -> list[tuple[str, str]]:
    fields = [("Build", build_number)]
    for label, name in (
        ("Device", "deviceModel"),
        ("OS version", "osVersion"),
        ("Platform", "appPlatform"),
        ("Locale", "locale"),
        ("Connection", "connectionType"),
        ("Battery", "batteryPercentage"),
    ):
        value = attribute(submission, name)
        if value is not None and value != "":
            fields.append(
                (label, f"{value}%" if name == "batteryPercentage" else str(value))
            )
    # Tester identity is personal data, so it is shown only when the settings
    # allow it; otherwise neither the name nor the address leaves the runner.
    if settings.slack.include_tester_email:
        email = attribute(submission, "email") or attribute(tester, "email")
        name = " ".join(
            str(part)
            for part in (attribute(tester, "firstName"), attribute(tester, "lastName"))
            if part
        )
        tester_text = " ".join(
            part for part in (name, f"<{email}>" if email else "") if part
        )
        if tester_text:
            fields.append(("Tester", tester_text))
    return fields[:10]


def _screenshot_links(submission: dict[str, Any]) -> list[str]:
    screenshots = attribute(submission, "screenshots") or []
    links = []
    for number, image in enumerate(screenshots, start=1):
        if not isinstance(image, dict) or not image.get("url"):
            continue
        label = f"Screenshot {number}"
        if image.get("expirationDate"):
            label += f" (link expires {image['expirationDate']})"
        links.append(link(str(image["url"]), label))
    return links


def _crash_log_block(log_text: str | None, max_lines: int) -> dict[str, Any]:
    if not log_text:
        return context_block("No crash log is available for this report yet.")
    lines = log_text.splitlines()
    shown_lines = lines[:max_lines]
    # A code block cannot contain ``` itself, so break any run of backticks.
    text = escape("\n".join(shown_lines)).replace("```", "`\u200b``")
    more = (
        f"\n_{len(lines) - len(shown_lines)} more lines in App Store Connect_"
        if len(lines) > len(shown_lines)
        else ""
    )
    # The marker must stay outside the code block, so cut the log first.
    budget = SECTION_TEXT_LIMIT - len(more) - len("```\n\n```")
    text = truncate(text, budget)
    return section_block(f"```\n{text}\n```{more}")

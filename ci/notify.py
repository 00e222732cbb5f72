"""Slack notifications: failed build uploads, review states, TestFlight events.

Each function fetches the resource the webhook names, builds one Block Kit
message and posts it. Without Slack configured the post step is reported as
skipped, not failed, so a repository can use the other automations alone.

This module contains the failed-build and review-state messages. The TestFlight
messages live in ``ci.notify_testflight`` and the Slack post step in
``ci.notify_send``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ci.asc import AppStoreConnect, Document, attribute, related_id
from ci.event import AscEvent, HistoryEntry
from ci.http import ApiError
from ci.notify_send import (
    NOT_CONFIGURED,
    STATE_EMOJI,
    itms_code,
    readable_state,
    send_message,
)
from ci.notify_testflight import notify_beta_state, notify_feedback
from ci.outcome import Outcome
from ci.settings import Settings
from ci.slack import (
    Message,
    Slack,
    context_block,
    escape,
    fields_block,
    header_block,
    section_block,
)

# Names defined in notify_send and notify_testflight stay importable from here.
__all__ = [
    "MAX_LISTED_PROBLEMS",
    "NOT_CONFIGURED",
    "REVIEW_START_STATES",
    "humanize_seconds",
    "itms_code",
    "notify_beta_state",
    "notify_build_failed",
    "notify_feedback",
    "notify_review_state",
    "parse_timestamp",
    "readable_state",
    "review_duration",
    "send_message",
]

logger = logging.getLogger(__name__)

#: Error and warning entries shown one per block; Slack allows 50 blocks.
MAX_LISTED_PROBLEMS = 20
#: States that mean the review started, newest first in preference.
REVIEW_START_STATES = ("WAITING_FOR_REVIEW", "IN_REVIEW")


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

    emoji = STATE_EMOJI.get(str(current), ":information_source:")
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

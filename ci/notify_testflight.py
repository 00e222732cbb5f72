"""TestFlight notifications: external beta review results and tester feedback."""

from __future__ import annotations

import logging
from typing import Any

from ci.asc import AppStoreConnect, attribute, related_id
from ci.http import ApiError
from ci.notify_send import STATE_EMOJI, send_message
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
    emoji = STATE_EMOJI.get(str(current), ":information_source:")
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

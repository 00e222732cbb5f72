"""The ``asc-ci`` command handlers and the context they share.

Each ``run_*`` function handles one subcommand: it reads its arguments from
``Context.args`` and returns the automation's :class:`~ci.outcome.Outcome`.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ci import event as events
from ci.asc import AppStoreConnect
from ci.errors import ConfigError
from ci.event import AscEvent, Route, resource_id_for, route
from ci.github import GitHub
from ci.jira import Jira
from ci.notify import (
    notify_beta_state,
    notify_build_failed,
    notify_feedback,
    notify_review_state,
)
from ci.outcome import Outcome
from ci.redact import Redactor
from ci.release import run_release
from ci.settings import Settings
from ci.slack import Slack

logger = logging.getLogger(__name__)


@dataclass
class Context:
    """Arguments, environment, settings and client factories shared by commands."""

    args: argparse.Namespace
    environ: Mapping[str, str]
    settings: Settings
    redact: Redactor
    output: Callable[[str], None] = print
    outputs: dict[str, str] = field(default_factory=dict)
    summary_context: list[str] = field(default_factory=list)

    def asc(self) -> AppStoreConnect:
        return AppStoreConnect.from_environ(
            self.environ, platform=self.settings.platform
        )

    def slack(self) -> Slack | None:
        return Slack.from_environ(self.environ, channel=self.settings.slack.channel)

    def github(self) -> GitHub | None:
        release = self.settings.release
        if not release.merge and release.tag is None:
            return None
        try:
            return GitHub.from_environ(self.environ)
        except ConfigError:
            if self.args.dry_run:
                return None
            raise

    def jira(self) -> Jira | None:
        if not self.settings.jira.enabled:
            return None
        return Jira.from_environ(self.environ)


# Commands


def run_handle(ctx: Context) -> Outcome:
    event = read_event(ctx)
    chosen = route(event, ctx.settings)
    ctx.outputs.update(event_outputs(event, chosen))
    ctx.summary_context.extend(describe_event(event, chosen))
    logger.info("event %s -> action %s (%s)", event.type, chosen.action, chosen.reason)
    if chosen.action == events.NONE:
        outcome = Outcome(events.NONE)
        outcome.add("route", "skipped", chosen.reason)
        return outcome
    return run_action(ctx, chosen.action, event)


def run_route(ctx: Context) -> Outcome:
    event = read_event(ctx)
    chosen = route(event, ctx.settings)
    ctx.outputs.update(event_outputs(event, chosen))
    ctx.output(chosen.action)
    logger.info("%s: %s", chosen.action, chosen.reason)
    outcome = Outcome("route")
    outcome.add("route", "done", f"{chosen.action}: {chosen.reason}")
    return outcome


def run_action(ctx: Context, action: str, event: AscEvent) -> Outcome:
    """Run the automation for a routed event."""
    resource_id = resource_id_for(event)
    dry_run = ctx.args.dry_run
    if action == events.SUBMIT_FOR_REVIEW:
        return submit(ctx, resource_id)
    if action == events.NOTIFY_BUILD_FAILED:
        return notify_build_failed(
            ctx.asc(), resource_id, ctx.settings, ctx.slack(), dry_run=dry_run
        )
    if action == events.RELEASE:
        return release(ctx, resource_id)
    if action == events.NOTIFY_REVIEW_STATE:
        return notify_review_state(
            ctx.asc(),
            resource_id,
            ctx.settings,
            ctx.slack(),
            event=event,
            dry_run=dry_run,
        )
    if action == events.NOTIFY_BETA_STATE:
        return notify_beta_state(
            ctx.asc(),
            resource_id,
            ctx.settings,
            ctx.slack(),
            state=event.new_state,
            dry_run=dry_run,
        )
    if action == events.NOTIFY_FEEDBACK:
        crash = event.type == events.CRASH_FEEDBACK_CREATED
        return notify_feedback(
            ctx.asc(),
            ctx.settings,
            ctx.slack(),
            crash_id=resource_id if crash else None,
            screenshot_id=None if crash else resource_id,
            dry_run=dry_run,
        )
    raise AssertionError(f"no runner for action {action!r}")


def submit(ctx: Context, build_upload_id: str) -> Outcome:
    # Imported here so the other commands keep working while the submit
    # module is absent or broken.
    from ci.submit import SubmitOptions, submit_for_review

    settings = ctx.settings.submit_for_review
    options = SubmitOptions(
        platform=ctx.settings.platform,
        uses_non_exempt_encryption=settings.uses_non_exempt_encryption,
        whats_new=settings.whats_new,
        whats_new_locale=settings.whats_new_locale,
        cancel_other_submission=settings.cancel_other_submission,
        build_wait_timeout=float(settings.build_wait_timeout),
        beta_groups=list(settings.beta_groups),
        dry_run=ctx.args.dry_run,
    )
    return submit_for_review(ctx.asc(), build_upload_id, options)


def release(ctx: Context, version_id: str) -> Outcome:
    return run_release(
        ctx.asc(),
        version_id,
        ctx.settings,
        github=ctx.github(),
        jira=ctx.jira(),
        slack=ctx.slack(),
        today=datetime.now(UTC).date(),
        dry_run=ctx.args.dry_run,
    )


def run_submit_command(ctx: Context) -> Outcome:
    return submit(ctx, ctx.args.build_upload)


def run_release_command(ctx: Context) -> Outcome:
    return release(ctx, ctx.args.version)


def run_notify_build_failed(ctx: Context) -> Outcome:
    return notify_build_failed(
        ctx.asc(),
        ctx.args.build_upload,
        ctx.settings,
        ctx.slack(),
        dry_run=ctx.args.dry_run,
    )


def run_notify_review_state(ctx: Context) -> Outcome:
    return notify_review_state(
        ctx.asc(),
        ctx.args.version,
        ctx.settings,
        ctx.slack(),
        state=ctx.args.state,
        dry_run=ctx.args.dry_run,
    )


def run_notify_feedback(ctx: Context) -> Outcome:
    return notify_feedback(
        ctx.asc(),
        ctx.settings,
        ctx.slack(),
        screenshot_id=ctx.args.screenshot,
        crash_id=ctx.args.crash,
        dry_run=ctx.args.dry_run,
    )


def run_notify_beta_state(ctx: Context) -> Outcome:
    return notify_beta_state(
        ctx.asc(),
        ctx.args.build_beta_detail,
        ctx.settings,
        ctx.slack(),
        state=ctx.args.state,
        dry_run=ctx.args.dry_run,
    )


def run_fetch(ctx: Context) -> None:
    params = dict(ctx.args.param or [])
    document = ctx.asc().get(ctx.args.target, params or None)
    ctx.output(json.dumps(document, indent=2, ensure_ascii=False))


# Event input


def read_event(ctx: Context) -> AscEvent:
    """Load the event from --payload-file, --event-file or $GITHUB_EVENT_PATH."""
    if ctx.args.payload_file:
        return events.load_payload_file(ctx.args.payload_file)
    path = ctx.args.event_file or ctx.environ.get("GITHUB_EVENT_PATH")
    if not path:
        raise ConfigError(
            "no event to read: GITHUB_EVENT_PATH is not set; pass --event-file "
            "PATH (a GitHub event) or --payload-file PATH (an App Store Connect body)"
        )
    return events.load_event_file(path)


def event_outputs(event: AscEvent, chosen: Route) -> dict[str, str]:
    values = {
        "action": chosen.action,
        "event_type": event.type,
        "resource_type": event.resource_type or "",
        # Step outputs land in the runner's environment: keep them short.
        "resource_id": (event.resource_id or "")[:200],
        "new_state": event.new_state or "",
    }
    return values


def describe_event(event: AscEvent, chosen: Route) -> list[str]:
    change = ""
    if event.old_state or event.new_state:
        change = f" {event.old_state or '?'} → {event.new_state or '?'}"
    resource = ""
    if event.resource_type:
        resource = f" ({event.resource_type} {event.resource_id})"
    return [
        f"Event: {event.type}{change}{resource}",
        f"Action: {chosen.action} ({chosen.reason})",
    ]

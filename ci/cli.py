"""The ``asc-ci`` command: route an App Store Connect event and run its automation.

Exit status: 0 when the automation finished or there was nothing to do,
1 when a step failed, 2 for usage and configuration errors. Expected
failures print one line, without a traceback; ``--debug`` adds the traceback
for unexpected ones.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ci import event as events
from ci.asc import AppStoreConnect
from ci.errors import AutomationError, ConfigError
from ci.event import ACTIONS, AscEvent, Route, resource_id_for, route
from ci.github import GitHub
from ci.http import ApiError
from ci.jira import Jira
from ci.notify import (
    notify_beta_state,
    notify_build_failed,
    notify_feedback,
    notify_review_state,
)
from ci.outcome import Outcome
from ci.release import run_release
from ci.settings import Settings, load_settings
from ci.slack import Slack
from ci.summary import append_outputs, append_step_summary, render_error, render_summary

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

#: Environment variables whose values are masked in every line asc-ci writes.
SECRET_VARIABLES = (
    "GITHUB_TOKEN",
    "SLACK_WEBHOOK_URL",
    "SLACK_BOT_TOKEN",
    "JIRA_API_TOKEN",
    "APP_STORE_CONNECT_API_KEY_KEY",
)
#: Shorter values are not masked, because replacing them would garble text.
MIN_SECRET_LENGTH = 8


class Redactor:
    """Replaces known secret values with ``***`` in text."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        values = []
        for name in SECRET_VARIABLES:
            value = environ.get(name, "").strip()
            if len(value) >= MIN_SECRET_LENGTH:
                values.append(value)
                # A PEM key also appears line by line in some messages.
                values.extend(
                    line.strip()
                    for line in value.splitlines()
                    if len(line.strip()) >= 16 and not line.startswith("-----")
                )
        self.values = sorted(set(values), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, "***")
        return text


class RedactingFilter(logging.Filter):
    """Masks secrets in log records after their arguments are merged."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor(record.getMessage())
        record.args = None
        return True


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
        "resource_id": event.resource_id or "",
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


# Argument parsing


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        help="settings file (default: .github/asc-release.yml in $GITHUB_WORKSPACE "
        "or the current directory; a missing default file means all defaults)",
    )
    common.add_argument(
        "--verbose", "-v", action="store_true", help="log debug details"
    )
    common.add_argument(
        "--debug", action="store_true", help="print a traceback for unexpected errors"
    )

    dry = argparse.ArgumentParser(add_help=False)
    dry.add_argument(
        "--dry-run",
        action="store_true",
        help="read from App Store Connect but change nothing; print what would be done",
    )

    event_input = argparse.ArgumentParser(add_help=False)
    event_input.add_argument(
        "--event-file",
        metavar="PATH",
        help="GitHub event JSON (default: $GITHUB_EVENT_PATH)",
    )
    event_input.add_argument(
        "--payload-file",
        metavar="PATH",
        help="raw App Store Connect webhook body or relay client_payload "
        "(wins over --event-file)",
    )

    parser = argparse.ArgumentParser(
        prog="asc-ci",
        description="Act on App Store Connect webhook events inside GitHub Actions.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    handle = commands.add_parser(
        "handle",
        parents=[common, dry, event_input],
        help="route the event and run its automation",
    )
    handle.set_defaults(runner=run_handle)

    route_parser = commands.add_parser(
        "route",
        parents=[common, event_input],
        help=f"print the action for the event: one of {', '.join(ACTIONS)}",
    )
    route_parser.set_defaults(runner=run_route, dry_run=False)

    submit_parser = commands.add_parser(
        "submit-for-review",
        parents=[common, dry],
        help="submit a build upload for review",
    )
    submit_parser.add_argument(
        "--build-upload", required=True, metavar="ID", help="buildUploads id"
    )
    submit_parser.set_defaults(runner=run_submit_command)

    release_parser = commands.add_parser(
        "release",
        parents=[common, dry],
        help="merge, tag, close Jira and announce a release",
    )
    release_parser.add_argument(
        "--version", required=True, metavar="ID", help="appStoreVersions id"
    )
    release_parser.set_defaults(runner=run_release_command)

    failed = commands.add_parser(
        "notify-build-failed",
        parents=[common, dry],
        help="post a failed build upload to Slack",
    )
    failed.add_argument(
        "--build-upload", required=True, metavar="ID", help="buildUploads id"
    )
    failed.set_defaults(runner=run_notify_build_failed)

    review = commands.add_parser(
        "notify-review-state",
        parents=[common, dry],
        help="post a version's review state to Slack",
    )
    review.add_argument(
        "--version", required=True, metavar="ID", help="appStoreVersions id"
    )
    review.add_argument(
        "--state", help="state to report (default: the version's current state)"
    )
    review.set_defaults(runner=run_notify_review_state)

    feedback = commands.add_parser(
        "notify-feedback",
        parents=[common, dry],
        help="post TestFlight feedback to Slack",
    )
    feedback_kind = feedback.add_mutually_exclusive_group(required=True)
    feedback_kind.add_argument(
        "--screenshot", metavar="ID", help="betaFeedbackScreenshotSubmissions id"
    )
    feedback_kind.add_argument(
        "--crash", metavar="ID", help="betaFeedbackCrashSubmissions id"
    )
    feedback.set_defaults(runner=run_notify_feedback)

    beta = commands.add_parser(
        "notify-beta-state",
        parents=[common, dry],
        help="post an external TestFlight review result to Slack",
    )
    beta.add_argument(
        "--build-beta-detail", required=True, metavar="ID", help="buildBetaDetails id"
    )
    beta.add_argument(
        "--state", help="state to report (default: the current externalBuildState)"
    )
    beta.set_defaults(runner=run_notify_beta_state)

    fetch = commands.add_parser(
        "fetch", parents=[common], help="print an App Store Connect resource as JSON"
    )
    fetch.add_argument(
        "target",
        metavar="URL_OR_PATH",
        help="e.g. /v1/buildUploads/ID or a links.self URL",
    )
    fetch.add_argument(
        "--param",
        action="append",
        type=_key_value,
        metavar="KEY=VALUE",
        help="query parameter, repeatable (e.g. include=build)",
    )
    fetch.set_defaults(runner=run_fetch, dry_run=False)
    return parser


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def configure_logging(verbose: bool, redactor: Redactor) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(redactor))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_asc_ci", False):
            root.removeHandler(existing)
    handler._asc_ci = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        logging.getLogger("urllib3").setLevel(logging.WARNING)


# Entry point


def main(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> int:
    """Run ``asc-ci`` and return its exit status."""
    environ = dict(os.environ if environ is None else environ)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)

    redact = Redactor(environ)
    configure_logging(args.verbose, redact)

    def output(text: str) -> None:
        print(redact(text))

    heading = f"asc-ci {args.command}"
    ctx: Context | None = None
    try:
        settings = load_settings(args.config, environ)
        ctx = Context(
            args=args, environ=environ, settings=settings, redact=redact, output=output
        )
        if args.command in ACTIONS:
            ctx.outputs["action"] = args.command
        outcome = args.runner(ctx)
    except ConfigError as exc:
        message = f"configuration error: {exc}"
        return _fail(environ, redact, heading, message, EXIT_CONFIG, ctx)
    except (AutomationError, ApiError) as exc:
        return _fail(environ, redact, heading, f"failed: {exc}", EXIT_FAILED, ctx)
    except KeyboardInterrupt:
        return _fail(environ, redact, heading, "interrupted", 130, ctx)
    except Exception as exc:  # noqa: BLE001 - the last line of defence for the CLI
        if args.debug:
            sys.stderr.write(redact(traceback.format_exc()))
        message = f"unexpected error: {type(exc).__name__}: {exc}"
        if not args.debug:
            message += " (run again with --debug for the traceback)"
        return _fail(environ, redact, heading, message, EXIT_FAILED, ctx)

    if outcome is None:
        return EXIT_OK
    return _report(ctx, outcome, heading)


def _report(ctx: Context, outcome: Outcome, heading: str) -> int:
    redact = ctx.redact
    for step in outcome.steps:
        # Steps are printed to stdout below; the log repeats only failures.
        level = logging.ERROR if step.status == "failed" else logging.DEBUG
        logger.log(level, "%s: %s %s", step.name, step.status, step.detail)

    outputs = dict(ctx.outputs)
    outputs.setdefault("action", outcome.action)
    outputs.update(outcome.outputs)
    outputs["result"] = "failed" if outcome.failed else "success"
    safe_outputs = {name: redact(str(value)) for name, value in outputs.items()}
    append_outputs(ctx.environ.get("GITHUB_OUTPUT"), safe_outputs)

    if ctx.args.command != "route":
        title = f"{heading}: {outputs['action']}"
        markdown = render_summary(outcome, title, ctx.summary_context)
        append_step_summary(ctx.environ.get("GITHUB_STEP_SUMMARY"), redact(markdown))
        for step in outcome.steps:
            ctx.output(f"{step.status:<9} {step.name}: {step.detail}")

    if outcome.failed:
        failed = [step.name for step in outcome.steps if step.status == "failed"]
        logger.error(
            "%s finished with failed steps: %s", outcome.action, ", ".join(failed)
        )
        return EXIT_FAILED
    return EXIT_OK


def _fail(
    environ: Mapping[str, str],
    redact: Redactor,
    heading: str,
    message: str,
    code: int,
    ctx: Context | None,
) -> int:
    text = redact(message)
    sys.stderr.write(f"asc-ci: {text}\n")
    append_step_summary(environ.get("GITHUB_STEP_SUMMARY"), render_error(heading, text))
    outputs = dict(ctx.outputs) if ctx is not None else {}
    outputs["result"] = "failed"
    safe = {name: redact(value) for name, value in outputs.items()}
    append_outputs(environ.get("GITHUB_OUTPUT"), safe)
    return code


if __name__ == "__main__":
    sys.exit(main())

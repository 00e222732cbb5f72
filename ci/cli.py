"""The ``asc-ci`` command: route an App Store Connect event and run its automation.

Exit status: 0 when the automation finished or there was nothing to do,
1 when a step failed, 2 for usage and configuration errors. Expected
failures print one line, without a traceback; ``--debug`` adds the traceback
for unexpected ones.

This module parses the arguments and turns outcomes and errors into exit
statuses. The command handlers live in ``ci.cli_commands`` and the masking of
secrets in ``ci.redact``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Mapping, Sequence

from ci.cli_commands import (
    Context,
    run_fetch,
    run_handle,
    run_notify_beta_state,
    run_notify_build_failed,
    run_notify_feedback,
    run_notify_review_state,
    run_release_command,
    run_route,
    run_submit_command,
)
from ci.errors import AutomationError, ConfigError
from ci.event import ACTIONS
from ci.http import ApiError
from ci.outcome import Outcome
from ci.redact import RedactingFilter, Redactor
from ci.settings import load_settings
from ci.summary import append_outputs, append_step_summary, render_error, render_summary
from relay import __version__

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


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
    parser.add_argument("--version", action="version", version=f"asc-ci {__version__}")
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

"""Submit-for-review steps: wait for the build upload's build, then find its app."""

from __future__ import annotations

import logging
from typing import Any

from ci.asc import (
    BUILD_PROCESSING_STATES,
    BUILD_UPLOAD_STATES,
    PLATFORMS,
    Document,
    attribute,
    parse_state,
    related_id,
)
from ci.submit_run import StopRun, SubmitRun
from relay.backoff import exponential_delay

logger = logging.getLogger(__name__)


def wait_for_build(run: SubmitRun, build_upload_id: str) -> bool:
    """Poll the build upload until its build is VALID; return False to skip the run.

    Waits with exponential backoff from ``build_poll_interval`` up to
    ``build_poll_max_interval`` and stops at ``build_wait_timeout``.
    """
    options = run.options
    deadline = run.clock() + options.build_wait_timeout
    polls = 0

    while True:
        polls += 1
        run.step = "build upload" if polls == 1 else "build"
        document = run.asc.build_upload(build_upload_id)
        upload = document.data or {}
        status = _build_status(run, document, upload, build_upload_id, polls == 1)
        if status is None:
            return False
        if status == "VALID":
            break

        remaining = deadline - run.clock()
        if remaining <= 0:
            raise StopRun(
                "build",
                f"Timed out after {options.build_wait_timeout:.0f} s waiting for "
                f"build upload {build_upload_id} to become VALID (now {status}): "
                "run this again once App Store Connect has processed the build, "
                "or raise submit_for_review.build_wait_timeout",
            )
        delay = exponential_delay(
            polls, base=options.build_poll_interval, cap=options.build_poll_max_interval
        )
        delay = min(delay, remaining)
        logger.info(
            "build upload %s is %s; checking again in %.0f s",
            build_upload_id,
            status,
            delay,
        )
        run.sleep(delay)

    run.outcome.add(
        "build", "done", f"build {run.build_id} ({run.version_string}) is VALID"
    )
    return True


def _build_status(
    run: SubmitRun,
    document: Document,
    upload: dict[str, Any],
    upload_id: str,
    first: bool,
) -> str | None:
    """Return ``VALID``, a waiting status, or None when the platform is not ours.

    Raises StopRun when the upload or the build failed.
    """
    state_info = attribute(upload, "state") or {}
    upload_state = parse_state(
        state_info.get("state"), BUILD_UPLOAD_STATES, "buildUploads.state.state"
    )
    platform = parse_state(
        attribute(upload, "platform"), PLATFORMS, "buildUploads.platform"
    )
    if platform not in PLATFORMS:
        raise StopRun(
            "build upload",
            f"Build upload {upload_id} has platform {platform!r}, which this "
            f"automation does not support (supported: {', '.join(sorted(PLATFORMS))})",
        )
    version = str(attribute(upload, "cfBundleShortVersionString") or "")
    build_number = str(attribute(upload, "cfBundleVersion") or "")

    if first:
        if run.options.platform is not None and run.options.platform != platform:
            run.outcome.add(
                "build upload",
                "skipped",
                f"build upload {upload_id} is for {platform}, and this run submits "
                f"{run.options.platform} builds only",
            )
            return None
        run.platform = platform
        run.version_string = version
        run.outcome.add(
            "build upload", "done", f"{version} ({build_number}) for {platform}"
        )

    if upload_state == "FAILED":
        raise StopRun(
            "build",
            f"Build upload {upload_id} ({version} ({build_number})) failed "
            f"processing: {_state_errors(state_info)}. Fix the reported problem "
            "and upload a new build",
        )
    if upload_state != "COMPLETE":
        return f"upload {upload_state}"

    linkage = related_id(upload, "build")
    if linkage is None:
        return "COMPLETE, build not linked yet"
    run.build_id = linkage[1]
    build = document.find_included("builds", run.build_id)
    processing = parse_state(
        attribute(build, "processingState"),
        BUILD_PROCESSING_STATES,
        "builds.processingState",
    )
    if processing in ("FAILED", "INVALID"):
        raise StopRun(
            "build",
            f"Build {run.build_id} ({version} ({build_number})) has processing "
            f"state {processing}: {_state_errors(state_info)}. Check the email "
            "App Store Connect sent about this build, fix it and upload a new build",
        )
    if processing != "VALID":
        return f"build {processing or 'not readable yet'}"
    return "VALID"


def _state_errors(state_info: dict[str, Any]) -> str:
    errors = state_info.get("errors") or []
    if not errors:
        return "App Store Connect gave no reason"
    return "; ".join(
        f"{entry.get('code', '?')} {entry.get('description', '')}".strip()
        for entry in errors
        if isinstance(entry, dict)
    )


def find_app(run: SubmitRun) -> None:
    run.step = "app"
    document = run.asc.build(run.build_id, include=("app",))
    build = document.data or {}
    linkage = related_id(build, "app")
    if linkage is not None:
        run.app_id = linkage[1]
    else:
        app = run.asc.get(f"/v1/builds/{run.build_id}/app").get("data") or {}
        run.app_id = str(app.get("id") or "")
    if not run.app_id:
        raise StopRun(
            "app", f"App Store Connect returned no app for build {run.build_id}"
        )

    run.encryption = attribute(build, "usesNonExemptEncryption")
    app = document.find_included("apps", run.app_id)
    name = attribute(app, "name") or attribute(app, "bundleId") or run.app_id
    run.outcome.add("app", "done", f"{name} ({run.app_id})")

"""Submit a processed build for App Store review, idempotently.

:func:`submit_for_review` starts from a build upload, the resource a
``buildUploadStateUpdated`` webhook names, and follows the same path as
fastlane's ``deliver``. It waits until the build is ``VALID`` and finds or
creates the App Store version for the build's version string and platform.
It then attaches the build, sets export compliance and "What's New", adds the
version to a review submission and submits it. It can also add the build to
TestFlight groups.

Every step is reported on the returned :class:`~ci.outcome.Outcome`. Checks
report ``done`` when they pass, and changes report ``done`` when this run made
them or ``unchanged`` when they were already in place, so a second run sends
no writes. A step that cannot go on reports ``failed`` and ends the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ci.asc import AppStoreConnect, attribute
from ci.errors import AutomationError
from ci.http import ApiError
from ci.outcome import Outcome
from ci.review_submission import (
    CANCEL_SETTING,
    DRAFT_SUBMISSION_STATE,
    IN_FLIGHT_SUBMISSION_STATES,
    submit_version_for_review,
)
from ci.submit_build import find_app, wait_for_build
from ci.submit_run import ACTION, StopRun, SubmitOptions, SubmitRun
from ci.submit_version import (
    EDITABLE_VERSION_STATES,
    ENCRYPTION_PLIST_KEY,
    ENCRYPTION_SETTING,
    SUBMITTED_VERSION_STATES,
    attach_build,
    ensure_version,
    set_export_compliance,
    set_whats_new,
)

# Names defined in the step modules stay importable from here.
__all__ = [
    "ACTION",
    "BETA_GROUPS_SETTING",
    "CANCEL_SETTING",
    "DRAFT_SUBMISSION_STATE",
    "EDITABLE_VERSION_STATES",
    "ENCRYPTION_PLIST_KEY",
    "ENCRYPTION_SETTING",
    "IN_FLIGHT_SUBMISSION_STATES",
    "SUBMITTED_VERSION_STATES",
    "StopRun",
    "SubmitOptions",
    "SubmitRun",
    "submit_for_review",
]

logger = logging.getLogger(__name__)

BETA_GROUPS_SETTING = "submit_for_review.beta_groups"


def submit_for_review(
    asc: AppStoreConnect,
    build_upload_id: str,
    options: SubmitOptions,
    *,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Outcome:
    """Submit the build of ``build_upload_id`` for App Store review.

    Returns the outcome with every step; ``outcome.failed`` is True when a
    step could not finish. Raises ConfigError for invalid settings only.
    """
    outcome = Outcome(action=ACTION)
    run = SubmitRun(
        asc=asc,
        options=options,
        outcome=outcome,
        sleep=sleep or asc.http.sleep,
        clock=clock,
    )
    try:
        if not wait_for_build(run, build_upload_id):
            return outcome
        find_app(run)
        ensure_version(run)
        attach_build(run)
        set_export_compliance(run)
        set_whats_new(run)
        submit_version_for_review(run)
        _add_to_beta_groups(run)
    except StopRun as stop:
        logger.error("%s stopped at %s: %s", ACTION, stop.step, stop)
        outcome.add(stop.step, "failed", str(stop))
    except (ApiError, AutomationError) as exc:
        logger.error("%s stopped at %s: %s", ACTION, run.step, exc)
        outcome.add(run.step, "failed", str(exc))
    finally:
        _set_outputs(run)
    return outcome


def _set_outputs(run: SubmitRun) -> None:
    values = {
        "platform": run.platform,
        "version_string": run.version_string,
        "build_id": run.build_id,
        "app_id": run.app_id,
        "app_store_version_id": run.version_id or "",
    }
    run.outcome.outputs.update({key: value for key, value in values.items() if value})


# TestFlight


def _add_to_beta_groups(run: SubmitRun) -> None:
    run.step = "beta groups"
    step = "beta groups"
    names = [name.strip() for name in run.options.beta_groups if name.strip()]
    if not names:
        return

    group_ids: dict[str, str] = {}
    for name in names:
        groups = run.asc.get_all(
            f"/v1/apps/{run.app_id}/betaGroups", {"filter[name]": name}
        )
        match = next(
            (group for group in groups if attribute(group, "name") == name), None
        )
        if match is None:
            raise StopRun(
                step,
                f"TestFlight group {name!r} was not found in app {run.app_id}: check "
                f"the names in {BETA_GROUPS_SETTING} against TestFlight in App Store "
                "Connect (names are case-sensitive)",
            )
        group_ids[name] = str(match["id"])

    missing = [
        name for name, group_id in group_ids.items() if not _has_build(run, group_id)
    ]
    if not missing:
        run.outcome.add(step, "unchanged", f"build is in {', '.join(names)}")
        return
    if not run.write(step, f"add build {run.build_id} to {', '.join(missing)}"):
        return
    run.asc.post(
        f"/v1/builds/{run.build_id}/relationships/betaGroups",
        {"data": [{"type": "betaGroups", "id": group_ids[name]} for name in missing]},
    )
    run.outcome.add(step, "done", f"added build {run.build_id} to {', '.join(missing)}")


def _has_build(run: SubmitRun, group_id: str) -> bool:
    body = run.asc.get(
        "/v1/builds",
        {"filter[betaGroups]": group_id, "filter[id]": run.build_id, "limit": 1},
    )
    return bool(body.get("data"))

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ci.asc import (
    APP_VERSION_STATES,
    BUILD_PROCESSING_STATES,
    BUILD_UPLOAD_STATES,
    PLATFORMS,
    REVIEW_SUBMISSION_STATES,
    AppStoreConnect,
    Document,
    attribute,
    parse_state,
    related_id,
    validate_platform,
)
from ci.errors import AutomationError, ConfigError
from ci.http import ApiError, ConflictError
from ci.outcome import Outcome
from relay.backoff import exponential_delay

logger = logging.getLogger(__name__)

ACTION = "submit_for_review"

#: Version states in which the build and metadata can still change.
EDITABLE_VERSION_STATES = frozenset(
    {
        "PREPARE_FOR_SUBMISSION",
        "DEVELOPER_REJECTED",
        "REJECTED",
        "METADATA_REJECTED",
        "INVALID_BINARY",
    }
)
#: Version states after submission and before Apple's decision.
SUBMITTED_VERSION_STATES = frozenset(
    {
        "READY_FOR_REVIEW",
        "WAITING_FOR_EXPORT_COMPLIANCE",
        "WAITING_FOR_REVIEW",
        "IN_REVIEW",
    }
)
#: Review submission states that block a new submission for the platform.
IN_FLIGHT_SUBMISSION_STATES = ("WAITING_FOR_REVIEW", "IN_REVIEW", "UNRESOLVED_ISSUES")
DRAFT_SUBMISSION_STATE = "READY_FOR_REVIEW"

ENCRYPTION_SETTING = "submit_for_review.uses_non_exempt_encryption"
ENCRYPTION_PLIST_KEY = "ITSAppUsesNonExemptEncryption"
CANCEL_SETTING = "submit_for_review.cancel_other_submission"
BETA_GROUPS_SETTING = "submit_for_review.beta_groups"


@dataclass
class SubmitOptions:
    """Settings of one submit-for-review run.

    ``platform`` None accepts the build upload's platform. When set, a build
    upload for another platform is skipped, so one workflow per platform can
    share the same webhook. Times are in seconds.
    """

    platform: str | None = None
    uses_non_exempt_encryption: bool | None = None
    whats_new: str | None = None
    whats_new_locale: str = "en-US"
    cancel_other_submission: bool = False
    build_wait_timeout: float = 30 * 60
    build_poll_interval: float = 30.0
    build_poll_max_interval: float = 5 * 60
    beta_groups: Sequence[str] = ()
    dry_run: bool = False

    def __post_init__(self) -> None:
        if self.platform is not None:
            self.platform = validate_platform(self.platform)
        if self.build_wait_timeout < 0:
            raise ConfigError(
                f"build_wait_timeout is {self.build_wait_timeout}: set it to 0 or "
                "more seconds"
            )
        if self.build_poll_interval <= 0:
            raise ConfigError(
                f"build_poll_interval is {self.build_poll_interval}: set it to "
                "more than 0 seconds"
            )
        if not self.whats_new_locale.strip():
            raise ConfigError(
                "whats_new_locale is empty: set it to a locale such as en-US"
            )


class StopRun(AutomationError):
    """Ends the run: the step named ``step`` reports ``failed`` with the message."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


@dataclass
class _Run:
    """State shared by the steps of one run."""

    asc: AppStoreConnect
    options: SubmitOptions
    outcome: Outcome
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    platform: str = ""
    version_string: str = ""
    build_id: str = ""
    app_id: str = ""
    version_id: str | None = None
    version_state: str | None = None
    version_build: tuple[str, str] | None = None
    encryption: bool | None = None
    step: str = "build upload"

    def write(self, step: str, action: str) -> bool:
        """Return True when the write may go ahead, recording it under dry run."""
        if self.options.dry_run:
            self.outcome.add(step, "skipped", f"dry run: would {action}")
            logger.info("dry run: would %s", action)
            return False
        return True


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
    run = _Run(
        asc=asc,
        options=options,
        outcome=outcome,
        sleep=sleep or asc.http.sleep,
        clock=clock,
    )
    try:
        if not _wait_for_build(run, build_upload_id):
            return outcome
        _find_app(run)
        _ensure_version(run)
        _attach_build(run)
        _set_export_compliance(run)
        _set_whats_new(run)
        _submit(run)
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


def _set_outputs(run: _Run) -> None:
    values = {
        "platform": run.platform,
        "version_string": run.version_string,
        "build_id": run.build_id,
        "app_id": run.app_id,
        "app_store_version_id": run.version_id or "",
    }
    run.outcome.outputs.update({key: value for key, value in values.items() if value})


# Build upload and build


def _wait_for_build(run: _Run, build_upload_id: str) -> bool:
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
                "or raise build_wait_timeout",
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
    run: _Run, document: Document, upload: dict[str, Any], upload_id: str, first: bool
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


def _find_app(run: _Run) -> None:
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


# App Store version


def _find_versions(run: _Run) -> list[dict[str, Any]]:
    document = run.asc.app_store_versions(run.app_id, run.version_string, run.platform)
    # Apple filters by platform and version string already. Checking again keeps a
    # MAC_OS version with the same number from ever standing in for IOS.
    return [
        version
        for version in document.data
        if attribute(version, "platform") == run.platform
        and attribute(version, "versionString") == run.version_string
    ]


def _version_state(version: dict[str, Any]) -> str | None:
    value = attribute(version, "appVersionState") or attribute(version, "appStoreState")
    return parse_state(value, APP_VERSION_STATES, "appStoreVersions.appVersionState")


def _pick_version(versions: list[dict[str, Any]]) -> dict[str, Any] | None:
    for wanted in (EDITABLE_VERSION_STATES, SUBMITTED_VERSION_STATES):
        for version in versions:
            if _version_state(version) in wanted:
                return version
    return versions[0] if versions else None


def _ensure_version(run: _Run) -> None:
    run.step = "App Store version"
    step = "App Store version"
    label = f"{run.version_string} ({run.platform})"
    version = _pick_version(_find_versions(run))

    if version is None:
        if not run.write(step, f"create App Store version {label}"):
            return
        version, created = _create_version(run, step)
    else:
        created = False

    run.version_id = str(version["id"])
    # A version this run created is editable even if the response omits its state.
    run.version_state = _version_state(version) or (
        "PREPARE_FOR_SUBMISSION" if created else None
    )
    run.version_build = related_id(version, "build")
    state = run.version_state

    if state not in EDITABLE_VERSION_STATES and state not in SUBMITTED_VERSION_STATES:
        raise StopRun(
            step,
            f"App Store version {label} is already {state}, so it cannot take a new "
            "build: raise CFBundleShortVersionString and upload again",
        )
    if created:
        run.outcome.add(step, "done", f"created {label} ({run.version_id})")
    else:
        run.outcome.add(
            step, "unchanged", f"{label} exists ({run.version_id}, {state})"
        )


def _create_version(run: _Run, step: str) -> tuple[dict[str, Any], bool]:
    """Create the version; return it and whether this run created it."""
    body = {
        "data": {
            "type": "appStoreVersions",
            "attributes": {
                "platform": run.platform,
                "versionString": run.version_string,
            },
            "relationships": {"app": {"data": {"type": "apps", "id": run.app_id}}},
        }
    }
    try:
        created = run.asc.post("/v1/appStoreVersions", body)
    except ConflictError as exc:
        if not _says_version_exists(exc):
            raise StopRun(
                step,
                f"{exc}. Another version of the app may still be open for "
                f"{run.platform}: submit or remove it in App Store Connect first",
            ) from None
        # Another run created it between the lookup and the POST.
        logger.info(
            "version %s exists already (%s); looking it up again",
            run.version_string,
            ", ".join(exc.codes),
        )
        version = _pick_version(_find_versions(run))
        if version is None:
            raise StopRun(
                step, f"{exc}. The version was not found afterwards"
            ) from None
        return version, False
    return dict(created.get("data") or {}), True


def _says_version_exists(error: ApiError) -> bool:
    for entry in error.errors:
        code = str(entry.get("code") or "").upper()
        detail = str(entry.get("detail") or "").lower()
        if (
            "DUPLICATE" in code
            or "already exists" in detail
            or "previously used" in detail
        ):
            return True
    return False


def _attach_build(run: _Run) -> None:
    run.step = "attach build"
    step = "attach build"
    if run.version_id is None:
        run.outcome.add(step, "skipped", "dry run: no version yet")
        return

    current = run.version_build
    if current is not None and current[1] == run.build_id:
        run.outcome.add(step, "unchanged", f"build {run.build_id} is attached")
        return
    if run.version_state not in EDITABLE_VERSION_STATES:
        attached = current[1] if current else "no build"
        raise StopRun(
            step,
            f"App Store version {run.version_string} is {run.version_state} with "
            f"{attached} attached, so build {run.build_id} cannot replace it: "
            "remove the version from review in App Store Connect first",
        )
    if not run.write(step, f"attach build {run.build_id}"):
        return
    run.asc.patch(
        f"/v1/appStoreVersions/{run.version_id}/relationships/build",
        {"data": {"type": "builds", "id": run.build_id}},
    )
    run.outcome.add(step, "done", f"attached build {run.build_id}")


def _set_export_compliance(run: _Run) -> None:
    run.step = "export compliance"
    step = "export compliance"
    current = run.encryption
    wanted = run.options.uses_non_exempt_encryption

    if current is not None:
        detail = f"usesNonExemptEncryption is {str(current).lower()}"
        if wanted is not None and wanted != current:
            detail += f"; {ENCRYPTION_SETTING} ({str(wanted).lower()}) is ignored"
            logger.warning("build %s: %s", run.build_id, detail)
        run.outcome.add(step, "unchanged", detail)
        return
    if wanted is None:
        raise StopRun(
            step,
            f"Build {run.build_id} has no export compliance answer: set "
            f"{ENCRYPTION_SETTING} in .github/asc-release.yml, or the "
            f"{ENCRYPTION_PLIST_KEY} key in the app's Info.plist, to true or false",
        )
    if not run.write(step, f"set usesNonExemptEncryption to {str(wanted).lower()}"):
        return
    run.asc.patch(
        f"/v1/builds/{run.build_id}",
        {
            "data": {
                "type": "builds",
                "id": run.build_id,
                "attributes": {"usesNonExemptEncryption": wanted},
            }
        },
    )
    run.outcome.add(
        step, "done", f"set usesNonExemptEncryption to {str(wanted).lower()}"
    )


def _set_whats_new(run: _Run) -> None:
    run.step = "what's new"
    step = "what's new"
    text = run.options.whats_new
    locale = run.options.whats_new_locale
    if not text:
        run.outcome.add(step, "skipped", "no What's New text set")
        return
    if run.version_id is None:
        run.outcome.add(step, "skipped", "dry run: no version yet")
        return

    localizations = run.asc.get_all(
        f"/v1/appStoreVersions/{run.version_id}/appStoreVersionLocalizations",
        {"filter[locale]": locale},
    )
    localization = next(
        (item for item in localizations if attribute(item, "locale") == locale), None
    )
    if localization is not None and attribute(localization, "whatsNew") == text:
        run.outcome.add(step, "unchanged", f"{locale} text is current")
        return
    if run.version_state not in EDITABLE_VERSION_STATES:
        run.outcome.add(
            step, "skipped", f"version is {run.version_state}, so its text is locked"
        )
        return
    if not run.write(step, f"set the {locale} What's New text"):
        return

    if localization is None:
        run.asc.post(
            "/v1/appStoreVersionLocalizations",
            {
                "data": {
                    "type": "appStoreVersionLocalizations",
                    "attributes": {"locale": locale, "whatsNew": text},
                    "relationships": {
                        "appStoreVersion": {
                            "data": {"type": "appStoreVersions", "id": run.version_id}
                        }
                    },
                }
            },
        )
    else:
        run.asc.patch(
            f"/v1/appStoreVersionLocalizations/{localization['id']}",
            {
                "data": {
                    "type": "appStoreVersionLocalizations",
                    "id": localization["id"],
                    "attributes": {"whatsNew": text},
                }
            },
        )
    run.outcome.add(step, "done", f"set the {locale} text")


# Review submission


def _version_ids(
    run: _Run, document: Document, submission: dict[str, Any]
) -> list[str | None]:
    """Return the version id of each item in a submission, None for other items.

    Reads the items included with the submission list. When the submission
    or an included item carries only links and no linkage, the items are
    fetched with ``GET /v1/reviewSubmissions/{id}/items``, so a submission
    is never taken for empty or for another version by mistake.
    """
    relationship = (submission.get("relationships") or {}).get("items") or {}
    linkages = relationship.get("data")
    items = document.related_many(submission, "items")
    complete = isinstance(linkages, list) and len(items) == len(linkages)
    if not complete or not all(_has_linkage(item) for item in items):
        logger.info("review submission %s: fetching its items", submission.get("id"))
        items = run.asc.get_collection(
            f"/v1/reviewSubmissions/{submission['id']}/items",
            {"include": "appStoreVersion"},
        ).data

    ids: list[str | None] = []
    for item in items:
        linkage = related_id(item, "appStoreVersion")
        ids.append(linkage[1] if linkage else None)
    return ids


def _has_linkage(item: dict[str, Any]) -> bool:
    relationships = item.get("relationships") or {}
    return any(
        isinstance(value, dict) and "data" in value for value in relationships.values()
    )


def _submission_state(submission: dict[str, Any]) -> str | None:
    return parse_state(
        attribute(submission, "state"),
        REVIEW_SUBMISSION_STATES,
        "reviewSubmissions.state",
    )


def _submit(run: _Run) -> None:
    run.step = "review submission"
    step = "review submission"
    if run.version_id is None:
        run.outcome.add(step, "skipped", "dry run: no version yet")
        return
    if _already_submitted(run, step):
        return

    draft, has_version = _choose_draft(run)
    submission_id = _ensure_draft(run, draft)
    if submission_id is None:
        return
    _ensure_item(run, submission_id, has_version)
    if not run.write(step, f"submit review submission {submission_id}"):
        return

    # NOTE: fastlane polls the version until it is READY_FOR_REVIEW before this
    # PATCH. This code does not, so a 409 here leaves the draft in place, and
    # the next run reuses it and submits again.
    run.asc.patch(
        f"/v1/reviewSubmissions/{submission_id}",
        {
            "data": {
                "type": "reviewSubmissions",
                "id": submission_id,
                "attributes": {"submitted": True},
            }
        },
    )
    run.outcome.outputs["review_submission_id"] = submission_id
    run.outcome.add(step, "done", f"submitted {submission_id} for review")


def _already_submitted(run: _Run, step: str) -> bool:
    """Report a submission in review that holds the version; cancel other ones.

    Returns True when the version is already submitted. Raises StopRun when
    another submission is in review and canceling it is not enabled.
    """
    in_flight = run.asc.review_submissions(
        run.app_id, IN_FLIGHT_SUBMISSION_STATES, run.platform
    )
    held = [
        (submission, _version_ids(run, in_flight, submission))
        for submission in in_flight.data
    ]
    for submission, version_ids in held:
        if run.version_id not in version_ids:
            continue
        state = _submission_state(submission)
        message = f"already submitted ({submission['id']}, {state})"
        if state == "UNRESOLVED_ISSUES":
            message += (
                "; App Review reported issues: answer them or resubmit in "
                "App Store Connect"
            )
        run.outcome.outputs["review_submission_id"] = str(submission["id"])
        run.outcome.add(step, "unchanged", message)
        return True

    for submission, version_ids in held:
        _cancel_other(run, submission, version_ids)
    return False


def _choose_draft(run: _Run) -> tuple[dict[str, Any] | None, bool]:
    """Return a READY_FOR_REVIEW submission to reuse and whether it has the version.

    A draft that holds anything else is canceled, or the run stops, as for a
    submission in review.
    """
    drafts = run.asc.review_submissions(
        run.app_id, (DRAFT_SUBMISSION_STATE,), run.platform
    )
    for submission in drafts.data:
        version_ids = _version_ids(run, drafts, submission)
        if any(item != run.version_id for item in version_ids):
            _cancel_other(run, submission, version_ids)
            continue
        return submission, run.version_id in version_ids
    return None, False


def _cancel_other(
    run: _Run, submission: dict[str, Any], items: Iterable[str | None]
) -> None:
    step = "cancel other submission"
    submission_id = str(submission["id"])
    state = _submission_state(submission)
    held = ", ".join(item or "a non-version item" for item in items) or "no items"
    if not run.options.cancel_other_submission:
        raise StopRun(
            "review submission",
            f"Review submission {submission_id} ({state}) for {run.platform} already "
            f"holds {held}, not version {run.version_id}: wait until its review "
            f"ends, or set {CANCEL_SETTING}: true to cancel it",
        )
    if not run.write(step, f"cancel review submission {submission_id} ({state})"):
        return
    # NOTE: Apple moves a canceled submission to CANCELING first, and creating
    # the next one may fail with 409 until that ends. Apple documents no timing.
    run.asc.patch(
        f"/v1/reviewSubmissions/{submission_id}",
        {
            "data": {
                "type": "reviewSubmissions",
                "id": submission_id,
                "attributes": {"canceled": True},
            }
        },
    )
    run.outcome.add(
        step, "done", f"canceled {submission_id} ({state}), which held {held}"
    )


def _ensure_draft(run: _Run, draft: dict[str, Any] | None) -> str | None:
    step = "create review submission"
    if draft is not None:
        run.outcome.add(step, "unchanged", f"reusing {draft['id']} (READY_FOR_REVIEW)")
        return str(draft["id"])
    if not run.write(step, f"create a {run.platform} review submission"):
        return None
    created = run.asc.post(
        "/v1/reviewSubmissions",
        {
            "data": {
                "type": "reviewSubmissions",
                "attributes": {"platform": run.platform},
                "relationships": {"app": {"data": {"type": "apps", "id": run.app_id}}},
            }
        },
    )
    submission_id = str((created.get("data") or {}).get("id") or "")
    if not submission_id:
        raise StopRun(step, "App Store Connect returned no id for the new submission")
    run.outcome.add(step, "done", f"created {submission_id}")
    return submission_id


def _ensure_item(run: _Run, submission_id: str, has_version: bool) -> None:
    step = "add version to submission"
    if has_version:
        run.outcome.add(step, "unchanged", f"{run.version_id} is in {submission_id}")
        return
    if not run.write(step, f"add version {run.version_id} to {submission_id}"):
        return
    run.asc.post(
        "/v1/reviewSubmissionItems",
        {
            "data": {
                "type": "reviewSubmissionItems",
                "relationships": {
                    "reviewSubmission": {
                        "data": {"type": "reviewSubmissions", "id": submission_id}
                    },
                    "appStoreVersion": {
                        "data": {"type": "appStoreVersions", "id": run.version_id}
                    },
                },
            }
        },
    )
    run.outcome.add(step, "done", f"added {run.version_id} to {submission_id}")


# TestFlight


def _add_to_beta_groups(run: _Run) -> None:
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


def _has_build(run: _Run, group_id: str) -> bool:
    body = run.asc.get(
        "/v1/builds",
        {"filter[betaGroups]": group_id, "filter[id]": run.build_id, "limit": 1},
    )
    return bool(body.get("data"))

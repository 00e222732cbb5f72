"""Submit-for-review steps on the review submission.

Reuse a submission that already contains the version, cancel or stop at one
that contains another, or add the version to a draft submission and submit it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from ci.asc import (
    REVIEW_SUBMISSION_STATES,
    Document,
    attribute,
    parse_state,
    related_id,
)
from ci.submit_run import StopRun, SubmitRun

logger = logging.getLogger(__name__)

#: Review submission states that block a new submission for the platform.
IN_FLIGHT_SUBMISSION_STATES = ("WAITING_FOR_REVIEW", "IN_REVIEW", "UNRESOLVED_ISSUES")
DRAFT_SUBMISSION_STATE = "READY_FOR_REVIEW"
CANCEL_SETTING = "submit_for_review.cancel_other_submission"


def _version_ids(
    run: SubmitRun, document: Document, submission: dict[str, Any]
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


def submit_version_for_review(run: SubmitRun) -> None:
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


def _already_submitted(run: SubmitRun, step: str) -> bool:
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


def _choose_draft(run: SubmitRun) -> tuple[dict[str, Any] | None, bool]:
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
    run: SubmitRun, submission: dict[str, Any], items: Iterable[str | None]
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


def _ensure_draft(run: SubmitRun, draft: dict[str, Any] | None) -> str | None:
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


def _ensure_item(run: SubmitRun, submission_id: str, has_version: bool) -> None:
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

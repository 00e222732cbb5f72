"""Submit-for-review steps on the App Store version.

Find or create the version for the build's version string and platform, attach
the build, set export compliance and set the "What's New" text.
"""

from __future__ import annotations

import logging
from typing import Any

from ci.asc import APP_VERSION_STATES, attribute, parse_state, related_id
from ci.http import ApiError, ConflictError
from ci.submit_run import StopRun, SubmitRun

logger = logging.getLogger(__name__)

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


ENCRYPTION_SETTING = "submit_for_review.uses_non_exempt_encryption"
ENCRYPTION_PLIST_KEY = "ITSAppUsesNonExemptEncryption"


def _find_versions(run: SubmitRun) -> list[dict[str, Any]]:
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


def ensure_version(run: SubmitRun) -> None:
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


def _create_version(run: SubmitRun, step: str) -> tuple[dict[str, Any], bool]:
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


def attach_build(run: SubmitRun) -> None:
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


def set_export_compliance(run: SubmitRun) -> None:
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


def set_whats_new(run: SubmitRun) -> None:
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

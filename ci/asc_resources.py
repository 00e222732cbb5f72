"""Typed GET helpers for the App Store Connect resources the automations read.

:class:`ResourceHelpers` is mixed into :class:`ci.asc.AppStoreConnect`; each
helper returns the response as a :class:`~ci.asc_documents.Document`, except
:meth:`ResourceHelpers.beta_feedback_crash`, which adds the crash log text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol
from urllib.parse import quote

from ci.asc_documents import CrashSubmission, Document, attribute
from ci.asc_states import validate_platform
from ci.http import ApiError

logger = logging.getLogger(__name__)


class _Client(Protocol):
    platform: str

    def resource_url(self, resource_type: str, resource_id: str) -> str: ...

    def get(
        self, path_or_url: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]: ...

    def get_document(
        self, path_or_url: str, params: dict[str, Any] | None = None
    ) -> Document: ...

    def get_collection(
        self, path: str, params: dict[str, Any] | None = None
    ) -> Document: ...


class ResourceHelpers:
    """Typed GET helpers that :class:`ci.asc.AppStoreConnect` inherits."""

    def build_upload(self: _Client, build_upload_id: str) -> Document:
        """``GET /v1/buildUploads/{id}?include=build``: the upload and its build.

        The build is absent until Apple links it to the upload.
        """
        return self.get_document(
            self.resource_url("buildUploads", build_upload_id), {"include": "build"}
        )

    def build(
        self: _Client, build_id: str, include: Iterable[str] = ("app",)
    ) -> Document:
        """``GET /v1/builds/{id}``, by default with its app included."""
        return self.get_document(
            self.resource_url("builds", build_id), _include(include)
        )

    def app(self: _Client, app_id: str) -> Document:
        """``GET /v1/apps/{id}``: bundle ID, name and SKU in the attributes."""
        return self.get_document(self.resource_url("apps", app_id))

    def app_store_version(
        self: _Client, version_id: str, include: Iterable[str] = ("build", "app")
    ) -> Document:
        """``GET /v1/appStoreVersions/{id}``, by default with its build and app."""
        return self.get_document(
            self.resource_url("appStoreVersions", version_id), _include(include)
        )

    def app_store_versions(
        self: _Client, app_id: str, version_string: str, platform: str | None = None
    ) -> Document:
        """List the app's versions with this version string on ``platform``."""
        return self.get_collection(
            f"/v1/apps/{quote(app_id, safe='')}/appStoreVersions",
            {
                "filter[platform]": validate_platform(platform or self.platform),
                "filter[versionString]": version_string,
                "include": "build",
            },
        )

    def review_submissions(
        self: _Client, app_id: str, states: Iterable[str], platform: str | None = None
    ) -> Document:
        """List the app's review submissions in ``states`` on ``platform``.

        Each item's ``appStoreVersion`` relationship names the version it holds.
        """
        return self.get_collection(
            f"/v1/apps/{quote(app_id, safe='')}/reviewSubmissions",
            {
                "filter[platform]": validate_platform(platform or self.platform),
                "filter[state]": ",".join(states),
                "include": "items",
            },
        )

    def beta_feedback_screenshot(self: _Client, submission_id: str) -> Document:
        """Fetch a TestFlight screenshot report with its build and tester.

        The screenshot URLs in ``attributes.screenshots`` expire.
        """
        return self.get_document(
            self.resource_url("betaFeedbackScreenshotSubmissions", submission_id),
            {"include": "build,tester"},
        )

    def beta_feedback_crash(self: _Client, submission_id: str) -> CrashSubmission:
        """Fetch a TestFlight crash report, its build and tester, and its crash log."""
        url = self.resource_url("betaFeedbackCrashSubmissions", submission_id)
        document = self.get_document(url, {"include": "build,tester"})
        try:
            log = self.get(f"{url}/crashLog")
        except ApiError as exc:
            if exc.status != 404:
                raise
            logger.info("crash report %s has no crash log yet", submission_id)
            return CrashSubmission(document=document, log_text=None)
        return CrashSubmission(
            document=document, log_text=attribute(log.get("data"), "logText")
        )

    def build_beta_detail(self: _Client, detail_id: str) -> Document:
        """``GET /v1/buildBetaDetails/{id}?include=build``: TestFlight states, build."""
        return self.get_document(
            self.resource_url("buildBetaDetails", detail_id), {"include": "build"}
        )


def _include(names: Iterable[str]) -> dict[str, Any] | None:
    joined = ",".join(names)
    return {"include": joined} if joined else None

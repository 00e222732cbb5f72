"""The App Store version being released: what the release steps read from it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ci.asc import AppStoreConnect, attribute
from ci.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionInfo:
    """Facts about an App Store version that the release steps use."""

    id: str
    version: str
    platform: str
    app_name: str
    build: str
    state: str | None

    def template_values(self) -> dict[str, str]:
        return {
            "version": self.version,
            "build": self.build,
            "platform": self.platform,
            "app": self.app_name,
        }


def fetch_version(
    asc: AppStoreConnect, version_id: str, settings: Settings
) -> VersionInfo:
    """Fetch ``GET /v1/appStoreVersions/{id}?include=app,build``."""
    document = asc.app_store_version(version_id, include=("app", "build"))
    version = document.data or {}
    app = document.related(version, "app")
    build = document.related(version, "build")
    return VersionInfo(
        id=version_id,
        version=str(attribute(version, "versionString") or ""),
        platform=str(attribute(version, "platform") or settings.platform),
        app_name=str(attribute(app, "name") or settings.app_name or "the app"),
        build=str(attribute(build, "version") or ""),
        state=attribute(version, "appVersionState"),
    )

"""Apple's platform and state values for App Store Connect resources.

Apple adds states without notice, so :func:`parse_state` keeps an unknown value
as a string and logs it once instead of raising.
"""

from __future__ import annotations

import logging
from typing import Any

from ci.errors import ConfigError

logger = logging.getLogger(__name__)

PLATFORMS = frozenset({"IOS", "MAC_OS", "TV_OS", "VISION_OS"})
DEFAULT_PLATFORM = "IOS"

# Apple's enums (App Store Connect API 4.x). Values outside them are kept as
# strings and logged once, because Apple adds states without notice.
BUILD_UPLOAD_STATES = frozenset({"AWAITING_UPLOAD", "PROCESSING", "FAILED", "COMPLETE"})
BUILD_PROCESSING_STATES = frozenset({"PROCESSING", "FAILED", "INVALID", "VALID"})
APP_VERSION_STATES = frozenset(
    {
        "ACCEPTED",
        "DEVELOPER_REJECTED",
        "IN_REVIEW",
        "INVALID_BINARY",
        "METADATA_REJECTED",
        "PENDING_APPLE_RELEASE",
        "PENDING_DEVELOPER_RELEASE",
        "PREPARE_FOR_SUBMISSION",
        "PROCESSING_FOR_DISTRIBUTION",
        "READY_FOR_DISTRIBUTION",
        "READY_FOR_REVIEW",
        "REJECTED",
        "REPLACED_WITH_NEW_VERSION",
        "WAITING_FOR_EXPORT_COMPLIANCE",
        "WAITING_FOR_REVIEW",
    }
)
REVIEW_SUBMISSION_STATES = frozenset(
    {
        "READY_FOR_REVIEW",
        "WAITING_FOR_REVIEW",
        "IN_REVIEW",
        "UNRESOLVED_ISSUES",
        "CANCELING",
        "COMPLETING",
        "COMPLETE",
    }
)
EXTERNAL_BETA_STATES = frozenset(
    {
        "PROCESSING",
        "PROCESSING_EXCEPTION",
        "MISSING_EXPORT_COMPLIANCE",
        "READY_FOR_BETA_TESTING",
        "IN_BETA_TESTING",
        "EXPIRED",
        "READY_FOR_BETA_SUBMISSION",
        "IN_EXPORT_COMPLIANCE_REVIEW",
        "WAITING_FOR_BETA_REVIEW",
        "IN_BETA_REVIEW",
        "BETA_REJECTED",
        "BETA_APPROVED",
        "NOT_APPLICABLE",
    }
)

_reported_states: set[tuple[str, str]] = set()


def parse_state(value: Any, known: frozenset[str], field_name: str) -> str | None:
    """Return Apple's state value as a string, logging values outside ``known``.

    Never raises: an unknown state is reported once per process and returned.
    """
    if value is None:
        return None
    text = str(value)
    if text not in known and (field_name, text) not in _reported_states:
        _reported_states.add((field_name, text))
        logger.warning(
            "unknown %s value %r from App Store Connect; kept as is", field_name, text
        )
    return text


def validate_platform(platform: str) -> str:
    """Return ``platform`` upper-cased; raise ConfigError for an unknown platform."""
    value = platform.strip().upper()
    if value not in PLATFORMS:
        raise ConfigError(
            f"platform {platform!r} is invalid: use one of "
            f"{', '.join(sorted(PLATFORMS))}"
        )
    return value

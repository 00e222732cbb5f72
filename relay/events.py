"""Reading App Store Connect webhook bodies and building dispatch payloads.

A webhook body is a JSON:API document whose ``data.type`` names the event.
The relay forwards unknown event types unchanged, because Apple adds events
every year; it only pulls out the few facts a workflow routes on.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

ASC_API_URL = "https://api.appstoreconnect.apple.com"

#: GitHub's limits for ``repository_dispatch``: at most 10 top-level keys in
#: ``client_payload`` and at most 65,535 characters in it.
MAX_PAYLOAD_KEYS = 10
MAX_PAYLOAD_CHARS = 65_535
#: Maximum length of a string kept from the body for the routing facts. Longer values are
#: cut so a single field cannot crowd the payload past GitHub's limit.
MAX_FACT_CHARS = 512

#: The ``data.type`` values App Store Connect sends, as of API 4.4 (2026),
#: plus the test ping. Unknown types are still accepted and forwarded; this
#: list only catches typos in route filters.
KNOWN_EVENT_TYPES = frozenset(
    {
        "appStoreVersionAppVersionStateUpdated",
        "betaFeedbackScreenshotSubmissionCreated",
        "betaFeedbackCrashSubmissionCreated",
        "buildUploadStateUpdated",
        "buildBetaDetailExternalBuildStateUpdated",
        "backgroundAssetVersionStateUpdated",
        "backgroundAssetVersionInternalBetaReleaseCreated",
        "backgroundAssetVersionExternalBetaReleaseStateUpdated",
        "backgroundAssetVersionAppStoreReleaseStateUpdated",
        "alternativeDistributionPackageVersionCreated",
        "alternativeDistributionPackageAvailableUpdated",
        "alternativeDistributionTerritoryAvailabilityUpdated",
        "webhookPingCreated",
    }
)
#: Every state the events above report: build upload, App Store version,
#: TestFlight external beta and background-asset states.
KNOWN_STATES = frozenset(
    """
    AWAITING_UPLOAD PROCESSING FAILED COMPLETE
    ACCEPTED DEVELOPER_REJECTED IN_REVIEW INVALID_BINARY METADATA_REJECTED
    PENDING_APPLE_RELEASE PENDING_DEVELOPER_RELEASE PREPARE_FOR_SUBMISSION
    PROCESSING_FOR_DISTRIBUTION READY_FOR_DISTRIBUTION READY_FOR_REVIEW REJECTED
    REPLACED_WITH_NEW_VERSION WAITING_FOR_EXPORT_COMPLIANCE WAITING_FOR_REVIEW
    DEVELOPER_REMOVED_FROM_SALE PENDING_CONTRACT PREORDER_READY_FOR_SALE
    PROCESSING_FOR_APP_STORE READY_FOR_SALE REMOVED_FROM_SALE NOT_APPLICABLE
    PROCESSING_EXCEPTION MISSING_EXPORT_COMPLIANCE READY_FOR_BETA_TESTING
    IN_BETA_TESTING EXPIRED READY_FOR_BETA_SUBMISSION IN_EXPORT_COMPLIANCE_REVIEW
    WAITING_FOR_BETA_REVIEW IN_BETA_REVIEW BETA_REJECTED BETA_APPROVED
    PROCESSING_FOR_TESTING READY_FOR_TESTING SUPERSEDED
    """.split()  # noqa: SIM905 - one line per enum reads better than 40 literals
)

# Attribute pairs that carry a state change, by event family.
STATE_ATTRIBUTES = (
    ("oldState", "newState"),
    ("oldValue", "newValue"),
    ("oldExternalBuildState", "newExternalBuildState"),
)


class InvalidPayload(Exception):
    """The body is not a JSON object with a string ``data.type``."""


@dataclass(frozen=True)
class Resource:
    """The App Store Connect resource an event points at."""

    type: str
    id: str
    url: str

    def as_dict(self) -> dict[str, str]:
        return {"type": self.type, "id": self.id, "url": self.url}


@dataclass(frozen=True)
class Event:
    """The routing facts of one webhook delivery."""

    type: str
    id: str | None
    old_state: str | None
    new_state: str | None
    resource: Resource | None
    timestamp: str | None


def parse_event(body: bytes) -> tuple[Event, dict[str, Any]]:
    """Parse a delivery body into its facts and the decoded document.

    Raises :class:`InvalidPayload` with a reason fit for the HTTP response.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPayload("body is not UTF-8 text") from None
    try:
        document = json.loads(
            text, parse_constant=_reject_constant, parse_float=_finite_float
        )
    except (ValueError, RecursionError):
        raise InvalidPayload("body is not valid JSON") from None
    if not isinstance(document, dict):
        raise InvalidPayload("body is not a JSON object")
    if _has_lone_surrogate(text, document):
        # "\ud800" alone decodes to a string that cannot be stored or sent on.
        raise InvalidPayload("body contains an unpaired UTF-16 surrogate escape")
    data = document.get("data")
    if not isinstance(data, dict):
        raise InvalidPayload("body has no data object")
    event_type = data.get("type")
    if not isinstance(event_type, str) or not event_type.strip():
        raise InvalidPayload("body has no data.type string")

    attributes = data.get("attributes")
    if not isinstance(attributes, dict):
        attributes = {}
    old_state, new_state = _state_change(attributes)
    event = Event(
        type=_cut(event_type),
        id=_event_id(data.get("id")),
        old_state=old_state,
        new_state=new_state,
        resource=_resource(data.get("relationships")),
        timestamp=_scalar(attributes.get("timestamp")),
    )
    return event, document


def dedupe_key(event: Event | None, body: bytes) -> str:
    """Return the key that identifies repeats of one delivery on a route.

    App Store Connect gives each event its own ``data.id``; a body without one
    is identified by its SHA-256.
    """
    if event is not None and event.id:
        return f"id:{event.id}"
    return f"sha256:{hashlib.sha256(body).hexdigest()}"


def resource_url(resource_type: str, resource_id: str, base: str = ASC_API_URL) -> str:
    """Build the API URL of a resource, as App Store Connect's ``links.self`` reads."""
    return f"{base}/v1/{quote(resource_type, safe='')}/{quote(resource_id, safe='')}"


def build_client_payload(
    event: Event,
    *,
    route: str,
    relay: dict[str, Any],
    history: list[dict[str, Any]],
    document: dict[str, Any] | None,
) -> dict[str, Any]:
    """Build the ``client_payload`` of the dispatch, within GitHub's limits.

    When the whole payload would pass :data:`MAX_PAYLOAD_CHARS`, the original
    body is dropped first, then history entries from the oldest, and
    ``relay.truncated`` lists what went.
    """
    relay_section = dict(relay)
    relay_section["history"] = list(history)
    payload: dict[str, Any] = {
        "event": event.type,
        "id": event.id,
        "old_state": event.old_state,
        "new_state": event.new_state,
        "resource": event.resource.as_dict() if event.resource else None,
        "timestamp": event.timestamp,
        "route": route,
        "relay": relay_section,
    }
    if document is not None:
        payload["payload"] = document
    if payload_size(payload) <= MAX_PAYLOAD_CHARS:
        return payload

    truncated: list[str] = []
    relay_section["truncated"] = truncated
    if "payload" in payload:
        del payload["payload"]
        truncated.append("payload")
    history = relay_section["history"]
    # Room for the "history" marker and the history_dropped count added below.
    excess = payload_size(payload) - MAX_PAYLOAD_CHARS + 64
    dropped = 0
    # Each entry costs its own serialized length plus a separating comma.
    while history and excess > 0:
        excess -= payload_size(history[0]) + 1
        history.pop(0)
        dropped += 1
    if dropped:
        truncated.append("history")
        relay_section["history_dropped"] = dropped
    return payload


def payload_size(payload: dict[str, Any]) -> int:
    """Count the characters of a payload as sent, with non-ASCII escaped.

    Escaping gives an upper bound on GitHub's count whichever way it counts.
    """
    return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=True))


def _state_change(attributes: dict[str, Any]) -> tuple[str | None, str | None]:
    for old_key, new_key in STATE_ATTRIBUTES:
        if old_key in attributes or new_key in attributes:
            return _scalar(attributes.get(old_key)), _scalar(attributes.get(new_key))
    return None, None


def _resource(relationships: Any) -> Resource | None:
    """Find the resource in ``relationships``.

    ``instance`` is the usual place, with or without a ``data`` wrapper
    (background-asset events have none). Events without an instance, such as
    territory availability, fall back to their first other relationship.
    """
    if not isinstance(relationships, dict):
        return None
    candidates = [relationships.get("instance")]
    candidates += [value for key, value in relationships.items() if key != "instance"]
    for candidate in candidates:
        if not isinstance(candidate, dict):
            continue
        linkage = candidate.get("data", candidate)
        if not isinstance(linkage, dict):
            continue
        resource_type = _scalar(linkage.get("type"))
        resource_id = _scalar(linkage.get("id"))
        if not resource_type or not resource_id:
            continue
        links = candidate.get("links")
        url = links.get("self") if isinstance(links, dict) else None
        if not (
            isinstance(url, str) and url.startswith("https://") and len(url) <= 2048
        ):
            url = resource_url(resource_type, resource_id)
        return Resource(resource_type, resource_id, url)
    return None


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _has_lone_surrogate(text: str, document: Any) -> bool:
    """Return whether decoding ``text`` as JSON left an unpaired surrogate."""
    if not _SURROGATE_ESCAPE.search(text):
        return False
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _reject_constant(name: str) -> float:
    # Python's json accepts NaN and Infinity, which JSON does not and which
    # could never be sent on to GitHub.
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _event_id(value: Any) -> str | None:
    """Return ``data.id`` as text; an overlong id keeps a hash of the whole.

    Cutting alone would let two long ids that share a prefix pass for one
    delivery and drop the second as a repeat.
    """
    text = _scalar(value)
    if text is None or len(str(value)) <= MAX_FACT_CHARS:
        return text
    digest = hashlib.sha256(str(value).encode()).hexdigest()
    return f"{text[: MAX_FACT_CHARS - 72]}~sha256:{digest}"


def _scalar(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return _cut(str(value))


def _cut(text: str) -> str:
    return text if len(text) <= MAX_FACT_CHARS else text[:MAX_FACT_CHARS]

"""Read the event that started a run and pick the automation for it.

Three inputs carry the same facts:

- the ``client_payload`` the relay sends with ``repository_dispatch``;
- a ``workflow_dispatch`` replay, whose ``inputs.payload`` is a JSON string
  with either that payload or a raw App Store Connect body;
- a raw webhook body given with ``--payload-file``.

Each becomes one :class:`AscEvent`, and :func:`route` maps it to an action.
Parsing does no I/O beyond reading the file, so routing tests need no mocks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci.errors import ConfigError
from ci.settings import Settings

logger = logging.getLogger(__name__)

SUBMIT_FOR_REVIEW = "submit-for-review"
NOTIFY_BUILD_FAILED = "notify-build-failed"
NOTIFY_REVIEW_STATE = "notify-review-state"
RELEASE = "release"
NOTIFY_BETA_STATE = "notify-beta-state"
NOTIFY_FEEDBACK = "notify-feedback"
NONE = "none"

#: Every value ``asc-ci route`` can output as ``action``; workflows branch on these.
ACTIONS = (
    SUBMIT_FOR_REVIEW,
    NOTIFY_BUILD_FAILED,
    NOTIFY_REVIEW_STATE,
    RELEASE,
    NOTIFY_BETA_STATE,
    NOTIFY_FEEDBACK,
    NONE,
)

BUILD_UPLOAD_STATE_UPDATED = "buildUploadStateUpdated"
APP_VERSION_STATE_UPDATED = "appStoreVersionAppVersionStateUpdated"
BETA_BUILD_STATE_UPDATED = "buildBetaDetailExternalBuildStateUpdated"
SCREENSHOT_FEEDBACK_CREATED = "betaFeedbackScreenshotSubmissionCreated"
CRASH_FEEDBACK_CREATED = "betaFeedbackCrashSubmissionCreated"
PING = "webhookPingCreated"

#: Attribute pairs (old, new) that carry a state change, by event family.
_STATE_ATTRIBUTES = (
    ("oldState", "newState"),
    ("oldValue", "newValue"),
    ("oldExternalBuildState", "newExternalBuildState"),
)

ASC_API_BASE = "https://api.appstoreconnect.apple.com"


@dataclass(frozen=True)
class HistoryEntry:
    """An earlier state change of the same resource, as recorded by the relay."""

    event: str | None
    old_state: str | None
    new_state: str | None
    timestamp: str | None
    received_at: str | None


@dataclass(frozen=True)
class AscEvent:
    """One App Store Connect webhook event, whatever form it arrived in."""

    type: str
    id: str | None = None
    old_state: str | None = None
    new_state: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    resource_url: str | None = None
    timestamp: str | None = None
    received_at: str | None = None
    request_uuid: str | None = None
    history: tuple[HistoryEntry, ...] = ()
    payload: dict[str, Any] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Route:
    """The action chosen for an event and why."""

    action: str
    reason: str


def load_event_file(path: str | Path) -> AscEvent:
    """Read ``$GITHUB_EVENT_PATH`` (or any file in one of the accepted forms)."""
    document = _read_json(path, "event file")
    return event_from_document(document, source=str(path))


def load_payload_file(path: str | Path) -> AscEvent:
    """Read a raw App Store Connect webhook body (or a relay client_payload)."""
    document = _read_json(path, "payload file")
    if not isinstance(document, dict):
        raise ConfigError(f"payload file {str(path)!r} must contain a JSON object")
    return _event_from_payload_or_body(document, source=str(path))


def event_from_document(document: Any, source: str = "<event>") -> AscEvent:
    """Build an event from a GitHub event document or a bare payload.

    Accepts ``{"client_payload": {...}}`` (repository_dispatch),
    ``{"inputs": {"payload": "<JSON>"}}`` (workflow_dispatch replay), a relay
    client_payload and a raw App Store Connect body.
    """
    if not isinstance(document, dict):
        raise ConfigError(
            f"{source}: expected a JSON object, got {type(document).__name__}"
        )

    if isinstance(document.get("client_payload"), dict):
        return event_from_client_payload(document["client_payload"], source=source)

    inputs = document.get("inputs")
    if isinstance(inputs, dict) and "payload" in inputs:
        text = inputs["payload"]
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(
                f"{source}: inputs.payload is empty: paste the relay's client_payload "
                "or the App Store Connect webhook body as JSON"
            )
        try:
            replay = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{source}: inputs.payload is not valid JSON ({exc.msg} at line "
                f"{exc.lineno}, column {exc.colno}): paste the JSON body unchanged"
            ) from None
        if not isinstance(replay, dict):
            raise ConfigError(f"{source}: inputs.payload must be a JSON object")
        return _event_from_payload_or_body(replay, source=f"{source} inputs.payload")

    return _event_from_payload_or_body(document, source=source)


def _event_from_payload_or_body(document: dict[str, Any], source: str) -> AscEvent:
    if isinstance(document.get("data"), dict):
        return event_from_webhook_body(document, source=source)
    if isinstance(document.get("event"), str):
        return event_from_client_payload(document, source=source)
    raise ConfigError(
        f"{source}: not an App Store Connect event: expected a webhook body with "
        "'data' or a relay client_payload with 'event'; found keys "
        f"{sorted(document)!r}"
    )


def event_from_webhook_body(
    body: Mapping[str, Any], source: str = "<body>"
) -> AscEvent:
    """Parse a raw App Store Connect webhook body (``{"data": {...}}``)."""
    data = body.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ConfigError(f"{source}: webhook body has no data.type")
    attributes = _mapping(data.get("attributes"))
    old_state, new_state = _states(attributes)
    resource_type, resource_id, resource_url = _instance(data)
    return AscEvent(
        type=data["type"],
        id=_optional_str(data.get("id")),
        old_state=old_state,
        new_state=new_state,
        resource_type=resource_type,
        resource_id=resource_id,
        resource_url=resource_url,
        timestamp=_optional_str(attributes.get("timestamp")),
        payload=dict(body),
    )


def event_from_client_payload(
    payload: Mapping[str, Any], source: str = "<client_payload>"
) -> AscEvent:
    """Parse the ``client_payload`` the relay sends with repository_dispatch."""
    event_type = payload.get("event")
    if not isinstance(event_type, str) or not event_type:
        raise ConfigError(f"{source}: client_payload has no 'event' string")
    resource = _mapping(payload.get("resource"))
    relay = _mapping(payload.get("relay"))
    history = tuple(
        HistoryEntry(
            event=_optional_str(entry.get("event")),
            old_state=_optional_str(entry.get("old_state")),
            new_state=_optional_str(entry.get("new_state")),
            timestamp=_optional_str(entry.get("timestamp")),
            received_at=_optional_str(entry.get("received_at")),
        )
        for entry in relay.get("history") or []
        if isinstance(entry, dict)
    )
    original = (
        payload.get("payload") if isinstance(payload.get("payload"), dict) else None
    )
    return AscEvent(
        type=event_type,
        id=_optional_str(payload.get("id")),
        old_state=_optional_str(payload.get("old_state")),
        new_state=_optional_str(payload.get("new_state")),
        resource_type=_optional_str(resource.get("type")),
        resource_id=_optional_str(resource.get("id")),
        resource_url=_optional_str(resource.get("url")),
        timestamp=_optional_str(payload.get("timestamp")),
        received_at=_optional_str(relay.get("received_at")),
        request_uuid=_optional_str(relay.get("request_uuid")),
        history=history,
        payload=original,
    )


def route(event: AscEvent, settings: Settings) -> Route:
    """Pick the automation for an event; unknown types and states route to none.

    An event that needs a resource but names none routes to none too, so no
    job starts only to fail on the missing id.
    """
    chosen = _route(event, settings)
    if chosen.action != NONE and not event.resource_id:
        logger.warning("%s event names no resource id; nothing to do", event.type)
        return Route(NONE, f"the {event.type} event names no resource id")
    return chosen


def _route(event: AscEvent, settings: Settings) -> Route:
    state = event.new_state

    if event.type == BUILD_UPLOAD_STATE_UPDATED:
        if state == "COMPLETE":
            if not settings.submit_for_review.enabled:
                return Route(
                    NONE, "build upload complete; submit_for_review.enabled is false"
                )
            return Route(SUBMIT_FOR_REVIEW, "build upload complete")
        if state == "FAILED":
            return Route(NOTIFY_BUILD_FAILED, "build upload failed")
        return Route(NONE, f"build upload state {state!r} needs no action")

    if event.type == APP_VERSION_STATE_UPDATED:
        if state == "READY_FOR_DISTRIBUTION":
            if not settings.release.enabled:
                return Route(NONE, "version released; release.enabled is false")
            return Route(RELEASE, "version is ready for distribution")
        if state in settings.slack.notify_states:
            return Route(
                NOTIFY_REVIEW_STATE, f"version state {state} is in slack.notify_states"
            )
        return Route(NONE, f"version state {state!r} is not in slack.notify_states")

    if event.type == BETA_BUILD_STATE_UPDATED:
        if state in settings.slack.beta_notify_states:
            return Route(NOTIFY_BETA_STATE, f"external beta state {state}")
        return Route(
            NONE, f"external beta state {state!r} is not in slack.beta_notify_states"
        )

    if event.type in (SCREENSHOT_FEEDBACK_CREATED, CRASH_FEEDBACK_CREATED):
        if not settings.slack.notify_feedback:
            return Route(NONE, "TestFlight feedback; slack.notify_feedback is false")
        return Route(NOTIFY_FEEDBACK, "new TestFlight feedback")

    if event.type == PING:
        logger.info("relay connected: App Store Connect ping %s arrived", event.id)
        return Route(NONE, "relay connected (webhook ping)")

    logger.info("no automation for App Store Connect event type %r", event.type)
    return Route(NONE, f"no automation for event type {event.type!r}")


def resource_id_for(event: AscEvent) -> str:
    """Return the id of the resource the event names, or raise ConfigError."""
    if event.resource_id:
        return event.resource_id
    raise ConfigError(
        f"the {event.type} event names no resource id (relationships.instance); "
        "run the automation directly with the id instead"
    )


def _states(attributes: Mapping[str, Any]) -> tuple[str | None, str | None]:
    for old_key, new_key in _STATE_ATTRIBUTES:
        if old_key in attributes or new_key in attributes:
            return _optional_str(attributes.get(old_key)), _optional_str(
                attributes.get(new_key)
            )
    return None, None


def _instance(data: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    relationships = data.get("relationships")
    if not isinstance(relationships, dict):
        return None, None, None
    instance = relationships.get("instance")
    if not isinstance(instance, dict):
        return None, None, None

    # Background-asset events put type and id on the instance itself, without
    # the JSON:API "data" wrapper the other events use.
    target = _mapping(instance.get("data")) or instance
    resource_type = _optional_str(target.get("type"))
    resource_id = _optional_str(target.get("id"))

    links = _mapping(instance.get("links"))
    url = _optional_str(links.get("self"))
    if url is None and resource_type and resource_id:
        url = f"{ASC_API_BASE}/v1/{resource_type}/{resource_id}"
    return resource_type, resource_id, url


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _optional_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _read_json(path: str | Path, what: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {str(path)!r} not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {str(path)!r} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {str(path)!r}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{what} {str(path)!r} is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}"
        ) from None
    except RecursionError:
        raise ConfigError(
            f"{what} {str(path)!r} is nested too deeply to read"
        ) from None

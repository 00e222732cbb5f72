"""The relay's HTTP side: receive, verify and record App Store Connect webhooks.

The view responds only after the delivery is committed to SQLite. Sending it
to GitHub is the dispatcher's job, so App Store Connect gets its response in
milliseconds whatever GitHub is doing.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from relay.config import DEFAULT_ROUTE, Settings
from relay.dispatcher import HEARTBEAT, HEARTBEAT_INTERVAL
from relay.events import InvalidPayload, dedupe_key, parse_event
from relay.signatures import SIGNATURE_HEADER, SignatureError, verify
from relay.store import NewDelivery, Store

logger = logging.getLogger(__name__)

#: Header App Store Connect sends with a unique id for each request.
REQUEST_UUID_HEADER = "x-apple-request-uuid"


class RejectionLog:
    """Log rejected signatures, at most ``limit`` lines a minute per process.

    Anyone can POST unsigned requests, so not each one may cost a log line.
    The next line that is written counts the ones held back.
    """

    def __init__(self, limit: int = 20, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._lock = threading.Lock()
        self._window_start = 0.0
        self._written = 0
        self._suppressed = 0

    def warn(self, reason: str, ids: dict[str, Any]) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._window_start >= self.window:
                self._window_start, self._written = now, 0
            if self._written >= self.limit:
                self._suppressed += 1
                return
            self._written += 1
            suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            logger.warning(
                "rejected delivery: %s (%d more rejections not logged)",
                reason,
                suppressed,
                extra=ids,
            )
        else:
            logger.warning("rejected delivery: %s", reason, extra=ids)


def create_app(settings: Settings, store: Store | None = None) -> Flask:
    """Build the relay's Flask application."""
    app = Flask("relay")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["relay.settings"] = settings
    app.extensions["relay.store"] = store or Store(settings.database)
    app.extensions["relay.rejections"] = RejectionLog()

    # No automatic OPTIONS: any method but POST on a webhook path gets 405.
    app.add_url_rule(
        "/webhook",
        "webhook",
        _receive,
        methods=["POST"],
        defaults={"route": None},
        provide_automatic_options=False,
    )
    app.add_url_rule(
        "/webhook/<route>",
        "webhook_route",
        _receive,
        methods=["POST"],
        provide_automatic_options=False,
    )
    app.add_url_rule("/healthz", "healthz", _healthz, methods=["GET"])
    app.add_url_rule("/readyz", "readyz", _readyz, methods=["GET"])
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


def _settings() -> Settings:
    return current_app.extensions["relay.settings"]  # type: ignore[no-any-return]


def _store() -> Store:
    return current_app.extensions["relay.store"]  # type: ignore[no-any-return]


def _answer(status: int, body: dict[str, Any], **headers: str) -> Response:
    response = jsonify(body)
    response.status_code = status
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


def _receive(route: str | None) -> Response:
    settings = _settings()
    name = DEFAULT_ROUTE if route is None else route
    target = settings.routes.get(name)
    # "/webhook/default" is not an alias: the default route lives at /webhook.
    if target is None or (route is not None and name == DEFAULT_ROUTE):
        return _answer(
            404, {"error": "not_found", "message": f"no route named {name!r}"}
        )

    request_uuid = _clean_header(request.headers.get(REQUEST_UUID_HEADER))
    ids: dict[str, Any] = {"route": name, "request_uuid": request_uuid}

    # The limit is checked before reading: a body over it is never read whole.
    declared = request.content_length
    if declared is not None and declared > settings.max_body_bytes:
        return _too_large(settings, ids)
    try:
        body = _read_body(settings.max_body_bytes)
    except RequestEntityTooLarge:
        return _too_large(settings, ids)
    except HTTPException:
        raise
    except Exception as exc:  # noqa: BLE001 - the server rejected the body framing
        logger.warning(
            "rejected delivery: unreadable body (%s)", type(exc).__name__, extra=ids
        )
        return _answer(
            400,
            {"error": "bad_request", "message": "the request body could not be read"},
        )

    signatures = request.headers.getlist(SIGNATURE_HEADER)
    try:
        if len(signatures) > 1:
            raise SignatureError("more than one x-apple-signature header")
        verify(body, signatures[0] if signatures else None, target.secrets)
    except SignatureError as exc:
        current_app.extensions["relay.rejections"].warn(exc.reason, ids)
        return _answer(401, {"error": "invalid_signature", "message": exc.reason})

    try:
        event, _document = parse_event(body)
    except InvalidPayload as exc:
        return _record_invalid(name, body, request_uuid, str(exc), ids)

    state = "pending" if target.accepts(event.type, event.new_state) else "filtered"
    delivery = NewDelivery.for_event(
        name, body, event, state=state, request_uuid=request_uuid
    )
    ids.update(event_id=event.id, event_type=event.type)
    try:
        recorded = _store().record(delivery)
    except sqlite3.Error as exc:
        return _store_unavailable(exc, ids)

    ids["delivery"] = recorded.id
    if recorded.requeued:
        logger.info("redelivery of a failed delivery; queued again", extra=ids)
        return _answer(200, {"status": "requeued", "delivery": recorded.id})
    if not recorded.new:
        logger.info("repeated delivery; not dispatched again", extra=ids)
        return _answer(200, {"status": "duplicate", "delivery": recorded.id})
    if state == "filtered":
        logger.info("delivery recorded; the route's filter skips it", extra=ids)
        return _answer(200, {"status": "filtered", "delivery": recorded.id})
    if event.old_state is None and event.new_state is None:
        logger.info("delivery accepted: %s", event.type, extra=ids)
    else:
        logger.info(
            "delivery accepted: %s %s -> %s",
            event.type,
            event.old_state or "?",
            event.new_state or "?",
            extra=ids,
        )
    return _answer(200, {"status": "accepted", "delivery": recorded.id})


def _read_body(limit: int) -> bytes:
    """Read the raw body, raising 413 as soon as it passes ``limit`` bytes.

    With a Content-Length, Flask's own limit applies. A chunked body has no
    length, and Werkzeug's stream would silently stop at the limit, so it is
    read here from the server's input directly.
    """
    if request.content_length is not None:
        return request.get_data(cache=True)
    stream = request.environ["wsgi.input"]
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(65536, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise RequestEntityTooLarge()


def _record_invalid(
    route: str, body: bytes, request_uuid: str | None, reason: str, ids: dict[str, Any]
) -> Response:
    """Keep a signed but unreadable body, so nothing that was signed is lost."""
    delivery = NewDelivery(
        route=route,
        dedupe_key=dedupe_key(None, body),
        body=body,
        state="invalid",
        request_uuid=request_uuid,
        note=reason,
    )
    try:
        recorded = _store().record(delivery)
    except sqlite3.Error as exc:
        return _store_unavailable(exc, ids)
    ids["delivery"] = recorded.id
    logger.warning(
        "signed delivery is not an App Store Connect event: %s", reason, extra=ids
    )
    return _answer(
        400, {"error": "invalid_payload", "message": reason, "delivery": recorded.id}
    )


def _too_large(settings: Settings, ids: dict[str, Any]) -> Response:
    logger.warning(
        "rejected delivery: body over %d bytes", settings.max_body_bytes, extra=ids
    )
    # "Connection: close" lets the client stop sending the rest of the body.
    # gunicorn replaces hop-by-hop headers but stops draining an unread body
    # after 64 KiB and then closes the connection itself.
    return _answer(
        413,
        {
            "error": "payload_too_large",
            "message": f"body is larger than {settings.max_body_bytes} bytes",
        },
        Connection="close",
    )


def _store_unavailable(exc: sqlite3.Error, ids: dict[str, Any]) -> Response:
    logger.error("cannot record delivery: %s", exc, extra=ids)
    return _answer(
        503,
        {
            "error": "unavailable",
            "message": "the relay cannot record deliveries right now",
        },
        Retry_After="30",
    )


def _healthz() -> Response:
    return _answer(200, {"status": "ok"})


def _readyz() -> Response:
    problems: list[str] = []
    store = _store()
    if store.path != ":memory:" and not os.path.exists(store.path):
        # SQLite keeps writing to a deleted file, and a restart would lose it.
        problems.append(f"database file {store.path} is missing")
    try:
        store.check_writable()
        beat = store.last_beat(HEARTBEAT)
    except sqlite3.Error as exc:
        problems.append(f"database not writable: {exc}")
        beat = None
    if not problems:
        if beat is None:
            problems.append("dispatcher has not started")
        elif time.time() - beat > 3 * HEARTBEAT_INTERVAL:
            problems.append(f"dispatcher silent for {time.time() - beat:.0f}s")
    if problems:
        return _answer(503, {"status": "unavailable", "problems": problems})
    return _answer(200, {"status": "ready"})


def _http_error(exc: HTTPException) -> Response:
    code = exc.code or 500
    if isinstance(exc, RequestEntityTooLarge):
        return _too_large(_settings(), {"route": None, "request_uuid": None})
    names = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}
    response = _answer(
        code, {"error": names.get(code, "http_error"), "message": exc.description}
    )
    if code == 405 and exc.get_response().headers.get("Allow"):
        response.headers["Allow"] = exc.get_response().headers["Allow"]
    return response


def _unexpected_error(exc: Exception) -> Response:
    logger.exception(
        "unexpected error while handling %s %s", request.method, request.path
    )
    return _answer(
        503,
        {"error": "unavailable", "message": "the relay could not handle this request"},
        Retry_After="30",
    )


def _clean_header(value: str | None) -> str | None:
    """Keep a header for logs only when it is short printable ASCII."""
    value = (value or "").strip()
    if not value:
        return None
    if not value.isascii() or not value.isprintable() or len(value) > 128:
        return None
    return value

"""The dispatcher: sends recorded deliveries to GitHub, one at a time, in order.

Exactly one dispatcher works on a database: it holds an exclusive ``flock``
on ``<database>.dispatcher.lock`` while it runs, so a second relay started on
the same file waits as a standby instead of sending twice.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from relay.backoff import exponential_delay
from relay.config import Settings
from relay.events import Event, Resource, build_client_payload
from relay.github import DispatchResult, GitHubClient
from relay.store import Store

logger = logging.getLogger(__name__)

HEARTBEAT = "dispatcher"
#: Seconds between heartbeats; ``/readyz`` fails after three missed ones.
HEARTBEAT_INTERVAL = 2.0
#: Retry delays grow from this many seconds, doubling, up to the cap.
RETRY_BASE = 2.0
RETRY_CAP = 600.0


class Dispatcher:
    """Claims due deliveries from the store and dispatches them."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clients: dict[str, GitHubClient] | None = None,
        poll_interval: float = 0.02,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.poll_interval = poll_interval
        self.clock = clock
        if clients is None and not settings.dry_run:
            clients = {
                name: GitHubClient(settings.github_api_url, route)
                for name, route in settings.routes.items()
            }
        self.clients = clients or {}
        self.stop_event = threading.Event()
        self._lock_file: Any = None

    # Running

    def acquire_lock(self, *, wait: bool = True) -> bool:
        """Take the database's dispatcher lock; return False if another holds it."""
        if self.store.path == ":memory:":
            return True
        handle = open(f"{self.store.path}.dispatcher.lock", "a+")  # noqa: SIM115
        announced = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._lock_file = handle
                return True
            except BlockingIOError:
                if not wait or self.stop_event.is_set():
                    handle.close()
                    return False
                if not announced:
                    logger.warning(
                        "another dispatcher is running on %s; waiting as a standby",
                        self.store.path,
                    )
                    announced = True
                self.stop_event.wait(1.0)

    def run(self) -> None:
        """Dispatch until :meth:`stop` is called."""
        if not self.acquire_lock():
            return
        try:
            recovered = self.store.recover_in_flight()
            if recovered:
                logger.warning(
                    "%d delivery(ies) were being sent when the relay stopped; "
                    "sending them again marked maybe_sent",
                    recovered,
                )
            logger.info("dispatcher started (dry run: %s)", self.settings.dry_run)
            last_beat = 0.0
            while not self.stop_event.is_set():
                if self.clock() - last_beat >= HEARTBEAT_INTERVAL:
                    self._beat()
                    last_beat = self.clock()
                try:
                    worked = self.run_once()
                except sqlite3.Error as exc:
                    logger.error("database error in the dispatcher: %s", exc)
                    worked = False
                if not worked:
                    self.stop_event.wait(self.poll_interval)
        finally:
            logger.info("dispatcher stopped")
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="dispatcher", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.stop_event.set()

    def _beat(self) -> None:
        try:
            self.store.beat(HEARTBEAT, os.getpid())
        except sqlite3.Error as exc:
            logger.error("cannot write the dispatcher heartbeat: %s", exc)

    # One delivery

    def run_once(self) -> bool:
        """Dispatch the oldest due delivery; return False when none was due."""
        row = self.store.claim_next(self.clock())
        if row is None:
            return False
        try:
            self.process(row)
        except sqlite3.Error:
            raise
        except Exception as exc:  # one bad delivery must not stop the queue
            # Left in "sending", the delivery would crash every restarted
            # dispatcher in turn, so it is set aside as failed with the cause.
            logger.exception("internal error while dispatching", extra=_log_ids(row))
            self.store.finish(
                row["id"],
                "failed",
                payload=None,
                error=f"internal error: {type(exc).__name__}: {exc}"[:500],
            )
        return True

    def process(self, row: sqlite3.Row) -> None:
        route = self.settings.routes.get(row["route"])
        ids = _log_ids(row)
        if route is None:
            self.store.finish(
                row["id"],
                "failed",
                payload=None,
                error=f"route {row['route']!r} is no longer configured",
            )
            logger.error("delivery failed: route no longer configured", extra=ids)
            return

        payload = self._payload(row)
        if self.settings.dry_run:
            self.store.finish(row["id"], "dry_run", payload=payload)
            logger.info(
                "dry run: would dispatch %s to %s",
                route.event_type,
                route.repository,
                extra=ids,
            )
            return

        started = time.monotonic()
        result = self.clients[route.name].dispatch(route.event_type, payload)
        elapsed_ms = (time.monotonic() - started) * 1000
        if result.outcome == "sent":
            self.store.finish(
                row["id"], "dispatched", payload=payload, status=result.status
            )
            logger.info(
                "dispatched %s to %s (%d, %.0f ms)",
                route.event_type,
                route.repository,
                result.status or 0,
                elapsed_ms,
                extra=ids,
            )
            return
        self._handle_failure(row, result, payload, ids)

    def _handle_failure(
        self,
        row: sqlite3.Row,
        result: DispatchResult,
        payload: dict[str, Any],
        ids: dict[str, Any],
    ) -> None:
        age = self.clock() - float(row["received_ts"])
        if result.outcome == "fatal":
            self.store.finish(
                row["id"],
                "failed",
                payload=payload,
                status=result.status,
                error=result.message,
            )
            logger.error("dispatch failed, not retrying: %s", result.message, extra=ids)
            return
        if age >= self.settings.max_retry_age:
            message = (
                f"gave up after {row['attempts']} attempts over {age / 3600:.1f} h: "
                f"{result.message}"
            )
            self.store.finish(
                row["id"],
                "failed",
                payload=payload,
                status=result.status,
                error=message,
            )
            logger.error("dispatch failed: %s", message, extra=ids)
            return
        # A hint is a minimum: "Retry-After: 0" or a reset time already past
        # must not turn into a tight loop against GitHub.
        delay = exponential_delay(int(row["attempts"]), base=RETRY_BASE, cap=RETRY_CAP)
        if result.retry_after is not None:
            delay = max(delay, result.retry_after)
        self.store.retry_later(
            row["id"], self.clock() + delay, status=result.status, error=result.message
        )
        logger.warning(
            "dispatch attempt %d failed: %s; retrying in %.1fs",
            row["attempts"],
            result.message,
            delay,
            extra=ids,
        )

    def _payload(self, row: sqlite3.Row) -> dict[str, Any]:
        resource = None
        if row["resource_type"] and row["resource_id"]:
            resource = Resource(
                row["resource_type"], row["resource_id"], row["resource_url"]
            )
        try:
            document = json.loads(row["body"])
        except ValueError:
            document = None
        event = Event(
            type=row["event_type"] or "",
            id=row["event_id"],
            old_state=row["old_state"],
            new_state=row["new_state"],
            resource=resource,
            timestamp=row["event_timestamp"],
        )
        relay: dict[str, Any] = {
            "delivery": row["id"],
            "received_at": row["received_at"],
            "request_uuid": row["request_uuid"],
        }
        if row["maybe_sent"]:
            relay["maybe_sent"] = True
        return build_client_payload(
            event,
            route=row["route"],
            relay=relay,
            history=self.store.history(row),
            document=document,
        )


def _log_ids(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "delivery": row["id"],
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "route": row["route"],
        "request_uuid": row["request_uuid"],
    }

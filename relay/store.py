"""The relay's durable outbox: every accepted delivery, in SQLite.

A delivery is committed (WAL journal, ``synchronous=FULL``) before the HTTP
response is sent, and the dispatcher works only from this table, so a crash
at any moment loses nothing. ``UNIQUE(route, dedupe_key)`` makes a repeated
delivery, sequential or concurrent, a no-op.

States: ``pending`` (waiting for its next attempt), ``sending`` (claimed by
the dispatcher), ``dispatched``, ``dry_run`` (recorded, GitHub not called),
``failed`` (given up; ``redeliver`` queues it again), ``invalid`` (signed but
unreadable, kept for inspection), ``filtered`` (the route's filter skipped it).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relay.events import Event, dedupe_key

#: The maximum number of earlier state changes a dispatch carries. An App Store version
#: passes through about ten states, so this keeps a whole life with room to spare.
HISTORY_LIMIT = 50

STATES = (
    "pending",
    "sending",
    "dispatched",
    "dry_run",
    "failed",
    "invalid",
    "filtered",
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    route TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    event_id TEXT,
    event_type TEXT,
    resource_type TEXT,
    resource_id TEXT,
    resource_url TEXT,
    old_state TEXT,
    new_state TEXT,
    event_timestamp TEXT,
    request_uuid TEXT,
    received_at TEXT NOT NULL,
    received_ts REAL NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    last_status INTEGER,
    dispatched_at TEXT,
    dispatched_payload TEXT,
    maybe_sent INTEGER NOT NULL DEFAULT 0,
    repeats INTEGER NOT NULL DEFAULT 0,
    UNIQUE (route, dedupe_key)
);
-- The dispatcher walks pending deliveries in arrival order.
CREATE INDEX IF NOT EXISTS deliveries_queue ON deliveries (state, id);
CREATE INDEX IF NOT EXISTS deliveries_resource
    ON deliveries (route, resource_type, resource_id, id);
CREATE TABLE IF NOT EXISTS heartbeats (
    name TEXT PRIMARY KEY,
    beat_at REAL NOT NULL,
    pid INTEGER NOT NULL
);
"""


# Columns set when a delivery is queued again from the start: its retry age
# counts from the given time, and the last error no longer applies.
_REQUEUE = (
    "state = 'pending', next_attempt_at = 0, attempts = 0, received_ts = ?, "
    "last_error = NULL"
)


@dataclass(frozen=True)
class NewDelivery:
    """A verified delivery about to be recorded."""

    route: str
    dedupe_key: str
    body: bytes
    state: str
    event_id: str | None = None
    event_type: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    resource_url: str | None = None
    old_state: str | None = None
    new_state: str | None = None
    event_timestamp: str | None = None
    request_uuid: str | None = None
    #: Why an ``invalid`` delivery could not be read, kept as its last error.
    note: str | None = None

    @classmethod
    def for_event(
        cls,
        route: str,
        body: bytes,
        event: Event,
        *,
        state: str,
        request_uuid: str | None,
    ) -> NewDelivery:
        """Describe a parsed event's delivery, keyed for repeat detection."""
        resource = event.resource
        return cls(
            route=route,
            dedupe_key=dedupe_key(event, body),
            body=body,
            state=state,
            event_id=event.id,
            event_type=event.type,
            resource_type=resource.type if resource else None,
            resource_id=resource.id if resource else None,
            resource_url=resource.url if resource else None,
            old_state=event.old_state,
            new_state=event.new_state,
            event_timestamp=event.timestamp,
            request_uuid=request_uuid,
        )


@dataclass(frozen=True)
class Recorded:
    """The result of recording: the row's id and whether it was new."""

    id: int
    new: bool
    state: str
    #: A repeat of a failed delivery, queued again.
    requeued: bool = False


def utc_now() -> datetime:
    return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Store:
    """SQLite access for one process; each thread gets its own connection."""

    def __init__(self, path: str, *, busy_timeout: float = 10.0) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._thread_lock = threading.Lock()
        self._lock_fd: int | None = None
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(f"{path}.write.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self.connection().executescript(SCHEMA)

    def connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=True,
            )
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            self._local.db = db
        return db

    def close(self) -> None:
        """Close this thread's connection and the write-lock file."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run a block as one write transaction.

        Writers queue on a lock file before ``BEGIN IMMEDIATE``. Without it,
        SQLite's busy handler makes a waiting writer sleep in steps of up to
        100 ms, which shows as tail latency under concurrent deliveries.
        """
        db = self.connection()
        with self._write_lock():
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        if self._lock_fd is None:
            yield
            return
        with self._thread_lock:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    # Receiving

    def record(
        self, delivery: NewDelivery, *, received: datetime | None = None
    ) -> Recorded:
        """Insert a delivery, or count a repeat of one already recorded."""
        moment = received or utc_now()
        with self.transaction() as db:
            cursor = db.execute(
                """INSERT OR IGNORE INTO deliveries (
                    route, dedupe_key, event_id, event_type, resource_type, resource_id,
                    resource_url, old_state, new_state, event_timestamp, request_uuid,
                    received_at, received_ts, body, state, last_error
                ) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    delivery.route,
                    delivery.dedupe_key,
                    delivery.event_id,
                    delivery.event_type,
                    delivery.resource_type,
                    delivery.resource_id,
                    delivery.resource_url,
                    delivery.old_state,
                    delivery.new_state,
                    delivery.event_timestamp,
                    delivery.request_uuid,
                    isoformat(moment),
                    moment.timestamp(),
                    delivery.body,
                    delivery.state,
                    delivery.note,
                ),
            )
            if cursor.rowcount == 1:
                return Recorded(int(cursor.lastrowid or 0), True, delivery.state)
            row = db.execute(
                "SELECT id, state FROM deliveries WHERE route = ? AND dedupe_key = ?",
                (delivery.route, delivery.dedupe_key),
            ).fetchone()
            state = str(row["state"])
            if state == "failed":
                # A redelivery from App Store Connect after a failure (say, a
                # token fixed since) is a request to try again, not a repeat.
                db.execute(
                    f"UPDATE deliveries SET repeats = repeats + 1, {_REQUEUE} WHERE id = ?",
                    (moment.timestamp(), row["id"]),
                )
                return Recorded(int(row["id"]), False, "pending", requeued=True)
            db.execute(
                "UPDATE deliveries SET repeats = repeats + 1 WHERE id = ?", (row["id"],)
            )
        return Recorded(int(row["id"]), False, state)

    # Dispatching

    def recover_in_flight(self) -> int:
        """Return deliveries left in ``sending`` by a stopped dispatcher to the queue.

        GitHub may or may not have received them, so they are marked
        ``maybe_sent`` and the next dispatch flags that in its payload.
        """
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE deliveries SET state = 'pending', maybe_sent = 1, next_attempt_at = 0 "
                "WHERE state = 'sending'"
            )
        return cursor.rowcount

    def claim_next(self, now: float | None = None) -> sqlite3.Row | None:
        """Mark the oldest due delivery ``sending`` and return it.

        A delivery waits while an earlier one for the same resource on the same
        route is still queued, so a retry never lets a later state change of a
        build or version overtake an earlier one.
        """
        current = time.time() if now is None else now
        with self.transaction() as db:
            return db.execute(
                """UPDATE deliveries SET state = 'sending', attempts = attempts + 1
                WHERE id = (
                    SELECT d.id FROM deliveries AS d
                    WHERE d.state = 'pending' AND d.next_attempt_at <= ?
                      AND NOT (d.resource_id IS NOT NULL AND EXISTS (
                          SELECT 1 FROM deliveries AS e
                          WHERE e.route = d.route
                            AND e.resource_type = d.resource_type
                            AND e.resource_id = d.resource_id
                            AND e.id < d.id
                            AND e.state IN ('pending', 'sending')
                      ))
                    ORDER BY d.id LIMIT 1
                )
                RETURNING *""",
                (current,),
            ).fetchone()

    def history(self, row: sqlite3.Row) -> list[dict[str, Any]]:
        """Earlier state changes recorded for the same resource on the same route.

        Oldest first, and at most the :data:`HISTORY_LIMIT` most recent.
        """
        if not row["resource_type"] or not row["resource_id"]:
            return []
        query = """
            SELECT event_type, old_state, new_state, event_timestamp, received_at
            FROM deliveries
            WHERE route = ? AND resource_type = ? AND resource_id = ? AND id < ?
              AND state NOT IN ('invalid', 'filtered')
              AND (old_state IS NOT NULL OR new_state IS NOT NULL)
            ORDER BY id DESC LIMIT ?"""
        parameters = (
            row["route"],
            row["resource_type"],
            row["resource_id"],
            row["id"],
            HISTORY_LIMIT,
        )
        rows = self.connection().execute(query, parameters).fetchall()
        return [
            {
                "event": item["event_type"],
                "old_state": item["old_state"],
                "new_state": item["new_state"],
                "timestamp": item["event_timestamp"],
                "received_at": item["received_at"],
            }
            for item in reversed(rows)
        ]

    def finish(
        self,
        delivery_id: int,
        state: str,
        *,
        payload: dict[str, Any] | None,
        status: int | None = None,
        error: str | None = None,
    ) -> None:
        """Record the end of a delivery: ``dispatched``, ``dry_run`` or ``failed``."""
        with self.transaction() as db:
            db.execute(
                """UPDATE deliveries SET state = ?, dispatched_at = ?, dispatched_payload = ?,
                last_status = ?, last_error = ? WHERE id = ?""",
                (
                    state,
                    isoformat(utc_now())
                    if state in ("dispatched", "dry_run")
                    else None,
                    json.dumps(payload, ensure_ascii=False)
                    if payload is not None
                    else None,
                    status,
                    error,
                    delivery_id,
                ),
            )

    def retry_later(
        self,
        delivery_id: int,
        next_attempt_at: float,
        *,
        status: int | None,
        error: str,
    ) -> None:
        with self.transaction() as db:
            db.execute(
                """UPDATE deliveries SET state = 'pending', next_attempt_at = ?,
                last_status = ?, last_error = ? WHERE id = ?""",
                (next_attempt_at, status, error, delivery_id),
            )

    def requeue(self, delivery_id: int, *, force: bool = False) -> str | None:
        """Queue a delivery again; return its previous state, or None if unknown.

        Without ``force`` only ``failed`` deliveries are queued; with it,
        ``dispatched`` and ``dry_run`` ones too (``sending`` never is).
        """
        allowed = ("failed", "dispatched", "dry_run") if force else ("failed",)
        with self.transaction() as db:
            row = db.execute(
                "SELECT state FROM deliveries WHERE id = ?", (delivery_id,)
            ).fetchone()
            if row is None:
                return None
            if row["state"] in allowed:
                db.execute(
                    f"UPDATE deliveries SET {_REQUEUE} WHERE id = ?",
                    (time.time(), delivery_id),
                )
            return str(row["state"])

    def prune(self, before: float) -> int:
        """Delete finished deliveries received before ``before`` (a Unix time).

        Only ``dispatched``, ``dry_run`` and ``filtered`` rows go; anything
        still queued, failed or invalid stays for a person to look at.
        """
        with self.transaction() as db:
            cursor = db.execute(
                "DELETE FROM deliveries WHERE received_ts < ? "
                "AND state IN ('dispatched', 'dry_run', 'filtered')",
                (before,),
            )
        return cursor.rowcount

    # Inspection

    def get(self, delivery_id: int) -> sqlite3.Row | None:
        return (
            self.connection()
            .execute("SELECT * FROM deliveries WHERE id = ?", (delivery_id,))
            .fetchone()
        )

    def recent(
        self, *, state: str | None = None, route: str | None = None, limit: int = 50
    ) -> list[sqlite3.Row]:
        clauses, params = [], []
        if state:
            clauses.append("state = ?")
            params.append(state)
        if route:
            clauses.append("route = ?")
            params.append(route)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return (
            self.connection()
            .execute(
                f"SELECT * FROM deliveries {where} ORDER BY id DESC LIMIT ?",
                (*params, limit),
            )
            .fetchall()
        )

    def counts(self) -> dict[str, int]:
        rows = (
            self.connection()
            .execute("SELECT state, COUNT(*) AS n FROM deliveries GROUP BY state")
            .fetchall()
        )
        return {row["state"]: int(row["n"]) for row in rows}

    # Liveness

    def beat(self, name: str, pid: int) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO heartbeats (name, beat_at, pid) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET beat_at = excluded.beat_at, pid = excluded.pid",
                (name, time.time(), pid),
            )

    def last_beat(self, name: str) -> float | None:
        row = (
            self.connection()
            .execute("SELECT beat_at FROM heartbeats WHERE name = ?", (name,))
            .fetchone()
        )
        return None if row is None else float(row["beat_at"])

    def check_writable(self) -> None:
        """Raise ``sqlite3.Error`` unless a write transaction can start."""
        db = self.connection()
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")

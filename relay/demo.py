"""``asc-relay demo``: the real relay on the bundled App Store Connect samples.

It starts ``asc-relay serve --dry-run`` (the production server code) on a
free loopback port with a generated secret and a temporary database, signs
and POSTs every sample, then a tampered and a repeated delivery, and prints
what happened to each. The exit status is 0 only when every outcome is the
expected one.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import requests

from relay.samples import load_sample, with_fresh_id
from relay.signatures import sign
from relay.store import Store

REPOSITORY = "example/ios-app"
START_TIMEOUT = 30.0
DISPATCH_TIMEOUT = 15.0

# Build uploads carry no timestamp; the app version samples follow their own
# timestamps, which is the order App Store Connect sent them in.
SAMPLE_ORDER = (
    "webhook-ping-created",
    "build-upload-failed",
    "build-upload-complete",
    "app-version-ready-for-review",
    "app-version-waiting-for-review",
    "app-version-developer-rejected",
    "app-version-prepare-for-submission",
    "app-version-in-review",
    "app-version-pending-developer-release",
    "app-version-ready-for-distribution",
)


@dataclass
class Delivery:
    label: str
    body: bytes
    signature: str
    expected_status: int
    expected_answer: str
    status: int = 0
    answer: dict | None = None


def run_demo() -> int:
    with tempfile.TemporaryDirectory(prefix="asc-relay-demo-") as workdir:
        database = str(Path(workdir) / "relay.db")
        secret = secrets.token_hex(32)
        port = _free_port()
        log_path = Path(workdir) / "relay.log"
        with open(log_path, "wb") as log:
            server = _start_server(port, secret, database, log)
            try:
                ok = _run(port, secret, database, server)
            finally:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
        if not ok:
            print("\nrelay log:", file=sys.stderr)
            print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
    return 0 if ok else 1


def _run(
    port: int, secret: str, database: str, server: subprocess.Popen[bytes]
) -> bool:
    base = f"http://127.0.0.1:{port}"
    if not _wait_ready(base, server):
        print(
            "demo: the relay did not become ready; see its log below", file=sys.stderr
        )
        return False
    print(f"relay listening on {base} (dry run, database {database})\n")

    deliveries = _plan(secret)
    session = requests.Session()
    for delivery in deliveries:
        headers = {
            "content-type": "application/json",
            "x-apple-request-uuid": str(uuid.uuid4()),
            "x-apple-signature": delivery.signature,
        }
        response = session.post(
            f"{base}/webhook", data=delivery.body, headers=headers, timeout=10
        )
        delivery.status = response.status_code
        delivery.answer = response.json()

    store = Store(database)
    accepted = [
        d for d in deliveries if d.answer and d.answer.get("status") == "accepted"
    ]
    payloads = _wait_dispatched(store, [int(d.answer["delivery"]) for d in accepted])  # type: ignore[index]
    ok = _print_table(deliveries, payloads)
    counts = store.counts()
    states = ", ".join(f"{state}: {count}" for state, count in sorted(counts.items()))
    print(f"\nrecorded: {sum(counts.values())} deliveries ({states})")
    print(
        "result: every outcome as expected"
        if ok
        else "result: UNEXPECTED OUTCOMES above"
    )
    return ok


def _plan(secret: str) -> list[Delivery]:
    deliveries = []
    for index, name in enumerate(SAMPLE_ORDER, start=1):
        body = load_sample(name)
        if name != "webhook-ping-created":
            body = with_fresh_id(body, f"demo-{index:02d}-{uuid.uuid4()}")
        deliveries.append(Delivery(name, body, sign(secret, body), 200, "accepted"))

    original = with_fresh_id(
        load_sample("build-upload-complete"), f"demo-tampered-{uuid.uuid4()}"
    )
    tampered = original.replace(b'"COMPLETE"', b'"FAILED"')
    deliveries.append(
        Delivery(
            "tampered upload",
            tampered,
            sign(secret, original),
            401,
            "invalid_signature",
        )
    )
    repeat = deliveries[len(SAMPLE_ORDER) - 1]
    deliveries.append(
        Delivery("repeated delivery", repeat.body, repeat.signature, 200, "duplicate")
    )
    return deliveries


def _wait_dispatched(store: Store, ids: list[int]) -> dict[int, dict]:
    deadline = time.monotonic() + DISPATCH_TIMEOUT
    payloads: dict[int, dict] = {}
    while time.monotonic() < deadline and len(payloads) < len(ids):
        for delivery_id in ids:
            row = store.get(delivery_id)
            if (
                row is not None
                and row["state"] == "dry_run"
                and row["dispatched_payload"]
            ):
                payloads[delivery_id] = json.loads(row["dispatched_payload"])
        time.sleep(0.05)
    return payloads


def _print_table(deliveries: list[Delivery], payloads: dict[int, dict]) -> bool:
    print(
        f"Accepted deliveries become repository_dispatch 'asc-webhook' on {REPOSITORY}.\n"
        "WOULD DISPATCH names the resource each event points at; '+N earlier' counts\n"
        "the state changes of that resource already recorded, which the dispatch\n"
        "carries as relay.history.\n"
    )
    rows = [("DELIVERY", "EVENT", "STATE CHANGE", "HTTP", "WOULD DISPATCH", "")]
    all_ok = True
    for delivery in deliveries:
        answer = delivery.answer or {}
        kind = answer.get("status") or answer.get("error") or "?"
        ok = (
            delivery.status == delivery.expected_status
            and kind == delivery.expected_answer
        )
        payload = payloads.get(int(answer.get("delivery", 0) or 0))
        if kind == "accepted":
            ok = ok and payload is not None
            would = (
                _describe(payload)
                if payload
                else "nothing yet (not dispatched in time)"
            )
        elif kind == "duplicate":
            would = f"nothing: repeat of delivery {answer.get('delivery')}"
        else:
            would = f"nothing: {answer.get('message', kind)}"
        all_ok = all_ok and ok
        event_type, change = _summary(delivery.body)
        rows.append(
            (
                delivery.label,
                event_type,
                change,
                str(delivery.status),
                would,
                "ok" if ok else "UNEXPECTED",
            )
        )

    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    for row in rows:
        cells = [f"{cell:<{width}}" for cell, width in zip(row, widths, strict=False)]
        print("  ".join(cells + [row[5]]).rstrip())
    return all_ok


def _summary(body: bytes) -> tuple[str, str]:
    try:
        data = json.loads(body)["data"]
    except (ValueError, KeyError, TypeError):
        return "?", "-"
    attributes = data.get("attributes") or {}
    for old_key, new_key in (("oldState", "newState"), ("oldValue", "newValue")):
        if new_key in attributes:
            return data.get(
                "type", "?"
            ), f"{attributes.get(old_key) or '?'} -> {attributes[new_key]}"
    return data.get("type", "?"), "-"


def _describe(payload: dict) -> str:
    resource = payload.get("resource") or {}
    text = f"{resource.get('type')}/{resource.get('id')}" if resource else "no resource"
    history = payload.get("relay", {}).get("history", [])
    if history:
        text += f" +{len(history)} earlier"
    return text


def _start_server(
    port: int, secret: str, database: str, log: BinaryIO
) -> subprocess.Popen[bytes]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GITHUB_", "ASC_WEBHOOK_", "RELAY_"))
    }
    env.update(
        ASC_WEBHOOK_SECRET=secret,
        RELAY_DATABASE=database,
        GITHUB_REPOSITORY=REPOSITORY,
    )
    command = [
        sys.executable,
        "-m",
        "relay.cli",
        "serve",
        "--dry-run",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    return subprocess.Popen(command, env=env, stdout=log, stderr=log)


def _wait_ready(base: str, server: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return False
        try:
            if requests.get(f"{base}/readyz", timeout=1).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.1)
    return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])

"""Load benchmark: the real relay on 127.0.0.1 with a local stand-in for GitHub.

It starts ``asc-relay serve`` (gunicorn plus the dispatcher) and the GitHub
stand-in used by the tests, sends signed deliveries with unique event ids
from several client processes, and reports:

- accepted deliveries per second,
- acknowledgement latency (request sent to response read), p50 and p99,
- receipt-to-dispatch latency (``relay.received_at`` to the stand-in's
  receipt of the dispatch), p50 and p99,
- peak resident memory of each relay process (``VmHWM``).

Run: ``make bench`` or ``.venv/bin/python bench/load.py --deliveries 5000``.
All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from relay.samples import load_sample, with_fresh_id
from relay.signatures import sign
from tests.relay.conftest import REPOSITORY, SECRET, TOKEN
from tests.relay.live import start_relay
from tests.standins.github import GitHubStandIn


def client(
    port: int, bodies: list[tuple[bytes, str]], results: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    """Send bodies one after another on a keep-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    for body, signature in bodies:
        headers = {
            "Content-Type": "application/json",
            "x-apple-signature": signature,
        }
        started = time.perf_counter()
        try:
            connection.request("POST", "/webhook", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            status = 0
        latencies.append(time.perf_counter() - started)
        statuses[status] = statuses.get(status, 0) + 1
    connection.close()
    results.put((latencies, statuses))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def peak_memory(pid: int) -> dict[int, int]:
    """Return VmHWM in KiB for a process and its descendants."""
    found: dict[int, int] = {}
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = (
                Path(f"/proc/{current}/task/{current}/children").read_text().split()
            )
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                found[current] = int(line.split()[1])
        pending += [int(child) for child in children]
    return found


def make_bodies(count: int, prefix: str) -> list[tuple[bytes, str]]:
    """Signed deliveries, each with its own event and resource, as distinct uploads have."""
    template = load_sample("build-upload-complete")
    bodies = []
    for index in range(count):
        body = with_fresh_id(template, f"{prefix}-{index:07d}")
        body = body.replace(
            b"xxx-xx-xx-xx-xxx", f"{prefix}-upload-{index:07d}".encode()
        )
        bodies.append((body, sign(SECRET, body)))
    return bodies


def acknowledge_with_wrk(
    port: int, args: argparse.Namespace, workdir: Path
) -> dict[str, float]:
    """Drive the relay with wrk (C, so the load generator costs little CPU)."""
    records = workdir / "requests.bin"
    with open(records, "wb") as handle:
        handle.writelines(
            f"{len(body)} {signature}\n".encode() + body
            for body, signature in make_bodies(args.pool, "wrk")
        )
    command = [
        "wrk",
        "-t",
        str(args.wrk_threads),
        "-c",
        str(args.connections),
        "-d",
        f"{args.duration}s",
        "--latency",
        "-s",
        str(Path(__file__).with_name("wrk-deliveries.lua")),
        f"http://127.0.0.1:{port}/webhook",
        "--",
        str(records),
        str(args.wrk_threads),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    line = next(text for text in output.splitlines() if text.startswith("RESULT "))
    values = {
        key: float(value)
        for key, value in (item.split("=") for item in line.split()[1:])
    }
    return {
        "requests": values["requests"],
        "seconds": values["duration_us"] / 1e6,
        "ack_p50_ms": values["p50_us"] / 1000,
        "ack_p99_ms": values["p99_us"] / 1000,
        "ack_max_ms": values["max_us"] / 1000,
        "non_2xx": values["non2xx"],
        "socket_errors": values["socket_errors"],
    }


def acknowledge_with_python(port: int, args: argparse.Namespace) -> dict[str, float]:
    """Fallback without wrk: Python client processes, which share the CPU with the relay."""
    bodies = make_bodies(args.pool, "py")
    shares = [bodies[i :: args.connections] for i in range(args.connections)]
    results: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    processes = [
        multiprocessing.Process(target=client, args=(port, share, results))
        for share in shares
    ]
    started = time.perf_counter()
    for process in processes:
        process.start()
    collected = [results.get() for _ in processes]
    seconds = time.perf_counter() - started
    for process in processes:
        process.join()
    latencies = [value for part, _ in collected for value in part]
    failures = sum(
        count
        for _, part in collected
        for status, count in part.items()
        if status != 200
    )
    return {
        "requests": float(len(latencies)),
        "seconds": seconds,
        "ack_p50_ms": percentile(latencies, 0.50) * 1000,
        "ack_p99_ms": percentile(latencies, 0.99) * 1000,
        "ack_max_ms": max(latencies) * 1000,
        "non_2xx": float(failures),
        "socket_errors": 0.0,
    }


def paced_dispatch_latency(
    port: int, github: GitHubStandIn, args: argparse.Namespace
) -> list[float]:
    """Send deliveries at a steady rate and time each from receipt to GitHub."""
    bodies = make_bodies(args.paced, "paced")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    first = len(github.dispatches)
    interval = 1.0 / args.rate
    next_send = time.perf_counter()
    for body, signature in bodies:
        time.sleep(max(0.0, next_send - time.perf_counter()))
        next_send += interval
        connection.request(
            "POST", "/webhook", body=body, headers={"x-apple-signature": signature}
        )
        connection.getresponse().read()
    connection.close()
    deadline = time.monotonic() + 60
    while len(github.dispatches) < first + len(bodies) and time.monotonic() < deadline:
        time.sleep(0.02)
    latencies = []
    for item in github.dispatches[first:]:
        received = datetime.fromisoformat(
            item.client_payload["relay"]["received_at"]
        ).timestamp()
        latencies.append(item.at - received)
    return latencies


def count_rows(database: str) -> int:
    import sqlite3

    with sqlite3.connect(database) as db:
        return int(db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0])


def run(args: argparse.Namespace) -> dict[str, object]:
    github = GitHubStandIn(tokens={TOKEN}, repositories={REPOSITORY}).start()
    workdir = Path(tempfile.mkdtemp(prefix="asc-relay-bench-"))
    database = str(workdir / "relay.db")
    relay = start_relay(
        workdir,
        github,
        database,
        "--workers",
        str(args.workers),
        "--threads",
        str(args.threads),
    )
    port = int(relay.url.rsplit(":", 1)[1])
    use_wrk = shutil.which("wrk") is not None and not args.python_client
    try:
        if use_wrk:
            load = acknowledge_with_wrk(port, args, workdir)
        else:
            load = acknowledge_with_python(port, args)
        accepted = count_rows(database)

        drain_started = time.perf_counter()
        deadline = time.monotonic() + 300
        while len(github.dispatches) < accepted and time.monotonic() < deadline:
            time.sleep(0.05)
        drain_seconds = time.perf_counter() - drain_started

        dispatched_in_load = len(github.dispatches)
        paced = paced_dispatch_latency(port, github, args)
        memory = peak_memory(relay.process.pid)
    finally:
        relay.process.send_signal(signal.SIGTERM)
        try:
            relay.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            relay.kill_group()
        github.stop()

    ids = [item.client_payload["id"] for item in github.dispatches]
    return {
        "load_generator": "wrk" if use_wrk else "python",
        "requests": int(load["requests"]),
        "accepted": accepted,
        "non_2xx": int(load["non_2xx"]),
        "socket_errors": int(load["socket_errors"]),
        "accepted_per_second": accepted / load["seconds"],
        "ack_p50_ms": load["ack_p50_ms"],
        "ack_p99_ms": load["ack_p99_ms"],
        "ack_max_ms": load["ack_max_ms"],
        "backlog_dispatched": dispatched_in_load,
        "backlog_drain_seconds": drain_seconds,
        "paced_rate": args.rate,
        "paced_deliveries": len(paced),
        "dispatch_p50_ms": percentile(paced, 0.50) * 1000,
        "dispatch_p99_ms": percentile(paced, 0.99) * 1000,
        "dispatched_twice": len(ids) - len(set(ids)),
        "peak_rss_mib": sorted(round(kib / 1024, 1) for kib in memory.values()),
    }


def describe_machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()} {platform.release()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration",
        type=int,
        default=10,
        help="seconds of load (default: %(default)s)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=8,
        help="concurrent connections (default: %(default)s)",
    )
    parser.add_argument(
        "--wrk-threads", type=int, default=2, help="wrk threads (default: %(default)s)"
    )
    parser.add_argument(
        "--pool",
        type=int,
        default=20000,
        help="distinct signed deliveries prepared (default: %(default)s)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="gunicorn workers (default: %(default)s)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=4,
        help="threads per worker (default: %(default)s)",
    )
    parser.add_argument(
        "--paced",
        type=int,
        default=200,
        help="deliveries in the paced phase (default: %(default)s)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=20.0,
        help="deliveries per second in the paced phase (default: %(default)s)",
    )
    parser.add_argument(
        "--python-client",
        action="store_true",
        help="use Python clients even when wrk is installed",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the raw numbers as JSON"
    )
    args = parser.parse_args()

    try:
        result = run(args)
    except AssertionError as exc:  # start_relay's report of a relay that did not start
        raise SystemExit(f"bench: {exc}") from None
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"machine: {describe_machine()}")
    print(
        f"load generator: {result['load_generator']}, {args.connections} connections for {args.duration} s; relay {args.workers} workers x {args.threads} threads"
    )
    print(
        f"requests: {result['requests']}, accepted: {result['accepted']}, non-2xx: {result['non_2xx']}, socket errors: {result['socket_errors']}"
    )
    print(f"accepted deliveries/s: {result['accepted_per_second']:.0f}")
    print(
        f"acknowledgement latency: p50 {result['ack_p50_ms']:.1f} ms, p99 {result['ack_p99_ms']:.1f} ms, max {result['ack_max_ms']:.1f} ms"
    )
    print(
        f"backlog: {result['backlog_dispatched']} dispatched, queue drained {result['backlog_drain_seconds']:.1f} s after the load stopped"
    )
    print(
        f"receipt to dispatch at {result['paced_rate']:.0f}/s ({result['paced_deliveries']} deliveries): p50 {result['dispatch_p50_ms']:.1f} ms, p99 {result['dispatch_p99_ms']:.1f} ms"
    )
    print(f"dispatched twice: {result['dispatched_twice']}")
    print(f"peak RSS per relay process (MiB): {result['peak_rss_mib']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``asc-relay`` command line.

Exit statuses: 0 success, 1 the operation failed, 2 a usage or configuration
error. Every error names the value at fault and the fix.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import requests

from relay import __version__
from relay.config import DEFAULT_ROUTE, ConfigError, Route, load_settings
from relay.logs import one_line, setup_logging
from relay.samples import SAMPLE_NAMES, load_sample
from relay.signatures import sign
from relay.store import STATES, Store

logger = logging.getLogger("relay.cli")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"asc-relay: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asc-relay",
        description="Verify App Store Connect webhooks and fire GitHub repository_dispatch events.",
    )
    parser.add_argument(
        "--version", action="version", version=f"asc-relay {__version__}"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the relay (gunicorn plus the dispatcher)"
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s)",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=8080,
        help="port to listen on (default: %(default)s)",
    )
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="gunicorn worker processes (default: $WEB_CONCURRENCY or 2)",
    )
    serve.add_argument(
        "--threads",
        type=int,
        default=4,
        help="threads per worker (default: %(default)s)",
    )
    serve.add_argument(
        "--dry-run",
        action="store_true",
        help="record and log deliveries without calling GitHub",
    )
    serve.add_argument("--log-json", action="store_true", help="log JSON lines")
    serve.set_defaults(handler=_serve)

    demo = commands.add_parser(
        "demo",
        help="run the relay on the bundled App Store Connect samples (no accounts needed)",
    )
    demo.set_defaults(handler=_demo)

    send = commands.add_parser(
        "send-test",
        help="sign and POST a bundled sample or a file to a relay URL",
        description="Sign a body with ASC_WEBHOOK_SECRET (or --secret-file) and POST it, "
        "like the Test button in App Store Connect.",
    )
    send.add_argument(
        "url", help="the relay's webhook URL, e.g. https://relay.example.com/webhook"
    )
    source = send.add_mutually_exclusive_group()
    source.add_argument(
        "--sample",
        default="webhook-ping-created",
        choices=SAMPLE_NAMES,
        help="bundled sample to send (default: %(default)s)",
    )
    source.add_argument("--file", type=Path, help="send this file's bytes instead")
    send.add_argument("--secret-file", type=Path, help="read the secret from this file")
    send.add_argument(
        "--keep-id",
        action="store_true",
        help="send the sample's event id as is (by default a fresh id is used, "
        "so the relay does not treat the delivery as a repeat)",
    )
    send.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=15.0,
        help="seconds to wait for the relay (default: %(default)s)",
    )
    send.set_defaults(handler=_send_test)

    events = commands.add_parser(
        "events", help="list recent deliveries and their dispatch state"
    )
    events.add_argument("--state", choices=STATES, help="only deliveries in this state")
    events.add_argument("--route", help="only deliveries to this route")
    events.add_argument(
        "--limit",
        type=_positive_int,
        default=50,
        help="rows to show (default: %(default)s)",
    )
    events.add_argument("--json", action="store_true", help="print JSON lines")
    events.add_argument("--database", help="SQLite file (default: $RELAY_DATABASE)")
    events.set_defaults(handler=_events)

    redeliver = commands.add_parser("redeliver", help="queue a failed delivery again")
    redeliver.add_argument(
        "id", type=_positive_int, help="the delivery number shown by 'asc-relay events'"
    )
    redeliver.add_argument(
        "--force",
        action="store_true",
        help="also queue a delivery that was already dispatched (starts the workflow again)",
    )
    redeliver.add_argument("--database", help="SQLite file (default: $RELAY_DATABASE)")
    redeliver.set_defaults(handler=_redeliver)

    prune = commands.add_parser(
        "prune", help="delete dispatched deliveries older than a number of days"
    )
    prune.add_argument(
        "--older-than",
        type=_positive_int,
        required=True,
        metavar="DAYS",
        help="delete dispatched, dry-run and filtered deliveries received this many "
        "days ago or earlier; queued, failed and invalid ones are kept",
    )
    prune.add_argument("--database", help="SQLite file (default: $RELAY_DATABASE)")
    prune.set_defaults(handler=_prune)

    check = commands.add_parser(
        "check",
        help="validate the configuration and confirm GitHub access for each route",
    )
    check.add_argument(
        "--offline",
        action="store_true",
        help="validate the configuration without calling GitHub",
    )
    check.set_defaults(handler=_check)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from relay.server import serve

    if args.log_json:
        os.environ["RELAY_LOG_FORMAT"] = "json"
    settings = load_settings(dry_run=args.dry_run)
    setup_logging(settings.log_format, secrets=settings.secret_values())
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is not a TCP port: use 1 to 65535")
    if args.workers is None:
        args.workers = _web_concurrency(os.environ.get("WEB_CONCURRENCY", ""))
    if args.workers < 1 or args.threads < 1:
        raise ConfigError("--workers and --threads must be at least 1")
    open_store(settings.database).close()
    _check_port_free(args.host, args.port)
    return serve(
        settings,
        host=args.host,
        port=args.port,
        workers=args.workers,
        threads=args.threads,
    )


def _demo(args: argparse.Namespace) -> int:
    from relay.demo import run_demo

    return run_demo()


def _send_test(args: argparse.Namespace) -> int:
    from relay.samples import with_fresh_id

    secret = _test_secret(args.secret_file)
    if args.file is not None:
        try:
            body = args.file.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read --file {args.file}: {exc.strerror}"
            ) from None
    else:
        body = load_sample(args.sample)
        if not args.keep_id:
            body = with_fresh_id(body)
    headers = {
        "content-type": "application/json",
        "x-apple-signature": sign(secret, body),
    }
    try:
        response = requests.post(
            args.url, data=body, headers=headers, timeout=args.timeout
        )
    except (
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidSchema,
        requests.exceptions.InvalidURL,
    ):
        raise ConfigError(
            f"URL {args.url!r} is invalid: give the relay's webhook URL, starting "
            "with http:// or https://"
        ) from None
    except requests.Timeout:
        print(
            f"POST {args.url} timed out after {args.timeout:g} s: check that the relay "
            "is running and reachable, or raise --timeout",
            file=sys.stderr,
        )
        return 1
    except requests.ConnectionError:
        print(
            f"POST {args.url} failed: ConnectionError: nothing answered; check that the "
            "relay is running and that the host and port are right",
            file=sys.stderr,
        )
        return 1
    print(f"POST {args.url} -> {response.status_code}")
    print(response.text.strip()[:2000])
    if response.status_code == 401:
        print(
            "The relay rejected the signature: check that ASC_WEBHOOK_SECRET here matches "
            "the secret the relay was started with.",
            file=sys.stderr,
        )
    return 0 if 200 <= response.status_code < 300 else 1


def _test_secret(secret_file: Path | None) -> str:
    if secret_file is not None:
        try:
            secret = secret_file.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError:
            raise ConfigError(
                f"--secret-file {secret_file} is not UTF-8 text"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"cannot read --secret-file {secret_file}: {exc.strerror}"
            ) from None
    else:
        secret = os.environ.get("ASC_WEBHOOK_SECRET", "").strip()
    if not secret:
        raise ConfigError(
            "no secret to sign with: set ASC_WEBHOOK_SECRET or pass --secret-file "
            "with the webhook's secret"
        )
    return secret


def _open_database(path: str | None) -> Store:
    database = path or os.environ.get("RELAY_DATABASE")
    if not database and os.environ.get("RELAY_CONFIG"):
        database = load_settings().database
    database = database or "relay.db"
    if not Path(database).is_file():
        raise ConfigError(
            f"no relay database at {database!r}: pass --database or set RELAY_DATABASE "
            "to the file the relay writes"
        )
    return open_store(database)


def _check_port_free(host: str, port: int) -> None:
    """Fail fast when the address is taken, instead of after gunicorn's retries."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(
            f"--host {host!r} cannot be resolved: {exc.strerror}"
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror}; stop what uses the "
                "port or pass another --port"
            ) from None


def open_store(database: str) -> Store:
    """Open the relay database, turning SQLite's errors into a clear message."""
    try:
        return Store(database)
    except (sqlite3.Error, OSError) as exc:
        raise ConfigError(
            f"cannot use the relay database {database!r}: {exc}; check RELAY_DATABASE "
            "and that the relay's user can write the file and its directory"
        ) from None


def _events(args: argparse.Namespace) -> int:
    store = _open_database(args.database)
    rows = store.recent(state=args.state, route=args.route, limit=args.limit)
    if args.json:
        for row in rows:
            record = {
                key: row[key]
                for key in row.keys()  # noqa: SIM118 - iterating a Row yields values
                if key not in ("body", "dispatched_payload")
            }
            print(json.dumps(record, ensure_ascii=False))
        return 0
    if not rows:
        print("no deliveries" + (f" in state {args.state}" if args.state else ""))
        return 0
    header = f"{'ID':>6}  {'RECEIVED':<24}  {'ROUTE':<10}  {'EVENT':<40}  {'CHANGE':<45}  {'STATE':<10}  {'TRIES':>5}  LAST ERROR"
    print(header)
    for row in rows:
        change = one_line(_change(row["old_state"], row["new_state"]))
        print(
            f"{row['id']:>6}  {row['received_at']:<24}  {row['route'][:10]:<10}  "
            f"{one_line(row['event_type'] or '-')[:40]:<40}  {change[:45]:<45}  {row['state']:<10}  "
            f"{row['attempts']:>5}  {one_line(row['last_error'] or '')}"
        )
    return 0


def _change(old: str | None, new: str | None) -> str:
    if old is None and new is None:
        return "-"
    return f"{old or '?'} -> {new or '?'}"


def _redeliver(args: argparse.Namespace) -> int:
    store = _open_database(args.database)
    previous = store.requeue(args.id, force=args.force)
    if previous is None:
        print(
            f"asc-relay: no delivery with id {args.id}; list them with 'asc-relay events'",
            file=sys.stderr,
        )
        return 1
    if previous == "failed" or (args.force and previous in ("dispatched", "dry_run")):
        print(
            f"delivery {args.id} queued again (was {previous}); a running relay sends it within seconds"
        )
        return 0
    hint = (
        " (pass --force to send it again)"
        if previous in ("dispatched", "dry_run")
        else ""
    )
    print(
        f"asc-relay: delivery {args.id} is {previous}, not failed; left as it is{hint}",
        file=sys.stderr,
    )
    return 1


def _prune(args: argparse.Namespace) -> int:
    store = _open_database(args.database)
    days = min(args.older_than, 100_000)
    deleted = store.prune(time.time() - days * 86400)
    print(f"deleted {deleted} finished deliveries received more than {days} days ago")
    return 0


def _check(args: argparse.Namespace) -> int:
    from relay.github import GitHubClient, GitHubError

    settings = load_settings()
    open_store(settings.database).close()
    print(f"database: {settings.database} (writable)")
    print(f"GitHub API: {settings.github_api_url}")
    failures = 0
    for route in settings.routes.values():
        _describe_route(route)
        if args.offline or route.github is None:
            continue
        try:
            repository = GitHubClient(settings.github_api_url, route).repository()
        except GitHubError as exc:
            failures += 1
            print(f"  FAILED: {exc}")
            hint = _check_hint(route, exc.status)
            if hint:
                print(f"  {hint}")
            continue
        permissions = repository.get("permissions") or {}
        if permissions and not permissions.get("push", False):
            failures += 1
            print(
                "  FAILED: the token can read the repository but not write to it; "
                "repository_dispatch needs Contents: read and write"
            )
            continue
        name = repository.get("full_name", route.repository)
        print(f"  ok: the token can see {name} and write to it")
    return 1 if failures else 0


def _describe_route(route: Route) -> None:
    if route.github is None:
        auth = "none (dry run)"
    elif route.github.kind == "token":
        auth = f"token from {route.github.source}"
    else:
        auth = f"GitHub App {route.github.app_id} (key from {route.github.source})"
    events = ", ".join(sorted(route.events)) if route.events else "all events"
    states = ", ".join(sorted(route.states)) if route.states else "all states"
    print(f"route {route.name!r}: POST {route.path} -> {route.repository}")
    print(
        f"  event_type {route.event_type!r}, {len(route.secrets)} secret(s), "
        f"auth {auth}"
    )
    print(f"  filter: {events}; {states}")


def _check_hint(route: Route, status: int | None) -> str:
    setting = (
        "GITHUB_REPOSITORY"
        if route.name == DEFAULT_ROUTE and not os.environ.get("RELAY_CONFIG")
        else f"routes.{route.name}.repository"
    )
    if status == 401:
        return (
            "The token is invalid or expired: create a new one and update its secret."
        )
    if status == 403:
        return "The token lacks access: grant it Contents: read and write on the repository."
    if status == 404:
        return (
            f"The repository name is wrong or the token cannot see it: fix {setting} "
            "or grant the token access to the repository."
        )
    if status is None:
        return "GitHub did not answer: check GITHUB_API_URL and the VM's network."
    # Any other status: GitHub's own message, printed above, is the best guide.
    return ""


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive number of seconds"
        )
    return value


def _web_concurrency(text: str) -> int:
    if not text.strip():
        return 2
    try:
        return _positive_int(text.strip())
    except argparse.ArgumentTypeError:
        raise ConfigError(
            f"WEB_CONCURRENCY {text!r} is not a whole number of workers: set it to 1 "
            "or more, or unset it for 2"
        ) from None


def _positive_int(text: str) -> int:
    """Parse a count or an id; SQLite integers stop at 2**63 - 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value < 2**63:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number of at least 1 and below 2**63"
        )
    return value


if __name__ == "__main__":
    sys.exit(main())

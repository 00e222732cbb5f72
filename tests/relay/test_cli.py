from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from relay.cli import main
from relay.samples import load_sample
from relay.store import NewDelivery, Store
from tests.relay.conftest import REPOSITORY, SECRET, TOKEN
from tests.relay.live import REPO_ROOT, Relay
from tests.standins.github import GitHubStandIn


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, database: str) -> dict[str, str]:
    for name in list(os.environ):
        if name.startswith(("GITHUB_", "ASC_WEBHOOK_", "RELAY_")):
            monkeypatch.delenv(name)
    values = {
        "ASC_WEBHOOK_SECRET": SECRET,
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_REPOSITORY": REPOSITORY,
        "RELAY_DATABASE": database,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def add(store: Store, state: str, event_id: str) -> int:
    return store.record(
        NewDelivery(
            route="default",
            dedupe_key=f"id:{event_id}",
            body=b"{}",
            state=state,
            event_id=event_id,
            event_type="buildUploadStateUpdated",
            old_state="PROCESSING",
            new_state="COMPLETE",
        )
    ).id


def test_events_lists_deliveries(
    env: dict[str, str], store: Store, capsys: Any
) -> None:
    add(store, "dispatched", "a")
    add(store, "failed", "b")
    assert main(["events"]) == 0
    out = capsys.readouterr().out
    assert "PROCESSING -> COMPLETE" in out
    assert "dispatched" in out
    assert "failed" in out


def test_events_filters_by_state_as_json(
    env: dict[str, str], store: Store, capsys: Any
) -> None:
    add(store, "dispatched", "a")
    failed = add(store, "failed", "b")
    assert main(["events", "--state", "failed", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["id"] == failed
    assert "body" not in record


def test_events_without_database_is_config_error(
    env: dict[str, str], tmp_path: Path, capsys: Any
) -> None:
    assert main(["events", "--database", str(tmp_path / "missing.db")]) == 2
    assert "no relay database" in capsys.readouterr().err


def test_redeliver_queues_failed_delivery(
    env: dict[str, str], store: Store, capsys: Any
) -> None:
    failed = add(store, "failed", "b")
    assert main(["redeliver", str(failed)]) == 0
    assert store.get(failed)["state"] == "pending"
    assert "queued again (was failed)" in capsys.readouterr().out


def test_redeliver_refuses_dispatched_without_force(
    env: dict[str, str], store: Store, capsys: Any
) -> None:
    sent = add(store, "dispatched", "a")
    assert main(["redeliver", str(sent)]) == 1
    assert "--force" in capsys.readouterr().err
    assert store.get(sent)["state"] == "dispatched"
    assert main(["redeliver", "--force", str(sent)]) == 0
    assert store.get(sent)["state"] == "pending"


def test_redeliver_unknown_id(env: dict[str, str], store: Store, capsys: Any) -> None:
    assert main(["redeliver", "999"]) == 1
    assert "no delivery with id 999" in capsys.readouterr().err


def test_check_confirms_repository_access(
    env: dict[str, str],
    github: GitHubStandIn,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    monkeypatch.setenv("GITHUB_API_URL", github.url)
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert f"ok: the token can see {REPOSITORY}" in out
    assert TOKEN not in out
    assert SECRET not in out


def test_check_reports_wrong_repository(
    env: dict[str, str],
    github: GitHubStandIn,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    monkeypatch.setenv("GITHUB_API_URL", github.url)
    monkeypatch.setenv("GITHUB_REPOSITORY", "example/typo")
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "returned 404" in out
    assert "fix GITHUB_REPOSITORY" in out


def test_check_reports_read_only_token(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    standin = GitHubStandIn(
        tokens={TOKEN}, repositories={REPOSITORY}, push=False
    ).start()
    try:
        monkeypatch.setenv("GITHUB_API_URL", standin.url)
        assert main(["check"]) == 1
    finally:
        standin.stop()
    assert "Contents: read and write" in capsys.readouterr().out


def test_check_reports_bad_token(
    env: dict[str, str],
    github: GitHubStandIn,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    monkeypatch.setenv("GITHUB_API_URL", github.url)
    monkeypatch.setenv("GITHUB_TOKEN", "revoked-token-value")
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "returned 401: Bad credentials" in out
    assert "revoked-token-value" not in out


def test_check_without_secret_is_config_error(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.delenv("ASC_WEBHOOK_SECRET")
    assert main(["check", "--offline"]) == 2
    assert "asc-relay: error: no webhook secret" in capsys.readouterr().err


def test_send_test_posts_signed_sample(
    env: dict[str, str], relay: Relay, capsys: Any
) -> None:
    assert (
        main(["send-test", relay.url + "/webhook", "--sample", "build-upload-complete"])
        == 0
    )
    out = capsys.readouterr().out
    assert "-> 200" in out
    assert '"accepted"' in out


def test_send_test_twice_is_not_a_repeat(
    env: dict[str, str], relay: Relay, capsys: Any
) -> None:
    assert main(["send-test", relay.url + "/webhook"]) == 0
    assert main(["send-test", relay.url + "/webhook"]) == 0
    assert capsys.readouterr().out.count('"accepted"') == 2


def test_send_test_with_wrong_secret_explains(
    env: dict[str, str], relay: Relay, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("ASC_WEBHOOK_SECRET", "not-the-relay-secret")
    assert main(["send-test", relay.url + "/webhook"]) == 1
    captured = capsys.readouterr()
    assert "-> 401" in captured.out
    assert "check that ASC_WEBHOOK_SECRET" in captured.err
    assert "not-the-relay-secret" not in captured.out + captured.err


def test_send_test_file(
    env: dict[str, str], relay: Relay, tmp_path: Path, capsys: Any
) -> None:
    path = tmp_path / "event.json"
    path.write_bytes(load_sample("app-version-in-review"))
    assert main(["send-test", relay.url + "/webhook", "--file", str(path)]) == 0


def test_send_test_unreachable_url(env: dict[str, str], capsys: Any) -> None:
    assert main(["send-test", "http://127.0.0.1:9/webhook", "--timeout", "2"]) == 1
    assert "failed: ConnectionError" in capsys.readouterr().err


def test_send_test_without_secret(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.delenv("ASC_WEBHOOK_SECRET")
    assert main(["send-test", "http://127.0.0.1:9/webhook"]) == 2
    assert "set ASC_WEBHOOK_SECRET or pass --secret-file" in capsys.readouterr().err


def test_demo_runs_every_sample_and_exits_zero() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "relay.cli", "demo"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "result: every outcome as expected" in result.stdout
    assert "tampered upload" in result.stdout
    assert "nothing: repeat of delivery 10" in result.stdout
    assert result.stdout.count("  ok") == 12
    assert "recorded: 10 deliveries (dry_run: 10)" in result.stdout


def test_usage_error_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "relay.cli", "frobnicate"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO_ROOT,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_serve_with_unwritable_database_is_config_error(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("RELAY_DATABASE", str(blocker / "relay.db"))
    assert main(["serve", "--port", "8099"]) == 2
    err = capsys.readouterr().err
    assert "cannot use the relay database" in err
    assert "Traceback" not in err


def test_check_names_token_source_and_filter(
    env: dict[str, str],
    github: GitHubStandIn,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    monkeypatch.setenv("GITHUB_API_URL", github.url)
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "auth token from GITHUB_TOKEN" in out
    assert "filter: all events; all states" in out
    assert "and write to it" in out


def test_check_401_explains_expired_token(
    env: dict[str, str],
    github: GitHubStandIn,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    monkeypatch.setenv("GITHUB_API_URL", github.url)
    monkeypatch.setenv("GITHUB_TOKEN", "expired-token-value")
    assert main(["check"]) == 1
    assert "invalid or expired" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command", [["events"], ["redeliver", "1"], ["check", "--offline"]]
)
def test_database_that_is_not_sqlite_is_config_error(
    env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    command: list[str],
) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("these are not the pages of a database\n" * 200)
    monkeypatch.setenv("RELAY_DATABASE", str(bogus))
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "cannot use the relay database" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("value", ["0", "-1", "nan", "soon"])
def test_send_test_rejects_bad_timeout(
    env: dict[str, str], value: str, capsys: Any
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["send-test", "http://127.0.0.1:9/webhook", "--timeout", value])
    assert caught.value.code == 2
    assert "not a positive number of seconds" in capsys.readouterr().err


def test_send_test_url_without_scheme(env: dict[str, str], capsys: Any) -> None:
    assert main(["send-test", "relay.example.com/webhook"]) == 2
    assert "starting with http:// or https://" in capsys.readouterr().err


def test_events_shows_invalid_reason(
    env: dict[str, str], store: Store, capsys: Any
) -> None:
    store.record(
        NewDelivery(
            route="default",
            dedupe_key="sha256:x",
            body=b"[]",
            state="invalid",
            note="body is not a JSON object",
        )
    )
    assert main(["events"]) == 0
    assert "body is not a JSON object" in capsys.readouterr().out


def test_events_rejects_zero_limit(env: dict[str, str], capsys: Any) -> None:
    with pytest.raises(SystemExit):
        main(["events", "--limit", "0"])
    assert "at least 1 and below 2**63" in capsys.readouterr().err


def test_redeliver_huge_id_is_usage_error(env: dict[str, str], capsys: Any) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["redeliver", "99999999999999999999999"])
    assert caught.value.code == 2
    assert "below 2**63" in capsys.readouterr().err


def test_serve_port_in_use_is_config_error(env: dict[str, str], capsys: Any) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "pass another --port" in err


def test_prune_deletes_only_old_finished_deliveries(
    env: dict[str, str], store: Store, capsys: Any
) -> None:
    from datetime import UTC, datetime, timedelta

    old = datetime.now(UTC) - timedelta(days=100)
    kept = {}
    for state in ("dispatched", "dry_run", "filtered", "failed", "invalid", "pending"):
        kept[state] = store.record(
            NewDelivery(
                route="default", dedupe_key=f"id:old-{state}", body=b"{}", state=state
            ),
            received=old,
        ).id
    recent = add(store, "dispatched", "recent")

    assert main(["prune", "--older-than", "90"]) == 0
    assert "deleted 3 finished deliveries" in capsys.readouterr().out
    for state in ("dispatched", "dry_run", "filtered"):
        assert store.get(kept[state]) is None
    for state in ("failed", "invalid", "pending"):
        assert store.get(kept[state]) is not None
    assert store.get(recent) is not None


def test_check_reports_non_github_answer(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    class Maintenance(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>maintenance</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Maintenance)
    Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    try:
        monkeypatch.setenv(
            "GITHUB_API_URL", f"http://127.0.0.1:{server.server_address[1]}"
        )
        assert main(["check"]) == 1
    finally:
        server.shutdown()
        server.server_close()
    out = capsys.readouterr().out
    assert "not a GitHub API response" in out
    assert "did not answer" not in out


@pytest.mark.parametrize("value", ["two", "0", "-3"])
def test_serve_bad_web_concurrency_is_config_error(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: Any, value: str
) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", value)
    assert main(["serve", "--port", "8099"]) == 2
    assert "WEB_CONCURRENCY" in capsys.readouterr().err


def test_help_works_with_bad_web_concurrency(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "lots")
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--help"])
    assert caught.value.code == 0


def test_demo_table_reports_unexpected_outcome(capsys: Any) -> None:
    from relay.demo import Delivery, _print_table

    good = Delivery(
        "ping",
        b"{}",
        "sig",
        200,
        "accepted",
        status=200,
        answer={"status": "accepted", "delivery": 1},
    )
    wrong = Delivery(
        "tampered",
        b"{}",
        "sig",
        401,
        "invalid_signature",
        status=200,
        answer={"status": "accepted", "delivery": 2},
    )
    payloads = {1: {"resource": None, "relay": {}}, 2: {"resource": None, "relay": {}}}
    assert _print_table([good], payloads) is True
    assert _print_table([good, wrong], payloads) is False
    assert "UNEXPECTED" in capsys.readouterr().out


def test_events_escapes_control_characters(
    env: dict[str, str], store: Store, capsys: Any
) -> None:
    store.record(
        NewDelivery(
            route="default",
            dedupe_key="id:ctl",
            body=b"{}",
            state="pending",
            event_type="evil\n\x1b[2Jtype",
        )
    )
    assert main(["events"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "evil\\n\\x1b[2Jtype" in out

"""Tests for the asc-ci command line: exit codes, outputs, summary, secrets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from responses import matchers

from ci import cli, cli_commands
from ci.event import ACTIONS
from ci.summary import format_output, parse_outputs
from tests.ci.support import (
    ASC_URL,
    GITHUB_URL,
    SECRETS,
    SLACK_WEBHOOK_URL,
    client_payload,
    github_event,
    load_fixture,
    sample_paths,
    version_document,
    write_json,
)
from tests.ci.test_route import EXPECTED_SAMPLE_ACTIONS

PRIVATE_KEY_PEM = (
    ec.generate_private_key(ec.SECP256R1())
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    .decode()
)


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An Actions-like environment with every credential set to a fake secret."""
    (tmp_path / "workspace").mkdir()
    return {
        "GITHUB_WORKSPACE": str(tmp_path / "workspace"),
        "GITHUB_OUTPUT": str(tmp_path / "output.txt"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_REPOSITORY": "acme/app",
        "GITHUB_API_URL": GITHUB_URL,
        "ASC_API_URL": ASC_URL,
        "APP_STORE_CONNECT_API_KEY_KEY_ID": "ABCDE12345",
        "APP_STORE_CONNECT_API_KEY_ISSUER_ID": "57246542-96fe-1a63-e053-0824d011072a",
        "APP_STORE_CONNECT_API_KEY_KEY": PRIVATE_KEY_PEM,
        **SECRETS,
    }


def outputs_of(env: dict[str, str]) -> dict[str, str]:
    path = Path(env["GITHUB_OUTPUT"])
    return parse_outputs(path.read_text()) if path.exists() else {}


def summary_of(env: dict[str, str]) -> str:
    path = Path(env["GITHUB_STEP_SUMMARY"])
    return path.read_text() if path.exists() else ""


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for name, value in SECRETS.items():
            assert value not in text, f"{name} leaked"
        assert "s3cr3tWebhookPath" not in text
        assert "PRIVATE KEY" not in text


def event_file(tmp_path: Path, payload: dict[str, object]) -> str:
    return str(write_json(tmp_path / "event.json", github_event(payload)))


# route


@pytest.mark.parametrize("path", sample_paths(), ids=lambda path: path.name)
def test_route_sample_prints_action(
    path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["route", "--payload-file", str(path)], env)
    captured = capsys.readouterr()
    expected = EXPECTED_SAMPLE_ACTIONS[path.name]
    assert code == 0
    assert captured.out == f"{expected}\n"
    assert outputs_of(env)["action"] == expected
    assert expected in ACTIONS


def test_route_reads_github_event_path(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    payload = client_payload(
        "buildBetaDetailExternalBuildStateUpdated",
        "buildBetaDetails",
        "bbd-1",
        old_state="IN_BETA_REVIEW",
        new_state="BETA_REJECTED",
    )
    env["GITHUB_EVENT_PATH"] = event_file(tmp_path, payload)
    assert cli.main(["route"], env) == 0
    assert capsys.readouterr().out == "notify-beta-state\n"
    outputs = outputs_of(env)
    assert outputs["resource_id"] == "bbd-1"
    assert outputs["new_state"] == "BETA_REJECTED"


def test_route_replay_input(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    raw = (sample_paths()[0]).read_text()
    path = write_json(tmp_path / "replay.json", {"inputs": {"payload": raw}})
    assert cli.main(["route", "--event-file", str(path)], env) == 0
    assert capsys.readouterr().out.strip() in ACTIONS


# handle


def test_handle_ping_exits_zero(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    ping = next(path for path in sample_paths() if "ping" in path.name)
    code = cli.main(["handle", "--payload-file", str(ping)], env)
    captured = capsys.readouterr()
    assert code == 0
    assert "relay connected" in captured.err
    assert outputs_of(env)["action"] == "none"
    assert outputs_of(env)["result"] == "success"
    assert "relay connected" in summary_of(env)


def test_handle_build_failed_posts_slack(
    tmp_path: Path,
    env: dict[str, str],
    mocked: responses.RequestsMock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (Path(env["GITHUB_WORKSPACE"]) / ".github").mkdir()
    (Path(env["GITHUB_WORKSPACE"]) / ".github" / "asc-release.yml").write_text(
        "app_name: Acme\n"
    )
    payload = client_payload(
        "buildUploadStateUpdated",
        "buildUploads",
        "bu-1",
        old_state="PROCESSING",
        new_state="FAILED",
    )
    env["GITHUB_EVENT_PATH"] = event_file(tmp_path, payload)
    mocked.get(
        f"{ASC_URL}/v1/buildUploads/bu-1",
        json=load_fixture("build-upload-failed.json"),
        match=[
            matchers.header_matcher({"Accept": "application/json"}, strict_match=False)
        ],
    )
    mocked.post(SLACK_WEBHOOK_URL, body="ok")

    code = cli.main(["handle"], env)

    captured = capsys.readouterr()
    outputs = outputs_of(env)
    summary = summary_of(env)
    assert code == 0
    assert outputs["action"] == "notify-build-failed"
    assert outputs["error_codes"] == "ITMS-90683"
    assert outputs["build_number"] == "3"
    assert outputs["result"] == "success"
    assert "| slack | ✅ done |" in summary
    assert "buildUploadStateUpdated PROCESSING → FAILED" in summary
    assert_no_secret(
        captured.out, captured.err, summary, Path(env["GITHUB_OUTPUT"]).read_text()
    )


def test_handle_slack_failure_exits_one(
    tmp_path: Path,
    env: dict[str, str],
    mocked: responses.RequestsMock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    payload = client_payload(
        "buildUploadStateUpdated", "buildUploads", "bu-1", new_state="FAILED"
    )
    env["GITHUB_EVENT_PATH"] = event_file(tmp_path, payload)
    mocked.get(
        f"{ASC_URL}/v1/buildUploads/bu-1", json=load_fixture("build-upload-failed.json")
    )
    mocked.post(SLACK_WEBHOOK_URL, status=403, body="action_prohibited")

    code = cli.main(["handle"], env)

    captured = capsys.readouterr()
    summary = summary_of(env)
    assert code == 1
    assert outputs_of(env)["result"] == "failed"
    assert "| slack | ❌ failed |" in summary
    assert "action_prohibited" in summary
    assert "Traceback" not in captured.err
    assert_no_secret(
        captured.out, captured.err, summary, Path(env["GITHUB_OUTPUT"]).read_text()
    )


def test_handle_asc_not_found_exits_one(
    tmp_path: Path,
    env: dict[str, str],
    mocked: responses.RequestsMock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    payload = client_payload(
        "appStoreVersionAppVersionStateUpdated",
        "appStoreVersions",
        "gone",
        new_state="REJECTED",
    )
    env["GITHUB_EVENT_PATH"] = event_file(tmp_path, payload)
    mocked.get(
        f"{ASC_URL}/v1/appStoreVersions/gone",
        status=404,
        json={
            "errors": [
                {
                    "status": "404",
                    "code": "NOT_FOUND",
                    "title": "The specified resource does not exist",
                    "detail": "There is no resource of type 'appStoreVersions' "
                    "with id 'gone'",
                }
            ]
        },
    )
    code = cli.main(["handle"], env)
    captured = capsys.readouterr()
    assert code == 1
    assert "asc-ci: failed: GET" in captured.err
    assert "NOT_FOUND" in captured.err
    assert "Traceback" not in captured.err
    assert outputs_of(env)["action"] == "notify-review-state"
    assert "NOT_FOUND" in summary_of(env)


def test_handle_release_dry_run(
    tmp_path: Path,
    env: dict[str, str],
    mocked: responses.RequestsMock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    payload = client_payload(
        "appStoreVersionAppVersionStateUpdated",
        "appStoreVersions",
        "ver-1",
        new_state="READY_FOR_DISTRIBUTION",
    )
    env["GITHUB_EVENT_PATH"] = event_file(tmp_path, payload)
    mocked.get(f"{ASC_URL}/v1/appStoreVersions/ver-1", json=version_document())
    code = cli.main(["handle", "--dry-run"], env)
    captured = capsys.readouterr()
    assert code == 0
    assert "would merge develop into master" in captured.out
    assert outputs_of(env)["tag"] == "v1.101.0"
    assert outputs_of(env)["action"] == "release"


# configuration and usage errors


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        (
            "release:\n  merge_into: [master]\n",
            "release.merge_into must be a non-empty string, got ['master']",
        ),
        ("slak:\n  channel: x\n", "unknown key 'slak' (did you mean 'slack'?)"),
        ("platform: IOS\n  bad: indent\n", "invalid YAML at line 2"),
    ],
)
def test_settings_error_exits_two(
    tmp_path: Path,
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    settings: str,
    fragment: str,
) -> None:
    config = tmp_path / "settings.yml"
    config.write_text(settings)
    ping = next(path for path in sample_paths() if "ping" in path.name)
    code = cli.main(
        ["handle", "--config", str(config), "--payload-file", str(ping)], env
    )
    captured = capsys.readouterr()
    assert code == 2
    assert fragment in captured.err
    assert "Traceback" not in captured.err
    assert fragment in summary_of(env)


def test_missing_event_exits_two(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["handle"], env) == 2
    assert "GITHUB_EVENT_PATH is not set" in capsys.readouterr().err


def test_missing_credentials_exits_two(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    del env["APP_STORE_CONNECT_API_KEY_KEY_ID"]
    code = cli.main(["notify-build-failed", "--build-upload", "bu-1"], env)
    assert code == 2
    assert "APP_STORE_CONNECT_API_KEY_KEY_ID is not set" in capsys.readouterr().err


def test_release_needs_github_token(
    env: dict[str, str],
    mocked: responses.RequestsMock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The GitHub client is built before any request, so nothing is mocked.
    del env["GITHUB_TOKEN"]
    assert cli.main(["release", "--version", "ver-1"], env) == 2
    assert "GITHUB_TOKEN is not set" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["release"],
        ["notify-feedback", "--screenshot", "a", "--crash", "b"],
        ["notify-feedback"],
        ["no-such-command"],
        [],
        ["fetch", "/v1/apps", "--param", "novalue"],
    ],
)
def test_usage_error_exits_two(
    argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv, env) == 2
    assert "usage: asc-ci" in capsys.readouterr().err


# unexpected errors


def test_unexpected_error_one_line(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"boom with {SECRETS['GITHUB_TOKEN']}")

    monkeypatch.setattr(cli_commands, "route", explode)
    ping = next(path for path in sample_paths() if "ping" in path.name)
    code = cli.main(["route", "--payload-file", str(ping)], env)
    captured = capsys.readouterr()
    assert code == 1
    assert "unexpected error: RuntimeError: boom with ***" in captured.err
    assert "--debug" in captured.err
    assert "Traceback" not in captured.err
    assert_no_secret(captured.err, summary_of(env))


def test_unexpected_error_debug_traceback(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"boom with {SECRETS['GITHUB_TOKEN']}")

    monkeypatch.setattr(cli_commands, "route", explode)
    ping = next(path for path in sample_paths() if "ping" in path.name)
    code = cli.main(["route", "--debug", "--payload-file", str(ping)], env)
    captured = capsys.readouterr()
    assert code == 1
    assert "Traceback" in captured.err
    assert_no_secret(captured.err)


# fetch


def test_fetch_prints_json(
    env: dict[str, str],
    mocked: responses.RequestsMock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mocked.get(
        f"{ASC_URL}/v1/buildUploads/bu-1",
        json=load_fixture("build-upload-complete.json"),
        match=[matchers.query_param_matcher({"include": "build"})],
    )
    url = "https://api.appstoreconnect.apple.com/v1/buildUploads/bu-1"
    code = cli.main(["fetch", url, "--param", "include=build"], env)
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["data"]["attributes"]["cfBundleVersion"] == "1"


# outputs


@pytest.mark.parametrize(
    "value",
    ["plain", "two\nlines", "has=equals", "ghadelimiter_fake\nEOF", "", "emoji 🚀 <b>"],
)
def test_output_heredoc_round_trip(value: str) -> None:
    text = format_output("detail", value) + format_output("next", "x")
    assert parse_outputs(text) == {"detail": value, "next": "x"}


def test_output_delimiter_avoids_value() -> None:
    candidates = iter(["EOF", "EOF2"])
    text = format_output("detail", "line\nEOF\nmore", lambda: next(candidates))
    assert text == "detail<<EOF2\nline\nEOF\nmore\nEOF2\n"
    assert parse_outputs(text) == {"detail": "line\nEOF\nmore"}


def test_output_name_validated() -> None:
    with pytest.raises(ValueError):
        format_output("bad name", "x")


def test_redactor_masks_secret_values() -> None:
    redact = cli.Redactor(
        {"GITHUB_TOKEN": SECRETS["GITHUB_TOKEN"], "JIRA_API_TOKEN": "short"}
    )
    assert redact(f"token {SECRETS['GITHUB_TOKEN']} end") == "token *** end"
    assert redact("short stays") == "short stays"


# submit-for-review


def test_submit_maps_settings(
    tmp_path: Path,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ci import submit
    from ci.outcome import Outcome

    calls: list[tuple[str, submit.SubmitOptions]] = []

    def fake_submit(
        asc: object, build_upload_id: str, options: submit.SubmitOptions
    ) -> Outcome:
        calls.append((build_upload_id, options))
        outcome = Outcome("submit_for_review")
        outcome.add("submit", "done", "submitted for review")
        outcome.outputs["version_string"] = "2.0.0"
        return outcome

    monkeypatch.setattr(submit, "submit_for_review", fake_submit)
    config = tmp_path / "settings.yml"
    config.write_text(
        "platform: MAC_OS\n"
        "submit_for_review:\n"
        "  uses_non_exempt_encryption: true\n"
        "  whats_new: Fixes\n"
        "  whats_new_locale: de-DE\n"
        "  cancel_other_submission: true\n"
        "  build_wait_timeout: 90\n"
        "  beta_groups: [QA]\n"
    )
    argv = ["submit-for-review", "--build-upload", "bu-7", "--config", str(config)]

    code = cli.main([*argv, "--dry-run"], env)

    assert code == 0
    build_upload_id, options = calls[0]
    assert build_upload_id == "bu-7"
    assert options.platform == "MAC_OS"
    assert options.uses_non_exempt_encryption is True
    assert options.whats_new == "Fixes"
    assert options.whats_new_locale == "de-DE"
    assert options.cancel_other_submission is True
    assert options.build_wait_timeout == 90.0
    assert options.beta_groups == ["QA"]
    assert options.dry_run is True
    outputs = outputs_of(env)
    assert outputs["action"] == "submit-for-review"
    assert outputs["version_string"] == "2.0.0"
    assert "done      submit: submitted for review" in capsys.readouterr().out


def test_submit_failure_exits_one(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ci import submit
    from ci.outcome import Outcome

    def fake_submit(*args: object, **kwargs: object) -> Outcome:
        outcome = Outcome("submit_for_review")
        outcome.add("build", "failed", "build processing failed")
        return outcome

    monkeypatch.setattr(submit, "submit_for_review", fake_submit)
    assert cli.main(["submit-for-review", "--build-upload", "bu-7"], env) == 1
    assert outputs_of(env)["result"] == "failed"
    assert "| build | ❌ failed | build processing failed |" in summary_of(env)


def test_cli_prints_version(capsys: pytest.CaptureFixture[str]) -> None:
    from ci.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("asc-ci ")


@pytest.mark.parametrize(
    ("option", "content", "message"),
    [
        ("--event-file", b"\xff\xfe{}", "is not UTF-8 text"),
        ("--payload-file", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        ("--config", b"\xff\xfe: x", "is not UTF-8 text"),
    ],
    ids=["event-not-utf8", "payload-too-deep", "settings-not-utf8"],
)
def test_cli_unreadable_input_exits_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    content: bytes,
    message: str,
) -> None:
    from ci.cli import main

    path = tmp_path / "input"
    path.write_bytes(content)
    args = ["route", option, str(path)]
    if option == "--config":
        sample = tmp_path / "event.json"
        sample.write_text('{"data": {"type": "webhookPingCreated", "id": "p"}}')
        args += ["--payload-file", str(sample)]
    assert main(args, environ={}) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err

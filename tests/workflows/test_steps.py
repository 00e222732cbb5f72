"""The shell steps of the pipelines, run with bash (and jq) as the runner would."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.workflows import rules

PIPELINES = ["asc-webhook.yml", "asc-release.yml"]


def step_script(name: str, job_id: str, step_id: str) -> str:
    workflow = rules.load((rules.WORKFLOW_DIR / name).read_text())
    for step in rules.jobs(workflow)[job_id]["steps"]:
        if step.get("id") == step_id:
            return str(step["run"])
    raise AssertionError(f"{name}: job {job_id!r} has no step with id {step_id!r}")


# GitHub runs a `run:` step without `shell:` as `bash -e {0}`, and one with
# `shell: bash` as `bash --noprofile --norc -eo pipefail {0}`.
SHELL_FLAGS = [
    pytest.param(("-e",), id="bash-e"),
    pytest.param(("-eo", "pipefail"), id="bash-pipefail"),
]


def run_step(
    script: str,
    tmp_path: Path,
    env: dict[str, str],
    shell_flags: tuple[str, ...] = ("-eo", "pipefail"),
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run a step with bash and return its $GITHUB_OUTPUT."""
    output = tmp_path / "github_output"
    output.write_text("")
    completed = subprocess.run(
        ["bash", "--noprofile", "--norc", *shell_flags, "-c", script],
        env={
            "PATH": os.environ["PATH"],
            "GITHUB_OUTPUT": str(output),
            "GITHUB_RUN_ID": "42",
            "RUNNER_TEMP": str(tmp_path),
            **env,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    return completed, parse_github_output(output.read_text())


def parse_github_output(text: str) -> dict[str, str]:
    """Read ``name=value`` lines and ``name<<DELIMITER`` multiline values."""
    values: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        name, equals, value = line.partition("=")
        if "<<" in name or not equals:
            name, _, delimiter = line.partition("<<")
            body = []
            for body_line in lines:
                if body_line == delimiter:
                    break
                body.append(body_line)
            value = "\n".join(body)
        values[name] = value
    return values


def webhook_body(event_type: str, resource_type: str | None) -> dict[str, Any]:
    """Return an App Store Connect webhook body in the shape Apple delivers."""
    data: dict[str, Any] = {
        "type": event_type,
        "id": "6f1c2d3e-event",
        "version": 1,
        "attributes": {"timestamp": "2025-12-23T06:03:50.925Z"},
    }
    if resource_type is not None:
        data["relationships"] = {
            "instance": {
                "data": {"type": resource_type, "id": "6b2a-resource"},
                "links": {
                    "self": f"https://api.appstoreconnect.apple.com/v1/{resource_type}/6b2a"
                },
            }
        }
    return {"data": data}


BUILD_UPLOAD = webhook_body("buildUploadStateUpdated", "buildUploads")
VERSION = webhook_body("appStoreVersionAppVersionStateUpdated", "appStoreVersions")
PING = webhook_body("webhookPingCreated", None)


RESOURCE_CASES = [
    pytest.param(
        {
            "client_payload": {
                "event": "buildUploadStateUpdated",
                "resource": {"id": "b-1"},
            }
        },
        "b-1",
        id="repository-dispatch",
    ),
    pytest.param(
        {"inputs": {"payload": json.dumps(BUILD_UPLOAD)}},
        "6b2a-resource",
        id="replay-of-webhook-body",
    ),
    pytest.param(
        {"inputs": {"payload": json.dumps({"event": "x", "resource": {"id": "v-9"}})}},
        "v-9",
        id="replay-of-client-payload",
    ),
    pytest.param(
        VERSION,
        "6b2a-resource",
        id="bare-webhook-body",
    ),
    pytest.param(
        {"data": {"relationships": {"instance": {"type": "t", "id": "asset-7"}}}},
        "asset-7",
        id="background-asset-instance",
    ),
    pytest.param(PING, "run-42", id="ping-without-resource"),
    pytest.param(
        {"inputs": {"payload": "{not json"}}, "run-42", id="replay-invalid-json"
    ),
    pytest.param(
        {"client_payload": {"resource": {"id": "a;b$(touch x)`\n"}}},
        "abtouchx",
        id="shell-characters-dropped",
    ),
    pytest.param(
        {"client_payload": {"resource": {"id": "7" * 300}}}, "7" * 100, id="long-id-cut"
    ),
    pytest.param(
        {"client_payload": {"resource": {"id": "$(id)\n::add-mask::x"}}},
        "idadd-maskx",
        id="command-substitution-and-newline",
    ),
    pytest.param(
        {"client_payload": {"resource": {"id": "../../etc"}}}, "....etc", id="path"
    ),
    pytest.param(
        {"client_payload": {"resource": {"id": "\u00e9\u00e9"}}},
        "run-42",
        id="non-ascii-only",
    ),
    pytest.param({"client_payload": {"resource": {"id": 123}}}, "123", id="number-id"),
    pytest.param({"client_payload": "b-1"}, "run-42", id="client-payload-string"),
    pytest.param({"client_payload": ["b-1"]}, "run-42", id="client-payload-array"),
    pytest.param(
        {"client_payload": {"resource": "b-1"}}, "run-42", id="resource-string"
    ),
    pytest.param(
        {"client_payload": {"resource": {"id": {"$(id)": 1}}}},
        "run-42",
        id="id-object",
    ),
    pytest.param({"inputs": {"payload": "[1]"}}, "run-42", id="replay-json-array"),
    pytest.param({"inputs": {"payload": '"b-1"'}}, "run-42", id="replay-json-string"),
    pytest.param(
        {"inputs": {"payload": '{"data": "x"}'}}, "run-42", id="replay-data-string"
    ),
]


@pytest.mark.parametrize("shell_flags", SHELL_FLAGS)
@pytest.mark.parametrize("name", PIPELINES)
@pytest.mark.parametrize(("event", "expected"), RESOURCE_CASES)
def test_resource_step_output(
    name: str,
    event: Any,
    expected: str,
    shell_flags: tuple[str, ...],
    tmp_path: Path,
) -> None:
    event_file = tmp_path / "asc-event.json"
    event_file.write_text(json.dumps(event))
    script = step_script(name, "route", "resource")

    completed, outputs = run_step(
        script, tmp_path, {"GITHUB_EVENT_PATH": str(event_file)}, shell_flags
    )

    assert completed.returncode == 0, completed.stderr
    assert outputs == {"id": expected}


@pytest.mark.parametrize("submitter", ["python", "fastlane"])
def test_submitter_step_accepts(submitter: str, tmp_path: Path) -> None:
    script = step_script("asc-webhook.yml", "route", "submitter")
    completed, outputs = run_step(script, tmp_path, {"SUBMITTER": submitter})
    assert completed.returncode == 0, completed.stderr
    assert outputs == {"name": submitter}


@pytest.mark.parametrize("submitter", ["python", "fastlane"])
def test_reusable_submitter_step_accepts(submitter: str, tmp_path: Path) -> None:
    script = step_script("asc-release.yml", "route", "submitter")
    completed, _ = run_step(script, tmp_path, {"SUBMITTER": submitter})
    assert completed.returncode == 0, completed.stderr


SUBMITTER_FIXES = {
    "asc-webhook.yml": "set ASC_SUBMITTER in this file to python or fastlane",
    "asc-release.yml": "pass python or fastlane",
}
BAD_SUBMITTERS = [
    pytest.param("", id="empty"),
    pytest.param("Python", id="capitalized"),
    pytest.param("ruby", id="unknown"),
    pytest.param("fastlane; rm -rf /", id="semicolon"),
    pytest.param("$(touch pwned)", id="command-substitution"),
    pytest.param("python\nfastlane", id="newline"),
    pytest.param("x" * 5000, id="5000-characters"),
]


@pytest.mark.parametrize("name", PIPELINES)
@pytest.mark.parametrize("submitter", BAD_SUBMITTERS)
def test_submitter_step_rejects(name: str, submitter: str, tmp_path: Path) -> None:
    script = step_script(name, "route", "submitter")
    env = {"SUBMITTER": submitter}
    completed, outputs = run_step(script, tmp_path, env, ("-e",))
    assert completed.returncode == 2
    assert SUBMITTER_FIXES[name] in completed.stdout
    assert outputs == {}
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("name", PIPELINES)
def test_submitter_error_starts_no_command(name: str, tmp_path: Path) -> None:
    # The runner reads every output line that starts with "::" as a command.
    submitter = "x\n::add-mask::secret\n::stop-commands::token"
    script = step_script(name, "route", "submitter")
    completed, _ = run_step(script, tmp_path, {"SUBMITTER": submitter})
    lines = completed.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("::error::submitter 'x?")
    assert "::" not in lines[0].removeprefix("::error::")


def event_file_script(job_id: str) -> str:
    workflow = rules.load((rules.WORKFLOW_DIR / "asc-release.yml").read_text())
    for step in rules.jobs(workflow)[job_id]["steps"]:
        if step.get("name") == "Write the event file":
            return str(step["run"])
    raise AssertionError(f"job {job_id!r} has no 'Write the event file' step")


@pytest.mark.parametrize(
    "job_id",
    list(rules.jobs(rules.load((rules.WORKFLOW_DIR / "asc-release.yml").read_text()))),
)
def test_event_file_step_writes_input(job_id: str, tmp_path: Path) -> None:
    # Quotes, dollars and backticks in the event must reach the file unchanged.
    event = json.dumps({"client_payload": {"id": "x'\"$(id)`", "n": 1}})
    completed, _ = run_step(
        event_file_script(job_id),
        tmp_path,
        {"ASC_EVENT": event, "GITHUB_EVENT_PATH": ""},
    )
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "asc-event.json").read_text() == event


def test_event_file_step_falls_back(tmp_path: Path) -> None:
    caller_event = tmp_path / "event.json"
    caller_event.write_text('{"client_payload": {"event": "e"}}')
    completed, _ = run_step(
        event_file_script("route"),
        tmp_path,
        {"ASC_EVENT": "", "GITHUB_EVENT_PATH": str(caller_event)},
    )
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "asc-event.json").read_text() == caller_event.read_text()

"""The route step of each pipeline, run with bash against the real asc-ci.

A stand-in ``asc-ci`` on PATH runs ``python -m ci.cli`` from this checkout, so the
step's own command line (flags, event file, settings path) is what is tested.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.workflows import rules
from tests.workflows.test_steps import (
    BUILD_UPLOAD,
    PING,
    VERSION,
    run_step,
    step_script,
)

REPOSITORY = Path(__file__).resolve().parents[2]


def with_state(body: dict[str, Any], old: str, new: str, keys: tuple[str, str]) -> Any:
    changed = json.loads(json.dumps(body))
    changed["data"]["attributes"].update({keys[0]: old, keys[1]: new})
    return changed


COMPLETE = with_state(BUILD_UPLOAD, "PROCESSING", "COMPLETE", ("oldState", "newState"))
FAILED = with_state(BUILD_UPLOAD, "PROCESSING", "FAILED", ("oldState", "newState"))
RELEASED = with_state(
    VERSION,
    "PENDING_DEVELOPER_RELEASE",
    "READY_FOR_DISTRIBUTION",
    ("oldValue", "newValue"),
)
REJECTED = with_state(VERSION, "IN_REVIEW", "REJECTED", ("oldValue", "newValue"))

CASES = [
    pytest.param(
        {"client_payload": {"event": "x"}, "payload": COMPLETE}, "none", id="unknown"
    ),
    pytest.param(
        {"inputs": {"payload": json.dumps(COMPLETE)}},
        "submit-for-review",
        id="complete",
    ),
    pytest.param(
        {"inputs": {"payload": json.dumps(FAILED)}}, "notify-build-failed", id="failed"
    ),
    pytest.param(
        {"inputs": {"payload": json.dumps(RELEASED)}}, "release", id="released"
    ),
    pytest.param(
        {"inputs": {"payload": json.dumps(REJECTED)}},
        "notify-review-state",
        id="rejected",
    ),
    pytest.param({"inputs": {"payload": json.dumps(PING)}}, "none", id="ping"),
    pytest.param(
        {
            "client_payload": {
                "event": "buildUploadStateUpdated",
                "old_state": "PROCESSING",
                "new_state": "COMPLETE",
                "resource": {"type": "buildUploads", "id": "u-1"},
            }
        },
        "submit-for-review",
        id="dispatch",
    ),
]


@pytest.fixture
def asc_ci_bin(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "asc-ci"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m ci.cli "$@"\n')
    shim.chmod(0o755)
    return bin_dir


def workflow_env(name: str) -> dict[str, str]:
    """Return the workflow-level env of a pipeline, which applies to every step."""
    workflow = rules.load((rules.WORKFLOW_DIR / name).read_text())
    return {key: str(value) for key, value in (workflow.get("env") or {}).items()}


@pytest.mark.parametrize("name", ["asc-webhook.yml", "asc-release.yml"])
@pytest.mark.parametrize(("event", "expected"), CASES)
def test_route_step_writes_action(
    name: str, event: dict[str, Any], expected: str, tmp_path: Path, asc_ci_bin: Path
) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    event_file = tmp_path / "asc-event.json"
    event_file.write_text(json.dumps(event))
    env = {
        **workflow_env(name),
        "ASC_CONFIG": "",  # the default of both pipelines
        "GITHUB_EVENT_PATH": str(event_file),
        "GITHUB_WORKSPACE": str(workspace),
        "PYTHONPATH": str(REPOSITORY),
    }
    script = f'cd "{workspace}"\nexport PATH="{asc_ci_bin}:$PATH"\n'
    script += step_script(name, "route", "route")

    completed, outputs = run_step(script, tmp_path, env)

    assert completed.returncode == 0, completed.stderr
    assert outputs.get("action") == expected


def test_route_step_config_error(tmp_path: Path, asc_ci_bin: Path) -> None:
    workspace = tmp_path / "workspace"
    (workspace / ".github").mkdir(parents=True)
    (workspace / ".github" / "asc-release.yml").write_text("slack:\n  chanel: '#x'\n")
    event_file = tmp_path / "asc-event.json"
    event_file.write_text(json.dumps({"inputs": {"payload": json.dumps(COMPLETE)}}))
    env = {
        "ASC_CONFIG": "",
        "GITHUB_EVENT_PATH": str(event_file),
        "GITHUB_WORKSPACE": str(workspace),
        "PYTHONPATH": str(REPOSITORY),
    }
    script = f'cd "{workspace}"\nexport PATH="{asc_ci_bin}:$PATH"\n'
    script += step_script("asc-webhook.yml", "route", "route")

    completed, outputs = run_step(script, tmp_path, env)

    assert completed.returncode == 2
    assert "slack.chanel" in completed.stderr
    assert "action" not in outputs

"""Triggers of the workflows, and which steps and jobs run for a given route."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.workflows import rules
from tests.workflows.test_steps import run_step

PIPELINES = ["asc-webhook.yml", "asc-release.yml"]
CI_SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "run"

_COMPARISON = re.compile(
    r"^\s*(?P<name>[\w.-]+)\s*(?P<operator>==|!=)\s*'(?P<value>[^']*)'\s*$"
)


def workflow(name: str) -> dict[str, Any]:
    return rules.load((rules.WORKFLOW_DIR / name).read_text())


def condition_holds(condition: str, context: dict[str, str]) -> bool:
    """Evaluate an ``if:`` made of ``name == 'value'`` or ``name != 'value'``
    terms joined by ``&&``. GitHub compares strings ignoring case."""
    for term in condition.split("&&"):
        match = _COMPARISON.match(term)
        assert match is not None, f"condition {condition!r} has an unsupported term"
        actual = context.get(match["name"], "").casefold()
        equal = actual == match["value"].casefold()
        if equal != (match["operator"] == "=="):
            return False
    return True


def submit_steps(name: str, submitter: str) -> list[dict[str, Any]]:
    """Return the steps of submit-for-review that run for ``submitter``."""
    context = {
        "needs.route.outputs.submitter": submitter,
        "inputs.submitter": submitter,
    }
    job = rules.jobs(workflow(name))["submit-for-review"]
    return [
        step
        for step in job["steps"]
        if "if" not in step or condition_holds(str(step["if"]), context)
    ]


def scripts(steps: list[dict[str, Any]]) -> str:
    return "\n".join(str(step.get("run", "")) for step in steps)


def actions(steps: list[dict[str, Any]]) -> list[str]:
    return [str(step["uses"]).partition("@")[0] for step in steps if "uses" in step]


@pytest.mark.parametrize("name", PIPELINES)
def test_python_submitter_runs_asc_ci(name: str) -> None:
    steps = submit_steps(name, "python")
    assert "asc-ci handle" in scripts(steps)
    assert "fastlane" not in scripts(steps)
    assert "ruby/setup-ruby" not in actions(steps)
    assert "actions/setup-python" in actions(steps)


@pytest.mark.parametrize("name", PIPELINES)
def test_fastlane_submitter_installs_and_runs_lane(name: str) -> None:
    steps = submit_steps(name, "fastlane")
    assert "ruby/setup-ruby" in actions(steps)
    assert 'gem install fastlane --version "$FASTLANE_VERSION"' in scripts(steps)
    assert "fastlane submit_from_webhook" in scripts(steps)
    assert "asc-ci handle" not in scripts(steps)


@pytest.mark.parametrize("name", PIPELINES)
@pytest.mark.parametrize("submitter", ["", "ruby", "python fastlane"])
def test_unknown_submitter_fails_job(name: str, submitter: str, tmp_path: Path) -> None:
    steps = submit_steps(name, submitter)
    assert "asc-ci handle" not in scripts(steps)
    assert "submit_from_webhook" not in scripts(steps)

    guards = [
        step for step in steps if step.get("name") == "Reject an unknown submitter"
    ]
    assert len(guards) == 1
    completed, _ = run_step(str(guards[0]["run"]), tmp_path, {})
    assert completed.returncode == 2
    assert "submitter is neither python nor fastlane" in completed.stdout


@pytest.mark.parametrize("name", PIPELINES)
def test_automation_jobs_skip_after_failed_route(name: str) -> None:
    # GitHub skips a job whose needed job failed unless its if: calls always(),
    # failure() or cancelled(), so each gate must be the bare comparison.
    for job_id, job in rules.jobs(workflow(name)).items():
        if job_id == "route":
            continue
        assert job["needs"] == "route", job_id
        assert job["if"] == f"needs.route.outputs.action == '{job_id}'", job_id


def test_webhook_triggers() -> None:
    triggers = workflow("asc-webhook.yml")["on"]
    assert set(triggers) == {"repository_dispatch", "workflow_dispatch"}
    assert triggers["repository_dispatch"] == {"types": ["asc-webhook"]}


def test_webhook_replay_inputs() -> None:
    inputs = workflow("asc-webhook.yml")["on"]["workflow_dispatch"]["inputs"]
    assert inputs["payload"]["type"] == "string"
    assert inputs["payload"]["required"] is True
    assert inputs["submitter"]["type"] == "choice"
    assert inputs["submitter"]["options"] == ["python", "fastlane"]


def test_ci_runs_on_push_and_pull_request() -> None:
    triggers = workflow("ci.yml")["on"]
    assert "push" in triggers
    assert "pull_request" in triggers


def test_ci_runs_ci_script() -> None:
    steps = rules.jobs(workflow("ci.yml"))["test"]["steps"]
    assert [step["run"] for step in steps if "run" in step] == ["bash .ci/run"]


def test_ci_script_ends_with_make_test() -> None:
    commands = [
        line.strip()
        for line in CI_SCRIPT.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands[-1] == "make test"

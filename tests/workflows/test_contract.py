"""Each action ``asc-ci route`` can output runs exactly one job, in both
pipelines, and the reusable workflow declares everything its jobs read."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ci.event import ACTIONS
from tests.workflows import rules

PIPELINES = ["asc-webhook.yml", "asc-release.yml"]


def pipeline(name: str) -> dict[str, Any]:
    return rules.load((rules.WORKFLOW_DIR / name).read_text())


def gated_job(action: str) -> str:
    return (
        f"  {action}:\n"
        "    needs: route\n"
        f"    if: needs.route.outputs.action == '{action}'\n"
        "    runs-on: ubuntu-latest\n"
        "    permissions: {}\n"
        "    steps:\n"
        "      - run: asc-ci handle\n"
    )


ROUTE_JOB = (
    "  route:\n"
    "    runs-on: ubuntu-latest\n"
    "    permissions: {}\n"
    "    steps:\n"
    "      - run: asc-ci route\n"
)


def example(actions: list[str], extra: str = "") -> dict[str, Any]:
    jobs = ROUTE_JOB + "".join(gated_job(action) for action in actions) + extra
    return rules.load(f"on: push\npermissions: {{}}\njobs:\n{jobs}")


ROUTABLE = [action for action in ACTIONS if action != "none"]


@pytest.mark.parametrize("name", PIPELINES)
def test_pipeline_gates_every_action_once(name: str) -> None:
    assert rules.route_contract(pipeline(name), ACTIONS) == []


@pytest.mark.parametrize("name", PIPELINES)
def test_pipeline_gated_job_named_after_action(name: str) -> None:
    for action, job_ids in rules.gated_actions(pipeline(name)).items():
        assert job_ids == [action]


@pytest.mark.parametrize("name", PIPELINES)
def test_pipeline_route_writes_action(name: str) -> None:
    route = rules.jobs(pipeline(name))["route"]
    assert route["outputs"]["action"] == "${{ steps.route.outputs.action }}"
    route_steps = [step for step in route["steps"] if step.get("id") == "route"]
    assert len(route_steps) == 1
    assert route_steps[0]["run"].startswith("asc-ci route")


def test_routable_actions_known() -> None:
    # An empty or renamed list would let the contract pass trivially, so check that
    # it still contains six actions besides "none".
    assert "none" in ACTIONS
    assert len(ROUTABLE) == 6


def test_contract_accepts_complete_example() -> None:
    assert rules.route_contract(example(ROUTABLE), ACTIONS) == []


def test_contract_catches_missing_job() -> None:
    problems = rules.route_contract(example(ROUTABLE[1:]), ACTIONS)
    assert problems == [f"action {ROUTABLE[0]!r} gates 0 jobs [], not 1"]


def test_contract_catches_duplicate_job() -> None:
    duplicate = gated_job(ROUTABLE[0]).replace(f"  {ROUTABLE[0]}:", "  again:", 1)
    problems = rules.route_contract(example(ROUTABLE, duplicate), ACTIONS)
    assert len(problems) == 1
    assert "gates 2 jobs" in problems[0]


def test_contract_catches_unknown_action() -> None:
    problems = rules.route_contract(example(ROUTABLE + ["deploy"]), ACTIONS)
    assert problems == ["jobs ['deploy'] are gated on unknown action 'deploy'"]


def test_contract_catches_ungated_job() -> None:
    ungated = gated_job("stray").replace(
        "    if: needs.route.outputs.action == 'stray'\n", "    if: always()\n"
    )
    problems = rules.route_contract(example(ROUTABLE, ungated), ACTIONS)
    assert len(problems) == 1
    assert "job 'stray' needs route but has no" in problems[0]


def test_contract_allows_job_on_none() -> None:
    # "none" needs no job, but a job that reports skipped events is allowed.
    assert rules.route_contract(example(ROUTABLE + ["none"]), ACTIONS) == []


@pytest.mark.parametrize("name", PIPELINES)
def test_automation_jobs_share_concurrency(name: str) -> None:
    for job_id, job in rules.jobs(pipeline(name)).items():
        if job_id == "route":
            continue
        concurrency = job["concurrency"]
        assert concurrency["group"] == (
            "asc-resource-${{ needs.route.outputs.resource-id }}"
        ), job_id
        assert concurrency["cancel-in-progress"] is False, job_id


@pytest.mark.parametrize("name", PIPELINES)
def test_only_release_writes_contents(name: str) -> None:
    grants = {
        job_id: job["permissions"] for job_id, job in rules.jobs(pipeline(name)).items()
    }
    assert grants.pop("release") == {"contents": "write", "pull-requests": "write"}
    for job_id, permissions in grants.items():
        assert permissions == {"contents": "read"}, job_id


def test_reusable_workflow_is_callable() -> None:
    triggers = pipeline("asc-release.yml")["on"]
    assert list(triggers) == ["workflow_call"]


def test_reusable_declares_referenced_secrets() -> None:
    text = (rules.WORKFLOW_DIR / "asc-release.yml").read_text()
    declared = set(pipeline("asc-release.yml")["on"]["workflow_call"]["secrets"])
    expressions = " ".join(re.findall(r"\$\{\{(.*?)\}\}", text))
    referenced = set(re.findall(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)", expressions))
    assert referenced == declared


def test_reusable_declares_referenced_inputs() -> None:
    text = (rules.WORKFLOW_DIR / "asc-release.yml").read_text()
    declared = set(pipeline("asc-release.yml")["on"]["workflow_call"]["inputs"])
    expressions = " ".join(re.findall(r"\$\{\{(.*?)\}\}", text))
    referenced = set(re.findall(r"inputs\.([A-Za-z_][A-Za-z0-9_-]*)", expressions))
    assert referenced == declared


@pytest.mark.parametrize("name", PIPELINES)
def test_pipelines_pass_same_secrets(name: str) -> None:
    # Both pipelines give each job the same secrets, so switching from the copied
    # workflow to the reusable one (or back) changes nothing at run time.
    def secret_names(job: dict[str, Any]) -> set[str]:
        return {
            key
            for step in job["steps"]
            for key, value in (step.get("env") or {}).items()
            if "secrets." in str(value) or "github.token" in str(value)
        }

    webhook = rules.jobs(pipeline("asc-webhook.yml"))
    for job_id, job in rules.jobs(pipeline(name)).items():
        assert secret_names(job) == secret_names(webhook[job_id]), job_id


@pytest.mark.parametrize("name", PIPELINES)
def test_only_release_gets_github_token(name: str) -> None:
    holders = {
        job_id
        for job_id, job in rules.jobs(pipeline(name)).items()
        for step in job["steps"]
        if "GITHUB_TOKEN" in (step.get("env") or {})
    }
    assert holders == {"release"}

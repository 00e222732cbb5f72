"""The security rules hold for every workflow, and each rule catches a bad one."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.workflows import rules

CHECKOUT = "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1"
GITHUB_SCRIPT = (
    "actions/github-script@60a0d83039c74a4aee543508d2ffcb1c3799cdea # v7.0.1"
)

GOOD = f"""
on: push
permissions: {{}}
jobs:
  build:
    runs-on: ubuntu-latest
    permissions:
      contents: read
    steps:
      - uses: {CHECKOUT}
        with:
          persist-credentials: false
      - env:
          PAYLOAD_ID: ${{{{ github.event.client_payload.id }}}}
          TOKEN: ${{{{ secrets.TOKEN }}}}
        run: echo "$PAYLOAD_ID"
"""


def bad(old: str, new: str) -> str:
    """Return GOOD with one fragment replaced, failing if the fragment is absent."""
    assert old in GOOD, old
    return GOOD.replace(old, new)


WorkflowRule = Callable[[dict[str, Any]], list[str]]

WORKFLOW_RULES: list[WorkflowRule] = [
    rules.untrusted_expressions_in_run,
    rules.secrets_in_run,
    rules.secrets_in_shared_env,
    rules.unsound_conditions,
    rules.top_level_permissions,
    rules.jobs_without_permissions,
    rules.write_permissions,
    rules.persisted_checkout_credentials,
    rules.inherited_secrets,
]

BAD_WORKFLOWS = [
    pytest.param(
        rules.untrusted_expressions_in_run,
        bad(
            'run: echo "$PAYLOAD_ID"', "run: echo ${{ github.event.client_payload.id }}"
        ),
        "github.event.client_payload.id",
        id="client-payload-in-run",
    ),
    pytest.param(
        rules.untrusted_expressions_in_run,
        bad('run: echo "$PAYLOAD_ID"', "run: echo ${{inputs.payload}}"),
        "inputs.payload",
        id="inputs-in-run",
    ),
    pytest.param(
        rules.untrusted_expressions_in_run,
        bad(
            'run: echo "$PAYLOAD_ID"', "run: echo '${{ github.event.inputs.payload }}'"
        ),
        "github.event.inputs.payload",
        id="event-inputs-in-run",
    ),
    pytest.param(
        rules.untrusted_expressions_in_run,
        bad(
            'run: echo "$PAYLOAD_ID"',
            "run: |\n          echo ok\n          echo ${{ toJSON(github.event) }}",
        ),
        "toJSON(github.event)",
        id="whole-event-in-multiline-run",
    ),
    pytest.param(
        rules.secrets_in_run,
        bad('run: echo "$PAYLOAD_ID"', "run: curl -H ${{ secrets.TOKEN }} x"),
        "secrets.TOKEN",
        id="secret-in-run",
    ),
    pytest.param(
        rules.secrets_in_shared_env,
        bad(
            "permissions: {}\n",
            "permissions: {}\nenv:\n  TOKEN: ${{ secrets.TOKEN }}\n",
        ),
        "workflow env: TOKEN",
        id="secret-in-workflow-env",
    ),
    pytest.param(
        rules.secrets_in_shared_env,
        bad(
            "    runs-on: ubuntu-latest\n",
            "    runs-on: ubuntu-latest\n    env:\n      GH: ${{ github.token }}\n",
        ),
        "job 'build' env: GH",
        id="token-in-job-env",
    ),
    pytest.param(
        rules.untrusted_expressions_in_run,
        bad(
            'run: echo "$PAYLOAD_ID"', "run: echo ${{ github['event'].client_payload }}"
        ),
        "github['event']",
        id="event-by-index-in-run",
    ),
    pytest.param(
        rules.untrusted_expressions_in_run,
        bad('run: echo "$PAYLOAD_ID"', "run: echo '${{ toJSON(github) }}'"),
        "toJSON(github)",
        id="whole-github-context-in-run",
    ),
    pytest.param(
        rules.untrusted_expressions_in_run,
        bad('run: echo "$PAYLOAD_ID"', "run: git log ${{ github.head_ref }}"),
        "github.head_ref",
        id="head-ref-in-run",
    ),
    pytest.param(
        rules.untrusted_expressions_in_run,
        bad(
            'run: echo "$PAYLOAD_ID"',
            "run: echo ${{ needs.route.outputs.resource-id }}",
        ),
        "needs.route.outputs.resource-id",
        id="job-output-in-run",
    ),
    pytest.param(
        rules.untrusted_expressions_in_run,
        bad('run: echo "$PAYLOAD_ID"', "run: echo ${{ steps.resource.outputs.id }}"),
        "steps.resource.outputs.id",
        id="step-output-in-run",
    ),
    pytest.param(
        rules.untrusted_expressions_in_run,
        bad('run: echo "$PAYLOAD_ID"', "run: echo ${{ env.PAYLOAD_ID }}"),
        "env.PAYLOAD_ID",
        id="env-expression-in-run",
    ),
    pytest.param(
        rules.untrusted_expressions_in_run,
        bad(
            'run: echo "$PAYLOAD_ID"',
            'run: echo "$PAYLOAD_ID"\n'
            "        working-directory: ${{ github.event.client_payload.dir }}",
        ),
        "step 1 working-directory:",
        id="payload-in-working-directory",
    ),
    pytest.param(
        rules.untrusted_expressions_in_run,
        bad(
            'run: echo "$PAYLOAD_ID"',
            'run: echo "$PAYLOAD_ID"\n        shell: ${{ inputs.shell }} {0}',
        ),
        "step 1 shell:",
        id="input-in-shell",
    ),
    pytest.param(
        rules.untrusted_expressions_in_run,
        bad(
            "    permissions:\n      contents: read\n",
            "    permissions:\n      contents: read\n    defaults:\n      run:\n"
            "        working-directory: ${{ inputs.dir }}\n",
        ),
        "job 'build' defaults.run.working-directory",
        id="input-in-job-defaults",
    ),
    pytest.param(
        rules.untrusted_expressions_in_run,
        bad(
            "permissions: {}\n",
            "permissions: {}\ndefaults:\n  run:\n"
            "    working-directory: ${{ github.event.client_payload.dir }}\n",
        ),
        "defaults.run.working-directory",
        id="payload-in-workflow-defaults",
    ),
    pytest.param(
        rules.untrusted_expressions_in_run,
        bad(
            'run: echo "$PAYLOAD_ID"',
            f"uses: {GITHUB_SCRIPT}\n"
            "        with:\n"
            "          script: console.log('${{ github.event.client_payload.id }}')",
        ),
        "step 1 with.script:",
        id="payload-in-github-script",
    ),
    pytest.param(
        rules.untrusted_expressions_in_run,
        bad(
            'run: echo "$PAYLOAD_ID"',
            "uses: example/runner@60a0d83039c74a4aee543508d2ffcb1c3799cdea # v1.0.0\n"
            "        with:\n"
            "          command: deploy ${{ inputs.target }}",
        ),
        "step 1 with.command:",
        id="input-in-action-command",
    ),
    pytest.param(
        rules.secrets_in_run,
        bad(
            'run: echo "$PAYLOAD_ID"',
            f"uses: {GITHUB_SCRIPT}\n"
            "        with:\n"
            "          script: fetch('${{ secrets.TOKEN }}')",
        ),
        "secrets.TOKEN",
        id="secret-in-github-script",
    ),
    pytest.param(
        rules.unsound_conditions,
        bad(
            "    runs-on: ubuntu-latest\n",
            "    runs-on: ubuntu-latest\n"
            "    if: ${{ github.event.action }} == 'asc-webhook'\n",
        ),
        "job 'build' if:",
        id="job-if-with-text-around",
    ),
    pytest.param(
        rules.unsound_conditions,
        bad(
            "      - env:\n",
            "      - if: |\n          ${{ false }}\n        env:\n",
        ),
        "job 'build' step 1 if:",
        id="step-if-block-scalar",
    ),
    pytest.param(
        rules.unsound_conditions,
        bad(
            "    runs-on: ubuntu-latest\n",
            "    runs-on: ubuntu-latest\n    if: ${{ false }} && ${{ false }}\n",
        ),
        "always true",
        id="two-expressions-in-if",
    ),
    pytest.param(
        rules.top_level_permissions,
        bad("permissions: {}\n", ""),
        "top-level permissions are missing",
        id="no-top-permissions",
    ),
    pytest.param(
        rules.top_level_permissions,
        bad("permissions: {}\n", "permissions: write-all\n"),
        "write-all",
        id="top-permissions-write-all",
    ),
    pytest.param(
        rules.jobs_without_permissions,
        bad("    permissions:\n      contents: read\n", ""),
        "job 'build' has no permissions",
        id="job-without-permissions",
    ),
    pytest.param(
        rules.write_permissions,
        bad("contents: read", "contents: write"),
        "job 'build' has contents: write",
        id="write-outside-release",
    ),
    pytest.param(
        rules.persisted_checkout_credentials,
        bad("        with:\n          persist-credentials: false\n", ""),
        "persist-credentials: false",
        id="checkout-keeps-credentials",
    ),
    pytest.param(
        rules.inherited_secrets,
        GOOD + "  call:\n    uses: org/repo/.github/workflows/x.yml@main\n"
        "    permissions: {}\n    secrets: inherit\n",
        "secrets: inherit",
        id="secrets-inherit",
    ),
]

BAD_PINS = [
    pytest.param(bad(CHECKOUT, "actions/checkout@v7"), "not pinned", id="tag"),
    pytest.param(
        bad(CHECKOUT, "actions/checkout@main # v7"), "not pinned", id="branch"
    ),
    pytest.param(
        bad(CHECKOUT, "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b # v7"),
        "not pinned",
        id="short-sha",
    ),
    pytest.param(
        bad(CHECKOUT, "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1"),
        "no '# vX.Y.Z' version comment",
        id="no-version-comment",
    ),
    pytest.param(bad(CHECKOUT, "'actions/checkout@v7'"), "not pinned", id="quoted-tag"),
]


@pytest.mark.parametrize("path", rules.workflow_paths(), ids=lambda path: path.name)
@pytest.mark.parametrize("rule", WORKFLOW_RULES, ids=lambda rule: rule.__name__)
def test_workflow_follows_rule(path: Path, rule: WorkflowRule) -> None:
    assert rule(rules.load(path.read_text())) == []


@pytest.mark.parametrize("path", rules.workflow_paths(), ids=lambda path: path.name)
def test_workflow_actions_pinned(path: Path) -> None:
    assert rules.unpinned_actions(path.read_text()) == []


def test_workflow_files_present() -> None:
    names = {path.name for path in rules.workflow_paths()}
    assert {"asc-webhook.yml", "asc-release.yml", "ci.yml"} <= names


def test_good_example_passes_all_rules() -> None:
    assert rules.all_rules(GOOD) == []


@pytest.mark.parametrize(("rule", "text", "expected"), BAD_WORKFLOWS)
def test_rule_catches_bad_workflow(
    rule: WorkflowRule, text: str, expected: str
) -> None:
    problems = rule(rules.load(text))
    assert len(problems) == 1
    assert expected in problems[0]


@pytest.mark.parametrize(("text", "expected"), BAD_PINS)
def test_unpinned_action_caught(text: str, expected: str) -> None:
    problems = rules.unpinned_actions(text)
    assert len(problems) == 1
    assert expected in problems[0]


DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("image", "problem_count"),
    [
        pytest.param("docker://alpine:3.20", 1, id="tag"),
        pytest.param("docker://alpine", 1, id="no-tag"),
        pytest.param(f"docker://alpine@{DIGEST[:-1]}", 1, id="short-digest"),
        pytest.param(f"docker://alpine@{DIGEST}", 0, id="digest"),
    ],
)
def test_docker_action_needs_digest(image: str, problem_count: int) -> None:
    text = bad(CHECKOUT, image)
    problems = rules.unpinned_actions(text)
    assert len(problems) == problem_count


def test_local_actions_need_no_pin() -> None:
    text = GOOD + textwrap.indent(
        "  call:\n    uses: ./.github/workflows/asc-release.yml\n", ""
    )
    assert rules.unpinned_actions(text) == []


SAFE_FRAGMENTS = [
    pytest.param('run: echo "${{ github.run_id }}"', id="run-id-in-run"),
    pytest.param('run: echo "${{ github.event_name }}"', id="event-name-in-run"),
    pytest.param('run: echo "${{ runner.temp }}"', id="runner-in-run"),
    pytest.param(
        "if: needs.route.outputs.action == 'release'\n"
        '        run: echo "$PAYLOAD_ID"',
        id="bare-if",
    ),
    pytest.param(
        "if: ${{ github.event.client_payload.id == 'x' }}\n"
        '        run: echo "$PAYLOAD_ID"',
        id="whole-expression-if",
    ),
]


@pytest.mark.parametrize("fragment", SAFE_FRAGMENTS)
def test_safe_fragment_passes_all_rules(fragment: str) -> None:
    assert rules.all_rules(bad('run: echo "$PAYLOAD_ID"', fragment)) == []


def test_env_expressions_allowed() -> None:
    # The same expressions are fine in env:, which is where they belong.
    workflow = rules.load(GOOD)
    assert rules.untrusted_expressions_in_run(workflow) == []
    assert rules.secrets_in_run(workflow) == []


@pytest.mark.parametrize("path", rules.workflow_paths(), ids=lambda path: path.name)
def test_jobs_run_on_ubuntu(path: Path) -> None:
    for job_id, job in rules.jobs(rules.load(path.read_text())).items():
        assert job.get("runs-on") == "ubuntu-latest", job_id

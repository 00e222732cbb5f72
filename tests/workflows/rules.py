"""Security and structure rules for GitHub workflow files.

Each rule takes a parsed workflow (and, where comments matter, its text) and
returns one message per violation, so the tests can run the same rules over the
real workflows and over small bad examples.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

WORKFLOW_DIR = Path(__file__).resolve().parents[2] / ".github" / "workflows"

#: Jobs allowed to hold a write permission, and which ones.
WRITE_ALLOWED = {"release": {"contents", "pull-requests"}}

_EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
# Values an outsider can shape: the event (also through github['event'], the whole
# github context or github.head_ref), inputs, and values that jobs, steps or env:
# settings may have derived from them.
_UNTRUSTED = re.compile(
    r"(?<![\w.])github\b(?!\s*\.\s*(?!event\b|head_ref\b)\w)"
    r"|(?<![\w.])inputs\b"
    r"|(?<![\w.])(?:needs|steps)\s*\.\s*[\w-]+\s*\.\s*outputs\b"
    r"|(?<![\w.])env\s*[.\[]"
)
# Actions that evaluate a `with:` input as a script: all their inputs are checked.
_SCRIPT_ACTIONS = ("actions/github-script@",)
# `with:` inputs that an action may run as code, whatever the action.
_SCRIPT_INPUTS = {"script", "run", "command", "commands"}
# Keys of `run:` settings that reach the shell or its command line.
_SHELL_KEYS = ("run", "shell", "working-directory")
_SECRETS = re.compile(r"(?<![\w.])secrets\b")
_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
_IMAGE_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_USES_LINE = re.compile(r"^\s*(?:-\s*)?uses:\s*(?P<ref>\S+)(?P<rest>.*)$")
_GATE = re.compile(r"needs\.route\.outputs\.action\s*==\s*'(?P<action>[^']*)'")


def load(text: str) -> dict[str, Any]:
    """Parse workflow YAML, keeping the ``on`` key that YAML 1.1 reads as True."""
    document = yaml.safe_load(text)
    if not isinstance(document, dict):
        raise TypeError("a workflow must be a YAML mapping")
    if True in document:
        document["on"] = document.pop(True)
    return document


def workflow_paths() -> list[Path]:
    return sorted(WORKFLOW_DIR.glob("*.yml"))


def jobs(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return workflow.get("jobs") or {}


def steps(workflow: dict[str, Any]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    for job_id, job in jobs(workflow).items():
        for index, step in enumerate(job.get("steps") or []):
            yield job_id, index, step


def shell_fields(workflow: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Yield (location, text) for every value GitHub pastes into a script or its
    command line: ``run:``, ``shell:`` and ``working-directory:`` of steps and of
    ``defaults.run``, and the script inputs of actions that evaluate code."""
    for key, value in ((workflow.get("defaults") or {}).get("run") or {}).items():
        if key in _SHELL_KEYS:
            yield f"defaults.run.{key}", str(value)
    for job_id, job in jobs(workflow).items():
        for key, value in ((job.get("defaults") or {}).get("run") or {}).items():
            if key in _SHELL_KEYS:
                yield f"job {job_id!r} defaults.run.{key}", str(value)
    for job_id, index, step in steps(workflow):
        where = f"job {job_id!r} step {index}"
        for key in _SHELL_KEYS:
            if key in step:
                yield f"{where} {key}:", str(step[key])
        evaluates_all = str(step.get("uses", "")).startswith(_SCRIPT_ACTIONS)
        for key, value in (step.get("with") or {}).items():
            if evaluates_all or key in _SCRIPT_INPUTS:
                yield f"{where} with.{key}:", str(value)


def untrusted_expressions_in_run(workflow: dict[str, Any]) -> list[str]:
    """Find ``${{ }}`` expressions that paste the event, inputs or values derived
    from them into a script (see :func:`shell_fields`)."""
    problems = []
    for where, text in shell_fields(workflow):
        for expression in _EXPRESSION.findall(text):
            if _UNTRUSTED.search(expression):
                problems.append(
                    f"{where} contains ${{{{{expression}}}}}; "
                    "pass the value through env: and read the variable instead"
                )
    return problems


def secrets_in_run(workflow: dict[str, Any]) -> list[str]:
    """Find secrets pasted into a script (see :func:`shell_fields`) instead of
    passed through step ``env:``."""
    problems = []
    for where, text in shell_fields(workflow):
        for expression in _EXPRESSION.findall(text):
            if _SECRETS.search(expression):
                problems.append(
                    f"{where} contains ${{{{{expression}}}}}; "
                    "pass secrets through env: instead"
                )
    return problems


def secrets_in_shared_env(workflow: dict[str, Any]) -> list[str]:
    """Find secrets in workflow-level or job-level ``env:``, which every step of
    the workflow or job, and each command it starts, can read."""
    scopes = [("workflow", workflow.get("env"))]
    scopes += [
        (f"job {job_id!r}", job.get("env")) for job_id, job in jobs(workflow).items()
    ]
    problems = []
    for where, env in scopes:
        if not isinstance(env, dict):
            continue
        for name, value in env.items():
            for expression in _EXPRESSION.findall(str(value)):
                if _SECRETS.search(expression) or "github.token" in expression:
                    problems.append(
                        f"{where} env: {name} contains ${{{{{expression}}}}}; "
                        "move it to the env: of the step that needs it"
                    )
    return problems


def unsound_conditions(workflow: dict[str, Any]) -> list[str]:
    """Find ``if:`` values that GitHub always reads as true.

    An ``if:`` that contains ``${{ }}`` and any other text, even a trailing
    newline from a ``|`` block, becomes a non-empty string, which is truthy.
    """
    conditions = [
        (f"job {job_id!r}", job.get("if")) for job_id, job in jobs(workflow).items()
    ]
    conditions += [
        (f"job {job_id!r} step {index}", step.get("if"))
        for job_id, index, step in steps(workflow)
    ]
    problems = []
    for where, condition in conditions:
        if not isinstance(condition, str) or "${{" not in condition:
            continue
        whole = (
            condition.startswith("${{")
            and condition.endswith("}}")
            and condition.count("${{") == 1
        )
        if not whole:
            problems.append(
                f"{where} if: {condition!r} is always true: write the condition "
                "without ${{ }}, or as one ${{ }} with nothing around it"
            )
    return problems


def top_level_permissions(workflow: dict[str, Any]) -> list[str]:
    """Require ``permissions: {}`` at the top of the workflow."""
    if "permissions" not in workflow:
        return ["top-level permissions are missing: add permissions: {}"]
    if workflow["permissions"] != {}:
        return [
            (
                f"top-level permissions are {workflow['permissions']!r}: set "
                "permissions: {} and grant each job what it needs"
            )
        ]
    return []


def jobs_without_permissions(workflow: dict[str, Any]) -> list[str]:
    """Require an explicit ``permissions:`` mapping on every job."""
    return [
        f"job {job_id!r} has no permissions: mapping: add the least it needs"
        for job_id, job in jobs(workflow).items()
        if not isinstance(job.get("permissions"), dict)
    ]


def write_permissions(
    workflow: dict[str, Any], allowed: dict[str, set[str]] | None = None
) -> list[str]:
    """Allow write grants only where ``allowed`` (default :data:`WRITE_ALLOWED`)
    lists them."""
    allowed = WRITE_ALLOWED if allowed is None else allowed
    problems = []
    for job_id, job in jobs(workflow).items():
        grants = job.get("permissions")
        if not isinstance(grants, dict):
            continue
        for scope, level in grants.items():
            if level == "write" and scope not in allowed.get(job_id, set()):
                problems.append(f"job {job_id!r} has {scope}: write, which it must not")
    return problems


def unpinned_actions(text: str) -> list[str]:
    """Require every remote action to be pinned to a commit SHA with a version comment."""
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _USES_LINE.match(line)
        if match is None:
            continue
        ref = match["ref"].strip("'\"")
        if ref.startswith("./"):
            continue
        if ref.startswith("docker://"):
            # An image tag can be moved like a git tag; a digest cannot.
            if not _IMAGE_DIGEST.search(ref):
                problems.append(
                    f"line {number}: {ref} is not pinned to an image digest "
                    "(@sha256:<64 hex digits>)"
                )
            continue
        _, _, version = ref.partition("@")
        if not _FULL_SHA.match(version):
            problems.append(
                f"line {number}: {ref} is not pinned to a full 40-character commit SHA"
            )
        elif not re.search(r"#\s*v\d", match["rest"]):
            problems.append(f"line {number}: {ref} has no '# vX.Y.Z' version comment")
    return problems


def persisted_checkout_credentials(workflow: dict[str, Any]) -> list[str]:
    """Require ``persist-credentials: false`` on every actions/checkout step."""
    problems = []
    for job_id, index, step in steps(workflow):
        if not str(step.get("uses", "")).startswith("actions/checkout@"):
            continue
        if (step.get("with") or {}).get("persist-credentials") is not False:
            problems.append(
                f"job {job_id!r} step {index}: actions/checkout keeps the token in "
                ".git/config: set persist-credentials: false"
            )
    return problems


def inherited_secrets(workflow: dict[str, Any]) -> list[str]:
    """Reject ``secrets: inherit``: a called workflow gets only the secrets named."""
    return [
        f"job {job_id!r} passes secrets: inherit: name each secret instead"
        for job_id, job in jobs(workflow).items()
        if job.get("secrets") == "inherit"
    ]


def all_rules(text: str, write_allowed: dict[str, set[str]] | None = None) -> list[str]:
    workflow = load(text)
    return (
        untrusted_expressions_in_run(workflow)
        + secrets_in_run(workflow)
        + secrets_in_shared_env(workflow)
        + unsound_conditions(workflow)
        + top_level_permissions(workflow)
        + jobs_without_permissions(workflow)
        + write_permissions(workflow, write_allowed)
        + unpinned_actions(text)
        + persisted_checkout_credentials(workflow)
        + inherited_secrets(workflow)
    )


def gated_actions(workflow: dict[str, Any]) -> dict[str, list[str]]:
    """Map each action named in a job's ``if: needs.route.outputs.action == '…'``
    to the jobs gated on it."""
    gates: dict[str, list[str]] = {}
    for job_id, job in jobs(workflow).items():
        for action in _GATE.findall(str(job.get("if", ""))):
            gates.setdefault(action, []).append(job_id)
    return gates


def route_contract(workflow: dict[str, Any], actions: tuple[str, ...]) -> list[str]:
    """Check that each routable action (except ``none``) has exactly one job,
    and that every gate names an action ``asc-ci route`` can output."""
    gates = gated_actions(workflow)
    problems = []
    for action in actions:
        if action == "none":
            continue
        gated = gates.get(action, [])
        if len(gated) != 1:
            problems.append(f"action {action!r} gates {len(gated)} jobs {gated}, not 1")
    for action, gated in gates.items():
        if action not in actions:
            problems.append(f"jobs {gated} are gated on unknown action {action!r}")

    gated_jobs = {job_id for gated in gates.values() for job_id in gated}
    for job_id, job in jobs(workflow).items():
        if "route" in _needs(job) and job_id not in gated_jobs:
            problems.append(
                f"job {job_id!r} needs route but has no "
                "if: needs.route.outputs.action == '<action>'"
            )
    return problems


def _needs(job: dict[str, Any]) -> list[str]:
    needs = job.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)

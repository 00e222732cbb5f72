"""The caller workflow in docs/setup.md follows the rules and matches the
reusable workflow's inputs and secrets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.workflows import rules

SETUP = Path(__file__).resolve().parents[2] / "docs" / "setup.md"
README = Path(__file__).resolve().parents[2] / "README.md"
SHA_PLACEHOLDER = "<40-hex commit SHA>"
REUSABLE = "/.github/workflows/asc-release.yml@"


def caller_text(path: Path = SETUP) -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", path.read_text(), re.DOTALL)
    callers = [block for block in blocks if REUSABLE in block]
    assert len(callers) == 1, f"{path.name} should show exactly one caller workflow"
    return callers[0].replace(
        SHA_PLACEHOLDER, "0123456789abcdef0123456789abcdef01234567"
    )


def caller_job() -> dict[str, Any]:
    jobs = rules.jobs(rules.load(caller_text()))
    assert list(jobs) == ["asc"]
    return jobs["asc"]


def reusable_interface() -> dict[str, Any]:
    workflow = rules.load((rules.WORKFLOW_DIR / "asc-release.yml").read_text())
    return workflow["on"]["workflow_call"]


def test_caller_follows_rules() -> None:
    # The calling job must grant what the release job requests, or it cannot get it.
    allowed = {"asc": {"contents", "pull-requests"}}
    assert rules.all_rules(caller_text(), write_allowed=allowed) == []


def test_caller_triggers() -> None:
    triggers = rules.load(caller_text())["on"]
    assert triggers["repository_dispatch"] == {"types": ["asc-webhook"]}
    assert "payload" in triggers["workflow_dispatch"]["inputs"]


def test_caller_uses_reusable_workflow() -> None:
    assert REUSABLE in caller_job()["uses"]


def test_caller_inputs_declared() -> None:
    declared = reusable_interface()["inputs"]
    passed = caller_job()["with"]
    assert set(passed) <= set(declared)
    required = {name for name, spec in declared.items() if spec.get("required")}
    assert required <= set(passed)


def test_caller_reads_event_file() -> None:
    # The event input reaches the jobs as an environment variable, which Linux
    # caps at 128 KiB; the caller's event file has no such limit.
    assert "event" not in caller_job()["with"]


def test_caller_names_every_secret() -> None:
    secrets = caller_job()["secrets"]
    assert isinstance(secrets, dict)
    assert set(secrets) == set(reusable_interface()["secrets"])
    for name, value in secrets.items():
        assert value == f"${{{{ secrets.{name} }}}}"


def test_caller_grants_release_write() -> None:
    assert caller_job()["permissions"] == {
        "contents": "write",
        "pull-requests": "write",
    }


def test_settings_example_valid(tmp_path: Path) -> None:
    from ci.settings import load_settings

    blocks = re.findall(r"```yaml\n(.*?)```", SETUP.read_text(), re.DOTALL)
    examples = [block for block in blocks if block.startswith("platform:")]
    assert len(examples) == 1
    path = tmp_path / "asc-release.yml"
    path.write_text(examples[0])

    settings = load_settings(path, {})

    assert settings.release.merge_into == "main"
    assert settings.slack.channel == "#releases"


def test_readme_caller_matches_setup() -> None:
    # YAML comments aside, the README shows the same caller as docs/setup.md, so
    # the checks above cover both.
    assert rules.load(caller_text(README)) == rules.load(caller_text(SETUP))

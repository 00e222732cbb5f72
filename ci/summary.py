"""Job summary (``$GITHUB_STEP_SUMMARY``) and step outputs (``$GITHUB_OUTPUT``).

Outputs use GitHub's multiline form, ``name<<DELIMITER``, value lines, then
``DELIMITER``, with a random delimiter that is checked against the value, so
a value containing newlines or ``=`` cannot inject another output.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from ci.outcome import Outcome

logger = logging.getLogger(__name__)

STATUS_ICONS = {
    "done": "✅ done",
    "unchanged": "☑️ unchanged",
    "skipped": "⏭️ skipped",
    "failed": "❌ failed",
}
OUTPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def markdown_cell(text: str) -> str:
    """Make text safe for one Markdown table cell that GitHub renders as HTML."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("|", "\\|")
        .replace("\r", "")
        .replace("\n", "<br>")
    )


def render_summary(
    outcome: Outcome, heading: str, context: list[str] | None = None
) -> str:
    """Render an outcome as a Markdown section: heading, context lines, step table."""
    lines = [f"### {markdown_cell(heading)}", ""]
    for line in context or []:
        lines.append(f"- {markdown_cell(line)}")
    if context:
        lines.append("")
    if outcome.steps:
        lines.append("| Step | Status | Detail |")
        lines.append("| --- | --- | --- |")
        for step in outcome.steps:
            status = STATUS_ICONS.get(step.status, step.status)
            name = markdown_cell(step.name)
            lines.append(f"| {name} | {status} | {markdown_cell(step.detail)} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def render_error(heading: str, message: str) -> str:
    """Render a run that stopped before any step as a Markdown section."""
    return f"### {markdown_cell(heading)}\n\n❌ {markdown_cell(message)}\n"


def append_step_summary(path: str | Path | None, markdown: str) -> None:
    """Append Markdown to the job summary file, when GitHub provides one."""
    if not path:
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(markdown)


def _random_delimiter() -> str:
    return f"ghadelimiter_{uuid.uuid4()}"


def format_output(
    name: str, value: str, make_delimiter: Callable[[], str] = _random_delimiter
) -> str:
    """Return one output in the ``name<<DELIMITER`` form GitHub reads."""
    if not OUTPUT_NAME.fullmatch(name):
        raise ValueError(
            f"output name {name!r} is invalid: use letters, digits, _ and -"
        )
    delimiter = make_delimiter()
    # A random UUID colliding with the value is practically impossible, but
    # the check keeps the guarantee independent of that.
    while delimiter in value:
        delimiter = make_delimiter()
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


def append_outputs(path: str | Path | None, outputs: Mapping[str, str]) -> None:
    """Append outputs to the ``$GITHUB_OUTPUT`` file, when GitHub provides one."""
    if not path:
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.writelines(format_output(name, value) for name, value in outputs.items())


def parse_outputs(text: str) -> dict[str, str]:
    """Read back a ``$GITHUB_OUTPUT`` file (both ``name=value`` and heredoc forms)."""
    outputs: dict[str, str] = {}
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line:
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            value_lines = []
            while index < len(lines) and lines[index] != delimiter:
                value_lines.append(lines[index])
                index += 1
            if index >= len(lines):
                raise ValueError(
                    f"output {name!r} has no closing delimiter {delimiter!r}"
                )
            index += 1
            outputs[name] = "\n".join(value_lines)
        else:
            name, _, value = line.partition("=")
            outputs[name] = value
    return outputs

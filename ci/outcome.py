"""Step-by-step results of an automation, for logs, summaries and exit codes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

StepStatus = Literal["done", "unchanged", "skipped", "failed"]


@dataclass
class Step:
    """One reported step: ``unchanged`` means it was already done before this run."""

    name: str
    status: StepStatus
    detail: str = ""


@dataclass
class Outcome:
    """The result of one automation run."""

    action: str
    steps: list[Step] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, status: StepStatus, detail: str = "") -> Step:
        step = Step(name, status, detail)
        self.steps.append(step)
        return step

    @property
    def failed(self) -> bool:
        return any(step.status == "failed" for step in self.steps)

"""Options and shared state of one submit-for-review run."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ci.asc import AppStoreConnect, validate_platform
from ci.errors import AutomationError, ConfigError
from ci.outcome import Outcome

logger = logging.getLogger(__name__)

ACTION = "submit_for_review"


@dataclass
class SubmitOptions:
    """Settings of one submit-for-review run.

    ``platform`` None accepts the build upload's platform. When set, a build
    upload for another platform is skipped, so one workflow per platform can
    share the same webhook. Times are in seconds.
    """

    platform: str | None = None
    uses_non_exempt_encryption: bool | None = None
    whats_new: str | None = None
    whats_new_locale: str = "en-US"
    cancel_other_submission: bool = False
    build_wait_timeout: float = 30 * 60
    build_poll_interval: float = 30.0
    build_poll_max_interval: float = 5 * 60
    beta_groups: Sequence[str] = ()
    dry_run: bool = False

    def __post_init__(self) -> None:
        if self.platform is not None:
            self.platform = validate_platform(self.platform)
        if self.build_wait_timeout < 0:
            raise ConfigError(
                f"build_wait_timeout is {self.build_wait_timeout}: set it to 0 or "
                "more seconds"
            )
        if self.build_poll_interval <= 0:
            raise ConfigError(
                f"build_poll_interval is {self.build_poll_interval}: set it to "
                "more than 0 seconds"
            )
        if not self.whats_new_locale.strip():
            raise ConfigError(
                "whats_new_locale is empty: set it to a locale such as en-US"
            )


class StopRun(AutomationError):
    """Ends the run: the step named ``step`` reports ``failed`` with the message."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


@dataclass
class SubmitRun:
    """State shared by the steps of one run."""

    asc: AppStoreConnect
    options: SubmitOptions
    outcome: Outcome
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    platform: str = ""
    version_string: str = ""
    build_id: str = ""
    app_id: str = ""
    version_id: str | None = None
    version_state: str | None = None
    version_build: tuple[str, str] | None = None
    encryption: bool | None = None
    step: str = "build upload"

    def write(self, step: str, action: str) -> bool:
        """Return True when the write may go ahead, recording it under dry run."""
        if self.options.dry_run:
            self.outcome.add(step, "skipped", f"dry run: would {action}")
            logger.info("dry run: would %s", action)
            return False
        return True

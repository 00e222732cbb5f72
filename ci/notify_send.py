"""Posting a notification to Slack, and the state labels the messages share.

Without Slack configured the post step is reported as skipped, not failed.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ci.http import ApiError
from ci.outcome import Outcome
from ci.slack import Message, Slack

logger = logging.getLogger(__name__)

NOT_CONFIGURED = (
    "Slack is not configured: set SLACK_WEBHOOK_URL, or SLACK_BOT_TOKEN and "
    "slack.channel, to receive this message"
)

STATE_EMOJI = {
    "REJECTED": ":x:",
    "METADATA_REJECTED": ":x:",
    "INVALID_BINARY": ":x:",
    "DEVELOPER_REJECTED": ":leftwards_arrow_with_hook:",
    "PENDING_DEVELOPER_RELEASE": ":white_check_mark:",
    "READY_FOR_DISTRIBUTION": ":rocket:",
    "BETA_APPROVED": ":white_check_mark:",
    "BETA_REJECTED": ":x:",
}


def send_message(
    slack: Slack | None,
    message: Message,
    outcome: Outcome,
    step: str = "slack",
    *,
    dry_run: bool = False,
) -> None:
    """Post ``message`` and record the result as ``step`` of ``outcome``."""
    if dry_run:
        print(json.dumps(message.payload(), indent=2, ensure_ascii=False))
        outcome.add(
            step, "skipped", "dry run: printed the Slack message instead of posting it"
        )
        return
    if slack is None:
        logger.info("%s", NOT_CONFIGURED)
        outcome.add(step, "skipped", NOT_CONFIGURED)
        return
    try:
        slack.post(message)
    except ApiError as exc:
        logger.error("Slack message failed: %s", exc)
        outcome.add(step, "failed", str(exc))
        return
    outcome.add(step, "done", f"posted to {slack.destination}")


def itms_code(code: Any) -> str:
    """Return Apple's ``ITMS-90683`` spelling for a bare numeric code."""
    text = str(code or "").strip()
    return f"ITMS-{text}" if text.isdigit() else text or "unknown code"


def readable_state(state: str | None) -> str:
    """Turn ``METADATA_REJECTED`` into ``metadata rejected`` for messages."""
    return (state or "unknown").replace("_", " ").lower()

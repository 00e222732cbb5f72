"""Retry delays shared by the relay's dispatcher and the CI helpers.

Both call rate-limited APIs (GitHub, App Store Connect, Slack, Jira) that may
send a retry hint in one of two headers, so the rule lives in one place. A
server's own hint wins. Otherwise the delay grows exponentially from ``base``
up to ``cap``, with jitter.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

#: Maximum wait, in seconds, taken from a server hint, so a bogus header cannot
#: park a delivery for days.
MAX_HINT_SECONDS = 3600.0


def exponential_delay(
    attempt: int, *, base: float = 1.0, cap: float = 300.0, jitter: bool = True
) -> float:
    """Return the delay before retry number ``attempt`` (1 for the first retry).

    With ``jitter`` the result is drawn uniformly from the upper half of the
    exponential step, which spreads retries from many clients without ever
    retrying immediately.
    """
    step = min(cap, base * (2 ** max(attempt - 1, 0)))
    if not jitter:
        return step
    return random.uniform(step / 2, step)


def hinted_delay(
    headers: Mapping[str, str], *, now: float | None = None
) -> float | None:
    """Return the wait the server asked for, in seconds, or None without a hint.

    ``Retry-After`` may be a number of seconds or an HTTP date (RFC 9110).
    GitHub's ``x-ratelimit-reset`` is a Unix time and counts only when
    ``x-ratelimit-remaining`` is 0. Header names are matched case-insensitively.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    current = time.time() if now is None else now

    retry_after = lowered.get("retry-after")
    if retry_after is not None:
        seconds = _parse_retry_after(retry_after.strip(), current)
        if seconds is not None:
            return min(max(seconds, 0.0), MAX_HINT_SECONDS)

    if lowered.get("x-ratelimit-remaining", "").strip() == "0":
        try:
            reset = float(lowered.get("x-ratelimit-reset", ""))
        except ValueError:
            return None
        if not math.isfinite(reset):
            return None
        return min(max(reset - current, 0.0), MAX_HINT_SECONDS)
    return None


def retry_delay(
    attempt: int,
    headers: Mapping[str, str] | None = None,
    *,
    base: float = 1.0,
    cap: float = 300.0,
) -> float:
    """Return how long to wait before retry ``attempt``, preferring a server hint."""
    if headers:
        hint = hinted_delay(headers)
        if hint is not None:
            return hint
    return exponential_delay(attempt, base=base, cap=cap)


def _parse_retry_after(value: str, now: float) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp() - now

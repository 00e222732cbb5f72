from __future__ import annotations

import pytest

from relay.backoff import MAX_HINT_SECONDS, exponential_delay, hinted_delay, retry_delay

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "30"}, 30.0),
        ({"retry-after": " 2.5 "}, 2.5),
        ({"Retry-After": "Tue, 14 Nov 2023 22:14:20 GMT"}, 60.0),
        ({"Retry-After": "-4"}, 0.0),
        ({"Retry-After": "999999"}, MAX_HINT_SECONDS),
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 90)}, 90.0),
        (
            {"x-ratelimit-remaining": "12", "x-ratelimit-reset": str(int(NOW) + 90)},
            None,
        ),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "inf"}, None),
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "nan"}, None),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
    ids=[
        "seconds",
        "spaced",
        "http-date",
        "negative",
        "capped",
        "reset",
        "reset-remaining",
        "nan",
        "inf",
        "reset-nan",
        "word",
        "none",
    ],
)
def test_hinted_delay(headers: dict[str, str], expected: float | None) -> None:
    result = hinted_delay(headers, now=NOW)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected, abs=1.0)


def test_exponential_delay_doubles_and_caps() -> None:
    steps = [
        exponential_delay(n, base=1.0, cap=60.0, jitter=False) for n in range(1, 10)
    ]
    assert steps[:4] == [1.0, 2.0, 4.0, 8.0]
    assert max(steps) == 60.0


def test_exponential_delay_jitter_stays_in_upper_half() -> None:
    for _ in range(200):
        assert 4.0 <= exponential_delay(4, base=1.0, cap=60.0) <= 8.0


def test_retry_delay_prefers_hint() -> None:
    assert retry_delay(1, {"Retry-After": "12"}) == 12.0

"""When a source answers 429 or 5xx: the wait before the next try, worked by hand from the rule
(Retry-After when sent, else 0.5 s * 2**n capped at 8 s; never past the time left or after 3 retries)."""

from __future__ import annotations

import pytest

from flow_steps.data.sources.http import wait_before_retry


@pytest.mark.parametrize(
    ("retries_done", "expected"),
    [(0, 0.5), (1, 1.0), (2, 2.0)],
)
def test_backoff_doubles_without_retry_after(retries_done: int, expected: float) -> None:
    assert wait_before_retry(retries_done, None, seconds_left=100.0) == expected


def test_no_retry_after_the_third() -> None:
    assert wait_before_retry(3, None, seconds_left=100.0) is None
    assert wait_before_retry(3, "1", seconds_left=100.0) is None


def test_retry_after_is_honoured_over_backoff() -> None:
    assert wait_before_retry(0, "7", seconds_left=100.0) == 7.0
    assert wait_before_retry(2, " 12 ", seconds_left=100.0) == 12.0


def test_a_date_in_retry_after_falls_back_to_backoff() -> None:
    assert wait_before_retry(1, "Wed, 21 Oct 2026 07:28:00 GMT", seconds_left=100.0) == 1.0


@pytest.mark.parametrize(
    ("seconds_left", "expected"),
    [(6.99, None), (7.0, 7.0), (7.01, 7.0)],
)
def test_a_wait_past_the_time_left_gives_up(seconds_left: float, expected: float | None) -> None:
    assert wait_before_retry(0, "7", seconds_left=seconds_left) == expected


def test_backoff_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    from flow_steps.data.sources import http

    assert http.MAX_BACKOFF_SECONDS == 8
    monkeypatch.setattr(http, "MAX_RETRIES", 10)  # 0.5 * 2**5 = 16 would pass the cap
    assert wait_before_retry(4, None, seconds_left=100.0) == 8.0
    assert wait_before_retry(5, None, seconds_left=100.0) == 8.0

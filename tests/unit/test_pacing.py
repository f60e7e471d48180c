"""A universe's pace: starts spaced by 60 / rate seconds, worked by hand (12 a minute: 5 s apart)."""

from __future__ import annotations

import pytest

from flow_steps.orchestration.pacing import Pace, source_pace


def test_the_first_start_never_waits() -> None:
    assert Pace(12.0).wait(now=100.0) == 0.0


@pytest.mark.parametrize(
    ("now", "expected"),
    [(100.0, 5.0), (103.0, 2.0), (104.999, pytest.approx(0.001)), (105.0, 0.0), (105.001, 0.0)],
)
def test_the_next_start_waits_until_sixty_over_the_rate_after_the_last(now: float, expected: float) -> None:
    pace = Pace(12.0)
    pace.start(100.0)
    assert pace.wait(now) == expected


def test_no_pace_never_waits() -> None:
    pace = Pace(None)
    pace.start(100.0)
    assert pace.wait(100.0) == 0.0


def test_six_tickers_at_twelve_a_minute_take_twenty_five_seconds_to_start() -> None:
    pace, clock, starts = Pace(12.0), 0.0, []
    for _ in range(6):
        clock += pace.wait(clock)
        pace.start(clock)
        starts.append(clock)
    assert starts == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]


@pytest.mark.parametrize(
    ("chosen", "source_default", "expected"),
    [(0.0, 0.75, 0.75), (0.0, None, None), (30.0, 0.75, 30.0), (30.0, None, 30.0)],
)
def test_the_chosen_pace_overrides_the_sources_and_zero_keeps_it(
    chosen: float, source_default: float | None, expected: float | None
) -> None:
    assert source_pace(chosen, source_default).per_minute == expected

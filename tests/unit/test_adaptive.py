"""Adaptive conformal inference (flow_steps/model/adaptive.py) by hand: the update rule on tiny
sequences, no look-ahead, and the limits of alpha_t."""

import numpy as np
import pytest

from flow_steps.model.adaptive import (
    GAMMA,
    adaptive_intervals,
    adaptive_run,
    both_intervals,
    clipped_alpha,
    conformal_multiplier,
    next_alpha,
)
from flow_steps.model.intervals import calibrate, multipliers_from_scores, scaled_scores

SCORES = np.arange(1.0, 10.0)  # calibration scores 1..9, n = 9: day t's multiplier is the
# ceil(10 * (1 - alpha_t))-th smallest, capped at 9


def test_five_steps_of_the_update_by_hand():
    """Level 80 (alpha = 0.2), gamma = 0.1; alpha_{t+1} = alpha_t + 0.1 * (0.2 - err_t):

    t  alpha_t  10(1 - alpha_t)  rank  q   score  err  alpha_{t+1}
    1  0.20     8.0              8     8   1      0    0.20 + 0.02 = 0.22
    2  0.22     7.8              8     8   8.5    1    0.22 - 0.08 = 0.14
    3  0.14     8.6              9     9   9.5    1    0.14 - 0.08 = 0.06
    4  0.06     9.4              10->9 9   9      0    0.06 + 0.02 = 0.08  (score = q: inside)
    5  0.08     9.2              10->9 9   0.5    0    0.08 + 0.02 = 0.10
    next: alpha = 0.10, 10 * 0.9 = 9, rank 9, q = 9
    """
    run = adaptive_run(SCORES, np.array([1, 8.5, 9.5, 9, 0.5]), level=80, gamma=0.1)
    np.testing.assert_allclose(run.alphas, [0.20, 0.22, 0.14, 0.06, 0.08], atol=1e-12)
    np.testing.assert_array_equal(run.multipliers, [8, 8, 9, 9, 9])
    np.testing.assert_array_equal(run.misses, [False, True, True, False, False])
    assert run.next_alpha == pytest.approx(0.10, abs=1e-12)
    assert run.next_multiplier == 9


def test_a_run_of_hits_narrows_the_interval():
    """Level 80, gamma = 0.5: each hit adds 0.5 * 0.2 = 0.1 to alpha.

    alpha 0.2 -> q = 8th; 0.3 (10 * 0.7 = 7) -> 7th; 0.4 -> 6th; 0.5 -> 5th.
    """
    run = adaptive_run(SCORES, np.zeros(3), level=80, gamma=0.5)
    np.testing.assert_array_equal(run.multipliers, [8, 7, 6])
    assert run.next_multiplier == 5
    assert run.next_alpha == pytest.approx(0.5)


def test_gamma_zero_is_the_static_multiplier_every_day():
    rng = np.random.default_rng(3)
    realized = rng.exponential(size=40)
    for level in (80, 95):
        run = adaptive_run(SCORES, realized, level, gamma=0.0)
        assert set(run.multipliers) == {multipliers_from_scores(SCORES, (level,))[level]}


def test_the_first_day_uses_the_static_multiplier_of_the_same_scores():
    forecast = np.full(19, 100.0)
    actual = forecast * np.exp(np.linspace(0.01, 0.19, 19))
    sigma = np.full(19, 0.01)
    static = calibrate(actual, forecast, sigma)
    for level in (80, 95):
        run = adaptive_run(np.sort(scaled_scores(actual, forecast, sigma)), np.array([0.0]), level)
        assert run.multipliers[0] == pytest.approx(static[level])


def test_a_days_interval_does_not_depend_on_its_own_close_or_later_ones():
    rng = np.random.default_rng(7)
    n = 60
    forecast = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    actual = forecast * np.exp(rng.normal(0, 0.02, n))
    sigma = np.full(n, 0.01)
    scores = np.sort(rng.exponential(size=30))
    original = adaptive_intervals(scores, actual, forecast, sigma, (80, 95), gamma=0.05)
    for day in (0, 17, 59):
        changed = actual.copy()
        changed[day:] *= 1.5  # day t's close and every later one: far outside
        moved = adaptive_intervals(scores, changed, forecast, sigma, (80, 95), gamma=0.05)
        for level in (80, 95):
            np.testing.assert_array_equal(moved[level].lower[: day + 1], original[level].lower[: day + 1])
            np.testing.assert_array_equal(moved[level].upper[: day + 1], original[level].upper[: day + 1])
            if day < n - 1:  # the misses from day t on widen the later intervals, never narrow them
                later = slice(day + 1, None)
                assert np.all(moved[level].upper[later] >= original[level].upper[later])
                assert np.any(moved[level].upper[later] > original[level].upper[later])


def test_alpha_is_clipped_exactly_at_its_bounds():
    gamma = 0.1
    assert clipped_alpha(-0.1, gamma) == -0.1  # at the bound
    assert clipped_alpha(-0.1 - 1e-12, gamma) == -0.1  # just below: clipped
    assert clipped_alpha(-0.1 + 1e-12, gamma) == -0.1 + 1e-12  # just above: kept
    assert clipped_alpha(1.1, gamma) == 1.1
    assert clipped_alpha(1.1 + 1e-12, gamma) == 1.1
    assert clipped_alpha(1.1 - 1e-12, gamma) == 1.1 - 1e-12
    # a miss at the floor stays at the floor (-0.1 - 0.1 * 0.8 = -0.18 -> -0.1); a hit climbs back
    assert next_alpha(-0.1, 0.2, missed=True, gamma=gamma) == -0.1
    assert next_alpha(-0.1, 0.2, missed=False, gamma=gamma) == pytest.approx(-0.08)
    assert next_alpha(1.1, 0.2, missed=False, gamma=gamma) == 1.1  # 1.1 + 0.02 -> 1.1
    assert next_alpha(1.1, 0.2, missed=True, gamma=gamma) == pytest.approx(1.02)


def test_misses_beyond_every_calibration_score_cannot_wind_alpha_down():
    """Level 80, gamma = 0.1: misses take alpha 0.2 -> 0.12 -> 0.04 -> -0.04 -> -0.1 (clipped) -> -0.1;
    after the storm, hits climb from the floor at once: -0.08, -0.06, ..."""
    run = adaptive_run(SCORES, np.array([100.0] * 5 + [0.0] * 2), level=80, gamma=0.1)
    np.testing.assert_allclose(run.alphas, [0.2, 0.12, 0.04, -0.04, -0.1, -0.1, -0.08], atol=1e-12)
    assert run.next_alpha == pytest.approx(-0.06)


@pytest.mark.parametrize(
    ("alpha_t", "expected"),
    [
        (-0.1, 9.0),  # alpha_t <= 0: the paper's infinite interval; here the largest score
        (0.0, 9.0),
        (0.0999, 9.0),  # below 1 / (n + 1) = 0.1: split conformal's quantile would be infinite
        (0.1, 9.0),  # 10 * 0.9 = 9: the 9th
        (0.1001, 9.0),  # 8.999 -> 9th
        (0.2001, 8.0),  # 7.999 -> 8th
        (0.9, 1.0),  # 10 * 0.1 = 1: the smallest
        (0.95, 1.0),  # 0.5 -> 1st
        (0.9999, 1.0),
        (1.0, 0.0),  # alpha_t >= 1: the paper's empty interval, the forecast alone
        (1.1, 0.0),
    ],
)
def test_the_multiplier_at_and_either_side_of_its_limits(alpha_t, expected):
    assert conformal_multiplier(SCORES, alpha_t) == expected


def test_a_rank_a_rounding_error_above_an_integer_is_that_integer():
    # 0.7 + 0.1 + 0.1 accumulates to 0.8999999999999999: 10 * (1 - alpha) is 1.0000000000000009, the 1st
    alpha = 0.7 + 0.1 + 0.1
    assert 10 * (1 - alpha) > 1
    assert conformal_multiplier(SCORES, alpha) == 1.0


def test_both_ways_share_the_forecast_and_the_scores():
    rng = np.random.default_rng(11)
    forecast = np.full(30, 50.0)
    actual = forecast * np.exp(rng.normal(0, 0.02, 30))
    sigma = np.full(30, 0.02)
    both = both_intervals(SCORES, actual, forecast, sigma, (80,))
    assert set(both) == {"static", "adaptive"}
    np.testing.assert_allclose(both["static"][80].upper, 50 * np.exp(8 * 0.02))  # 8th of 1..9
    np.testing.assert_allclose(both["adaptive"][80].upper[0], 50 * np.exp(8 * 0.02))
    assert GAMMA == 0.005

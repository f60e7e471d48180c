"""Model features and intervals: input coercion, conformal ranks, default names and messages.

Written against surviving mutants: each test pins a behaviour the earlier tests left open.
"""

import math
import re

import numpy as np
import pytest

from flow_steps.config.errors import DataValidationError
from flow_steps.config.names import ADAPTIVE_INTERVALS, STATIC_INTERVALS
from flow_steps.model.adaptive import both_intervals
from flow_steps.model.features import ReturnScaler, check_enough_rows, next_log_returns
from flow_steps.model.intervals import (
    Interval,
    calibrate,
    constant_intervals,
    coverage,
    interval_metrics,
    interval_score,
)


def test_calibrate_reads_numeric_text_in_every_argument_as_floats():
    """actual, forecast and sigma are all coerced to float before dividing."""
    # scores |log(a / 1)| / 1 = log 1 .. log 5; n = 5: both ranks are
    # min(5, ceil(6 * 0.8)) = min(5, ceil(6 * 0.95)) = 5, the largest score log 5
    multipliers = calibrate(["1", "2", "3", "4", "5"], ["1"] * 5, ["1"] * 5)
    assert multipliers == pytest.approx({80: math.log(5), 95: math.log(5)})


def test_calibrate_takes_the_conformal_rank_out_of_one_hundred():
    """With 28 days the 80% multiplier is the ceil(29 * 0.8) = ceil(23.2) = 24th smallest score."""
    scores = [day / 100 for day in range(28, 0, -1)]  # 0.28 down to 0.01, unsorted on purpose
    forecast = np.full(28, 10.0)
    sigma = np.full(28, 2.0)
    actual = forecast * np.exp(np.array(scores) * sigma)  # so |log(actual / forecast)| / sigma = score
    # 80%: rank 24 -> 0.24 (dividing by 101 would give ceil(22.97) = 23 -> 0.23);
    # 95%: ceil(29 * 0.95) = ceil(27.55) = 28 -> 0.28
    assert calibrate(actual, forecast, sigma) == pytest.approx({80: 0.24, 95: 0.28})


def test_constant_intervals_read_numeric_text_as_floats():
    """Training closes and previous closes given as text are coerced to float."""
    # training returns log(1.1) twice: both quantiles are log(1.1), so each bound is 50 * 1.1 = 55
    intervals = constant_intervals(["50"], ["100", "110", "121"], levels=(80,))
    np.testing.assert_allclose(intervals[80].lower, [55.0])
    np.testing.assert_allclose(intervals[80].upper, [55.0])


def test_coverage_and_interval_score_read_numeric_actuals_as_floats():
    """Actual closes given as text are compared and scored as numbers."""
    interval = Interval(np.array([9.0, 9.0]), np.array([11.0, 11.0]))
    # 10 is inside, 12 is above: coverage 1 / 2
    assert coverage(["10", "12"], interval) == 0.5
    # 80%: alpha 0.2; width 2 each day, plus 2 / 0.2 * (12 - 11) = 10 on day two: (2 + 12) / 2 = 7
    assert interval_score(["10", "12"], interval, 80) == pytest.approx(7.0)


def test_interval_metrics_have_no_prefix_by_default():
    """Without a prefix the names are `test_coverage_<level>` and `test_interval_score_<level>`."""
    interval = Interval(np.array([9.0]), np.array([11.0]))
    assert set(interval_metrics(np.array([10.0]), {80: interval})) == {
        "test_coverage_80",
        "test_interval_score_80",
    }


def test_short_series_message_says_to_raise_max_row_limit():
    """The shortfall message ends naming the parameter to raise and the other remedy."""
    remedy = "lower window, raise max_row_limit or use a longer price history"
    with pytest.raises(DataValidationError, match=re.escape(remedy) + "$"):
        check_enough_rows(20, window=10, test_fraction=0.2)


def test_next_log_returns_read_numeric_text_as_floats():
    """Windows and targets given as text are coerced to float."""
    # last close 10, target 20: log(20 / 10) = log 2
    np.testing.assert_allclose(next_log_returns([["5", "10"]], ["20"]), [math.log(2)])


def test_return_scaler_reads_numeric_text_as_floats():
    """Training log returns given as text are coerced to float before taking their spread."""
    # population standard deviation of +-0.01 around mean 0 is 0.01
    assert ReturnScaler.fit(["0.01", "-0.01"]).scale == pytest.approx(0.01)


# Calibration scores 0.1 .. 0.4 (n = 4). At 50%: rank ceil((4 + 1) * 0.5) = 3, the multiplier 0.3.
SCORES = np.array([0.1, 0.2, 0.3, 0.4])


def test_calibrate_gives_the_levels_asked_for_only():
    """Five scores 0.1 .. 0.5 (calibrate's least): at 50%, rank ceil((5 + 1) * 0.5) = 3: 0.3."""
    forecast, sigma = np.ones(5), np.ones(5)
    assert calibrate(np.exp([0.1, 0.2, 0.3, 0.4, 0.5]), forecast, sigma, levels=(50,)) == pytest.approx(
        {50: 0.3}
    )


def test_both_intervals_use_the_levels_and_the_step_given():
    """Day 1 at alpha_1 = 0.5: multiplier 0.3; its score 0.35 misses, so with gamma 0.25
    alpha_2 = 0.5 + 0.25 * (0.5 - 1) = 0.375 and day 2 takes rank ceil(5 * 0.625) = 4: 0.4 (with the
    default gamma 0.005, alpha_2 = 0.4975 keeps rank 3). Static: 0.3 on both days."""
    forecast, sigma = np.ones(2), np.ones(2)
    actual = np.exp([0.35, 0.05])
    both = both_intervals(SCORES, actual, forecast, sigma, (50,), gamma=0.25)
    assert set(both[STATIC_INTERVALS]) == set(both[ADAPTIVE_INTERVALS]) == {50}
    assert both[STATIC_INTERVALS][50].upper == pytest.approx(np.exp([0.3, 0.3]))
    assert both[ADAPTIVE_INTERVALS][50].upper == pytest.approx(np.exp([0.3, 0.4]))
    assert both[ADAPTIVE_INTERVALS][50].lower == pytest.approx(np.exp([-0.3, -0.4]))

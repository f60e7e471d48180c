"""Every limit of the evaluation helpers, on it and on each side (expected values worked out by hand)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.dummy import DummyRegressor

from flow_steps.config.errors import PipelineError
from flow_steps.training.evaluation import (
    backtest_ranges,
    directional_accuracy,
    mae,
    mape,
    mase,
    moving_average_forecast,
    naive_forecast,
    naive_mae_scale,
    rmse,
    up_share,
    window_regression_forecast,
)

CLOSES = np.array([10.0, 12.0, 11.0, 13.0, 14.0])


def test_the_errors_by_hand():
    actual, predicted = np.array([10.0, 20.0]), np.array([12.0, 17.0])  # errors -2 and 3
    assert rmse(actual, predicted) == pytest.approx(np.sqrt((4 + 9) / 2))
    assert mae(actual, predicted) == pytest.approx(2.5)
    assert mape(actual, predicted) == pytest.approx((0.2 + 0.15) / 2 * 100)
    assert mase(actual, predicted, 2.0) == pytest.approx(1.25)
    with pytest.raises(ValueError, match="need two non-empty arrays of one shape"):
        rmse(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="need two non-empty arrays of one shape"):
        rmse(actual, predicted[:1])


def test_the_mase_scale_needs_a_move():
    # |12 - 10|, |11 - 12|, |13 - 11|, |14 - 13|: 2, 1, 2, 1 -> 1.5
    assert naive_mae_scale(CLOSES) == 1.5
    for flat in ([5.0, 5.0, 5.0], [5.0]):
        with pytest.raises(ValueError, match="need at least two different training closes"):
            naive_mae_scale(np.array(flat))


def test_a_flat_day_is_neither_up_nor_called_up():
    previous, actual = np.array([10.0, 10.0, 10.0]), np.array([11.0, 10.0, 9.0])
    assert up_share(previous, actual) == pytest.approx(1 / 3)  # only 11 > 10
    # calls up, flat, up: right on the first two
    assert directional_accuracy(previous, actual, np.array([10.5, 10.0, 10.1])) == pytest.approx(2 / 3)


# n_test in [1, len - 1].
@pytest.mark.parametrize(("n_test", "expected"), [(1, [13.0]), (4, [10.0, 12.0, 11.0, 13.0])])
def test_the_naive_forecast_takes_one_to_all_but_one_day(n_test, expected):
    assert naive_forecast(CLOSES, n_test).tolist() == expected


@pytest.mark.parametrize("n_test", [0, 5])
def test_the_naive_forecast_refuses_no_day_or_every_day(n_test):
    with pytest.raises(ValueError, match=rf"^n_test must be in \[1, 4\], got {n_test}$"):
        naive_forecast(CLOSES, n_test)


# With 2 test days, 3 closes come before them: ma_window in [1, 3].
@pytest.mark.parametrize(
    ("ma_window", "expected"),
    [(1, [11.0, 13.0]), (2, [11.5, 12.0]), (3, [11.0, 12.0])],  # (10+12+11)/3, (12+11+13)/3
)
def test_the_moving_average_window_is_one_to_the_training_length(ma_window, expected):
    assert moving_average_forecast(CLOSES, 2, ma_window) == pytest.approx(expected)


@pytest.mark.parametrize("ma_window", [0, 4])
def test_the_moving_average_refuses_windows_outside(ma_window):
    with pytest.raises(ValueError, match=rf"^ma_window must be in \[1, 3\], got {ma_window}$"):
        moving_average_forecast(CLOSES, 2, ma_window)


# 5 closes, 2 test days, window 2: windows [10, 12], [12, 11], [11, 13] (targets 11, 13, 14); the first test
# window is the 5 - 2 - 2 = 1st, so one training window, whose log return is log(11 / 12). The mean
# regressor predicts it for each test window: 11 * 11 / 12 and 13 * 11 / 12. With window 3 none is left.
def test_a_regression_baseline_needs_one_training_window():
    found = window_regression_forecast(DummyRegressor(strategy="mean"), CLOSES, 2, 2)
    assert found == pytest.approx([121 / 12, 143 / 12])
    with pytest.raises(ValueError, match="^5 closes leave no training window of 3 before the test days$"):
        window_regression_forecast(DummyRegressor(), CLOSES, 2, 3)


# Folds of at least 5 test days: 10 test days make at most 2 folds, 14 too, 15 make 3.
@pytest.mark.parametrize(
    ("n_test", "folds", "allowed"), [(10, 2, True), (10, 3, False), (14, 3, False), (15, 3, True)]
)
def test_each_backtest_fold_keeps_five_test_days(n_test, folds, allowed):
    if allowed:
        ranges = backtest_ranges(100, n_test, folds)
        assert ranges[0][0] == 100 - n_test and ranges[-1][1] == 100 and len(ranges) == folds
        assert all(end - start >= 5 for start, end in ranges)
    else:
        with pytest.raises(
            PipelineError, match=f"^backtest_folds={folds} would leave fewer than 5 test days"
        ):
            backtest_ranges(100, n_test, folds)


def test_backtest_folds_are_consecutive_and_split_the_remainder_first():
    # 11 days in 2 folds: numpy gives the first fold the extra day, 6 + 5.
    assert backtest_ranges(20, 11, 2) == [(9, 15), (15, 20)]

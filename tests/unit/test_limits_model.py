"""Every limit of the features, intervals and request checks, on it and on each side (worked out by hand)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from flow_steps.config.errors import DataValidationError
from flow_steps.model.features import (
    ReturnScaler,
    check_enough_rows,
    closes_from_scaled_returns,
    holdout_size,
    make_windows,
    minimum_rows,
    model_inputs,
)
from flow_steps.model.intervals import (
    Interval,
    calibrate,
    constant_intervals,
    coverage,
    ewma_volatility,
    interval_metrics,
    interval_score,
    latest_volatility,
    scaled_intervals,
)
from flow_steps.model.request_checks import closes_from_input, horizon_from_params


# round() to the nearest row, halves to even, and never fewer than one test row.
@pytest.mark.parametrize(
    ("n_rows", "fraction", "expected"),
    [
        (10, 0.27, 3),  # 2.7 -> 3 (truncating would give 2)
        (10, 0.25, 2),  # 2.5 -> 2 (half to even)
        (14, 0.25, 4),  # 3.5 -> 4 (half to even)
        (10, 0.12, 1),  # 1.2 -> 1
        (10, 0.04, 1),  # 0.4 -> 0 -> at least 1
        (1, 0.5, 1),  # 0.5 -> 0 -> at least 1
    ],
)
def test_the_holdout_rounds_to_the_nearest_row_and_keeps_one(n_rows, fraction, expected):
    assert holdout_size(n_rows, fraction) == expected


# window=60, test_fraction=0.2: 112 rows hold out round(22.4) = 22 and leave 112 - 22 - 60 = 30 training
# windows (the minimum); 111 rows hold out round(22.2) = 22 and leave 29.
def test_the_fewest_rows_leave_exactly_thirty_training_windows():
    assert minimum_rows(60, 0.2) == 112
    check_enough_rows(112, 60, 0.2)
    with pytest.raises(DataValidationError, match=r"^111 rows .* need at least 112: lower window"):
        check_enough_rows(111, 60, 0.2)


# window=1, test_fraction=0.1: the 5 test rows bind. 45 rows: round(4.5) = 4 test rows (too few);
# 46 rows: round(4.6) = 5 test rows and 46 - 5 - 1 = 40 windows.
def test_the_fewest_rows_leave_exactly_five_test_days():
    assert minimum_rows(1, 0.1) == 46
    check_enough_rows(46, 1, 0.1)
    with pytest.raises(DataValidationError, match="^45 rows"):
        check_enough_rows(45, 1, 0.1)


def test_a_window_of_one_is_the_smallest():
    with pytest.raises(DataValidationError, match="window must be at least 1, got 0"):
        check_enough_rows(1000, 0, 0.2)
    with pytest.raises(ValueError, match="window must be at least 1, got 0"):
        make_windows(np.arange(5.0), 0)
    windows, targets = make_windows(np.array([1.0, 2.0]), 1)
    assert (windows.tolist(), targets.tolist()) == ([[1.0]], [2.0])


def test_windows_need_one_value_more_than_the_window():
    windows, targets = make_windows(np.array([1.0, 2.0, 3.0, 4.0]), 3)
    assert (windows.tolist(), targets.tolist()) == ([[1.0, 2.0, 3.0]], [4.0])
    with pytest.raises(ValueError, match="3 values are too few for windows of 3"):
        make_windows(np.array([1.0, 2.0, 3.0]), 3)


def test_the_scaler_uses_the_spread_and_falls_back_to_one():
    # std of [-1, 1] is 1 (population); of [-2, 2] is 2.
    assert ReturnScaler.fit(np.array([-2.0, 2.0])).scale == 2.0
    assert ReturnScaler.fit(np.array([0.5, 0.5])).scale == 1.0  # no spread
    assert ReturnScaler.fit(np.array([np.nan, 1.0])).scale == 1.0
    scaler = ReturnScaler(2.0)
    assert scaler.transform(np.array([1.0])).tolist() == [0.5]
    assert scaler.inverse_transform(np.array([0.5])).tolist() == [1.0]
    # window [e, e**2]: log prices relative to the last are [-1, 0], scaled by 2: [-0.5, 0].
    inputs = model_inputs(np.array([[math.e, math.e**2]]), scaler)
    assert inputs.shape == (1, 2, 1)
    assert inputs[0, :, 0] == pytest.approx([-0.5, 0.0])
    # last close 10, scaled return 0.5 * 2 = log return 1: 10 * e.
    assert closes_from_scaled_returns(np.array([[5.0, 10.0]]), np.array([0.5]), scaler) == pytest.approx(
        [10 * math.e]
    )


def log_errors(scores: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """actual, forecast and sigma whose |log(actual / forecast)| / sigma are `scores`."""
    return np.exp(np.array(scores)), np.ones(len(scores)), np.ones(len(scores))


# n scores 1..n: the level's rank is ceil((n + 1) * level / 100), capped at n.
@pytest.mark.parametrize(
    ("n", "q80", "q95"),
    [
        (9, 8, 9),  # ranks ceil(8.0) = 8 and ceil(9.5) = 10 -> 9
        (10, 9, 10),  # ceil(8.8) = 9 and ceil(10.45) = 11 -> 10
        (19, 16, 19),  # ceil(16.0) = 16 and ceil(19.0) = 19
        (5, 5, 5),  # ceil(4.8) = 5 and ceil(5.7) = 6 -> 5
    ],
)
def test_the_conformal_rank(n, q80, q95):
    multipliers = calibrate(*log_errors(list(range(1, n + 1))))
    assert multipliers == {80: pytest.approx(q80), 95: pytest.approx(q95)}


def test_calibration_needs_five_finite_days():
    with pytest.raises(ValueError, match="4 calibration days, need at least 5"):
        calibrate(*log_errors([1, 2, 3, 4]))
    actual, forecast, sigma = log_errors([1, 2, 3, 4, 5])
    sigma[0] = 0.0  # a score of inf: dropped
    with np.errstate(divide="ignore"), pytest.raises(ValueError, match="4 calibration days"):
        calibrate(actual, forecast, sigma)


def test_volatility_is_the_decayed_root_mean_square_of_earlier_returns():
    closes = np.exp([0.0, 0.1, 0.1])  # returns 0.1 then 0
    sigma = ewma_volatility(closes)
    assert np.isnan(sigma[:2]).all()
    assert sigma[2] == pytest.approx(0.1)
    # (0.94 * 0.01 + 0) / (0.94 + 1)
    assert sigma[3] == pytest.approx(math.sqrt(0.0094 / 1.94))
    assert latest_volatility(closes) == pytest.approx(math.sqrt(0.0094 / 1.94))
    assert ewma_volatility(closes, decay=0.5)[3] == pytest.approx(math.sqrt(0.005 / 1.5))


def test_intervals_widen_with_the_square_root_of_the_days():
    # q = 2, sigma = 0.1, 4 days ahead: 100 * exp(-+2 * 0.1 * 2).
    found = scaled_intervals(np.array([100.0]), np.array([0.1]), {80: 2.0}, 4)[80]
    assert found.lower == pytest.approx([100 * math.exp(-0.4)])
    assert found.upper == pytest.approx([100 * math.exp(0.4)])


def test_constant_intervals_are_the_training_returns_tail_quantiles():
    # returns 0.00, 0.01, ..., 0.10 (11 values): the 10% and 90% quantiles are 0.01 and 0.09; 2.5% and
    # 97.5% are 0.0025 and 0.0975 (linear between neighbours).
    closes = np.exp(np.cumsum([0.0, *np.arange(11) / 100]))
    found = constant_intervals(np.array([10.0]), closes)
    assert found[80].lower == pytest.approx([10 * math.exp(0.01)])
    assert found[80].upper == pytest.approx([10 * math.exp(0.09)])
    assert found[95].lower == pytest.approx([10 * math.exp(0.0025)])
    assert found[95].upper == pytest.approx([10 * math.exp(0.0975)])


BAND = Interval(np.array([9.0]), np.array([11.0]))


# Bounds included: 9 and 11 are inside [9, 11].
@pytest.mark.parametrize(
    ("actual", "inside"), [(8.99, 0.0), (9.0, 1.0), (10.0, 1.0), (11.0, 1.0), (11.01, 0.0)]
)
def test_coverage_includes_both_bounds(actual, inside):
    assert coverage(np.array([actual]), BAND) == inside


# Width 2, plus 2 / alpha per unit outside; at 80%, alpha = 0.2: 2 / 0.2 = 10 per unit.
@pytest.mark.parametrize(
    ("actual", "score"), [(8.0, 12.0), (9.0, 2.0), (11.0, 2.0), (12.0, 12.0), (11.5, 7.0)]
)
def test_the_interval_score_charges_ten_per_unit_outside_at_80(actual, score):
    assert interval_score(np.array([actual]), BAND, 80) == pytest.approx(score)


def test_interval_metrics_are_named_by_level_and_prefix():
    # 95%: alpha 0.05, 40 per unit: 8 is 1 below -> 2 + 40.
    metrics = interval_metrics(np.array([8.0]), {95: BAND}, prefix="naive_")
    assert metrics == {"naive_test_coverage_95": 0.0, "naive_test_interval_score_95": pytest.approx(42.0)}


# The served model needs at least `window` closes.
@pytest.mark.parametrize(("rows", "refused"), [(2, True), (3, False), (4, False)])
def test_a_request_needs_window_closes(rows, refused):
    frame = pd.DataFrame({"Close": [1.0] * rows})
    if refused:
        with pytest.raises(
            DataValidationError, match="^input has 2 rows of 'Close', the model needs at least 3$"
        ):
            closes_from_input(frame, 3)
    else:
        assert closes_from_input(frame, 3).tolist() == [1.0] * rows


@pytest.mark.parametrize(
    ("value", "problem"),
    [(0.0, "row 1 is not positive: 0"), (-1.0, "row 1 is not positive: -1"), (None, "row 1 is missing")],
)
def test_a_request_close_must_be_positive_and_present(value, problem):
    with pytest.raises(DataValidationError, match=f"^'Close' {problem}$"):
        closes_from_input(pd.DataFrame({"Close": [1.0, value]}), 1)
    assert closes_from_input(pd.DataFrame({"Close": [1.0, 1e-9]}), 1).tolist() == [1.0, 1e-9]


# horizon: 1..260 days, both included.
@pytest.mark.parametrize(
    ("horizon", "refused"), [(0, True), (1, False), (2, False), (259, False), (260, False), (261, True)]
)
def test_the_horizon_is_one_to_260_days(horizon, refused):
    if refused:
        with pytest.raises(DataValidationError, match=f"^horizon must be between 1 and 260, got {horizon}$"):
            horizon_from_params({"horizon": horizon})
    else:
        assert horizon_from_params({"horizon": np.int64(horizon)}) == horizon


def test_the_horizon_defaults_to_one_and_must_be_a_whole_number():
    assert horizon_from_params(None) == 1
    assert horizon_from_params({}) == 1
    for bad in (True, 2.0, "2"):
        with pytest.raises(DataValidationError, match="horizon must be a whole number of days"):
            horizon_from_params({"horizon": bad})

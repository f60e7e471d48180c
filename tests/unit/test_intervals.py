"""Interval maths on hand-made series: volatility, calibration, coverage and the Winkler score by hand."""

import math

import numpy as np
import pytest

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


def test_volatility_uses_only_the_returns_before_each_day():
    closes = np.array([100.0, 110.0, 99.0, 99.0])
    returns = np.diff(np.log(closes))  # into day 1, 2, 3
    sigma = ewma_volatility(closes, decay=0.5)
    assert len(sigma) == len(closes) + 1
    assert np.isnan(sigma[0]) and np.isnan(sigma[1])
    assert sigma[2] == pytest.approx(abs(returns[0]))  # day 2 knows the move into day 1 only
    assert sigma[3] == pytest.approx(math.sqrt((0.5 * returns[0] ** 2 + returns[1] ** 2) / 1.5))
    weights = np.array([0.25, 0.5, 1.0])
    assert sigma[4] == pytest.approx(math.sqrt(np.sum(weights * returns**2) / weights.sum()))
    assert latest_volatility(closes, decay=0.5) == sigma[4]
    changed = closes.copy()
    changed[3] = 50.0  # the last close changes nothing known before it
    np.testing.assert_array_equal(ewma_volatility(changed, decay=0.5)[:4], sigma[:4])


def test_volatility_widens_after_turbulent_days():
    calm = 100 * np.exp(np.cumsum(np.tile([0.005, -0.005], 50)))
    stormy = np.concatenate([calm, calm[-1] * np.exp(np.cumsum(np.tile([0.05, -0.05], 5)))])
    assert latest_volatility(stormy) > 5 * latest_volatility(calm)


def test_calibration_takes_the_conformal_quantile_of_scaled_errors():
    forecast = np.full(19, 100.0)
    log_errors = np.linspace(0.01, 0.19, 19)  # scaled errors 1..19 with sigma = 0.01
    actual = forecast * np.exp(log_errors * np.where(np.arange(19) % 2, 1, -1))
    multipliers = calibrate(actual, forecast, np.full(19, 0.01), levels=(80, 95))
    # ceil(20 * 0.80) = 16th smallest of 1..19; ceil(20 * 0.95) = 19th
    assert multipliers[80] == pytest.approx(16)
    assert multipliers[95] == pytest.approx(19)
    with pytest.raises(ValueError, match="need at least 5"):
        calibrate(actual[:4], forecast[:4], np.full(4, 0.01))


def test_scaled_intervals_are_symmetric_in_log_price_and_grow_with_the_square_root_of_days():
    [interval] = scaled_intervals(
        np.array([100.0, 100.0]), 0.01, {80: 2.0}, days_ahead=np.array([1, 4])
    ).values()
    np.testing.assert_allclose(interval.lower, [100 * math.exp(-0.02), 100 * math.exp(-0.04)])
    np.testing.assert_allclose(interval.upper, [100 * math.exp(0.02), 100 * math.exp(0.04)])


def test_coverage_and_winkler_score_by_hand():
    actual = np.array([10.0, 12.0, 7.0, 11.0])
    interval = Interval(lower=np.array([9.0, 9.0, 9.0, 9.0]), upper=np.array([11.0, 11.0, 11.0, 11.0]))
    assert coverage(actual, interval) == pytest.approx(0.5)  # 10 and 11 (bounds count as inside)
    # width 2 each; misses: 12 is 1 above, 7 is 2 below; alpha = 0.2 -> penalty 2 / 0.2 = 10 per unit
    assert interval_score(actual, interval, 80) == pytest.approx((2 * 4 + 10 * 1 + 10 * 2) / 4)
    metrics = interval_metrics(actual, {80: interval}, prefix="naive_")
    assert metrics == {"naive_test_coverage_80": 0.5, "naive_test_interval_score_80": pytest.approx(9.5)}


def test_constant_intervals_use_training_return_quantiles():
    training = 100 * np.exp(np.cumsum(np.linspace(-0.02, 0.02, 101)))
    returns = np.diff(np.log(training))
    previous = np.array([50.0, 200.0])
    intervals = constant_intervals(previous, training, levels=(80,))
    low, high = np.quantile(returns, [0.1, 0.9])
    np.testing.assert_allclose(intervals[80].lower, previous * math.exp(low))
    np.testing.assert_allclose(intervals[80].upper, previous * math.exp(high))

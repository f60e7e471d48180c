"""Metrics and baselines on small hand-computed series."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.neighbors import KNeighborsRegressor

from flow_steps.model.intervals import constant_intervals
from flow_steps.training.evaluation import (
    BASELINES,
    baseline_forecasts,
    comparison,
    directional_accuracy,
    forecast_metrics,
    mae,
    mape,
    mase,
    metrics_by_name,
    moving_average_forecast,
    naive_forecast,
    naive_mae_scale,
    rmse,
    statistical_peer_forecasts,
    up_share,
    window_regression_forecast,
)

CLOSES = np.array([10.0, 11, 13, 12, 15])  # test days: the last two, 12 and 15


def test_naive_forecast_is_the_previous_close():
    np.testing.assert_array_equal(naive_forecast(CLOSES, n_test=2), [13, 12])


def test_every_metric_of_the_naive_forecast_by_hand():
    # forecasts 13 and 12 for 12 and 15: errors -1 and +3; training closes 10, 11, 13 move 1 and 2
    metrics = forecast_metrics(
        CLOSES[-2:], naive_forecast(CLOSES, 2), CLOSES[-3:-1], naive_mae_scale(CLOSES[:3])
    )
    assert metrics["test_rmse"] == pytest.approx(math.sqrt(5))
    assert metrics["test_mae"] == pytest.approx(2.0)
    assert metrics["test_mape"] == pytest.approx((1 / 12 + 3 / 15) / 2 * 100)
    assert metrics["test_mase"] == pytest.approx(2.0 / 1.5)
    assert metrics["test_directional_accuracy"] == 0.0  # it calls "flat"; the days went down, then up


def test_naive_scores_mase_one_on_its_own_scale():
    closes = np.array([5.0, 5.5, 5.2, 6.0, 6.1, 5.9, 6.4])
    assert mase(closes[1:], closes[:-1], naive_mae_scale(closes)) == pytest.approx(1.0)


def test_rmse_mae_mape():
    assert rmse([1.0, 2, 3], [1.0, 2, 3]) == 0
    assert rmse([0.0, 0], [3.0, 4]) == pytest.approx(math.sqrt(12.5))
    assert mae([0.0, 0], [3.0, -4]) == pytest.approx(3.5)
    assert mape([100.0, 200], [110.0, 190]) == pytest.approx(7.5)


def test_directional_accuracy_and_up_share():
    previous, actual = np.array([10.0, 10, 10, 10]), np.array([11.0, 9, 10, 12])
    assert directional_accuracy(previous, actual, [10.5, 10.5, 10, 11]) == 0.75  # up, wrong, flat, up
    assert up_share(previous, actual) == 0.5


def test_moving_average_uses_the_days_before():
    np.testing.assert_allclose(moving_average_forecast(np.arange(1.0, 7), n_test=2, ma_window=3), [3.0, 4.0])


@pytest.mark.parametrize("estimator", [LinearRegression(), KNeighborsRegressor(n_neighbors=3)])
def test_window_regressions_learn_steady_growth_and_extrapolate_it(estimator):
    closes = 100 * 1.01 ** np.arange(40)  # test days climb above every training price
    forecast = window_regression_forecast(estimator, closes, n_test=10, window=5)
    np.testing.assert_allclose(forecast, closes[-10:], rtol=1e-9)


def test_no_baseline_sees_a_test_day_price_before_forecasting_it():
    rng = np.random.default_rng(0)
    closes = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, 120)))
    n_test, window = 30, 10
    original = baseline_forecasts(closes, n_test, window, ma_window=5, knn_neighbors=5)
    for day in range(len(closes) - n_test, len(closes)):
        changed = closes.copy()
        changed[day:] *= 3.0  # a shock on this test day and after it
        shocked = baseline_forecasts(changed, n_test, window, ma_window=5, knn_neighbors=5)
        known = day - (len(closes) - n_test) + 1  # forecasts up to and including this day
        for name in BASELINES:
            np.testing.assert_array_equal(shocked[name][:known], original[name][:known], err_msg=name)


def test_comparison_has_a_row_per_model_and_names_its_metrics():
    rng = np.random.default_rng(1)
    closes = 20 * np.exp(np.cumsum(rng.normal(0, 0.01, 80)))
    forecasts = {"lstm": naive_forecast(closes, 20) * 1.001, **baseline_forecasts(closes, 20, 10, 5, 5)}
    table = comparison(closes, forecasts)
    assert table["model"].tolist() == ["lstm", *BASELINES]
    assert table.set_index("model").loc["naive", "rmse_vs_naive"] == 1.0
    assert table.set_index("model").loc["naive", "mase"] == pytest.approx(
        mae(closes[-20:], closes[-21:-1]) / naive_mae_scale(closes[:-20])
    )
    metrics = metrics_by_name(table, closes[-21:-1], closes[-20:])
    expected = {f"test_{m}" for m in ("rmse", "mae", "mape", "mase", "directional_accuracy", "rmse_vs_naive")}
    assert expected <= metrics.keys()
    assert {
        "naive_test_rmse",
        "knn_test_mase",
        "moving_average_test_rmse_vs_naive",
        "test_up_share",
    } <= metrics.keys()
    assert "naive_test_rmse_vs_naive" not in metrics
    assert not [name for name in metrics if "coverage" in name]  # no intervals given, none named
    assert metrics["test_rmse_vs_naive"] == pytest.approx(metrics["test_rmse"] / metrics["naive_test_rmse"])
    assert isinstance(table, pd.DataFrame)


def test_comparison_scores_the_intervals_it_is_given():
    rng = np.random.default_rng(2)
    closes = 20 * np.exp(np.cumsum(rng.normal(0, 0.01, 80)))
    naive = naive_forecast(closes, 20)
    intervals = {"naive": constant_intervals(closes[-21:-1], closes[:-20])}
    table = comparison(closes, {"lstm": naive * 1.001, "naive": naive}, intervals).set_index("model")
    # From the definitions: the share inside the bounds, and the width plus 2 / 0.05 = 40 times the miss.
    actual, low, high = closes[-20:], intervals["naive"][80].lower, intervals["naive"][80].upper
    assert table.loc["naive", "coverage_80"] == np.mean((low <= actual) & (actual <= high))
    low, high = intervals["naive"][95].lower, intervals["naive"][95].upper
    misses = np.clip(low - actual, 0, None) + np.clip(actual - high, 0, None)
    assert table.loc["naive", "interval_score_95"] == pytest.approx(np.mean(high - low + 40 * misses))
    assert np.isnan(table.loc["lstm", "coverage_80"])
    metrics = metrics_by_name(table.reset_index(), closes[-21:-1], closes[-20:])
    assert {"naive_test_coverage_80", "naive_test_interval_score_95"} <= metrics.keys()
    assert "test_coverage_80" not in metrics


def test_statistical_peers_forecast_each_test_day_from_the_days_before_only():
    rng = np.random.default_rng(3)
    closes = 40 * np.exp(np.cumsum(rng.normal(0, 0.01, 200)))
    n_test = 20
    original = statistical_peer_forecasts(closes, n_test)
    changed = closes.copy()
    changed[-10:] *= 1.5  # the last ten test days change
    shocked = statistical_peer_forecasts(changed, n_test)
    for name in ("autoarima", "autoets"):
        assert len(original.forecasts[name]) == n_test
        np.testing.assert_allclose(shocked.forecasts[name][:11], original.forecasts[name][:11], rtol=1e-9)
        assert not np.allclose(shocked.forecasts[name][11:], original.forecasts[name][11:])
        for level in (80, 95):
            interval = original.intervals[name][level]
            assert np.all(interval.lower < original.forecasts[name])
            assert np.all(original.forecasts[name] < interval.upper)
        assert original.seconds[name] > 0


def test_mismatched_or_empty_inputs_are_refused():
    with pytest.raises(ValueError):
        rmse([1.0, 2], [1.0])
    with pytest.raises(ValueError):
        mae([], [])
    with pytest.raises(ValueError):
        naive_forecast(np.array([1.0, 2]), n_test=2)
    with pytest.raises(ValueError, match="ma_window"):
        moving_average_forecast(np.arange(1.0, 7), n_test=2, ma_window=5)

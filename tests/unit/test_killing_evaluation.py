"""Evaluation metrics and baselines: input coercion, edge sizes and wiring of the arguments.

Written against surviving mutants: each test pins a behaviour the earlier tests left open.
"""

import numpy as np
import pandas as pd
import pytest

from flow_steps.training.evaluation import (
    KNN,
    LSTM,
    METRIC_NAMES,
    baseline_forecasts,
    comparison,
    directional_accuracy,
    forecast_metrics,
    mape,
    metrics_by_name,
    naive_forecast,
    naive_mae_scale,
    up_share,
)


def test_mape_reads_numeric_text_actuals_as_floats():
    """The actual closes in the denominator are coerced to float."""
    # |10 - 11| / 10 = 0.1, |20 - 18| / 20 = 0.1: mean 0.1 -> 10 %
    assert mape(["10", "20"], ["11", "18"]) == pytest.approx(10.0)


def test_naive_mae_scale_does_not_wrap_unsigned_integer_closes():
    """Falling closes stored as unsigned integers (cents) give a positive change, not a wrap-around."""
    # changes |900 - 1000| = 100 and |950 - 900| = 50: mean 75
    assert naive_mae_scale(np.array([1000, 900, 950], dtype=np.uint32)) == 75.0


def test_naive_mae_scale_of_two_different_closes_is_their_gap():
    """Two closes are enough: one change, 12 - 10 = 2."""
    assert naive_mae_scale([10.0, 12.0]) == 2.0


def test_naive_mae_scale_refusal_names_mase():
    """Flat closes are refused with the message that names MASE."""
    with pytest.raises(ValueError, match=r"^need at least two different training closes to scale MASE$"):
        naive_mae_scale([10.0, 10.0])


def test_directional_accuracy_reads_numeric_text_as_floats():
    """previous, actual and predicted given as text are all coerced to float."""
    # day 1: 10 -> 11 up, called 12 up; day 2: 9 -> 8 down, called 7 down: 2 / 2 right
    assert directional_accuracy(["10", "9"], ["11", "8"], ["12", "7"]) == 1.0


def test_directional_accuracy_sees_a_down_day():
    """A fall from 10 to 9 called as 8 is a right call (the move is actual minus previous)."""
    assert directional_accuracy([10.0], [9.0], [8.0]) == 1.0


def test_up_share_reads_numeric_text_as_floats():
    """Closes given as text are compared as numbers ("9" > "10" as text, not as numbers)."""
    # 10 -> 9 down, 9 -> 10 up: 1 / 2
    assert up_share(["10", "9"], ["9", "10"]) == 0.5


def test_forecast_metrics_pass_previous_actual_and_predicted_to_directional_accuracy():
    """Both moves called right give a directional accuracy of 1."""
    # previous 10, 9; actual 11 (up), 8 (down); predicted 12 (up), 7 (down)
    metrics = forecast_metrics(np.array([11.0, 8.0]), np.array([12.0, 7.0]), np.array([10.0, 9.0]), 1.0)
    assert metrics["test_directional_accuracy"] == 1.0


def test_knn_baseline_uses_every_training_window_when_asked_for_more_neighbours(monkeypatch):
    """knn_neighbors above the number of training windows is capped at that number."""
    # Brute-force neighbours ask joblib for the physical cores (a subprocess) unless this is set.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    closes = np.array([10.0, 20.0, 20.0, 40.0, 80.0])
    # window 1, test day 80: training windows [10] -> 20, [20] -> 20, [20] -> 40 (3 = 5 - 1 - 1);
    # all 3 neighbours: mean log return (log 2 + 0 + log 2) / 3, so the forecast is 40 * 2 ** (2 / 3)
    forecasts = baseline_forecasts(closes, n_test=1, window=1, ma_window=2, knn_neighbors=100)
    np.testing.assert_allclose(forecasts[KNN], [40 * 2 ** (2 / 3)])


def test_comparison_scores_directional_accuracy_against_the_previous_closes():
    """A forecast that calls both test-day moves gets directional accuracy 1 in the table."""
    # test days 12 (down from 13) and 15 (up from 12); the forecast 12.5, 14 calls down then up
    table = comparison(np.array([10.0, 11, 13, 12, 15]), {"caller": np.array([12.5, 14.0])})
    assert table.loc[0, "directional_accuracy"] == 1.0


def test_naive_forecast_of_integer_closes_is_float():
    """Integer closes are coerced to float, so the forecast is a float array."""
    forecast = naive_forecast([10, 11, 12], n_test=1)
    assert forecast.dtype == np.float64
    np.testing.assert_array_equal(forecast, [11.0])


def test_metrics_by_name_reports_the_share_of_up_days():
    """test_up_share is the share of test days above the day before."""
    table = pd.DataFrame([{"model": LSTM, **dict.fromkeys(METRIC_NAMES, 1.0), "rmse_vs_naive": 1.0}])
    # 10 -> 11 up, 9 -> 8 down, 8 -> 9 up: 2 / 3
    metrics = metrics_by_name(table, np.array([10.0, 9.0, 8.0]), np.array([11.0, 8.0, 9.0]))
    assert metrics["test_up_share"] == pytest.approx(2 / 3)

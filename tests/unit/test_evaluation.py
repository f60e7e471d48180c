"""Metrics and the naive forecast on hand-computed examples."""

import math

import numpy as np
import pytest

from flow_steps.evaluation import forecast_metrics, mae, naive_forecast, rmse


def test_naive_forecast_is_the_previous_close():
    closes = np.array([10.0, 11, 13, 12, 15])
    np.testing.assert_array_equal(naive_forecast(closes, n_test=2), [13, 12])


def test_naive_metrics_by_hand():
    closes = np.array([10.0, 11, 13, 12, 15])
    # test days: 12 and 15; forecasts 13 and 12; errors -1 and 3
    metrics = forecast_metrics(closes[-2:], naive_forecast(closes, 2), prefix="naive_")
    assert metrics["naive_test_rmse"] == pytest.approx(math.sqrt(5))
    assert metrics["naive_test_mae"] == pytest.approx(2.0)


def test_rmse_and_mae():
    assert rmse([1.0, 2, 3], [1.0, 2, 3]) == 0
    assert rmse([0.0, 0], [3.0, 4]) == pytest.approx(math.sqrt(12.5))
    assert mae([0.0, 0], [3.0, -4]) == pytest.approx(3.5)


def test_mismatched_or_empty_inputs_are_refused():
    with pytest.raises(ValueError):
        rmse([1.0, 2], [1.0])
    with pytest.raises(ValueError):
        mae([], [])
    with pytest.raises(ValueError):
        naive_forecast(np.array([1.0, 2]), n_test=2)

"""Pure evaluation: error metrics and the naive "tomorrow = today" forecast."""

from __future__ import annotations

import numpy as np


def rmse(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Root mean squared error."""
    errors = _errors(actual, predicted)
    return float(np.sqrt(np.mean(errors**2)))


def mae(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(_errors(actual, predicted))))


def naive_forecast(closes: np.ndarray, n_test: int) -> np.ndarray:
    """Persistence forecast of the last `n_test` closes: each day's forecast is the day before's close."""
    closes = np.asarray(closes, dtype=float)
    if not 1 <= n_test < len(closes):
        raise ValueError(f"n_test must be in [1, {len(closes) - 1}], got {n_test}")
    return closes[-n_test - 1 : -1].copy()


def forecast_metrics(actual: np.ndarray, predicted: np.ndarray, prefix: str = "") -> dict[str, float]:
    """RMSE and MAE of a forecast, named `<prefix>test_rmse` and `<prefix>test_mae`."""
    return {
        f"{prefix}test_rmse": rmse(actual, predicted),
        f"{prefix}test_mae": mae(actual, predicted),
    }


def _errors(actual: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    actual, predicted = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    if actual.shape != predicted.shape or actual.size == 0:
        raise ValueError(f"need two non-empty arrays of one shape, got {actual.shape} and {predicted.shape}")
    return actual - predicted

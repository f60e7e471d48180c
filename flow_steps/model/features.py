"""Model features: split sizes, sliding windows, relative log prices and the return scaler.

Pure numpy; the served model imports this module, so it stays free of MLflow, pandas I/O and TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flow_steps.config.errors import DataValidationError

MIN_TRAIN_SAMPLES = 30
MIN_TEST_ROWS = 5


def holdout_size(n_rows: int, test_fraction: float) -> int:
    """Number of rows at the end of the series that form the test set (test_fraction as checked by
    flow_steps.config.declarations.TEST_FRACTION)."""
    return max(1, round(n_rows * test_fraction))


def minimum_rows(window: int, test_fraction: float) -> int:
    """Fewest rows that leave `MIN_TRAIN_SAMPLES` training windows and `MIN_TEST_ROWS` test days."""
    n_rows = window + MIN_TRAIN_SAMPLES + MIN_TEST_ROWS
    while not _enough_rows(n_rows, window, test_fraction):
        n_rows += 1
    return n_rows


def check_enough_rows(n_rows: int, window: int, test_fraction: float) -> None:
    """Raise naming the shortfall and the parameters to change when the series is too short."""
    if window < 1:
        raise DataValidationError(f"window must be at least 1, got {window}")
    if not _enough_rows(n_rows, window, test_fraction):
        raise DataValidationError(
            f"{n_rows} rows of prices, but window={window} and test_fraction={test_fraction} "
            f"need at least {minimum_rows(window, test_fraction)}: lower window, raise "
            "max_row_limit or use a longer price history"
        )


def _enough_rows(n_rows: int, window: int, test_fraction: float) -> bool:
    n_test = holdout_size(n_rows, test_fraction)
    return n_test >= MIN_TEST_ROWS and n_rows - n_test - window >= MIN_TRAIN_SAMPLES


def make_windows(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Sliding windows: X[i] = values[i : i + window], y[i] = values[i + window]."""
    values = np.asarray(values, dtype=float)
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    n_samples = len(values) - window
    if n_samples < 1:
        raise ValueError(f"{len(values)} values are too few for windows of {window}")
    windows = np.lib.stride_tricks.sliding_window_view(values, window)[:n_samples].copy()
    return windows, values[window:].copy()


def relative_log_prices(windows: np.ndarray) -> np.ndarray:
    """Each window's log prices relative to its last price: log(p / p_last), so the last is 0.

    This makes a window independent of the price level, so a model trained on prices of 20 to 40
    reads a window of prices around 300 the same way.
    """
    windows = np.asarray(windows, dtype=float)
    return np.log(windows) - np.log(windows[:, -1:])


def next_log_returns(windows: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Log return from each window's last price to its target: log(target / p_last)."""
    windows = np.asarray(windows, dtype=float)
    return np.log(np.asarray(targets, dtype=float)) - np.log(windows[:, -1])


@dataclass(frozen=True)
class ReturnScaler:
    """Divides log returns by their training-period standard deviation, so the LSTM sees unit scale.

    Fit on training targets only: the test period never shapes the preprocessing.
    """

    scale: float

    @classmethod
    def fit(cls, training_log_returns: np.ndarray) -> ReturnScaler:
        spread = float(np.std(np.asarray(training_log_returns, dtype=float)))
        return cls(scale=spread if np.isfinite(spread) and spread > 0 else 1.0)

    def transform(self, log_returns: np.ndarray) -> np.ndarray:
        return np.asarray(log_returns, dtype=float) / self.scale

    def inverse_transform(self, scaled: np.ndarray) -> np.ndarray:
        return np.asarray(scaled, dtype=float) * self.scale


def model_inputs(windows: np.ndarray, scaler: ReturnScaler) -> np.ndarray:
    """LSTM input for windows of raw closes: scaled relative log prices, shape (n, window, 1)."""
    return scaler.transform(relative_log_prices(windows))[..., np.newaxis]


def closes_from_scaled_returns(
    windows: np.ndarray, scaled_returns: np.ndarray, scaler: ReturnScaler
) -> np.ndarray:
    """Next-day closes from each window's last close and the model's scaled log return."""
    last_closes = np.asarray(windows, dtype=float)[:, -1]
    return last_closes * np.exp(scaler.inverse_transform(np.ravel(scaled_returns)))

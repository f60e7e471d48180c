"""Pure evaluation: error metrics and the baselines every model is shown against.

Every forecast here is one step ahead from true past prices: the forecast of test day t uses closes
before t only. "The last `n_test` closes" are the test days throughout.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from flow_steps.config.errors import PipelineError
from flow_steps.config.names import METRIC_TEST_RMSE_VS_NAIVE
from flow_steps.model.features import MIN_TEST_ROWS, make_windows, next_log_returns, relative_log_prices
from flow_steps.model.intervals import LEVELS, Interval, coverage, interval_score

if TYPE_CHECKING:
    from sklearn.base import RegressorMixin

NAIVE = "naive"
MOVING_AVERAGE = "moving_average"
LINEAR_REGRESSION = "linear_regression"
KNN = "knn"
AUTOARIMA = "autoarima"
AUTOETS = "autoets"
LSTM = "lstm"
BASELINES = (NAIVE, MOVING_AVERAGE, LINEAR_REGRESSION, KNN)
STATISTICAL_PEERS = (AUTOARIMA, AUTOETS)  # statsforecast's AutoARIMA and AutoETS
METRIC_NAMES = ("rmse", "mae", "mape", "mase", "directional_accuracy")
INTERVAL_METRIC_NAMES = tuple(
    f"{name}_{level}" for level in LEVELS for name in ("coverage", "interval_score")
)

logger = logging.getLogger(__name__)


def rmse(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Root mean squared error."""
    errors = _errors(actual, predicted)
    return float(np.sqrt(np.mean(errors**2)))


def mae(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(_errors(actual, predicted))))


def mape(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute percentage error, in percent of the actual value."""
    return float(np.mean(np.abs(_errors(actual, predicted)) / np.abs(np.asarray(actual, dtype=float))) * 100)


def naive_mae_scale(training_closes: np.ndarray) -> float:
    """In-sample MAE of the naive forecast: mean absolute day-to-day change of the training closes."""
    changes = np.abs(np.diff(np.asarray(training_closes, dtype=float)))
    if changes.size == 0 or not np.any(changes > 0):
        raise ValueError("need at least two different training closes to scale MASE")
    return float(np.mean(changes))


def mase(actual: np.ndarray, predicted: np.ndarray, scale: float) -> float:
    """Mean absolute scaled error: MAE divided by the naive forecast's in-sample MAE."""
    return mae(actual, predicted) / scale


def directional_accuracy(previous: np.ndarray, actual: np.ndarray, predicted: np.ndarray) -> float:
    """Share of days whose move from the previous close (up, down or flat) was called right.

    The naive forecast calls every day flat, so it scores only on days that did not move.
    """
    previous = np.asarray(previous, dtype=float)
    called = np.sign(np.asarray(predicted, dtype=float) - previous)
    happened = np.sign(np.asarray(actual, dtype=float) - previous)
    return float(np.mean(called == happened))


def up_share(previous: np.ndarray, actual: np.ndarray) -> float:
    """Share of days that closed above the day before: the directional accuracy of "always up"."""
    return float(np.mean(np.asarray(actual, dtype=float) > np.asarray(previous, dtype=float)))


def forecast_metrics(
    actual: np.ndarray, predicted: np.ndarray, previous: np.ndarray, mase_scale: float, prefix: str = ""
) -> dict[str, float]:
    """RMSE, MAE, MAPE, MASE and directional accuracy, named `<prefix>test_<metric>`."""
    values = {
        "rmse": rmse(actual, predicted),
        "mae": mae(actual, predicted),
        "mape": mape(actual, predicted),
        "mase": mase(actual, predicted, mase_scale),
        "directional_accuracy": directional_accuracy(previous, actual, predicted),
    }
    return {f"{prefix}test_{name}": value for name, value in values.items()}


def naive_forecast(closes: np.ndarray, n_test: int) -> np.ndarray:
    """Persistence forecast of the last `n_test` closes: each day's forecast is the day before's close."""
    closes = _checked(closes, n_test)
    return closes[-n_test - 1 : -1].copy()


def moving_average_forecast(closes: np.ndarray, n_test: int, ma_window: int) -> np.ndarray:
    """Each test day's forecast is the mean of the `ma_window` closes before it."""
    closes = _checked(closes, n_test)
    if not 1 <= ma_window <= len(closes) - n_test:
        raise ValueError(f"ma_window must be in [1, {len(closes) - n_test}], got {ma_window}")
    cumulative = np.concatenate([[0.0], np.cumsum(closes)])
    ends = np.arange(len(closes) - n_test, len(closes))  # forecast of day t averages closes[t - w : t]
    return (cumulative[ends] - cumulative[ends - ma_window]) / ma_window


def window_regression_forecast(
    estimator: RegressorMixin, closes: np.ndarray, n_test: int, window: int
) -> np.ndarray:
    """Fit `estimator` on training windows (relative log prices -> next log return) and forecast.

    Windows are taken relative to their last close, as the LSTM's are, so the baseline reads a
    price level it has never seen the same way as a familiar one.
    """
    closes = _checked(closes, n_test)
    windows, targets = make_windows(closes, window)
    first_test = len(closes) - n_test - window
    if first_test < 1:
        raise ValueError(f"{len(closes)} closes leave no training window of {window} before the test days")
    estimator.fit(
        relative_log_prices(windows[:first_test]),
        next_log_returns(windows[:first_test], targets[:first_test]),
    )
    test_windows = windows[first_test:]
    return test_windows[:, -1] * np.exp(estimator.predict(relative_log_prices(test_windows)))


def baseline_forecasts(
    closes: np.ndarray, n_test: int, window: int, ma_window: int, knn_neighbors: int
) -> dict[str, np.ndarray]:
    """The forecasts of the last `n_test` closes by every baseline, each from true past prices."""
    # scikit-learn is imported here, not with the module: scoring (register_model) needs none of it.
    from sklearn.linear_model import LinearRegression
    from sklearn.neighbors import KNeighborsRegressor

    n_training_windows = len(closes) - n_test - window
    return {
        NAIVE: naive_forecast(closes, n_test),
        MOVING_AVERAGE: moving_average_forecast(closes, n_test, ma_window),
        LINEAR_REGRESSION: window_regression_forecast(LinearRegression(), closes, n_test, window),
        KNN: window_regression_forecast(
            KNeighborsRegressor(n_neighbors=min(knn_neighbors, n_training_windows)), closes, n_test, window
        ),
    }


@dataclass
class PeerForecasts:
    """statsforecast's models on the test days: forecasts, their own intervals, seconds taken."""

    forecasts: dict[str, np.ndarray]
    intervals: dict[str, dict[int, Interval]]
    seconds: dict[str, float]


def statistical_peer_forecasts(
    closes: np.ndarray, n_test: int, levels: tuple[int, ...] = LEVELS
) -> PeerForecasts:
    """AutoARIMA and AutoETS fitted once on the closes before the test days, then each test day forecast
    one step ahead from the true closes before it (statsforecast's cross-validation, `refit=False`)."""
    from statsforecast import StatsForecast  # imported here: only training needs it (about 2 s)
    from statsforecast.models import AutoARIMA, AutoETS

    closes = _checked(closes, n_test)
    frame = pd.DataFrame({"unique_id": "series", "ds": np.arange(len(closes)), "y": closes})
    peers = PeerForecasts({}, {}, {})
    for name, model in ((AUTOARIMA, AutoARIMA()), (AUTOETS, AutoETS())):
        started = time.perf_counter()
        found = StatsForecast(models=[model], freq=1, n_jobs=1).cross_validation(
            df=frame, h=1, step_size=1, n_windows=n_test, refit=False, level=list(levels)
        )
        peers.seconds[name] = time.perf_counter() - started
        column = str(model)
        peers.forecasts[name] = found[column].to_numpy(dtype=float)
        peers.intervals[name] = {
            level: Interval(
                found[f"{column}-lo-{level}"].to_numpy(dtype=float),
                found[f"{column}-hi-{level}"].to_numpy(dtype=float),
            )
            for level in levels
        }
        logger.info("%s fitted and forecast %d test days in %.1f s", column, n_test, peers.seconds[name])
    return peers


def comparison(
    closes: np.ndarray,
    forecasts: dict[str, np.ndarray],
    intervals: dict[str, dict[int, Interval]] | None = None,
) -> pd.DataFrame:
    """One row per model: every metric, the RMSE ratio to the naive forecast on the same days, and for
    models with intervals their coverage and interval score at each level (NaN for the others)."""
    closes = np.asarray(closes, dtype=float)
    n_test = len(next(iter(forecasts.values())))
    actual, previous = closes[-n_test:], closes[-n_test - 1 : -1]
    scale = naive_mae_scale(closes[:-n_test])
    rows = []
    for name, predicted in forecasts.items():
        metrics = forecast_metrics(actual, predicted, previous, scale)
        row = {"model": name, **{metric: metrics[f"test_{metric}"] for metric in METRIC_NAMES}}
        for level, interval in (intervals or {}).get(name, {}).items():
            row[f"coverage_{level}"] = coverage(actual, interval)
            row[f"interval_score_{level}"] = interval_score(actual, interval, level)
        rows.append(row)
    table = pd.DataFrame(rows)
    for column in INTERVAL_METRIC_NAMES:
        if column not in table:
            table[column] = np.nan
    naive_rmse = rmse(actual, naive_forecast(closes, n_test))
    table["rmse_vs_naive"] = table["rmse"] / naive_rmse
    return table


def _checked(closes: np.ndarray, n_test: int) -> np.ndarray:
    closes = np.asarray(closes, dtype=float)
    if not 1 <= n_test < len(closes):
        raise ValueError(f"n_test must be in [1, {len(closes) - 1}], got {n_test}")
    return closes


def _errors(actual: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    actual, predicted = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    if actual.shape != predicted.shape or actual.size == 0:
        raise ValueError(f"need two non-empty arrays of one shape, got {actual.shape} and {predicted.shape}")
    return actual - predicted


def metrics_by_name(table: pd.DataFrame, previous: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """Flatten a comparison table into MLflow metric names.

    The LSTM's metrics are `test_<metric>`, a baseline's `<baseline>_test_<metric>` (interval coverage
    and score too, `test_coverage_80`, `naive_test_interval_score_95`, ...); RMSE ratios to
    the naive forecast are `test_rmse_vs_naive` and `<baseline>_test_rmse_vs_naive`; `test_up_share`
    is the share of up days (the directional accuracy of "always up").
    """
    metrics: dict[str, float] = {}
    for row in table.to_dict("records"):
        prefix = "" if row["model"] == LSTM else f"{row['model']}_"
        metrics.update({f"{prefix}test_{name}": float(row[name]) for name in METRIC_NAMES})
        metrics.update(
            {
                f"{prefix}test_{name}": float(row[name])
                for name in INTERVAL_METRIC_NAMES
                if name in row and np.isfinite(row[name])
            }
        )
        if row["model"] != NAIVE:
            metrics[f"{prefix}{METRIC_TEST_RMSE_VS_NAIVE}"] = float(row["rmse_vs_naive"])
    metrics["test_up_share"] = up_share(previous, actual)
    return metrics


def backtest_ranges(n_rows: int, n_test: int, folds: int) -> list[tuple[int, int]]:
    """Cut the test period (the last `n_test` rows) into `folds` consecutive (start, end) row ranges."""
    if folds > n_test // MIN_TEST_ROWS:
        raise PipelineError(
            f"backtest_folds={folds} would leave fewer than {MIN_TEST_ROWS} test days per fold "
            f"({n_test} test days): lower backtest_folds or raise test_fraction"
        )
    blocks = np.array_split(np.arange(n_rows - n_test, n_rows), folds)
    return [(int(block[0]), int(block[-1]) + 1) for block in blocks]


def backtest_summary(
    tables: list[pd.DataFrame], metrics: list[dict[str, float]]
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-fold rows (fold, model, metrics) and the mean of every metric over folds, as `backtest_*`."""
    table = pd.concat([fold.assign(fold=index) for index, fold in enumerate(tables)], ignore_index=True)
    table = table[["fold", *tables[0].columns]]
    means = {f"backtest_{name}": float(np.mean([fold[name] for fold in metrics])) for name in metrics[0]}
    return table, means

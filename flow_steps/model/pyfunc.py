"""The served model: the pyfunc wrapper that turns raw closes into forecasts with a Keras LSTM.

Logged as code (`flow_steps/model/from_code.py`) with only the modules this file imports, so it needs
nothing of training, evaluation or the pipeline.
"""

from __future__ import annotations

import keras
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from flow_steps.config.errors import DataValidationError
from flow_steps.config.names import (
    ADAPTIVE_INTERVALS,
    DAYS_AHEAD_COLUMN,
    FORECAST_COLUMN,
    MODEL_CONFIG_TRAINED_THROUGH,
    MODEL_CONFIG_WINDOW,
    STATIC_INTERVALS,
)
from flow_steps.model.adaptive import DEFAULT_INTERVALS, OTHER_INTERVALS, adaptive_runs, answer_columns
from flow_steps.model.features import ReturnScaler, closes_from_scaled_returns, make_windows, model_inputs
from flow_steps.model.intervals import (
    LEVELS,
    ewma_volatility,
    latest_volatility,
    scaled_intervals,
    scaled_scores,
)
from flow_steps.model.request_checks import closes_from_input, horizon_from_params

KERAS_ARTIFACT = "keras_model"
WINDOW_CONFIG = MODEL_CONFIG_WINDOW
RETURN_SCALE_CONFIG = "return_scale"
SCORES_CONFIG = "calibration_scores"  # ascending: what the adaptive intervals start from
TRAINED_THROUGH_CONFIG = MODEL_CONFIG_TRAINED_THROUGH


def multiplier_config(level: int) -> str:
    """The model config key of the calibrated interval multiplier at `level`."""
    return f"interval_multiplier_{level}"


def predict_next_closes(
    keras_model: keras.Model, windows: np.ndarray, scaler: ReturnScaler, chunk_size: int = 4096
) -> np.ndarray:
    """Next-day close after each window of raw closes, in the windows' own units.

    `predict_on_batch` runs Keras' compiled predict function without `predict()`'s per-call set-up
    (about 6 ms instead of 70 ms for one window on 2 cores; an eager call takes 280 ms); chunks bound
    the memory of large batches.
    """
    inputs = model_inputs(windows, scaler)
    if len(inputs) == 0:
        return np.empty(0)
    scaled_returns = np.concatenate(
        [
            np.asarray(keras_model.predict_on_batch(inputs[start : start + chunk_size])).reshape(-1)
            for start in range(0, len(inputs), chunk_size)
        ]
    )
    return closes_from_scaled_returns(windows, scaled_returns, scaler)


def recursive_forecast(
    keras_model: keras.Model, closes: np.ndarray, scaler: ReturnScaler, window: int, horizon: int
) -> np.ndarray:
    """The next `horizon` closes after `closes`, each forecast fed back as the newest close."""
    history = list(np.asarray(closes, dtype=float)[-window:])
    forecasts = []
    for _ in range(horizon):
        next_close = float(predict_next_closes(keras_model, np.array([history[-window:]]), scaler)[0])
        forecasts.append(next_close)
        history.append(next_close)
    return np.array(forecasts)


class LstmPriceForecaster(mlflow.pyfunc.PythonModel):
    """Pyfunc model: a DataFrame of chronological closes (column `Close`) -> the next closes.

    The answer has one row per trading day ahead (`days_ahead`, `forecast_close`, and the 80% and
    95% prediction intervals `lower_80`, `upper_80`, `lower_95`, `upper_95`): one row by default,
    `horizon` rows when the request's params ask for more, forecast recursively. The intervals scale
    the calibrated multipliers by the volatility of the request's closes (flow_steps/model/intervals.py);
    when the request carries more than `window` closes, the model forecasts each later close from the
    `window` before it and adapts the multipliers to its misses, in order (flow_steps/model/adaptive.py).
    `lower_<level>` / `upper_<level>` are the default way's intervals (DEFAULT_INTERVALS), the
    other way's come as `static_...` or `adaptive_...`.
    It carries its own preprocessing (window, relative log prices, return scale), so it takes raw
    prices at any level, in the units the source gives, and answers in the same units. Logged as
    code (`flow_steps/model/from_code.py`), with `window`, `return_scale` and the interval multipliers
    in its model config.
    """

    def __init__(
        self,
        window: int | None = None,
        return_scale: float | None = None,
        multipliers: dict[int, float] | None = None,
        scores: np.ndarray | None = None,
    ):
        self.window = window
        self.return_scale = return_scale
        self.multipliers = multipliers or {}
        self.scores = None if scores is None else np.sort(np.asarray(scores, dtype=float))
        self._keras_model: keras.Model | None = None

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.window = int(context.model_config[WINDOW_CONFIG])
        self.return_scale = float(context.model_config[RETURN_SCALE_CONFIG])
        self.multipliers = {level: float(context.model_config[multiplier_config(level)]) for level in LEVELS}
        scores = context.model_config.get(SCORES_CONFIG)  # None in a model logged before adaptive intervals
        self.scores = None if scores is None else np.sort(np.asarray(scores, dtype=float))
        self._keras_model = keras.saving.load_model(context.artifacts[KERAS_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        try:
            closes = closes_from_input(model_input, self.window)
            horizon = horizon_from_params(params)
        except DataValidationError as error:
            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from error
        forecasts = recursive_forecast(
            self._keras_model, closes, ReturnScaler(self.return_scale), self.window, horizon
        )
        days_ahead = np.arange(1, horizon + 1)
        answer = pd.DataFrame({DAYS_AHEAD_COLUMN: days_ahead, FORECAST_COLUMN: forecasts})
        sigma = latest_volatility(closes)
        for method, multipliers in self.multipliers_by_method(closes).items():
            intervals = scaled_intervals(forecasts, sigma, multipliers, days_ahead)
            for level, interval in intervals.items():
                lower, upper = answer_columns(method, level)
                answer[lower], answer[upper] = interval.lower, interval.upper
        return answer

    def multipliers_by_method(self, closes: np.ndarray) -> dict[str, dict[int, float]]:
        """The multipliers for the day after the last close: static (as calibrated) and adaptive (ACI
        over the closes after the first `window`, each forecast one step ahead from the `window` before
        it). A model logged without its calibration scores has the static ones only."""
        if self.scores is None:
            return {DEFAULT_INTERVALS: self.multipliers}
        adaptive = {level: self.multipliers[level] for level in LEVELS}  # alpha_1 = alpha: static's
        if len(closes) > self.window:
            windows, actual = make_windows(closes, self.window)
            forecasts = predict_next_closes(self._keras_model, windows, ReturnScaler(self.return_scale))
            sigma = ewma_volatility(closes)[self.window : len(closes)]
            runs = adaptive_runs(self.scores, scaled_scores(actual, forecasts, sigma), LEVELS)
            adaptive = {level: run.next_multiplier for level, run in runs.items()}
        both = {STATIC_INTERVALS: self.multipliers, ADAPTIVE_INTERVALS: adaptive}
        return {method: both[method] for method in (DEFAULT_INTERVALS, OTHER_INTERVALS)}

    def one_step_forecasts(self, closes: np.ndarray, n_last: int) -> np.ndarray:
        """Forecast each of the last `n_last` closes from the `window` closes before it (batch scoring)."""
        closes = np.asarray(closes, dtype=float)
        if len(closes) - n_last < self.window:
            raise DataValidationError(
                f"forecasting the last {n_last} of {len(closes)} closes needs {self.window} closes "
                "before the first of them"
            )
        windows, _ = make_windows(closes, self.window)
        return predict_next_closes(self._keras_model, windows[-n_last:], ReturnScaler(self.return_scale))

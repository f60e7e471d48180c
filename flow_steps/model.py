"""The Keras LSTM and the MLflow pyfunc wrapper that serves it on raw prices."""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras
import mlflow.pyfunc
import numpy as np
import pandas as pd
import tensorflow as tf
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from flow_steps.constants import DAYS_AHEAD_COLUMN, FORECAST_COLUMN, HORIZON_PARAM, MAX_HORIZON
from flow_steps.errors import DataValidationError
from flow_steps.preparation import (
    ReturnScaler,
    closes_from_input,
    closes_from_scaled_returns,
    make_windows,
    model_inputs,
    next_log_returns,
)

KERAS_ARTIFACT = "keras_model"
WINDOW_CONFIG = "window"
RETURN_SCALE_CONFIG = "return_scale"


def build_lstm(window: int, units: int, learning_rate: float = 1e-3) -> keras.Model:
    """Two stacked LSTM layers of `units` and a Dense output: one scaled log return per window."""
    model = keras.Sequential(
        [
            keras.Input(shape=(window, 1)),
            keras.layers.LSTM(units, return_sequences=True),
            keras.layers.LSTM(units),
            keras.layers.Dense(1),
        ],
        name="stock_lstm",
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="mse")
    return model


@dataclass
class FittedLstm:
    """A trained LSTM with the preprocessing it was trained with and how training went."""

    keras_model: keras.Model
    scaler: ReturnScaler
    history: dict[str, list[float]]
    best_epoch: int
    n_fit_samples: int
    n_validation_samples: int
    train_seconds: float


def fit_lstm(
    training_closes: np.ndarray,
    window: int,
    units: int,
    epochs: int,
    batch_size: int,
    validation_fraction: float,
    patience: int,
    seed: int,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> FittedLstm:
    """Train on windows of `training_closes`, keeping the latest `validation_fraction` for validation.

    The scaler is fit on the fit windows only; training stops when validation loss has not improved
    for `patience` epochs, and the weights of the best validation epoch are kept. The same inputs
    and seed give the same model.
    """
    windows, targets = make_windows(training_closes, window)
    n_validation = max(1, round(len(windows) * validation_fraction))
    if len(windows) - n_validation < 1:
        raise ValueError(f"{len(windows)} training windows leave none to fit after validation")
    fit_windows, fit_targets = windows[:-n_validation], targets[:-n_validation]
    validation_windows, validation_targets = windows[-n_validation:], targets[-n_validation:]
    scaler = ReturnScaler.fit(next_log_returns(fit_windows, fit_targets))

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    model = build_lstm(window, units)
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    started = time.perf_counter()
    history = model.fit(
        model_inputs(fit_windows, scaler),
        scaler.transform(next_log_returns(fit_windows, fit_targets)),
        validation_data=(
            model_inputs(validation_windows, scaler),
            scaler.transform(next_log_returns(validation_windows, validation_targets)),
        ),
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,  # windows are independent samples, all before the validation and test days
        callbacks=[stopper, *(callbacks or [])],
        verbose=0,
    )
    return FittedLstm(
        keras_model=model,
        scaler=scaler,
        history={name: [float(value) for value in values] for name, values in history.history.items()},
        best_epoch=int(stopper.best_epoch),
        n_fit_samples=len(fit_windows),
        n_validation_samples=n_validation,
        train_seconds=time.perf_counter() - started,
    )


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


def horizon_from_params(params: dict | None) -> int:
    """The `horizon` request parameter (default 1), refused outside 1..MAX_HORIZON."""
    value = (params or {}).get(HORIZON_PARAM, 1)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DataValidationError(f"{HORIZON_PARAM} must be a whole number of days, got {value!r}")
    if not 1 <= value <= MAX_HORIZON:
        raise DataValidationError(f"{HORIZON_PARAM} must be between 1 and {MAX_HORIZON}, got {value}")
    return int(value)


class LstmPriceForecaster(mlflow.pyfunc.PythonModel):
    """Pyfunc model: a DataFrame of chronological closes (column `Close`) -> the next closes.

    The answer has one row per business day ahead (`days_ahead`, `forecast_close`): one row by
    default, `horizon` rows when the request's params ask for more, forecast recursively.
    It carries its own preprocessing (window, relative log prices, return scale), so it takes raw
    prices at any level, in the units the source gives, and answers in the same units. Logged as
    code (`flow_steps/pyfunc_model.py`), with `window` and `return_scale` in its model config.
    """

    def __init__(self, window: int | None = None, return_scale: float | None = None):
        self.window = window
        self.return_scale = return_scale
        self._keras_model: keras.Model | None = None

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.window = int(context.model_config[WINDOW_CONFIG])
        self.return_scale = float(context.model_config[RETURN_SCALE_CONFIG])
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
        return pd.DataFrame({DAYS_AHEAD_COLUMN: np.arange(1, horizon + 1), FORECAST_COLUMN: forecasts})

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

"""Training: the Keras LSTM, fitted with early stopping, and the LSTM and baselines on one split.

Imports TensorFlow: only what trains or scores imports this module.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from flow_steps.config.names import DATE_COLUMN, INTERVAL_METHODS, PRICE_COLUMN, interval_method_prefix
from flow_steps.config.values import TrainParams
from flow_steps.model.adaptive import DEFAULT_INTERVALS, both_intervals
from flow_steps.model.features import ReturnScaler, holdout_size, make_windows, model_inputs, next_log_returns
from flow_steps.model.intervals import (
    FEW_CALIBRATION_DAYS,
    LEVELS,
    Interval,
    calibration_scores,
    constant_intervals,
    ewma_volatility,
    interval_metrics,
    multipliers_from_scores,
)
from flow_steps.model.pyfunc import predict_next_closes
from flow_steps.runtime.interruption import raise_if_interrupted
from flow_steps.training.evaluation import (
    LSTM,
    NAIVE,
    backtest_ranges,
    baseline_forecasts,
    comparison,
    metrics_by_name,
    statistical_peer_forecasts,
)
from flow_steps.training.network import free_when_gone, seeded_model

logger = logging.getLogger(__name__)

KERAS_LOSS, KERAS_VAL_LOSS = "loss", "val_loss"  # Keras's names in a fit's logs and history


THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def limit_threads_from_environment() -> None:
    """Use at most the threads TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS allow (a universe task sets
    them to the CPUs Ray gave it); call before TensorFlow runs its first operation."""
    intra, inter = (os.environ.get(name) for name in THREAD_VARIABLES)
    if intra:
        tf.config.threading.set_intra_op_parallelism_threads(int(intra))
    if inter:
        tf.config.threading.set_inter_op_parallelism_threads(int(inter))


# Fits of little work run eagerly: tracing the LSTM's graph costs about 2.5 CPU-seconds, more than a few
# dozen eager steps over short windows (300 days, window 10, one epoch: 4.1 s traced, 1.7 s eager), while
# an eager step grows with the window (the LSTM steps through it in Python). The work is counted as
# batches x window days. The same parameters always choose the same mode, so results stay repeatable;
# the saved model keeps no trace of the choice (it is not part of its compile config).
EAGER_MAX_WORK = 640


def training_steps(n_samples: int, batch_size: int, epochs: int) -> int:
    """Batches a fit of `epochs` over `n_samples` runs at most."""
    return -(-n_samples // batch_size) * epochs


@dataclass
class FittedLstm:
    """A trained LSTM with the preprocessing it was trained with and how training went.

    It owns `keras_model`: once it is gone, the process may train that model again (`seeded_model`), so
    keep the FittedLstm, not only its model, for as long as the model is used."""

    keras_model: keras.Model
    scaler: ReturnScaler
    history: dict[str, list[float]]
    best_epoch: int
    n_fit_samples: int
    n_validation_samples: int
    train_seconds: float


class EpochProgress(keras.callbacks.Callback):
    """One log line per epoch: epoch, training loss, validation loss, seconds since training started."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs
        self.started = time.perf_counter()

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        logger.info(
            "epoch %d/%d: train loss %.4f, validation loss %.4f, %.1f s",
            epoch + 1,
            self.epochs,
            logs.get(KERAS_LOSS, float("nan")),
            logs.get(KERAS_VAL_LOSS, float("nan")),
            time.perf_counter() - self.started,
        )


class StopWhenInterrupted(keras.callbacks.Callback):
    """Raise a SIGINT/SIGTERM held while TensorFlow works (`interruption.interruptions_held`) after the
    batch it arrived in, so that training stops within a batch."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        raise_if_interrupted()

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        raise_if_interrupted()


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

    if tf.config.list_physical_devices("GPU"):
        # GPU kernels (cuDNN) need op determinism for repeatable results. On the CPU the ops used here
        # are deterministic already (same seed, same metrics: tests/unit/test_training.py), and op
        # determinism would only make tf.data log a spurious error about `use_unbounded_threadpool`.
        tf.config.experimental.enable_op_determinism()
    model = seeded_model(window, units, seed)
    # Keras traces a graph for training: seconds that pay off over many steps, not over a handful.
    model.run_eagerly = training_steps(len(fit_windows), batch_size, epochs) * window <= EAGER_MAX_WORK
    stopper = keras.callbacks.EarlyStopping(
        monitor=KERAS_VAL_LOSS, patience=patience, restore_best_weights=True
    )
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
        callbacks=[stopper, EpochProgress(epochs), StopWhenInterrupted(), *(callbacks or [])],
        verbose=0,
    )
    fitted = FittedLstm(
        keras_model=model,
        scaler=scaler,
        history={name: [float(value) for value in values] for name, values in history.history.items()},
        best_epoch=int(stopper.best_epoch),
        n_fit_samples=len(fit_windows),
        n_validation_samples=n_validation,
        train_seconds=time.perf_counter() - started,
    )
    if not model.run_eagerly:
        free_when_gone(fitted, fitted.keras_model, window, units)
    logger.info(
        "Trained %d epochs in %.1f s; kept the best, epoch %d (validation loss %.4f)",
        len(fitted.history[KERAS_LOSS]),
        fitted.train_seconds,
        fitted.best_epoch + 1,
        fitted.history[KERAS_VAL_LOSS][fitted.best_epoch],
    )
    return fitted


@dataclass
class SplitEvaluation:
    """The LSTM and the baselines fitted before, and scored on, one block of test days."""

    lstm: FittedLstm
    dates: pd.Series
    actual: np.ndarray
    forecasts: dict[str, np.ndarray]  # model name -> forecast of each test day
    intervals: dict[str, dict[int, Interval]]  # model name -> level -> interval of each test day
    multipliers: dict[int, float]  # the LSTM's calibrated multiplier of volatility, per level
    scores: np.ndarray  # the LSTM's calibration scores, ascending (what adaptive intervals start from)
    lstm_intervals: dict[str, dict[int, Interval]]  # static and adaptive: way -> level -> interval
    table: pd.DataFrame  # one row per model, every metric
    metrics: dict[str, float]  # the table as MLflow metric names, and seconds to fit the peers


def calibrate_on_validation(lstm: FittedLstm, training_closes: np.ndarray, window: int) -> np.ndarray:
    """The LSTM's calibration scores, ascending: its errors on the validation windows (after the fit
    windows, before the test days) scaled by the volatility known before each validation day."""
    windows, targets = make_windows(training_closes, window)
    n_validation = lstm.n_validation_samples
    forecasts = predict_next_closes(lstm.keras_model, windows[-n_validation:], lstm.scaler)
    sigma = ewma_volatility(training_closes)[len(training_closes) - n_validation : len(training_closes)]
    if n_validation < FEW_CALIBRATION_DAYS:
        logger.warning(
            "Prediction intervals are calibrated on only %d validation days: the 95%% interval may be "
            "too narrow; use a longer price history or a larger validation_fraction",
            n_validation,
        )
    return calibration_scores(targets[-n_validation:], forecasts, sigma)


def evaluate_split(
    prices: pd.DataFrame,
    n_test: int,
    params: TrainParams,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> SplitEvaluation:
    """Fit the LSTM and the baselines on all rows but the last `n_test`, forecast those one step ahead."""
    closes = prices[PRICE_COLUMN].to_numpy(dtype=float)
    lstm = fit_lstm(
        closes[:-n_test],
        window=params.window,
        units=params.lstm_units,
        epochs=params.epochs,
        batch_size=params.batch_size,
        validation_fraction=params.validation_fraction,
        patience=params.patience,
        seed=params.seed,
        callbacks=callbacks,
    )
    windows, _ = make_windows(closes, params.window)
    peers = statistical_peer_forecasts(closes, n_test)
    forecasts = {
        LSTM: predict_next_closes(lstm.keras_model, windows[-n_test:], lstm.scaler),
        **baseline_forecasts(closes, n_test, params.window, params.ma_window, params.knn_neighbors),
        **peers.forecasts,
    }
    scores = calibrate_on_validation(lstm, closes[:-n_test], params.window)
    multipliers = multipliers_from_scores(scores)
    test_sigma = ewma_volatility(closes)[len(closes) - n_test : len(closes)]
    # adaptive: walking through the test days in order, each day's interval from the misses before it
    lstm_intervals = both_intervals(scores, closes[-n_test:], forecasts[LSTM], test_sigma, LEVELS)
    intervals = {
        LSTM: lstm_intervals[DEFAULT_INTERVALS],
        NAIVE: constant_intervals(closes[-n_test - 1 : -1], closes[:-n_test]),
        **peers.intervals,
    }
    table = comparison(closes, forecasts, intervals)
    metrics = metrics_by_name(table, closes[-n_test - 1 : -1], closes[-n_test:])
    metrics.update({f"{name}_fit_seconds": seconds for name, seconds in peers.seconds.items()})
    metrics.update({f"interval_multiplier_{level}": value for level, value in multipliers.items()})
    for method in INTERVAL_METHODS:
        metrics.update(
            interval_metrics(closes[-n_test:], lstm_intervals[method], interval_method_prefix(method))
        )
    return SplitEvaluation(
        lstm=lstm,
        dates=prices[DATE_COLUMN].iloc[-n_test:].reset_index(drop=True),
        actual=closes[-n_test:],
        forecasts=forecasts,
        intervals=intervals,
        multipliers=multipliers,
        scores=scores,
        lstm_intervals=lstm_intervals,
        table=table,
        metrics=metrics,
    )


def walk_forward(prices: pd.DataFrame, params: TrainParams) -> list[SplitEvaluation]:
    """Refit on all rows before each fold of the test period and score on that fold."""
    n_test = holdout_size(len(prices), params.test_fraction)
    folds = backtest_ranges(len(prices), n_test, params.backtest_folds)
    for index, (start, end) in enumerate(folds):
        logger.info("Backtest fold %d/%d: rows %d..%d", index + 1, len(folds), start, end - 1)
    return [evaluate_split(prices.iloc[:end], end - start, params) for start, end in folds]
